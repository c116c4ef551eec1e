//! Every single-request S3 operation against a real S3 implementation (the
//! in-process s3s-fs server, or the external S3 in `S3PUMP_TEST_ENDPOINT`).

use crate::support;

use s3pump::{ChecksumAlgorithm, Credentials, Error, ErrorKind, PutObjectArgs, RetryPolicy};
use support::harness::{Harness, data, md5_hex, multipart_etag};

const MIB: usize = 1 << 20;

/// What every S3 promises for a wrong secret: a 403 whose kind is
/// `AccessDenied` (AWS and s3s-fs say `SignatureDoesNotMatch`, Garage
/// `AccessDenied`), not retried, and no secret in the message.
#[test]
fn wrong_secret_key_is_a_typed_signature_error() {
    let h = Harness::new();
    let access = match h.local() {
        Some(_) => support::server::ACCESS_KEY.to_string(),
        None => std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
    };
    let client = h
        .builder()
        .credentials(Credentials::new(access, "not-the-secret", None))
        .build()
        .unwrap();
    let err = client
        .put_object_bytes(&h.bucket, &h.key("x"), b"data", &PutObjectArgs::new())
        .unwrap_err();
    assert!(matches!(err, Error::S3 { status: 403, .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!err.is_retryable() && !err.is_not_found(), "{err}");
    if h.local().is_some() {
        assert_eq!(err.s3_code(), Some("SignatureDoesNotMatch"), "{err}");
    }
    // What every S3 promises: a 403 that names the signature (AWS and s3s
    // say SignatureDoesNotMatch, Garage AccessDenied "Invalid signature"),
    // and never the secret.
    let text = err.to_string();
    assert!(text.to_ascii_lowercase().contains("signature"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    // A bodiless 403 (HeadObject) is the same kind.
    let err = client.head_object(&h.bucket, &h.key("x")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
}

/// HeadObject has no body to say what is missing: the error says it, and
/// both are `is_not_found`. Regression: both printed
/// `S3 error 404 NotFound: HTTP status 404`.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn missing_key_and_missing_bucket_are_told_apart() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("absent");
    let err = client.head_object(&h.bucket, &key).unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchKey"), "{err}");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(matches!(err, Error::S3 { status: 404, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&key) && text.contains(&h.bucket), "{text}");
    assert!(text.contains("HeadObject"), "{text}");

    if h.local().is_none() {
        // A missing bucket of someone else's is not ours to pick.
        eprintln!("skipped the missing-bucket half: external S3");
        return;
    }
    let missing = "no-such-bucket-s3pump";
    let err = client.head_object(missing, "k").unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchBucket"), "{err}");
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(missing) && !text.contains("object \"k\""),
        "{text}"
    );
    // GetObject has a body saying what is missing (s3s-fs says NoSuchKey
    // for a missing bucket too, where AWS says NoSuchBucket): not found.
    let err = client
        .get_object(missing, "k", &mut Vec::new())
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = client
        .get_object(&h.bucket, &key, &mut Vec::new())
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchKey"), "{err}");
    assert!(err.is_not_found(), "{err}");
    // A missing multipart upload, too.
    let err = client
        .abort_multipart_upload(&h.bucket, &key, "no-such-upload")
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// A connection that cannot be made is a transport error that keeps the
/// HTTP stack's error as its source.
#[test]
fn transport_errors_keep_their_source() {
    use std::error::Error as _;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = s3pump::Client::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials(Credentials::new("AKID", "secret-that-stays-put", None))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.head_object("bucket", "key").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(err.is_retryable());
    let source = err.source().expect("a source");
    let ureq_err = source
        .downcast_ref::<ureq::Error>()
        .unwrap_or_else(|| panic!("not a ureq::Error: {source:?}"));
    assert!(
        matches!(ureq_err, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
        "{ureq_err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("secret-that-stays-put"));
}

#[test]
fn awkward_keys_round_trip() {
    let h = Harness::new();
    let client = h.client();
    for (i, name) in [
        "with space",
        "plus+sign",
        "tilde~name",
        "percent%20literal",
        "ünïcödé/日本語",
        "nested/deep/er/path.txt",
        "semi;colon,comma=equals&amp",
        "(parens)!*'",
    ]
    .iter()
    .enumerate()
    {
        let key = h.key(name);
        let body = data(1000 + i, i as u64);
        client
            .put_object_bytes(&h.bucket, &key, &body, &PutObjectArgs::new())
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        assert_eq!(h.read_back(&key), body, "{key:?}");
        let info = client.head_object(&h.bucket, &key).unwrap();
        assert_eq!(info.size, body.len() as u64);
        assert_eq!(info.etag, format!("\"{}\"", md5_hex(&body)));
    }
}

#[test]
fn empty_object() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("empty");
    let out = client
        .put_object_bytes(&h.bucket, &key, b"", &PutObjectArgs::new())
        .unwrap();
    assert_eq!(out.bytes, 0);
    assert_eq!(client.head_object(&h.bucket, &key).unwrap().size, 0);
    assert!(h.read_back(&key).is_empty());
}

#[test]
fn metadata_and_content_type_round_trip() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("meta");
    let args = PutObjectArgs::new()
        .content_type("text/x-s3pump")
        .metadata("Color", "blue")
        .metadata("shape", "round square");
    client
        .put_object_bytes(&h.bucket, &key, b"hello", &args)
        .unwrap();
    let info = client.head_object(&h.bucket, &key).unwrap();
    assert_eq!(info.content_type.as_deref(), Some("text/x-s3pump"));
    assert_eq!(
        info.metadata,
        vec![
            ("color".to_string(), "blue".to_string()),
            ("shape".to_string(), "round square".to_string())
        ]
    );
    let mut body = Vec::new();
    let got = client.get_object(&h.bucket, &key, &mut body).unwrap();
    assert_eq!(body, b"hello");
    assert_eq!(got.metadata, info.metadata);
    assert_eq!(got.etag, info.etag);
}

#[test]
fn missing_objects_are_typed_errors_and_delete_works() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("gone");
    let err = client
        .get_object(&h.bucket, &key, &mut Vec::new())
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchKey"), "{err}");
    let err = client.head_object(&h.bucket, &key).unwrap_err();
    assert!(matches!(err, Error::S3 { status: 404, .. }), "{err:?}");
    client
        .put_object_bytes(&h.bucket, &key, b"x", &PutObjectArgs::new())
        .unwrap();
    client.delete_object(&h.bucket, &key).unwrap();
    let err = client.head_object(&h.bucket, &key).unwrap_err();
    assert!(matches!(err, Error::S3 { status: 404, .. }), "{err:?}");
    assert!(err.is_not_found(), "{err}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn create_bucket_then_use_it() {
    let h = Harness::new();
    if h.local().is_none() {
        return; // creating buckets on someone's account is not a test's business
    }
    let client = h.client();
    client.create_bucket("fresh-bucket-1").unwrap();
    client
        .put_object_bytes("fresh-bucket-1", "k", b"v", &PutObjectArgs::new())
        .unwrap();
    let mut out = Vec::new();
    client.get_object("fresh-bucket-1", "k", &mut out).unwrap();
    assert_eq!(out, b"v");
}

#[test]
fn three_part_multipart_upload_by_hand() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("three parts");
    let body = data(2 * 5 * MIB + 123_457, 7);
    let args = PutObjectArgs::new();
    let upload_id = client
        .create_multipart_upload(&h.bucket, &key, &args)
        .unwrap();
    assert_eq!(h.open_uploads(), vec![upload_id.clone()]);
    // Upload out of order; Complete must list them in order anyway.
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(5 * MIB).enumerate().rev() {
        let part = client
            .upload_part(&h.bucket, &key, &upload_id, i as u32 + 1, chunk, &args)
            .unwrap();
        assert_eq!(part.etag, format!("\"{}\"", md5_hex(chunk)));
        parts.push(part);
    }
    let listed = client
        .list_parts(&h.bucket, &key, &upload_id, ChecksumAlgorithm::Crc64Nvme)
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.part_number, p.size))
            .collect::<Vec<_>>(),
        vec![(1, 5 * MIB as u64), (2, 5 * MIB as u64), (3, 123_457)]
    );
    let done = client
        .complete_multipart_upload(
            &h.bucket,
            &key,
            &upload_id,
            &parts,
            ChecksumAlgorithm::Crc64Nvme,
        )
        .unwrap();
    assert_eq!(done.etag, multipart_etag(&body, 5 * MIB));
    assert_eq!(h.read_back(&key), body);
    assert!(h.open_uploads().is_empty());
}

