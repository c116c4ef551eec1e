//! Server-side copies and moves (`Client::copy_object`, `move_object`)
//! against a real S3 implementation: one CopyObject and parallel
//! UploadPartCopy, 0 bytes to many parts, across buckets, unicode keys,
//! what the copy keeps, a source replaced meanwhile, conditional copies.

use std::time::Duration;

use s3pump::{CopyObjectArgs, ErrorKind, PutObjectArgs};

use crate::support::harness::{Harness, data};
use crate::support::server::{Fault, FaultKind, Op};

const MIB: usize = 1 << 20;

/// Uploads `bytes` to `key` with a content type, metadata and cache headers.
fn source(h: &Harness, key: &str, bytes: &[u8]) {
    let args = PutObjectArgs::new()
        .part_size(5 * MIB as u64)
        .content_type("text/x-source")
        .metadata("origin", "copy-test")
        .header("cache-control", "max-age=60")
        .header("content-disposition", "attachment; filename=\"s.txt\"");
    h.client()
        .put_object(&h.bucket, key, bytes, args)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
}

/// 0 bytes, one CopyObject, and multipart copies of one and many parts, to
/// a unicode key: the bytes, content type and metadata arrive.
#[test]
fn copies_keep_bytes_content_type_and_metadata() {
    let h = Harness::new();
    let client = h.client();
    for (name, len, threshold, parts) in [
        ("empty", 0, None, 1),
        ("single", 300_000, None, 1),
        ("one-part", 300_000, Some(0), 1),
        ("many-parts", 17 * MIB + 3, Some(5 * MIB as u64), 4),
    ] {
        let from = h.key(&format!("src/{name}"));
        let to = h.key(&format!("dst/ünï cödé {name}+1"));
        let bytes = data(len, len as u64);
        source(&h, &from, &bytes);
        let mut args = CopyObjectArgs::new().part_size(5 * MIB as u64);
        if let Some(t) = threshold {
            args = args.multipart_threshold(t);
        }
        let out = client
            .copy_object(&h.bucket, &from, &h.bucket, &to, &args)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.parts, parts, "{name}");
        assert_eq!(out.bytes, len as u64, "{name}");
        assert_eq!(h.read_back(&to), bytes, "{name}");
        let src = client.head_object(&h.bucket, &from).unwrap();
        assert_eq!(out.source_etag, src.etag, "{name}");
        let info = client.head_object(&h.bucket, &to).unwrap();
        assert_eq!(info.etag, out.etag, "{name}");
        assert_eq!(
            info.content_type.as_deref(),
            Some("text/x-source"),
            "{name}"
        );
        assert_eq!(
            info.metadata,
            vec![("origin".to_owned(), "copy-test".to_owned())],
            "{name}"
        );
        assert!(h.open_uploads().is_empty(), "{name}");
    }
}

/// A multipart copy to another bucket keeps the cache and disposition
/// headers too; replaced metadata replaces them.
#[cfg_attr(s3pump_external_s3, ignore = "makes a second bucket")]
#[test]
fn across_buckets_and_replaced_metadata() {
    let h = Harness::new();
    let server = h.local().unwrap();
    let other = format!("{}-copy", h.bucket);
    server.create_bucket(&other);
    let client = h.client();
    let bytes = data(11 * MIB, 7);
    source(&h, "big", &bytes);
    let args = CopyObjectArgs::new()
        .multipart_threshold(MIB as u64)
        .max_inflight_parts(3);
    let out = client
        .copy_object(&h.bucket, "big", &other, "copied/big", &args)
        .unwrap();
    assert!(out.parts > 1, "{out:?}");
    let mut back = Vec::new();
    client.get_object(&other, "copied/big", &mut back).unwrap();
    assert_eq!(back, bytes);
    let head = |key: &str| {
        let url = client
            .presign(
                s3pump::PresignOperation::HeadObject,
                &other,
                key,
                &Default::default(),
            )
            .unwrap()
            .url;
        let r = ureq::head(&url).call().unwrap();
        let get = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        (get("cache-control"), get("content-disposition"))
    };
    assert_eq!(
        head("copied/big"),
        (
            Some("max-age=60".to_owned()),
            Some("attachment; filename=\"s.txt\"".to_owned())
        )
    );

    // Replaced: the content type and metadata given, nothing of the source's.
    for threshold in [u64::MAX, MIB as u64] {
        let args = CopyObjectArgs::new()
            .multipart_threshold(threshold)
            .content_type("application/x-new")
            .metadata("fresh", "yes");
        let key = format!("replaced-{threshold}");
        client
            .copy_object(&h.bucket, "big", &other, &key, &args)
            .unwrap();
        let info = client.head_object(&other, &key).unwrap();
        assert_eq!(info.content_type.as_deref(), Some("application/x-new"));
        assert_eq!(info.metadata, vec![("fresh".to_owned(), "yes".to_owned())]);
    }
    assert!(server.open_uploads().is_empty());
}

