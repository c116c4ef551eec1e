//! Secrets (the secret access key, the session token, SSE-C keys) never
//! appear in `Debug`, in any error's `Display`, or in the log at TRACE.

use crate::support;

use s3pump::{Credentials, PutObjectArgs};
use support::harness::{Harness, data};

const SECRET: &str = "Sup3rSecretAccessKey/with+chars";
const TOKEN: &str = "SessionTokenThatMustNotLeak0123";
const SSE_KEY: &str = "c3NlLWMta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw==";

fn assert_clean(what: &str, text: &str) {
    for secret in [SECRET, TOKEN, SSE_KEY] {
        assert!(!text.contains(secret), "{what} leaks a secret: {text}");
    }
}

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    support::logger::capture();
    let h = Harness::new();
    let creds = Credentials::new("AKIDS3PUMPTEST", SECRET, Some(TOKEN.to_string()));
    assert_clean("Credentials Debug", &format!("{creds:?}"));
    let client = h.builder().credentials(creds).build().unwrap();
    assert_clean("Client Debug", &format!("{client:?}"));
    let args = || {
        PutObjectArgs::new()
            .part_size(5 << 20)
            .header("x-amz-server-side-encryption-customer-key", SSE_KEY)
    };
    assert_clean("PutObjectArgs Debug", &format!("{:?}", args()));

    // Every request fails: the server does not know this key pair.
    let mut errors = vec![
        client
            .put_object_bytes(&h.bucket, &h.key("a"), b"x", &args())
            .unwrap_err(),
        client
            .put_object(&h.bucket, &h.key("b"), &data(11 << 20, 1)[..], args())
            .unwrap_err(),
        client.head_object(&h.bucket, &h.key("c")).unwrap_err(),
        client
            .get_object(&h.bucket, &h.key("d"), &mut Vec::new())
            .unwrap_err(),
        client
            .put_object(&h.bucket, "", &b""[..], args())
            .unwrap_err(),
    ];
    // Signed with the wrong secret: refused, and of the kind that says so.
    for e in &errors[..4] {
        assert_eq!(e.kind(), s3pump::ErrorKind::AccessDenied, "{e:?}");
    }
    // A transport error (nothing listens there), with the source it keeps.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = s3pump::Client::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials(Credentials::new(
            "AKIDS3PUMPTEST",
            SECRET,
            Some(TOKEN.to_string()),
        ))
        .retry_policy(s3pump::RetryPolicy::none())
        .build()
        .unwrap();
    let e = unreachable
        .put_object_bytes(&h.bucket, &h.key("f"), b"x", &args())
        .unwrap_err();
    assert_eq!(e.kind(), s3pump::ErrorKind::Transport, "{e:?}");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        chain.push_str(&format!("{s} {s:?}\n"));
        source = s.source();
    }
    assert_clean("error source chain", &chain);
    errors.push(e);
    // And one that fails after a multipart upload exists.
    let good = h.client();
    errors.push(
        good.put_object(
            &h.bucket,
            &h.key("e"),
            std::io::Read::chain(&data(6 << 20, 2)[..], FailingReader),
            args(),
        )
        .unwrap_err(),
    );
    for e in &errors {
        assert_clean("error Display", &e.to_string());
        assert_clean("error Debug", &format!("{e:?}"));
    }
    let logs = support::logger::all_lines();
    assert!(
        logs.iter().any(|l| l.starts_with("TRACE")),
        "TRACE logging was on"
    );
    for line in &logs {
        assert_clean("log line", line);
    }
}

struct FailingReader;

impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("boom"))
    }
}

