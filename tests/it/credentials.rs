//! Credentials: every source of the default chain against an emulation of
//! its service on 127.0.0.1 (tests/support/cred_services.rs), the chain's
//! order, refresh before expiry during long transfers, the forced refresh on
//! `ExpiredToken`, and the error when nothing is found.
//!
//! Every client here is built from explicit variables
//! (`ClientBuilder::from_vars`), never the process environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use s3pump::{
    Client, ClientBuilder, Credentials, DownloadArgs, Error, ProvideCredentials, PutObjectArgs,
};

use crate::support;
use support::cred_services::{self, Issued, Issuer, closed_port};
use support::harness::{Harness, data};
use support::{Relay, RelayConfig, TestServer};

const MIB: usize = 1 << 20;

/// An issuer whose keys the test server accepts until they expire.
fn issuer_for(server: &TestServer, prefix: &str, lifetime: Duration) -> Issuer {
    let register = server.key_registrar();
    Issuer::new(prefix, lifetime)
        .registering(move |i: &Issued| register(&i.access_key, &i.secret, i.expiry))
}

/// Variables for a client of `server` that finds nothing but what `extra`
/// configures: HOME is an empty temp dir, instance metadata is disabled
/// unless `extra` points it somewhere.
fn vars(home: &std::path::Path, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("HOME".into(), home.display().to_string()),
        ("AWS_REGION".into(), support::REGION.into()),
    ];
    if !extra
        .iter()
        .any(|(k, _)| *k == "AWS_EC2_METADATA_SERVICE_ENDPOINT")
    {
        v.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    }
    v.extend(extra.iter().map(|(k, val)| (k.to_string(), val.clone())));
    v
}

fn client_from(
    h: &Harness,
    home: &std::path::Path,
    extra: &[(&str, String)],
) -> s3pump::Result<Client> {
    ClientBuilder::from_vars(vars(home, extra))
        .endpoint(h.endpoint())
        .build()
}

