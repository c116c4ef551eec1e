//! Conditional writes (`PutObjectArgs::if_none_match`, `if_match`) against a
//! server that enforces them: on PutObject for one part, on
//! CompleteMultipartUpload for many; from memory, a stream and a file. A
//! refusal is `ErrorKind::PreconditionFailed` naming the key and the
//! condition, changes nothing and leaves no upload open.

use s3pump::{Client, Error, ErrorKind, PutObjectArgs, PutObjectOutput};

use crate::support::harness::{Harness, data};
use crate::support::server::{Fault, FaultKind, Op};

const MIB: usize = 1 << 20;

/// Uploads `bytes` to `key`: from memory as a stream (`put_object`), or from
/// a file (`upload_file`), in 5 MiB parts (one part up to 5 MiB).
fn upload(
    h: &Harness,
    client: &Client,
    key: &str,
    bytes: &[u8],
    from_file: bool,
    args: PutObjectArgs,
) -> s3pump::Result<PutObjectOutput> {
    let args = args.part_size(5 * MIB as u64);
    if from_file {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.bin");
        std::fs::write(&path, bytes).unwrap();
        client.upload_file(&h.bucket, key, &path, args)
    } else {
        client.put_object(&h.bucket, key, bytes, args)
    }
}

fn assert_refused(e: &Error, key: &str, condition: &str) {
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(!e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains(key), "the key is named: {text}");
    assert!(text.contains(condition), "the condition is named: {text}");
}

/// `if_none_match`: the first write creates the object, the second is
/// refused, whatever the path and the part count, and the object is still
/// the first one.
#[test]
fn if_none_match_creates_once() {
    let h = Harness::new();
    let client = h.client();
    for (name, len, from_file) in [
        ("one-part-stream", 1000, false),
        ("one-part-file", 1000, true),
        ("many-parts-stream", 11 * MIB + 5, false),
        ("many-parts-file", 11 * MIB + 5, true),
    ] {
        let key = h.key(&format!("create-once/{name}"));
        let first = data(len, 1);
        let out = upload(
            &h,
            &client,
            &key,
            &first,
            from_file,
            PutObjectArgs::new().if_none_match(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.parts, if len > 5 * MIB { 3 } else { 1 }, "{name}");
        let second = data(len, 2);
        let e = upload(
            &h,
            &client,
            &key,
            &second,
            from_file,
            PutObjectArgs::new().if_none_match(),
        )
        .unwrap_err();
        assert_refused(&e, &key, "If-None-Match: *");
        assert_eq!(h.read_back(&key), first, "{name}: the object is unchanged");
        assert!(h.open_uploads().is_empty(), "{name}: no upload left open");
    }
    // `put_object_bytes` too.
    let key = h.key("create-once/bytes");
    let args = PutObjectArgs::new().if_none_match();
    client
        .put_object_bytes(&h.bucket, &key, b"one", &args)
        .unwrap();
    let e = client
        .put_object_bytes(&h.bucket, &key, b"two", &args)
        .unwrap_err();
    assert_refused(&e, &key, "If-None-Match");
    assert_eq!(h.read_back(&key), b"one");
}

/// `if_match`: a write with the ETag read replaces the object; one with a
/// stale ETag, or on a missing object, is refused and changes nothing.
#[test]
fn if_match_replaces_only_the_version_read() {
    let h = Harness::new();
    let client = h.client();
    for (name, len, from_file) in [
        ("one-part", 2000, false),
        ("many-parts-stream", 10 * MIB + 1, false),
        ("many-parts-file", 10 * MIB + 1, true),
    ] {
        let key = h.key(&format!("cas/{name}"));
        let v1 = data(len, 10);
        upload(&h, &client, &key, &v1, from_file, PutObjectArgs::new()).unwrap();
        let read = client.head_object(&h.bucket, &key).unwrap().etag;

        let v2 = data(len, 11);
        let out = upload(
            &h,
            &client,
            &key,
            &v2,
            from_file,
            PutObjectArgs::new().if_match(&read),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(out.etag, read);
        assert_eq!(h.read_back(&key), v2);

        // `read` is stale now. Without its quotes too (they are added).
        let v3 = data(len, 12);
        let unquoted = read.trim_matches('"').to_owned();
        let e = upload(
            &h,
            &client,
            &key,
            &v3,
            from_file,
            PutObjectArgs::new().if_match(unquoted),
        )
        .unwrap_err();
        assert_refused(&e, &key, "If-Match");
        assert_eq!(h.read_back(&key), v2, "{name}: the object is unchanged");
        assert!(h.open_uploads().is_empty(), "{name}: no upload left open");

        // The current ETag works.
        let out = upload(
            &h,
            &client,
            &key,
            &v3,
            from_file,
            PutObjectArgs::new().if_match(&out.etag),
        )
        .unwrap();
        assert_eq!(out.parts as usize, len.div_ceil(5 * MIB));
        assert_eq!(h.read_back(&key), v3);
    }
    // No object: refused.
    let key = h.key("cas/absent");
    let e = upload(
        &h,
        &client,
        &key,
        &data(6 * MIB, 3),
        false,
        PutObjectArgs::new().if_match("\"0123456789abcdef0123456789abcdef\""),
    )
    .unwrap_err();
    assert_refused(&e, &key, "If-Match");
    assert!(
        client
            .head_object(&h.bucket, &key)
            .unwrap_err()
            .is_not_found()
    );
    assert!(h.open_uploads().is_empty());
}

/// A conditional Complete that was applied but whose reply was an error:
/// the retry is refused (the upload is gone, the object now exists), and
/// the object in place is found to be this upload's: a success.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_conditional_complete_applied_but_unanswered_is_a_success() {
    let h = Harness::new();
    let server = h.local().expect("in-process server");
    let client = h
        .builder()
        .retry_policy(crate::support::harness::fast_retries())
        .build()
        .unwrap();
    let key = h.key("applied");
    let bytes = data(11 * MIB, 4);
    server.inject(Fault::new(
        Op::CompleteMultipartUpload,
        FaultKind::error_in_200_after_processing("InternalError"),
    ));
    let out = upload(
        &h,
        &client,
        &key,
        &bytes,
        false,
        PutObjectArgs::new().if_none_match(),
    )
    .unwrap();
    assert_eq!(out.parts, 3);
    assert_eq!(server.pending_faults(), 0, "the fault fired");
    assert_eq!(h.read_back(&key), bytes);
    assert!(h.open_uploads().is_empty());
}