/// Every credential source: the secrets it handles (issued secret keys and
/// session tokens, the web identity token, the SSO access token, the container
/// authorization token, the instance metadata session token) stay out of
/// `Debug`, errors and the log at TRACE, whether the source works or fails.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn credential_sources_keep_their_secrets() {
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use parking_lot::Mutex;
    use s3pump::ClientBuilder;
    use std::sync::Arc;
    use support::cred_services::{self, Issuer, rfc3339};

    const WEB_TOKEN: &str = "eyJhbGciOi.web-identity-token-must-not-leak";
    const SSO_TOKEN: &str = "sso-access-token-that-must-not-leak-0123";
    const CONTAINER_TOKEN: &str = "container-authorization-token-must-not-leak";
    const BASE_SECRET: &str = "base-profile-secret-key-must-not-leak/+";

    support::logger::capture();
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let register = server.key_registrar();
    let issuer = Issuer::new("ASIALEAK", Duration::from_secs(3600))
        .registering(move |i| register(&i.access_key, &i.secret, i.expiry));
    let keys = HashMap::from([("AKIALEAKBASE".to_owned(), BASE_SECRET.to_owned())]);
    let sts = cred_services::sts(keys, Some(WEB_TOKEN.into()), issuer.clone());
    let container = cred_services::container(
        "/creds",
        Some(Arc::new(Mutex::new(CONTAINER_TOKEN.to_owned()))),
        issuer.clone(),
    );
    let imds = cred_services::imds("leak-role", issuer.clone());
    let portal = cred_services::sso_portal(SSO_TOKEN, "1", "R", issuer.clone());

    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
    let later = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    {
        use sha1::Digest;
        let name: String = sha1::Sha1::digest(b"s")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            aws.join(format!("sso/cache/{name}.json")),
            format!(r#"{{"accessToken":"{SSO_TOKEN}","expiresAt":"{later}"}}"#),
        )
        .unwrap();
    }
    std::fs::write(
        aws.join("config"),
        "[profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         [profile sso]\nsso_session = s\nsso_account_id = 1\nsso_role_name = R\n\
         [sso-session s]\nsso_region = eu-west-1\n\
         [profile badsso]\nsso_session = s\nsso_account_id = 2\nsso_role_name = R\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[base]\naws_access_key_id = AKIALEAKBASE\naws_secret_access_key = {BASE_SECRET}\n"
        ),
    )
    .unwrap();
    let jwt = home.path().join("jwt");
    std::fs::write(&jwt, WEB_TOKEN).unwrap();
    let wrong_jwt = home.path().join("wrong-jwt");
    std::fs::write(&wrong_jwt, format!("{WEB_TOKEN}-but-wrong")).unwrap();

    let base = |extra: &[(&str, String)]| {
        let mut v: Vec<(String, String)> = vec![
            ("HOME".into(), home.path().display().to_string()),
            ("AWS_ENDPOINT_URL_STS".into(), sts.emu.url()),
            ("AWS_ENDPOINT_URL_SSO".into(), portal.url()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.clone())));
        ClientBuilder::from_vars(v).endpoint(h.endpoint()).build()
    };
    let configs: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", jwt.display().to_string()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/w".into()),
        ],
        vec![
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                wrong_jwt.display().to_string(),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/w".into()),
        ],
        vec![("AWS_PROFILE", "role".into())],
        vec![("AWS_PROFILE", "sso".into())],
        vec![("AWS_PROFILE", "badsso".into())],
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/creds", container.url()),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN.into()),
        ],
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/creds", container.url()),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                format!("{CONTAINER_TOKEN}-wrong"),
            ),
        ],
        vec![
            ("AWS_EC2_METADATA_DISABLED", "false".into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url()),
        ],
    ];
    let mut texts = Vec::new();
    let mut worked = 0;
    for extra in &configs {
        match base(extra) {
            Ok(client) => {
                worked += 1;
                texts.push(format!("{client:?}"));
                client
                    .put_object_bytes(&h.bucket, &h.key("leak"), b"x", &PutObjectArgs::new())
                    .unwrap();
            }
            Err(e) => {
                texts.push(e.to_string());
                texts.push(format!("{e:?}"));
            }
        }
    }
    assert_eq!(worked, 5, "{texts:#?}");
    texts.extend(support::logger::all_lines());
    let mut secrets: Vec<String> = vec![
        WEB_TOKEN.into(),
        SSO_TOKEN.into(),
        CONTAINER_TOKEN.into(),
        BASE_SECRET.into(),
        "imds-session-token-1".into(),
    ];
    for i in issuer.issued() {
        secrets.push(i.secret);
        secrets.push(i.token);
    }
    assert!(secrets.len() > 10);
    for text in &texts {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "leaks {s:?}: {text}");
        }
    }
}