/// A put and a get work with the client, and the server saw `prefix` keys.
fn round_trip(h: &Harness, client: &Client, name: &str, prefix: &str) {
    let server = h.local().unwrap();
    let key = h.key(name);
    client
        .put_object_bytes(&h.bucket, &key, b"hello", &PutObjectArgs::new())
        .unwrap();
    let mut out = Vec::new();
    client.get_object(&h.bucket, &key, &mut out).unwrap();
    assert_eq!(out, b"hello");
    let last = server.access_keys_used().pop().unwrap();
    assert!(
        last.starts_with(prefix),
        "signed with {last}, expected {prefix}…"
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn imds_v2_token_role_and_credentials() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIAIMDS", Duration::from_secs(3600));
    let imds = cred_services::imds("s3pump-role", issuer.clone());

    // The emulation speaks IMDSv2: no token, no metadata.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let r = agent
        .get(format!(
            "{}/latest/meta-data/iam/security-credentials/",
            imds.url()
        ))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);

    let home = tempfile::tempdir().unwrap();
    let client = client_from(
        &h,
        home.path(),
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())],
    )
    .unwrap();
    round_trip(&h, &client, "imds", "ASIAIMDS");
    let reqs = imds.requests();
    let token = &reqs
        .iter()
        .find(|r| r.method == "PUT")
        .expect("a token PUT");
    assert_eq!(token.path(), "/latest/api/token");
    assert_eq!(
        token.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    let gets: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.header("x-aws-ec2-metadata-token").is_some())
        .collect();
    assert_eq!(gets.len(), 2, "role listing, then the role's credentials");
    assert_eq!(
        gets[1].path(),
        "/latest/meta-data/iam/security-credentials/s3pump-role"
    );
    assert_eq!(
        gets[0].header("x-aws-ec2-metadata-token"),
        Some("imds-session-token-1"),
        "the token from the PUT"
    );
    assert!(
        format!("{client:?}").contains("IMDS role s3pump-role"),
        "{client:?}"
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn container_full_uri_rereads_the_token_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIAECS", Duration::from_secs(3600));
    let expected = Arc::new(Mutex::new("container-auth-token-1".to_owned()));
    let emu = cred_services::container("/v1/credentials", Some(Arc::clone(&expected)), issuer);
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "container-auth-token-1\n").unwrap();
    let full = format!("{}/v1/credentials", emu.url());
    let client = client_from(
        &h,
        home.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.clone()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    )
    .unwrap();
    round_trip(&h, &client, "ecs", "ASIAECS");
    assert_eq!(
        emu.requests()[0].header("authorization"),
        Some("container-auth-token-1")
    );

    // The token rotates: the next client reads the new one from the file.
    *expected.lock() = "container-auth-token-2".to_owned();
    std::fs::write(&token_file, "container-auth-token-2").unwrap();
    let client = client_from(
        &h,
        home.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.clone()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    )
    .unwrap();
    round_trip(&h, &client, "ecs2", "ASIAECS");

    // AWS_CONTAINER_AUTHORIZATION_TOKEN, and a wrong token is refused.
    let ok = client_from(
        &h,
        home.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.clone()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "container-auth-token-2".into(),
            ),
        ],
    );
    assert!(ok.is_ok(), "{ok:?}");
    let err = client_from(
        &h,
        home.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "wrong-container-token".into(),
            ),
        ],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("container credentials") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-container-token"), "{msg}");

    // http to any other host is refused before anything is sent.
    let err = client_from(
        &h,
        home.path(),
        &[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://192.0.2.1/creds".into(),
        )],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("http is allowed only to loopback"),
        "{err}"
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn web_identity_from_the_environment() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIAWEB", Duration::from_secs(3600));
    let sts = cred_services::sts(HashMap::new(), Some("oidc-jwt-token-value".into()), issuer);
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("jwt");
    std::fs::write(&token_file, "oidc-jwt-token-value\n").unwrap();
    let client = client_from(
        &h,
        home.path(),
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci".into()),
            ("AWS_ROLE_SESSION_NAME", "ci-run-7".into()),
            ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        ],
    )
    .unwrap();
    round_trip(&h, &client, "web", "ASIAWEB");
    let r = &sts.emu.requests()[0];
    assert_eq!(
        r.param("Action").as_deref(),
        Some("AssumeRoleWithWebIdentity")
    );
    assert_eq!(
        r.param("RoleArn").as_deref(),
        Some("arn:aws:iam::123456789012:role/ci")
    );
    assert_eq!(r.param("RoleSessionName").as_deref(), Some("ci-run-7"));
    assert!(r.header("authorization").is_none(), "not signed");

    // A wrong token: STS's error, not the token.
    std::fs::write(&token_file, "some-other-oidc-token").unwrap();
    let err = client_from(
        &h,
        home.path(),
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci".into()),
            ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        ],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("InvalidIdentityToken"), "{msg}");
    assert!(!msg.contains("some-other-oidc-token"), "{msg}");
}