#[test]
fn abort_leaves_no_open_upload() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("aborted");
    let args = PutObjectArgs::new();
    let upload_id = client
        .create_multipart_upload(&h.bucket, &key, &args)
        .unwrap();
    client
        .upload_part(&h.bucket, &key, &upload_id, 1, &data(MIB, 1), &args)
        .unwrap();
    let listed = client.list_multipart_uploads(&h.bucket).unwrap();
    assert!(
        listed
            .iter()
            .any(|u| u.upload_id == upload_id && u.key == key)
    );
    client
        .abort_multipart_upload(&h.bucket, &key, &upload_id)
        .unwrap();
    assert!(h.open_uploads().is_empty());
    let err = client
        .upload_part(&h.bucket, &key, &upload_id, 2, b"late", &args)
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchUpload"), "{err}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn complete_answering_200_with_an_error_document_is_that_error() {
    use support::server::{Fault, FaultKind, Op};
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let client = h.client();
    let key = h.key("complete-error");
    let args = PutObjectArgs::new();
    let upload_id = client
        .create_multipart_upload(&h.bucket, &key, &args)
        .unwrap();
    let part = client
        .upload_part(&h.bucket, &key, &upload_id, 1, b"only part", &args)
        .unwrap();
    server.inject(Fault::new(
        Op::CompleteMultipartUpload,
        FaultKind::ErrorIn200 {
            code: "InvalidPart".into(),
        },
    ));
    let err = client
        .complete_multipart_upload(
            &h.bucket,
            &key,
            &upload_id,
            &[part],
            ChecksumAlgorithm::Crc64Nvme,
        )
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("InvalidPart"), "{err}");
    assert!(matches!(err, Error::S3 { status: 200, .. }), "{err:?}");
    client
        .abort_multipart_upload(&h.bucket, &key, &upload_id)
        .unwrap();
}