/// The source replaced between the HeadObject and the part copies: every
/// part is bound to the old ETag, so the copy fails as `ObjectChanged`,
/// the upload is aborted and no copy appears.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_source_replaced_during_a_multipart_copy_is_an_error() {
    let h = Harness::new();
    let server = h.local().unwrap();
    let client = h.client();
    source(&h, "moving", &data(11 * MIB, 8));
    // The Create waits while the source is replaced.
    server.inject(Fault::new(
        Op::CreateMultipartUpload,
        FaultKind::Delay(Duration::from_millis(600)),
    ));
    let replacer = {
        let (client, bucket) = (client.clone(), h.bucket.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            client
                .put_object_bytes(&bucket, "moving", b"replaced", &PutObjectArgs::new())
                .unwrap();
        })
    };
    let args = CopyObjectArgs::new().multipart_threshold(MIB as u64);
    let e = client
        .copy_object(&h.bucket, "moving", &h.bucket, "copy", &args)
        .unwrap_err();
    replacer.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::ObjectChanged, "{e}");
    assert!(e.upload_id().is_some(), "{e}");
    assert!(e.to_string().contains("moving"), "{e}");
    assert!(h.open_uploads().is_empty(), "the upload was aborted");
    assert!(
        client
            .head_object(&h.bucket, "copy")
            .unwrap_err()
            .is_not_found()
    );
}

/// Conditional copies: `if_none_match` refuses an existing destination,
/// with one CopyObject or many parts; `if_match` replaces only that version.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn conditional_copies() {
    let h = Harness::new();
    let client = h.client();
    source(&h, "a", &data(6 * MIB, 10));
    client
        .put_object_bytes(&h.bucket, "taken", b"mine", &PutObjectArgs::new())
        .unwrap();
    for threshold in [u64::MAX, MIB as u64] {
        let args = CopyObjectArgs::new()
            .multipart_threshold(threshold)
            .if_none_match();
        let e = client
            .copy_object(&h.bucket, "a", &h.bucket, "taken", &args)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{threshold}: {e}");
        assert!(e.to_string().contains("taken"), "{e}");
        assert_eq!(h.read_back("taken"), b"mine");
        assert!(h.open_uploads().is_empty());
        let fresh = format!("fresh-{threshold}");
        client
            .copy_object(&h.bucket, "a", &h.bucket, &fresh, &args)
            .unwrap();
    }
    let etag = client.head_object(&h.bucket, "taken").unwrap().etag;
    let stale = CopyObjectArgs::new().if_match("\"00000000000000000000000000000000\"");
    let e = client
        .copy_object(&h.bucket, "a", &h.bucket, "taken", &stale)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    client
        .copy_object(
            &h.bucket,
            "a",
            &h.bucket,
            "taken",
            &CopyObjectArgs::new().if_match(etag),
        )
        .unwrap();
    assert_eq!(h.read_back("taken"), data(6 * MIB, 10));
}

/// A move copies, then deletes the source; onto itself it is refused.
#[test]
fn move_object_deletes_the_source_after_the_copy() {
    let h = Harness::new();
    let client = h.client();
    let (from, to) = (h.key("mv/from"), h.key("mv/to"));
    let bytes = data(7 * MIB, 11);
    source(&h, &from, &bytes);
    let args = CopyObjectArgs::new()
        .multipart_threshold(MIB as u64)
        .part_size(5 * MIB as u64);
    let out = client
        .move_object(&h.bucket, &from, &h.bucket, &to, &args)
        .unwrap();
    assert!(out.parts > 1);
    assert_eq!(h.read_back(&to), bytes);
    assert!(
        client
            .head_object(&h.bucket, &from)
            .unwrap_err()
            .is_not_found()
    );
    let e = client
        .move_object(&h.bucket, &to, &h.bucket, &to, &args)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(h.read_back(&to), bytes);
    // A failed copy deletes nothing.
    let e = client
        .move_object(&h.bucket, &h.key("mv/absent"), &h.bucket, &from, &args)
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(h.read_back(&to), bytes);
}
