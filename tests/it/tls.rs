//! HTTPS against the in-process server behind a real TLS terminator with
//! certificates made at test time: the right CA passes, bad certificates
//! fail with their named reason and are not retried, `AWS_CA_BUNDLE`, the
//! profile's `ca_bundle` and `SSL_CERT_FILE` are honoured, and payload
//! signing "auto" is unsigned over https and signed over http.

use std::process::Command;

use crate::support;

use s3pump::{ChecksumAlgorithm, Client, Credentials, DownloadArgs, Error, PutObjectArgs};
use support::harness::{Harness, data};
use support::tls_front::{ServerCert, TestCa, TlsFront, Validity};
use support::{ACCESS_KEY, REGION, SECRET_KEY};

/// An https front for the harness's server, with a certificate for
/// 127.0.0.1 and localhost signed by `ca`.
pub(crate) fn front(h: &Harness, cert: &ServerCert) -> TlsFront {
    TlsFront::start(h.local().expect("in-process server").addr(), cert)
}

/// Uploads `len` bytes in 5 MiB parts, downloads them in ranges (and in one
/// GET), and checks both are byte-identical.
pub(crate) fn round_trip(client: &Client, bucket: &str, key: &str, len: usize) {
    let body = data(len, len as u64);
    client
        .put_object(
            bucket,
            key,
            &body[..],
            PutObjectArgs::new().part_size(5 << 20),
        )
        .expect("upload");
    let mut ranged = Vec::new();
    client
        .download(
            bucket,
            key,
            &mut ranged,
            DownloadArgs::new().part_size(5 << 20),
        )
        .expect("ranged download");
    assert!(ranged == body, "ranged download differs");
    let mut whole = Vec::new();
    client.get_object(bucket, key, &mut whole).expect("GET");
    assert!(whole == body, "GET differs");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_right_ca_passes_upload_and_download_over_https() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump test CA");
    let front = front(
        &h,
        &ca.issue(&["127.0.0.1", "localhost"], Validity::Current),
    );
    for host in ["127.0.0.1", "localhost"] {
        let client = h
            .builder()
            .endpoint(front.endpoint(host))
            .add_root_certificates_pem(ca.pem().as_bytes())
            .build()
            .unwrap();
        round_trip(&client, &h.bucket, &h.key(host), 12 << 20);
    }
    assert!(front.handshakes() >= 2, "the requests went through TLS");
    assert_eq!(front.failed_handshakes(), 0);
    assert_eq!(server.stats().upload_part_calls, 6);
    assert!(h.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_ca_bundle_file_given_to_the_builder_is_trusted() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let ca = TestCa::new("s3pump bundle CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let client = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .ca_bundle(&bundle)
        .build()
        .unwrap();
    round_trip(&client, &h.bucket, &h.key("bundle"), 6 << 20);

    // A bundle that is not there is an error at build time, naming it.
    let err = h
        .builder()
        .ca_bundle(dir.path().join("missing.pem"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = h
        .builder()
        .add_root_certificates_pem(b"not pem")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}

/// Each bad certificate fails with its reason, on the first connection (no
/// retry: one TCP connection per operation, no completed handshake), and
/// nothing reaches the server.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn bad_certificates_fail_with_their_reason_and_are_not_retried() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump trusted CA");
    let other = TestCa::new("s3pump unknown CA");
    let cases = [
        (
            other.issue(&["127.0.0.1"], Validity::Current),
            "unknown issuer",
            "AWS_CA_BUNDLE",
        ),
        (
            ca.issue(&["wrong.example"], Validity::Current),
            "name mismatch: it is not valid for 127.0.0.1 (it names wrong.example)",
            "host name",
        ),
        (
            ca.issue(&["127.0.0.1"], Validity::Expired),
            "expired",
            "new certificate",
        ),
        (
            ca.issue(&["127.0.0.1"], Validity::NotYetValid),
            "not yet valid",
            "clock",
        ),
    ];
    for (cert, reason, hint) in cases {
        let front = front(&h, &cert);
        let client = h
            .builder()
            .endpoint(front.endpoint("127.0.0.1"))
            .add_root_certificates_pem(ca.pem().as_bytes())
            .build()
            .unwrap();
        let body = data(11 << 20, 3);
        let errors = [
            client
                .put_object(
                    &h.bucket,
                    &h.key("m"),
                    &body[..],
                    PutObjectArgs::new().part_size(5 << 20),
                )
                .unwrap_err(),
            client
                .put_object_bytes(&h.bucket, &h.key("s"), b"small", &PutObjectArgs::new())
                .unwrap_err(),
            client.head_object(&h.bucket, &h.key("s")).unwrap_err(),
            client
                .get_object(&h.bucket, &h.key("s"), &mut Vec::new())
                .unwrap_err(),
        ];
        for e in &errors {
            let Error::Tls { host, message, .. } = e.root() else {
                panic!("{reason}: not a TLS error: {e:?}");
            };
            assert_eq!(host, &format!("127.0.0.1:{}", front.addr().port()));
            assert!(message.contains(reason), "{reason}: {e}");
            assert!(message.contains(hint), "{e}");
            assert!(e.to_string().contains(host.as_str()), "{e}");
        }
        assert_eq!(front.handshakes(), 0, "{reason}");
        assert_eq!(
            front.connections(),
            errors.len() as u64,
            "{reason}: one connection per operation, no retry"
        );
    }
    let stats = server.stats();
    assert_eq!(stats.create_multipart_calls + stats.put_object_calls, 0);
    assert!(h.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn payload_signing_auto_is_unsigned_over_https_and_signed_over_http() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump auto CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let https = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    let body = data(11 << 20, 9);
    let args = || PutObjectArgs::new().part_size(5 << 20);
    let parts_and_unsigned = |client: &Client, args: PutObjectArgs, key: &str| {
        server.reset_stats();
        client
            .put_object(&h.bucket, &h.key(key), &body[..], args)
            .unwrap();
        client
            .put_object_bytes(&h.bucket, &h.key("one"), b"single", &PutObjectArgs::new())
            .unwrap();
        let s = server.stats();
        (
            s.upload_part_calls + s.put_object_calls,
            s.unsigned_payload_calls,
        )
    };
    // https, with the default checksum: every body goes unsigned.
    assert_eq!(parts_and_unsigned(&https, args(), "a"), (4, 4));
    // plain http: every body is signed.
    assert_eq!(parts_and_unsigned(&h.client(), args(), "b"), (4, 0));
    // https without checksums: signed after all (only the CRC-less PutObject
    // of the single body uses the default checksum, so it stays unsigned).
    let none = args().checksum(ChecksumAlgorithm::None);
    assert_eq!(parts_and_unsigned(&https, none, "c"), (4, 1));
    // Explicit settings win.
    let signed = args().payload_signing(s3pump::PayloadSigning::Signed);
    assert_eq!(parts_and_unsigned(&https, signed, "d"), (4, 1));
    let unsigned = args().payload_signing(s3pump::PayloadSigning::Unsigned);
    assert_eq!(parts_and_unsigned(&h.client(), unsigned, "e"), (4, 3));
    for key in ["a", "b", "c", "d", "e"] {
        assert!(h.read_back(&h.key(key)) == body);
    }
}

/// Set in a child process of this binary to what `network_child` should do.
pub(crate) const CHILD_ENV: &str = "S3PUMP_NET_TEST_CHILD";

/// Runs only as a child started by [`run_child`] (which sets its whole
/// environment); a no-op otherwise. Builds a client from the environment's
/// trust and proxy settings and does a round trip, or expects a failure.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn network_child() {
    let Ok(expect) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |n: &str| std::env::var(n).unwrap();
    // Trust and proxies from this child's environment: only from_env reads it.
    let client = s3pump::ClientBuilder::from_env()
        .endpoint(var("S3PUMP_NET_TEST_ENDPOINT"))
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .build()
        .unwrap();
    let bucket = var("S3PUMP_NET_TEST_BUCKET");
    match expect.as_str() {
        "ok" => round_trip(&client, &bucket, "child", 6 << 20),
        "unknown-issuer" => {
            let err = client.head_object(&bucket, "child").unwrap_err();
            assert!(err.to_string().contains("unknown issuer"), "{err}");
        }
        other => panic!("unknown child expectation {other}"),
    }
    println!("child checked {expect}");
}

/// Runs [`network_child`] in a child process with exactly the trust and
/// proxy variables in `vars` (all others of them removed).
pub(crate) fn run_child<K, V>(expect: &str, endpoint: &str, bucket: &str, vars: &[(K, V)])
where
    K: AsRef<str> + std::fmt::Debug,
    V: AsRef<str> + std::fmt::Debug,
{
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "tls::network_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, expect)
    .env("S3PUMP_NET_TEST_ENDPOINT", endpoint)
    .env("S3PUMP_NET_TEST_BUCKET", bucket);
    for name in [
        "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in vars {
        cmd.env(k.as_ref(), v.as_ref());
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("child checked {expect}")),
        "child {expect} with {vars:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn aws_ca_bundle_the_profile_ca_bundle_and_ssl_cert_file_are_honoured() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let ca = TestCa::new("s3pump env CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let endpoint = front.endpoint("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let bundle = bundle.to_str().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!("[default]\nregion = {REGION}\n\n[profile tls]\nca_bundle = {bundle}\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let nowhere = dir.path().join("no-config");
    let nowhere = nowhere.to_str().unwrap();

    // Nothing set: the private CA is not trusted.
    run_child(
        "unknown-issuer",
        &endpoint,
        &h.bucket,
        &[("AWS_CONFIG_FILE", nowhere)],
    );
    run_child(
        "ok",
        &endpoint,
        &h.bucket,
        &[("AWS_CA_BUNDLE", bundle), ("AWS_CONFIG_FILE", nowhere)],
    );
    run_child(
        "ok",
        &endpoint,
        &h.bucket,
        &[("AWS_CONFIG_FILE", config), ("AWS_PROFILE", "tls")],
    );
    // The default profile has no ca_bundle.
    run_child(
        "unknown-issuer",
        &endpoint,
        &h.bucket,
        &[("AWS_CONFIG_FILE", config)],
    );
    // The system store, as OpenSSL names it.
    run_child(
        "ok",
        &endpoint,
        &h.bucket,
        &[("SSL_CERT_FILE", bundle), ("AWS_CONFIG_FILE", nowhere)],
    );
}