const PROXY_PASSWORD: &str = "Pr0xyPassw0rdThatMustNotLeak";

/// The proxy password, and the `Proxy-Authorization` value made from it,
/// never appear in `Debug`, errors or the log at TRACE, on the ureq path
/// (CONNECT) or the direct part sender (absolute form).
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn proxy_credentials_stay_out_of_debug_errors_and_logs() {
    use base64::Engine;
    use support::proxy::{ProxyMode, TestProxy};
    support::logger::capture();
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("carol:{PROXY_PASSWORD}"));
    let clean = |what: &str, text: &str| {
        assert!(
            !text.contains(PROXY_PASSWORD),
            "{what} leaks the proxy password: {text}"
        );
        assert!(
            !text.contains(&basic),
            "{what} leaks Proxy-Authorization: {text}"
        );
    };
    let proxy = TestProxy::start(ProxyMode::RequireAuth {
        user: "carol".into(),
        password: PROXY_PASSWORD.into(),
    });
    let url = proxy.url_with_credentials("carol", PROXY_PASSWORD);
    let builder = h.builder().proxy(&url);
    clean("ClientBuilder Debug", &format!("{builder:?}"));
    let client = builder.build().unwrap();
    clean("Client Debug", &format!("{client:?}"));
    let body = data(11 << 20, 5);
    client
        .put_object(
            &h.bucket,
            &h.key("p"),
            &body[..],
            PutObjectArgs::new().part_size(5 << 20),
        )
        .unwrap();
    // A single request goes through ureq's tunnel.
    client.head_object(&h.bucket, &h.key("p")).unwrap();
    assert!(
        proxy.forwarded() >= 2 && proxy.tunnels() >= 1,
        "both paths used"
    );

    // Errors: a wrong password (407), a proxy that is not there.
    let wrong = h
        .builder()
        .proxy(url.replace("carol", "dave"))
        .retry_policy(s3pump::RetryPolicy::none())
        .build()
        .unwrap();
    let gone = h
        .builder()
        .proxy(format!("http://carol:{PROXY_PASSWORD}@127.0.0.1:1"))
        .retry_policy(s3pump::RetryPolicy::none())
        .build()
        .unwrap();
    let bad_url = h
        .builder()
        .proxy(format!("ftp://carol:{PROXY_PASSWORD}@127.0.0.1:1"))
        .build()
        .unwrap_err();
    let errors = [
        wrong.head_object(&h.bucket, &h.key("p")).unwrap_err(),
        wrong
            .put_object(
                &h.bucket,
                &h.key("q"),
                &body[..],
                PutObjectArgs::new().part_size(5 << 20),
            )
            .unwrap_err(),
        gone.head_object(&h.bucket, &h.key("p")).unwrap_err(),
        bad_url,
    ];
    for e in &errors {
        clean("error Display", &e.to_string());
        clean("error Debug", &format!("{e:?}"));
    }

    // Filtered, not a copy of the whole log: in the one test binary the
    // capture holds every TRACE line of every test that ran since it began.
    for needle in [PROXY_PASSWORD, basic.as_str()] {
        let leaks = support::logger::lines_containing(needle);
        assert!(leaks.is_empty(), "the log leaks a proxy secret: {leaks:?}");
    }
    assert!(
        !support::logger::lines_containing("UploadPart PUT").is_empty(),
        "the requests were logged at TRACE"
    );
}