fn write_config(home: &std::path::Path, config: &str, credentials: &str) {
    let aws = home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(aws.join("config"), config).unwrap();
    std::fs::write(aws.join("credentials"), credentials).unwrap();
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn profile_assume_role_chain_signed_by_each_source() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIAROLE", Duration::from_secs(3600));
    let keys = HashMap::from([("AKIABASE".to_owned(), "base/secret+key".to_owned())]);
    let sts = cred_services::sts(keys, None, issuer);
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        "[profile mid]\nrole_arn = arn:aws:iam::1:role/mid\nsource_profile = base\n\
         [profile top]\nrole_arn = arn:aws:iam::2:role/needs-external-id\nsource_profile = mid\n\
         external_id = ext-42\nrole_session_name = nightly\nduration_seconds = 1800\n",
        "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base/secret+key\n",
    );
    let client = client_from(
        &h,
        home.path(),
        &[
            ("AWS_PROFILE", "top".into()),
            ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        ],
    )
    .unwrap();
    round_trip(&h, &client, "chain", "ASIAROLE");
    let reqs = sts.emu.requests();
    assert_eq!(reqs.len(), 2, "mid, then top");
    assert_eq!(
        reqs[0].param("RoleArn").as_deref(),
        Some("arn:aws:iam::1:role/mid")
    );
    assert!(
        reqs[0]
            .header("authorization")
            .unwrap()
            .contains("Credential=AKIABASE/")
    );
    assert!(
        reqs[0]
            .header("authorization")
            .unwrap()
            .contains("/us-east-1/sts/aws4_request")
    );
    assert_eq!(
        reqs[1].param("RoleArn").as_deref(),
        Some("arn:aws:iam::2:role/needs-external-id")
    );
    // Signed by mid's temporary credentials, with its session token.
    assert!(
        reqs[1]
            .header("authorization")
            .unwrap()
            .contains("Credential=ASIAROLE0001/")
    );
    assert!(reqs[1].header("x-amz-security-token").is_some());
    assert_eq!(reqs[1].param("ExternalId").as_deref(), Some("ext-42"));
    assert_eq!(reqs[1].param("RoleSessionName").as_deref(), Some("nightly"));
    assert_eq!(reqs[1].param("DurationSeconds").as_deref(), Some("1800"));

    // The CLI's --profile: ClientBuilder::profile, environment keys ignored.
    let client = ClientBuilder::from_vars(vars(
        home.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAIGNORED".into()),
            ("AWS_SECRET_ACCESS_KEY", "ignored".into()),
            ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        ],
    ))
    .profile("mid")
    .endpoint(h.endpoint())
    .build()
    .unwrap();
    round_trip(&h, &client, "profile-flag", "ASIAROLE");
}

