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
