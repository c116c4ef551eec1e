//! Protocol quirks of real third-party servers, replayed by a scripted
//! server on loopback (tests/support/scripted.rs) with the replies they send:
//! tolerated where the meaning is unambiguous, and an error where it is not.
//!
//! - moto 5.2 names ListParts' root `<ListPartsResponse>` (S3:
//!   `<ListPartsResult>`), and leaves out what it does not track (no
//!   `<Part>`'s checksum, no `<NextPartNumberMarker>` worth reading);
//! - moto answers `NoSuchUpload` with a 500 to the abort of an upload that
//!   was completed: it says the upload is gone, and is not retried;
//! - moto, without `awscrt`, sends a 4-byte CRC32 under the CRC64NVME header
//!   and element: "unverifiable", a warning, unless checksums are strict; a
//!   well-formed value that differs stays a checksum error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use s3pump::{
    ChecksumAlgorithm, Client, Credentials, DownloadArgs, ErrorKind, PutObjectArgs, RetryPolicy,
};

use crate::support::harness::{data, fast_retries, md5_hex};
use crate::support::logger;
use crate::support::scripted::{Reply, Request, Scripted};

/// moto's error document for a missing upload (its 404 reply to a second
/// abort, byte for byte but the ids; it sends the same with 500 after a
/// completed upload).
const MOTO_NO_SUCH_UPLOAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist. The upload ID may \
be invalid, or the upload may have been aborted or completed.</Message><UploadId>up-1</UploadId>\
<RequestId>oD2aMLmUWKxYxMKaIefr7Vs2m4Wf6IM6J5R8efIxUNsT16cwkELC</RequestId><HostId>9Gjjt1m+cjU4O\
PvX9O9/8RuvnG41MRb/18Oux2o5H5MY7ISNTlXN+Dz9IG62/ILVxhAGI0qyPfg=</HostId></Error>";

/// The CRC32 moto sends under the CRC64NVME header (from the issue's
/// report): 4 bytes where a CRC64NVME has 8.
const MOTO_CRC32: &str = "5kbreQ==";

fn client(endpoint: &str, retry: RetryPolicy) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(Credentials::new("AKID", "secret", None))
        .retry_policy(retry)
        .build()
        .unwrap()
}

#[test]
fn list_parts_reads_motos_list_parts_response() {
    // moto 5.2's reply to ListParts, as captured (ids shortened), with one
    // part in the shape its template writes.
    let reply = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ListPartsResponse \
        xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>bkt1</Bucket><Key>k</Key>\
        <UploadId>up-1</UploadId><PartNumberMarker>0</PartNumberMarker>\
        <NextPartNumberMarker>1</NextPartNumberMarker><MaxParts>1000</MaxParts>\
        <IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber>\
        <LastModified>2026-12-04T18:47:37.000Z</LastModified>\
        <ETag>\"0cc175b9c0f1b6a831c399e269772661\"</ETag><Size>5242880</Size></Part>\
        <Initiator><ID>75aa57f0</ID><DisplayName>webfile</DisplayName></Initiator>\
        <Owner><DisplayName>webfile</DisplayName><ID>75aa57f0</ID></Owner>\
        <StorageClass>STANDARD</StorageClass></ListPartsResponse>";
    let server = Scripted::start(move |_| Reply::xml(200, reply));
    let parts = client(&server.endpoint, RetryPolicy::none())
        .list_parts("bkt1", "k", "up-1", ChecksumAlgorithm::Crc64Nvme)
        .unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].part_number, 1);
    assert_eq!(parts[0].etag, "\"0cc175b9c0f1b6a831c399e269772661\"");
    assert_eq!(parts[0].size, 5 << 20);
    assert_eq!(parts[0].checksum, None, "moto sends none: it is optional");
    // Another root is still an error naming what was expected.
    let server = Scripted::start(|_| Reply::xml(200, "<ListBucketResult/>"));
    let err = client(&server.endpoint, RetryPolicy::none())
        .list_parts("bkt1", "k", "up-1", ChecksumAlgorithm::None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    assert!(err.to_string().contains("<ListPartsResult>"), "{err}");
}

#[test]
fn no_such_upload_as_a_500_is_not_found_and_not_retried() {
    let server = Scripted::start(|_| Reply::xml(500, MOTO_NO_SUCH_UPLOAD));
    let err = client(&server.endpoint, fast_retries())
        .abort_multipart_upload("bkt1", "k", "up-1")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.s3_code(), Some("NoSuchUpload"));
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(server.requests().len(), 1, "sent once, not retried");
}

/// A multipart upload server in moto's manner: Complete answers with
/// `checksum` as the object's `<ChecksumCRC64NVME>`, the abort of the
/// completed upload with moto's 500 `NoSuchUpload`.
fn moto_upload_server(checksum: &'static str) -> Scripted {
    let parts = Arc::new(AtomicUsize::new(0));
    Scripted::start(move |req: &Request| match req.method.as_str() {
        "POST" if req.has_query("uploads") => Reply::xml(
            200,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<InitiateMultipartUploadResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>bkt1</Bucket><Key>k</Key>\
             <UploadId>up-1</UploadId></InitiateMultipartUploadResult>",
        ),
        "PUT" if req.has_query("partNumber") => {
            parts.fetch_add(1, Ordering::SeqCst);
            Reply::xml(200, "").header("ETag", &format!("\"{}\"", md5_hex(&req.body)))
        }
        "POST" if req.has_query("uploadId") => Reply::xml(
            200,
            &format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult \
                 xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>\
                 http://bkt1.s3.amazonaws.com/k</Location><Bucket>bkt1</Bucket><Key>k</Key>\
                 <ETag>\"3858f62230ac3c915f300c664312c11f-3\"</ETag>\
                 <ChecksumCRC64NVME>{checksum}</ChecksumCRC64NVME>\
                 </CompleteMultipartUploadResult>"
            ),
        ),
        "DELETE" => Reply::xml(500, MOTO_NO_SUCH_UPLOAD),
        _ => Reply::xml(400, "<Error><Code>Unexpected</Code></Error>"),
    })
}