#[test]
fn profile_errors_name_the_problem() {
    let h = Harness::new();
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n\
         [profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n\
         [profile odd]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Vault\n\
         [profile env]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Environment\n\
         [profile lost]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = nowhere\n",
        "",
    );
    let err = |profile: &str| {
        client_from(&h, home.path(), &[("AWS_PROFILE", profile.into())])
            .unwrap_err()
            .to_string()
    };
    let e = err("a");
    assert!(
        e.contains("cycle") && e.contains("`a` -> `b` -> `a`"),
        "{e}"
    );
    let e = err("odd");
    assert!(
        e.contains("credential_source") && e.contains("Vault"),
        "{e}"
    );
    let e = err("env");
    assert!(e.contains("AWS_ACCESS_KEY_ID is not set"), "{e}");
    let e = err("lost");
    assert!(e.contains("source_profile `nowhere`"), "{e}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn credential_source_environment_signs_assume_role() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIAENVROLE", Duration::from_secs(3600));
    let keys = HashMap::from([("AKIAENVSRC".to_owned(), "env-source-secret".to_owned())]);
    let sts = cred_services::sts(keys, None, issuer);
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        "[profile r]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Environment\n",
        "",
    );
    let client = ClientBuilder::from_vars(vars(
        home.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENVSRC".into()),
            ("AWS_SECRET_ACCESS_KEY", "env-source-secret".into()),
            ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        ],
    ))
    .profile("r")
    .endpoint(h.endpoint())
    .build()
    .unwrap();
    round_trip(&h, &client, "envsrc", "ASIAENVROLE");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn credential_process_runs_a_real_script() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let home = tempfile::tempdir().unwrap();
    let expiry = SystemTime::now() + Duration::from_secs(3600);
    server.add_temporary_key("ASIAPROCESS", "process-secret", expiry);
    let script = home.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"ASIAPROCESS\", \"SecretAccessKey\": \"process-secret\", \
             \"SessionToken\": \"process-token\", \"Expiration\": \"{}\"}}'\n",
            cred_services::rfc3339(expiry)
        ),
    )
    .unwrap();
    let failing = home.path().join("fail.sh");
    std::fs::write(&failing, "#!/bin/sh\necho 'TOPSECRETOUTPUT'\nexit 3\n").unwrap();
    write_config(
        home.path(),
        &format!(
            "[profile p]\ncredential_process = sh {}\n[profile f]\ncredential_process = sh {}\n",
            script.display(),
            failing.display()
        ),
        "",
    );
    let client = client_from(&h, home.path(), &[("AWS_PROFILE", "p".into())]).unwrap();
    round_trip(&h, &client, "process", "ASIAPROCESS");
    let e = client_from(&h, home.path(), &[("AWS_PROFILE", "f".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("credential_process") && e.contains("exit status: 3"),
        "{e}"
    );
    assert!(!e.contains("TOPSECRETOUTPUT"), "{e}");
}

fn sha1_hex(s: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn sso_session_and_legacy_sso_from_the_token_cache() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let issuer = issuer_for(server, "ASIASSO", Duration::from_secs(3600));
    let portal =
        cred_services::sso_portal("cached-sso-access-token", "111122223333", "Admin", issuer);
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        "[profile new]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Admin\n\
         [sso-session corp]\nsso_region = eu-west-1\nsso_start_url = https://corp.awsapps.com/start\n\
         [profile old]\nsso_start_url = https://old.awsapps.com/start\nsso_region = eu-west-1\n\
         sso_account_id = 111122223333\nsso_role_name = Admin\n",
        "",
    );
    let cache = home.path().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let later = cred_services::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let token = format!(r#"{{"accessToken":"cached-sso-access-token","expiresAt":"{later}"}}"#);
    std::fs::write(cache.join(format!("{}.json", sha1_hex("corp"))), &token).unwrap();
    std::fs::write(
        cache.join(format!(
            "{}.json",
            sha1_hex("https://old.awsapps.com/start")
        )),
        &token,
    )
    .unwrap();
    for profile in ["new", "old"] {
        let client = client_from(
            &h,
            home.path(),
            &[
                ("AWS_PROFILE", profile.into()),
                ("AWS_ENDPOINT_URL_SSO", portal.url()),
            ],
        )
        .unwrap();
        round_trip(&h, &client, profile, "ASIASSO");
    }
    let reqs = portal.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header("x-amz-sso_bearer_token"),
        Some("cached-sso-access-token")
    );

    // An expired token: a clear error, without the token.
    let past = cred_services::rfc3339(SystemTime::now() - Duration::from_secs(60));
    std::fs::write(
        cache.join(format!("{}.json", sha1_hex("corp"))),
        format!(r#"{{"accessToken":"cached-sso-access-token","expiresAt":"{past}"}}"#),
    )
    .unwrap();
    let e = client_from(
        &h,
        home.path(),
        &[
            ("AWS_PROFILE", "new".into()),
            ("AWS_ENDPOINT_URL_SSO", portal.url()),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expired") && e.contains("aws sso login"), "{e}");
    assert!(!e.contains("cached-sso-access-token"), "{e}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn chain_order_with_every_source_configured() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.add_temporary_key(
        "AKIAENVKEYS",
        "env-secret",
        SystemTime::now() + Duration::from_secs(3600),
    );
    server.add_temporary_key(
        "AKIAPROFILE",
        "profile-secret",
        SystemTime::now() + Duration::from_secs(3600),
    );
    let sts = cred_services::sts(
        HashMap::new(),
        Some("jwt".into()),
        issuer_for(server, "ASIAWEBID", Duration::from_secs(3600)),
    );
    let ecs = cred_services::container(
        "/c",
        None,
        issuer_for(server, "ASIACONTAINER", Duration::from_secs(3600)),
    );
    let imds = cred_services::imds(
        "r",
        issuer_for(server, "ASIAMETADATA", Duration::from_secs(3600)),
    );
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        "",
        "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n",
    );
    let jwt = home.path().join("jwt");
    std::fs::write(&jwt, "jwt").unwrap();
    let all: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", "AKIAENVKEYS".into()),
        ("AWS_SECRET_ACCESS_KEY", "env-secret".into()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", jwt.display().to_string()),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/w".into()),
        ("AWS_ENDPOINT_URL_STS", sts.emu.url()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join(".aws/credentials").display().to_string(),
        ),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/c", ecs.url()),
        ),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url()),
    ];
    let without = |drop: &[&str]| -> Vec<(&str, String)> {
        all.iter()
            .filter(|(k, _)| !drop.contains(k))
            .cloned()
            .collect()
    };
    let steps: [(&[&str], &str); 5] = [
        (&[], "AKIAENVKEYS"),
        (&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], "ASIAWEBID"),
        (
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            ],
            "AKIAPROFILE",
        ),
        (
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_SHARED_CREDENTIALS_FILE",
            ],
            "ASIACONTAINER",
        ),
        (
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_SHARED_CREDENTIALS_FILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ],
            "ASIAMETADATA",
        ),
    ];
    // The profile lives in HOME too: point HOME elsewhere once the
    // credentials file is "removed".
    let empty_home = tempfile::tempdir().unwrap();
    for (i, (drop, expected)) in steps.iter().enumerate() {
        let home_for = if drop.contains(&"AWS_SHARED_CREDENTIALS_FILE") {
            empty_home.path()
        } else {
            home.path()
        };
        let client = client_from(&h, home_for, &without(drop)).unwrap();
        round_trip(&h, &client, &format!("order-{i}"), expected);
    }
}

