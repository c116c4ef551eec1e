//! Uploading files with positional reads on the workers, and resuming an
//! interrupted upload.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use s3pump::{Error, PutObjectArgs};
use support::harness::{Harness, data, md5_hex, multipart_etag};
use support::server::{Fault, FaultKind, Op};

const PART: usize = 5 << 20;

fn file_with(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn files_of_edge_sizes_upload_identically() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let body = data(3 * PART + 7, 77);
    for len in [0, 1, PART - 1, PART, PART + 1, 3 * PART + 7] {
        let path = file_with(&dir, "f", &body[..len]);
        let key = h.key(&format!("file-{len}"));
        let out = h
            .client()
            .upload_file(
                &h.bucket,
                &key,
                &path,
                PutObjectArgs::new()
                    .part_size(PART as u64)
                    .max_inflight_parts(4),
            )
            .unwrap();
        let parts = len.div_ceil(PART).max(1);
        assert_eq!(out.parts as usize, parts);
        let etag = if parts == 1 {
            format!("\"{}\"", md5_hex(&body[..len]))
        } else {
            multipart_etag(&body[..len], PART)
        };
        assert_eq!(out.etag, etag, "{len}");
        assert!(h.read_back(&key) == body[..len], "{len}: bytes differ");
        // Over plain http, a file of at least 1 MiB goes by sendfile with
        // no buffer (tests/it/sendfile.rs); else at most one buffer per
        // worker, and no more workers than parts.
        if len >= 1 << 20 && h.endpoint().starts_with("http://") {
            assert_eq!(out.slabs, 0, "{len}");
        } else {
            assert!(
                (1..=parts.min(4)).contains(&out.slabs),
                "{len}: {}",
                out.slabs
            );
        }
    }
    assert!(h.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn workers_read_and_send_in_parallel() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_part_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "f", &data(8 * PART, 8));
    h.client()
        .upload_file(
            &h.bucket,
            &h.key("parallel"),
            &path,
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(4),
        )
        .unwrap();
    assert_eq!(server.stats().peak_upload_parts_in_flight, 4);
}

#[test]
fn a_declared_size_that_is_not_the_files_is_an_error() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "f", b"12345");
    let err = h
        .client()
        .upload_file(&h.bucket, &h.key("x"), &path, PutObjectArgs::new().size(6))
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch(_)), "{err:?}");
    let err = h
        .client()
        .upload_file(
            &h.bucket,
            &h.key("x"),
            dir.path().join("missing"),
            PutObjectArgs::new(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_failed_part_aborts_unless_the_upload_is_kept() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "f", &data(4 * PART, 4));
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(3));
    let err = h
        .client()
        .upload_file(
            &h.bucket,
            &h.key("abort"),
            &path,
            PutObjectArgs::new().part_size(PART as u64),
        )
        .unwrap_err();
    assert!(err.to_string().contains("part 3"), "{err}");
    assert!(server.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn resuming_sends_only_the_missing_parts_and_gives_the_same_etag() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = tempfile::tempdir().unwrap();
    let body = data(8 * PART + 1234, 88);
    let path = file_with(&dir, "f", &body);
    let key = h.key("resumed");
    let args = || {
        PutObjectArgs::new()
            .part_size(PART as u64)
            .max_inflight_parts(1)
    };

    // Fails at part 5 of 9 (sequentially, so parts 1-4 are on the server).
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(5));
    let err = h
        .client()
        .upload_file(&h.bucket, &key, &path, args().keep_failed_upload(true))
        .unwrap_err();
    let upload_id = err
        .upload_id()
        .expect("the error names the upload")
        .to_string();
    assert_eq!(server.open_uploads().len(), 1, "the upload was kept");

    server.reset_stats();
    let out = h
        .client()
        .resume_upload_file(
            &h.bucket,
            &key,
            &path,
            &upload_id,
            args().max_inflight_parts(3),
        )
        .unwrap();
    assert_eq!(
        server.stats().upload_part_calls,
        5,
        "only parts 5-9 are sent"
    );
    assert_eq!(out.etag, multipart_etag(&body, PART));
    assert_eq!(out.parts, 9);
    assert!(server.object_bytes(&h.bucket, &key).unwrap() == body);
    assert!(server.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn resuming_resends_a_part_that_no_longer_matches_the_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut body = data(4 * PART, 44);
    let path = file_with(&dir, "f", &body);
    let key = h.key("resumed-changed");
    let args = || {
        PutObjectArgs::new()
            .part_size(PART as u64)
            .max_inflight_parts(1)
    };
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(3));
    let err = h
        .client()
        .upload_file(&h.bucket, &key, &path, args().keep_failed_upload(true))
        .unwrap_err();
    let upload_id = err.upload_id().unwrap().to_string();

    // Part 2 of the file changes before the resume.
    body[PART + 10] ^= 0xff;
    std::fs::write(&path, &body).unwrap();
    server.reset_stats();
    let out = h
        .client()
        .resume_upload_file(&h.bucket, &key, &path, &upload_id, args())
        .unwrap();
    assert_eq!(server.stats().upload_part_calls, 3, "parts 2, 3 and 4");
    assert_eq!(out.etag, multipart_etag(&body, PART));
    assert!(server.object_bytes(&h.bucket, &key).unwrap() == body);
}