fn upload(server: &Scripted, strict: bool) -> s3pump::Result<s3pump::PutObjectOutput> {
    let body = data(12 << 20, 5);
    client(&server.endpoint, fast_retries()).put_object(
        "bkt1",
        "moto-up",
        &body[..],
        PutObjectArgs::new()
            .part_size(5 << 20)
            .strict_checksums(strict),
    )
}

fn aborts(server: &Scripted) -> usize {
    let requests = server.requests();
    requests.iter().filter(|r| r.method == "DELETE").count()
}

#[test]
fn a_crc32_under_the_crc64nvme_element_on_complete_is_unverifiable_not_corruption() {
    logger::capture();
    let server = moto_upload_server(MOTO_CRC32);
    let out = upload(&server, false).expect("the upload succeeds");
    assert_eq!(out.parts, 3);
    assert_eq!(aborts(&server), 0, "a completed upload is not aborted");
    let warned = logger::lines_containing("unverifiable: the server sent \"5kbreQ==\"");
    assert!(
        warned
            .iter()
            .any(|l| l.contains("bkt1/moto-up") && l.contains("4 bytes")),
        "{warned:?}"
    );

    // Strict: an error naming it (the upload, completed, cannot be aborted:
    // moto's 500 NoSuchUpload is taken as gone, once).
    let server = moto_upload_server(MOTO_CRC32);
    let err = upload(&server, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checksum, "{err}");
    assert!(err.to_string().contains("unverifiable"), "{err}");
    assert!(err.to_string().contains("strict"), "{err}");
    assert_eq!(aborts(&server), 1, "one abort, not retried");

    // A well-formed CRC64NVME that differs: corruption, whatever the mode.
    let server = moto_upload_server("AAAAAAAAAAA=");
    let err = upload(&server, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checksum, "{err}");
    assert!(
        err.to_string()
            .contains("the server reports full-object CRC64NVME AAAAAAAAAAA="),
        "{err}"
    );
}

/// An object server in moto's manner: HeadObject and ranged GETs of `body`,
/// with `checksum` as the object's `x-amz-checksum-crc64nvme`.
fn moto_object_server(body: Vec<u8>, checksum: &'static str) -> Scripted {
    Scripted::start(move |req: &Request| {
        let etag = "\"3858f62230ac3c915f300c664312c11f-3\"";
        let total = body.len();
        let reply = match req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
            Some(range) => {
                let (a, b) = range.split_once('-').unwrap();
                let a: usize = a.parse().unwrap();
                let b: usize = b.parse::<usize>().unwrap().min(total - 1);
                Reply {
                    status: 206,
                    headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{total}"))],
                    body: body[a..=b].to_vec(),
                }
            }
            None => Reply {
                status: 200,
                headers: Vec::new(),
                body: body.clone(),
            },
        };
        reply
            .header("ETag", etag)
            .header("Last-Modified", "Fri, 04 Dec 2026 18:47:37 GMT")
            .header("x-amz-checksum-crc64nvme", checksum)
    })
}

#[test]
fn a_crc32_under_the_crc64nvme_header_on_get_is_unverifiable_not_corruption() {
    logger::capture();
    let body = data(3 << 20, 6);
    let server = moto_object_server(body.clone(), MOTO_CRC32);
    let c = client(&server.endpoint, RetryPolicy::none());
    let args = || DownloadArgs::new().part_size(1 << 20);
    let mut out = Vec::new();
    c.download("bkt1", "moto-down", &mut out, args())
        .expect("the download succeeds");
    assert!(out == body, "the bytes are the object's");
    let warned = logger::lines_containing("unverifiable: the server sent \"5kbreQ==\"");
    assert!(
        warned.iter().any(|l| l.contains("bkt1/moto-down")),
        "{warned:?}"
    );

    let err = c
        .download(
            "bkt1",
            "moto-down",
            &mut Vec::new(),
            args().strict_checksums(true),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checksum, "{err}");
    assert!(err.to_string().contains("unverifiable"), "{err}");

    // A well-formed CRC64NVME that differs stays an error.
    let server = moto_object_server(body, "AAAAAAAAAAA=");
    let err = client(&server.endpoint, RetryPolicy::none())
        .download("bkt1", "moto-down", &mut Vec::new(), args())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Checksum, "{err}");
    assert!(
        err.to_string().contains("the bytes downloaded have"),
        "{err}"
    );
}

/// `s3pump get` against moto's CRC32-under-CRC64NVME: the file is written
/// and the warning says why the checksum was not checked; with
/// `--strict-checksums` it is a failure and no file is left.
#[cfg(feature = "cli")]
#[test]
fn the_command_line_warns_and_strict_checksums_fails() {
    let body = data(2 << 20, 7);
    let server = moto_object_server(body.clone(), MOTO_CRC32);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy");
    let get = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_s3pump"))
            .env_clear()
            .env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "AKID")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .args(["get", "s3://bkt1/k", dest.to_str().unwrap()])
            .args(["--endpoint", &server.endpoint, "--region", "us-east-1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = get(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with(
            "s3pump: warning: bkt1/k: the full-object CRC64NVME checksum is unverifiable"
        ),
        "{err}"
    );
    assert!(std::fs::read(&dest).unwrap() == body);
    std::fs::remove_file(&dest).unwrap();

    let out = get(&["--strict-checksums"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unverifiable") && err.contains("strict"),
        "{err}"
    );
    assert!(!dest.exists());
}