#[test]
fn nothing_configured_fails_fast_listing_every_source() {
    let h = Harness::new();
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = ClientBuilder::from_vars([
        ("HOME", home.path().display().to_string()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", closed_port()),
        ),
    ])
    .endpoint(h.endpoint())
    .build()
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(matches!(err, Error::Credentials(_)), "{err:?}");
    let msg = err.to_string();
    for source in [
        "environment: AWS_ACCESS_KEY_ID",
        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set",
        "profile `default`: not in",
        "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "instance metadata at http://127.0.0.1:",
    ] {
        assert!(msg.contains(source), "{source:?} missing from: {msg}");
    }
    // Client::builder() reads nothing and says what to do.
    let err = Client::builder()
        .endpoint(h.endpoint())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("ClientBuilder::from_env"), "{err}");
}

/// A provider handing out credentials valid for `lifetime`, registered with
/// the test server; counts its calls.
struct Rotating {
    issuer: Issuer,
    calls: AtomicU32,
    /// Declared validity, when it differs from the server's.
    declared: Option<Duration>,
    fail_after: Option<u32>,
}

impl ProvideCredentials for Rotating {
    fn provide(&self) -> s3pump::Result<Credentials> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_after.is_some_and(|f| n > f) {
            return Err(Error::Credentials("the vault is sealed".into()));
        }
        let i = self.issuer.issue();
        let expiry = match self.declared {
            Some(d) => SystemTime::now() + d,
            None => i.expiry,
        };
        Ok(Credentials::new(i.access_key, i.secret, Some(i.token)).with_expiry(expiry))
    }

    fn describe(&self) -> String {
        "the rotating test vault".into()
    }
}