#[test]
fn invalid_names_are_refused_before_sending() {
    let h = Harness::new();
    let client = h.client();
    for bucket in [
        "",
        "ab",
        "UpperCase",
        "-leading",
        "trailing-",
        "has_underscore",
    ] {
        let err = client
            .put_object_bytes(bucket, "k", b"x", &PutObjectArgs::new())
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{bucket:?}: {err:?}"
        );
        assert!(err.to_string().contains("bucket name"), "{err}");
    }
    let err = client
        .put_object_bytes(&h.bucket, "", b"x", &PutObjectArgs::new())
        .unwrap_err();
    assert!(err.to_string().contains("key is empty"), "{err}");
}

#[test]
fn complete_sends_the_full_object_checksum_and_a_wrong_one_is_refused() {
    use base64::Engine;
    let h = Harness::new();
    let client = h.client();
    let args = PutObjectArgs::new();
    let body = data(5 * MIB + 777, 17);
    let upload = |key: &str| {
        let id = client
            .create_multipart_upload(&h.bucket, key, &args)
            .unwrap();
        let parts: Vec<_> = body
            .chunks(5 * MIB)
            .enumerate()
            .map(|(i, c)| {
                client
                    .upload_part(&h.bucket, key, &id, i as u32 + 1, c, &args)
                    .unwrap()
            })
            .collect();
        (id, parts)
    };
    let whole = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &body);
    let whole = base64::engine::general_purpose::STANDARD.encode(whole.to_be_bytes());

    let key = h.key("full-checksum");
    let (id, parts) = upload(&key);
    let done = client
        .complete_multipart_upload(&h.bucket, &key, &id, &parts, ChecksumAlgorithm::Crc64Nvme)
        .unwrap();
    assert_eq!(done.checksum.as_deref(), Some(whole.as_str()));

    // Claim the second part had the first part's checksum: the combined
    // full-object checksum no longer matches what the server assembled.
    let key = h.key("wrong-checksum");
    let (id, mut parts) = upload(&key);
    parts[1].checksum = parts[0].checksum.clone();
    let err = client
        .complete_multipart_upload(&h.bucket, &key, &id, &parts, ChecksumAlgorithm::Crc64Nvme)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ChecksumMismatch(_) | Error::S3 { status: 400, .. }
        ),
        "{err:?}"
    );
    let _ = client.abort_multipart_upload(&h.bucket, &key, &id);
    assert!(h.open_uploads().is_empty());
    assert!(client.head_object(&h.bucket, &key).is_err());
}
