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

const PROXY_PASSWORD: &str = "Pr0xyPassw0rdThatMustNotLeak";

/// The proxy password, and the `Proxy-Authorization` value made from it,
/// never appear in `Debug`, errors or the log at TRACE, on the ureq path
/// (CONNECT) or the direct part sender (absolute form).
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