fn rotating(server: &TestServer, prefix: &str, lifetime: Duration) -> Arc<Rotating> {
    Arc::new(Rotating {
        issuer: issuer_for(server, prefix, lifetime),
        calls: AtomicU32::new(0),
        declared: None,
        fail_after: None,
    })
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn an_upload_and_a_download_outlive_their_credentials() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    // 4 MB/s per connection through the relay, two connections: 24 MiB take
    // about 3 s each way; credentials last 2 s (refreshed 1 s before they
    // expire), so each transfer spans at least three of them.
    let relay = Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: Some(4_000_000),
            delay: Duration::ZERO,
        },
    );
    let provider = rotating(server, "ASIAROT", Duration::from_secs(2));
    let client = Client::builder()
        .endpoint(relay.endpoint())
        .region(support::REGION)
        .credentials_provider(Arc::clone(&provider))
        .build()
        .unwrap();
    let body = data(24 * MIB, 11);
    let key = h.key("rotating");
    let started = Instant::now();
    client
        .put_object(
            &h.bucket,
            &key,
            &body[..],
            PutObjectArgs::new()
                .part_size(5 * MIB as u64)
                .max_inflight_parts(2),
        )
        .unwrap();
    let upload_time = started.elapsed();
    assert!(
        server.object_bytes(&h.bucket, &key).unwrap() == body,
        "byte-identical"
    );
    let used = server.access_keys_used();
    let mut distinct: Vec<&String> = used.iter().collect();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "the upload ({upload_time:?}) spanned several credentials: {distinct:?}"
    );
    eprintln!(
        "upload: {upload_time:?}, {} credentials, {} refused as expired",
        distinct.len(),
        server.expired_rejections()
    );

    let before = provider.calls.load(Ordering::SeqCst);
    let started = Instant::now();
    let mut out = Vec::new();
    client
        .download(
            &h.bucket,
            &key,
            &mut out,
            DownloadArgs::new()
                .part_size(4 * MIB as u64)
                .max_inflight_parts(2),
        )
        .unwrap();
    let download_time = started.elapsed();
    assert!(out == body, "download byte-identical");
    let after = provider.calls.load(Ordering::SeqCst);
    assert!(
        after >= before + 2,
        "the download ({download_time:?}) refreshed: {before} -> {after}"
    );
    // Every request was signed by credentials valid when it arrived: the
    // server refuses expired keys, and the few it refused (a request slower
    // than the refresh margin on a loaded machine) were refreshed and sent again.
    eprintln!(
        "download: {download_time:?}; {} requests refused as expired in all",
        server.expired_rejections()
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn expired_token_forces_one_refresh_and_one_retry() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    // The provider says an hour; the server expires each key after 1 s.
    let provider = Arc::new(Rotating {
        issuer: issuer_for(server, "ASIAREVOKED", Duration::from_secs(1)),
        calls: AtomicU32::new(0),
        declared: Some(Duration::from_secs(3600)),
        fail_after: None,
    });
    let client = h
        .builder()
        .credentials_provider(Arc::clone(&provider))
        .build()
        .unwrap();
    let key = h.key("forced");
    client
        .put_object_bytes(&h.bucket, &key, b"one", &PutObjectArgs::new())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    client
        .put_object_bytes(&h.bucket, &key, b"two", &PutObjectArgs::new())
        .unwrap();
    assert_eq!(server.expired_rejections(), 1);
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);

    // Static credentials are not refreshed: the error comes back.
    server.add_temporary_key("AKIASTATICEXP", "s", SystemTime::now());
    let client = h
        .builder()
        .credentials(Credentials::new("AKIASTATICEXP", "s", None))
        .build()
        .unwrap();
    let err = client
        .put_object_bytes(&h.bucket, &key, b"x", &PutObjectArgs::new())
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("ExpiredToken"), "{err}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn failed_refresh_while_valid_warns_then_names_the_source_once_expired() {
    support::logger::capture();
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let provider = Arc::new(Rotating {
        issuer: issuer_for(server, "ASIASEALED", Duration::from_secs(3)),
        calls: AtomicU32::new(0),
        declared: None,
        fail_after: Some(1),
    });
    let client = h
        .builder()
        .credentials_provider(Arc::clone(&provider))
        .build()
        .unwrap();
    let key = h.key("sealed");
    client
        .put_object_bytes(&h.bucket, &key, b"1", &PutObjectArgs::new())
        .unwrap();
    // Due for refresh (1.5 s before expiry) but still valid: the refresh
    // fails, the request goes on with the current credentials.
    std::thread::sleep(Duration::from_millis(1800));
    client
        .put_object_bytes(&h.bucket, &key, b"2", &PutObjectArgs::new())
        .unwrap();
    assert!(provider.calls.load(Ordering::SeqCst) >= 2);
    let warned = support::logger::lines_containing(
        "refreshing the credentials from the rotating test vault failed",
    );
    assert!(warned.iter().any(|l| l.starts_with("WARN")), "{warned:?}");
    // Expired: the error names the source and why.
    std::thread::sleep(Duration::from_millis(1500));
    let err = client
        .put_object_bytes(&h.bucket, &key, b"3", &PutObjectArgs::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Credentials(_)), "{err:?}");
    assert!(
        msg.contains("the rotating test vault")
            && msg.contains("the vault is sealed")
            && msg.contains("expired"),
        "{msg}"
    );
}

/// As a new user would: the CLI with nothing but the metadata endpoint (or
/// a credential_process profile) set uploads with those credentials.
#[cfg(feature = "cli")]
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_cli_finds_imds_and_credential_process() {
    use std::process::Command;

    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let imds = cred_services::imds(
        "cli-role",
        issuer_for(server, "ASIACLIIMDS", Duration::from_secs(3600)),
    );
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("f");
    std::fs::write(&file, b"from the cli").unwrap();
    let run = |envs: &[(&str, String)], key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_s3pump"))
            .args([
                "put",
                &file.display().to_string(),
                &format!("s3://{}/{key}", h.bucket),
            ])
            .args(["--endpoint", h.endpoint()])
            .env_clear()
            .env("HOME", home.path())
            .env("AWS_REGION", support::REGION)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            server.object_bytes(&h.bucket, key).unwrap(),
            b"from the cli"
        );
        server.access_keys_used().pop().unwrap()
    };
    let used = run(
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())],
        "cli-imds",
    );
    assert!(used.starts_with("ASIACLIIMDS"), "{used}");

    server.add_temporary_key(
        "ASIACLIPROC",
        "cli-process-secret",
        SystemTime::now() + Duration::from_secs(3600),
    );
    let script = home.path().join("p.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"ASIACLIPROC\",\"SecretAccessKey\":\"cli-process-secret\"}'\n",
    )
    .unwrap();
    write_config(
        home.path(),
        &format!(
            "[profile proc]\ncredential_process = sh {}\n",
            script.display()
        ),
        "",
    );
    let used = run(
        &[
            ("AWS_PROFILE", "proc".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ],
        "cli-proc",
    );
    assert_eq!(used, "ASIACLIPROC");
}

#[test]
fn local_inputs_are_bounded() {
    let h = Harness::new();
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    // A config file that is a FIFO nobody writes, /dev/zero, a 2 MiB file.
    let fifo = home.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = home.path().join("big");
    std::fs::write(&big, format!("[default]\n# {}\n", "x".repeat(2 << 20))).unwrap();
    for (path, want) in [
        (fifo.display().to_string(), "not a regular file"),
        ("/dev/zero".to_string(), "not a regular file"),
        (big.display().to_string(), "larger than 1048576 bytes"),
    ] {
        let e = client_from(&h, home.path(), &[("AWS_CONFIG_FILE", path.clone())])
            .unwrap_err()
            .to_string();
        assert!(e.contains(want) && e.contains(&path), "{path}: {e}");
    }

    // A source_profile chain 3000 deep: a short error, no stack overflow.
    let mut config = String::new();
    for i in 0..3000 {
        config.push_str(&format!(
            "[profile p{i}]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = p{}\n",
            i + 1
        ));
    }
    config.push_str("[profile p3000]\naws_access_key_id = A\naws_secret_access_key = S\n");
    write_config(home.path(), &config, "");
    let e = client_from(&h, home.path(), &[("AWS_PROFILE", "p0".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than 32 profiles"), "{e}");
    assert!(e.contains("`p0` -> `p1` -> `p2` -> …"), "{e}");
    assert!(e.len() < 300, "a short error: {e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
