//! Adversarial tests: the library and the CLI against the hostile server of
//! tests/support/hostile.rs, which answers each request kind with a
//! misbehaviour (cycling continuation tokens, truncated pages without a
//! token, keys outside the prefix, empty ETags, a HEAD size of 2^64-1,
//! control characters in keys). Each case asserts: no panic, a bounded
//! time, the documented error, nothing left open (uploads aborted,
//! connections closed once the client is dropped), nothing wrong on disk.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s3pump::{ChecksumAlgorithm, Client, Credentials, DownloadArgs, PutObjectArgs, TreeArgs};
use support::harness::fast_retries;
use support::{HostileRequest, HostileServer, Reply};

const BUCKET: &str = "bkt";
/// What any case may take, retries included.
const BOUNDED: Duration = Duration::from_secs(20);

fn client(server: &HostileServer) -> Client {
    Client::builder()
        .endpoint(server.endpoint())
        .region("us-east-1")
        .credentials(Credentials::new("AKIDEXAMPLE", "secret", None))
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

/// A ListObjectsV2 page (keys raw, not URL-encoded).
fn list_page(keys: &[&str], truncated: bool, next: Option<&str>) -> String {
    let mut x = format!("<ListBucketResult><IsTruncated>{truncated}</IsTruncated>");
    if let Some(n) = next {
        x.push_str(&format!(
            "<NextContinuationToken>{n}</NextContinuationToken>"
        ));
    }
    for k in keys {
        x.push_str(&format!(
            "<Contents><Key>{k}</Key><Size>3</Size></Contents>"
        ));
    }
    x.push_str("</ListBucketResult>");
    x
}

/// Checks what every case checks once the client is gone: no connection
/// left open, and the time taken bounded.
fn ends_clean(server: &HostileServer, started: Instant, what: &str) {
    assert!(
        started.elapsed() < BOUNDED,
        "{what}: took {:?}",
        started.elapsed()
    );
    assert!(
        server.wait_all_closed(Duration::from_secs(5)),
        "{what}: connections left open"
    );
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The `s3pump` binary with `args`, credentials and `--endpoint` for `server`.
#[cfg(feature = "cli")]
fn cli_output(server: &HostileServer, args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_s3pump"))
        .args(args)
        .args(["--endpoint", &server.endpoint()])
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

// ------------------------------------------------------------ pagination --

type Pager = fn(&HostileRequest, usize) -> Reply;

#[test]
fn listings_that_would_never_end_are_errors_naming_what_was_listed() {
    // (case, the server's page for request number n, what the error says)
    let cases: [(&str, Pager, &str); 6] = [
        (
            "ListObjectsV2 tokens cycling A, B, A",
            |_, n| {
                let (key, next) = [("p/1", "A"), ("p/2", "B"), ("p/3", "A")][n.min(2)];
                Reply::ok_xml(&list_page(&[key], true, Some(next)))
            },
            "page 3 gives the <NextContinuationToken> \"A\" again",
        ),
        (
            "ListObjectsV2 truncated without a token",
            |_, _| Reply::ok_xml(&list_page(&["p/1"], true, None)),
            "is truncated but has no <NextContinuationToken>",
        ),
        (
            "ListObjectsV2 the same page under fresh tokens",
            |_, n| Reply::ok_xml(&list_page(&["p/1"], true, Some(&format!("T{n}")))),
            "adds no entry past the previous pages",
        ),
        (
            "ListObjectsV2 an empty truncated page",
            |_, n| Reply::ok_xml(&list_page(&[], true, Some(&format!("T{n}")))),
            "adds no entry",
        ),
        (
            "ListParts markers cycling",
            |_, n| {
                let (part, next) = [(1, 1), (2, 2), (3, 1)][n.min(2)];
                Reply::ok_xml(&format!(
                    "<ListPartsResult><IsTruncated>true</IsTruncated>\
                     <NextPartNumberMarker>{next}</NextPartNumberMarker>\
                     <Part><PartNumber>{part}</PartNumber><ETag>\"e\"</ETag><Size>5</Size></Part>\
                     </ListPartsResult>"
                ))
            },
            "gives the <NextPartNumberMarker> \"1\" again",
        ),
        (
            "ListMultipartUploads truncated without markers",
            |_, _| {
                Reply::ok_xml(
                    "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
                     <Upload><Key>k</Key><UploadId>u</UploadId></Upload>\
                     </ListMultipartUploadsResult>",
                )
            },
            "has no <NextKeyMarker>/<NextUploadIdMarker>",
        ),
    ];
    for (case, pager, want) in cases {
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let server = HostileServer::start(move |req| pager(req, c.fetch_add(1, Ordering::SeqCst)));
        let started = Instant::now();
        let client = client(&server);
        let err = if case.starts_with("ListObjectsV2") {
            client
                .list_objects(BUCKET, "p/")
                .collect::<s3pump::Result<Vec<_>>>()
                .unwrap_err()
        } else if case.starts_with("ListParts") {
            client
                .list_parts(BUCKET, "k", "up-1", ChecksumAlgorithm::None)
                .unwrap_err()
        } else {
            client.list_multipart_uploads(BUCKET).unwrap_err()
        };
        let msg = err.to_string();
        assert_eq!(
            err.kind(),
            s3pump::ErrorKind::InvalidResponse,
            "{case}: {msg}"
        );
        assert!(msg.contains(want), "{case}: {msg}");
        assert!(msg.contains("the listing would never end"), "{case}: {msg}");
        if case.starts_with("ListObjectsV2") {
            assert!(
                msg.contains("bucket \"bkt\", prefix \"p/\""),
                "{case}: {msg}"
            );
        }
        assert!(msg.len() < 300, "{case}: a short message: {msg}");
        // An invalid reply is not retried: one request a page.
        assert!(count.load(Ordering::SeqCst) <= 3, "{case}");
        drop(client);
        ends_clean(&server, started, case);
    }
}

#[test]
fn a_listing_that_ends_normally_still_works() {
    let server = HostileServer::start(|req| match req.query("continuation-token").as_deref() {
        None => Reply::ok_xml(&list_page(&["p/1", "p/2"], true, Some("A"))),
        Some("A") => Reply::ok_xml(&list_page(&["p/3"], true, Some("B"))),
        _ => Reply::ok_xml(&list_page(&["p/4"], false, None)),
    });
    let keys: Vec<String> = client(&server)
        .list_objects(BUCKET, "p/")
        .map(|o| o.unwrap().key)
        .collect();
    assert_eq!(keys, ["p/1", "p/2", "p/3", "p/4"]);
}

// ------------------------------------------------ keys outside the prefix --

/// A listing of `p/` that also names keys outside it; `p/a` is an object
/// of 3 bytes ("abc").
fn outside_the_prefix(req: &HostileRequest) -> Reply {
    match (req.method.as_str(), req.path()) {
        ("GET", "/bkt" | "/bkt/") => Reply::ok_xml(&list_page(
            &["../../etc/passwd", "/abs", "other/x", "p/../../up", "p/a"],
            false,
            None,
        )),
        ("HEAD", "/bkt/p/a") => {
            Reply::status(200, &[("Content-Length", "3"), ("ETag", "\"e\"")], b"")
        }
        ("GET", "/bkt/p/a") => Reply::status(200, &[("ETag", "\"e\"")], b"abc"),
        (method, path) => Reply::s3_error(
            403,
            "AccessDenied",
            &format!("the test did not expect {method} {path}"),
        ),
    }
}

#[test]
fn a_tree_download_acts_only_on_keys_under_the_prefix_and_goes_on() {
    let server = HostileServer::start(outside_the_prefix);
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("t");
    let started = Instant::now();
    let client = client(&server);
    // No keep_going: the refused keys do not stop the good one.
    let out = client
        .download_prefix(BUCKET, "p", &target, TreeArgs::new())
        .unwrap();
    assert_eq!(out.objects, 1);
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let mut refused: Vec<(&str, &str)> = out
        .refused
        .iter()
        .map(|r| (r.key.as_str(), r.reason.as_str()))
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 4, "{refused:?}");
    for (key, reason) in &refused {
        if key.starts_with("p/") {
            assert!(reason.contains("'..'"), "{key}: {reason}");
        } else {
            assert!(
                reason.contains("not under the prefix \"p/\""),
                "{key}: {reason}"
            );
        }
    }
    assert!(!out.is_complete());
    assert_eq!(std::fs::read(target.join("a")).unwrap(), b"abc");
    // Nothing else on disk, and nothing asked of the server for other keys.
    let entries: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    for r in server.requests() {
        assert!(
            r.path() == "/bkt" || r.path() == "/bkt/" || r.path() == "/bkt/p/a",
            "{} {}",
            r.method,
            r.target
        );
    }
    drop(client);
    ends_clean(&server, started, "tree download");
}

#[test]
fn a_fifo_planted_in_a_tree_download_fails_that_object_and_does_not_hang() {
    let server = HostileServer::start(outside_the_prefix);
    let target = tempfile::tempdir().unwrap();
    let fifo = target.path().join("a");
    mkfifo(&fifo);
    let started = Instant::now();
    let client = client(&server);
    let out = client
        .download_prefix(BUCKET, "p", target.path(), TreeArgs::new())
        .unwrap();
    assert_eq!(out.objects, 0);
    assert_eq!(out.failures.len(), 1);
    let msg = out.failures[0].error.to_string();
    assert!(msg.contains("is not a regular file"), "{msg}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    drop(client);
    ends_clean(&server, started, "FIFO in the tree");
}

// ------------------------------------------------------- sizes and ETags --

/// A server for uploads whose `bad` reply is the misbehaviour.
fn upload_server(bad: &'static str) -> HostileServer {
    HostileServer::start(move |req| {
        let etag = |good: bool| if good { "\"0123abcd\"" } else { "" };
        match req.method.as_str() {
            "POST" if req.has_query("uploads") => Reply::ok_xml(
                "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
                 <UploadId>up-1</UploadId></InitiateMultipartUploadResult>",
            ),
            "PUT" if req.has_query("partNumber") => {
                Reply::status(200, &[("ETag", etag(bad != "part"))], b"")
            }
            "PUT" => Reply::status(200, &[("ETag", etag(bad != "put"))], b""),
            "POST" if req.has_query("uploadId") => Reply::ok_xml(&format!(
                "<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
                 <ETag>{}</ETag></CompleteMultipartUploadResult>",
                etag(bad != "complete")
            )),
            "DELETE" => Reply::status(204, &[], b""),
            _ => Reply::s3_error(404, "NoSuchKey", "no"),
        }
    })
}

#[test]
fn empty_etags_are_errors_and_the_upload_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, vec![7u8; 11 << 20]).unwrap();
    let cases = [
        ("PutObject", "put", "an empty ETag header"),
        ("UploadPart", "part", "an empty ETag header"),
        ("CompleteMultipartUpload", "complete", "an empty <ETag>"),
    ];
    for (case, bad, want) in cases {
        let server = upload_server(bad);
        let started = Instant::now();
        let client = client(&server);
        let err = if bad == "put" {
            client
                .put_object_bytes(BUCKET, "k", b"small", &PutObjectArgs::new())
                .unwrap_err()
        } else {
            let args = PutObjectArgs::new().part_size(5 << 20);
            client.upload_file(BUCKET, "k", &file, args).unwrap_err()
        };
        let msg = err.to_string();
        assert_eq!(
            err.kind(),
            s3pump::ErrorKind::InvalidResponse,
            "{case}: {msg}"
        );
        assert!(msg.contains(case) && msg.contains(want), "{case}: {msg}");
        let requests = server.requests();
        if bad != "put" {
            // Nothing left open: the upload was aborted.
            assert!(
                requests
                    .iter()
                    .any(|r| r.method == "DELETE" && r.query("uploadId").as_deref() == Some("up-1")),
                "{case}: no AbortMultipartUpload"
            );
        }
        if bad == "part" {
            // Complete was never sent with an empty ETag.
            assert!(
                !requests
                    .iter()
                    .any(|r| r.method == "POST" && r.has_query("uploadId")),
                "{case}: Complete sent"
            );
        }
        drop(client);
        ends_clean(&server, started, case);
    }
}

#[test]
fn a_head_size_past_the_largest_object_is_an_error_not_an_endless_download() {
    let server = HostileServer::start(|req| match req.method.as_str() {
        "HEAD" => Reply::status(
            200,
            &[("Content-Length", &u64::MAX.to_string()), ("ETag", "\"e\"")],
            b"",
        ),
        _ => Reply::s3_error(403, "AccessDenied", "only HEAD here"),
    });
    let started = Instant::now();
    let client = client(&server);
    let mut sink = Vec::new();
    let err = client
        .download(BUCKET, "k", &mut sink, DownloadArgs::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("18446744073709551615 bytes"), "{msg}");
    assert!(msg.contains("more than the largest S3 object"), "{msg}");
    assert!(sink.is_empty());
    assert!(server.requests().iter().all(|r| r.method == "HEAD"));
    // Into a file: nothing is left behind.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    client
        .download_to_file(BUCKET, "k", &path, DownloadArgs::new())
        .unwrap_err();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    drop(client);
    ends_clean(&server, started, "HEAD 2^64-1");
}

// ------------------------------------------------------------- the CLI --

#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use std::process::Output;

    fn s3pump(server: &HostileServer, args: &[&str]) -> Output {
        let started = Instant::now();
        let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let out = cli_output(server, &os);
        assert!(
            started.elapsed() < BOUNDED,
            "{args:?}: {:?}",
            started.elapsed()
        );
        assert!(server.wait_all_closed(Duration::from_secs(5)), "{args:?}");
        out
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Runs the CLI, which must exit 1 with `want` on stderr; its stderr
    /// and stdout.
    fn fails_saying(server: &HostileServer, args: &[&str], want: &str) -> (String, Vec<u8>) {
        let out = s3pump(server, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{want:?} in {stderr}");
        (stderr, out.stdout)
    }

    /// No raw control character but the line ends.
    fn no_raw_controls(s: &str) {
        assert!(
            !s.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters in {s:?}"
        );
    }

    /// A listing with hostile keys, URL-encoded as S3 sends them: an ESC
    /// sequence setting the terminal title, a BEL, a newline forging a
    /// line, a NUL, a C1 CSI.
    fn evil_listing(_: &HostileRequest) -> Reply {
        let keys = [
            "p/title%1B%5D0%3Bpwned%07",
            "p/forged%0A%20%20%20%20%20%20%20%20%20%201%20x%20p%2Fnot-there",
            "p/nul%00and%C2%9Bcsi",
            "p/back%5Cslash",
        ];
        let mut x = String::from(
            "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>",
        );
        for k in keys {
            x.push_str(&format!(
                "<Contents><Key>{k}</Key><Size>1</Size>\
                 <LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
            ));
        }
        x.push_str("</ListBucketResult>");
        Reply::ok_xml(&x)
    }

    #[test]
    fn ls_escapes_control_characters_in_keys() {
        let server = HostileServer::start(evil_listing);
        let out = s3pump(&server, &["ls", "s3://bkt/p/"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        no_raw_controls(&stdout);
        assert_eq!(stdout.lines().count(), 4, "{stdout}");
        assert!(stdout.contains("p/title\\e]0;pwned\\a"), "{stdout}");
        assert!(
            stdout.contains("p/forged\\n          1 x p/not-there"),
            "{stdout}"
        );
        assert!(stdout.contains("p/nul\\x00and\\x9bcsi"), "{stdout}");
        assert!(stdout.contains("p/back\\\\slash"), "{stdout}");

        let out = s3pump(&server, &["ls", "--json", "s3://bkt/p/"]);
        let stdout = text(&out.stdout);
        no_raw_controls(&stdout);
        assert!(
            stdout.contains(r#""key":"p/title\u001b]0;pwned\u0007""#),
            "{stdout}"
        );
        assert!(
            stdout.contains(r#""key":"p/nul\u0000and\u009bcsi""#),
            "{stdout}"
        );
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["key"].as_str().unwrap().starts_with("p/"));
        }
    }

    #[test]
    fn rm_recursive_deletes_only_under_the_prefix_and_names_what_it_skipped() {
        let long = format!("p/{}", "k".repeat(1100));
        // URL-encoded, as S3 sends keys XML cannot hold (the ESC).
        let mut listing = String::from(
            "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>",
        );
        for k in [
            "../../etc/passwd",
            "/abs",
            "other/x\x1b[2J",
            "p/a",
            "p/b",
            &long,
        ] {
            let encoded: String = k
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            listing.push_str(&format!(
                "<Contents><Key>{encoded}</Key><Size>1</Size></Contents>"
            ));
        }
        listing.push_str("</ListBucketResult>");
        let server = HostileServer::start(move |req| match req.method.as_str() {
            "GET" => Reply::ok_xml(&listing),
            "POST" if req.has_query("delete") => Reply::ok_xml("<DeleteResult/>"),
            _ => Reply::s3_error(403, "AccessDenied", "no"),
        });
        let out = s3pump(&server, &["rm", "--recursive", "s3://bkt/p"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        no_raw_controls(&stderr);
        assert_eq!(text(&out.stdout).trim(), r#"{"deleted":2,"failed":4}"#);
        for skipped in ["../../etc/passwd", "/abs", "other/x\\e[2J"] {
            assert!(
                stderr.contains(&format!(
                    "skipped: s3://bkt/{skipped}: not under the prefix p/"
                )),
                "{skipped}: {stderr}"
            );
        }
        assert!(
            stderr.contains("1102 bytes long; S3 keys are at most 1024"),
            "{stderr}"
        );
        assert!(stderr.contains("p/kkkk"), "{stderr}");
        assert!(
            stderr.lines().all(|l| l.len() < 400),
            "short lines: {stderr}"
        );
        // The one DeleteObjects names the two keys under the prefix, only.
        let deletes: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(deletes.len(), 1);
        let body = text(&deletes[0].body);
        assert_eq!(body.matches("<Key>").count(), 2, "{body}");
        assert!(body.contains("<Key>p/a</Key>") && body.contains("<Key>p/b</Key>"));
    }

    #[test]
    fn cp_recursive_skips_keys_outside_the_prefix_with_a_warning_and_exits_1() {
        let server = HostileServer::start(outside_the_prefix);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let target_arg = target.display().to_string();
        let out = s3pump(&server, &["cp", "--recursive", "s3://bkt/p", &target_arg]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let line = text(&out.stdout);
        assert!(
            line.contains(r#""objects":1,"bytes":3,"failed":0,"refused":4,"#),
            "{line}"
        );
        assert_eq!(
            stderr.matches("s3pump: warning: skipped s3://bkt/").count(),
            4,
            "{stderr}"
        );
        assert!(
            stderr.contains("\"other/x\": not under the prefix \"p/\""),
            "{stderr}"
        );
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_later_delete_batch_says_what_earlier_batches_deleted() {
        let keys: Vec<String> = (0..1500).map(|i| format!("p/{i:05}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let listing = list_page(&refs, false, None);
        let batches = AtomicUsize::new(0);
        let server = HostileServer::start(move |req| match req.method.as_str() {
            "GET" => Reply::ok_xml(&listing),
            "POST" if batches.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::ok_xml("<DeleteResult/>")
            }
            _ => Reply::s3_error(403, "AccessDenied", "not this batch"),
        });
        fails_saying(
            &server,
            &["rm", "--recursive", "s3://bkt/p/"],
            "1000 keys of earlier DeleteObjects batches were deleted",
        );
    }

    #[test]
    fn get_of_an_object_claiming_2_pow_64_bytes_fails_at_once() {
        let server = HostileServer::start(|_| {
            Reply::status(
                200,
                &[
                    ("Content-Length", "18446744073709551615"),
                    ("ETag", "\"e\""),
                ],
                b"",
            )
        });
        let (_, stdout) = fails_saying(
            &server,
            &["get", "s3://bkt/k", "-", "--no-progress"],
            "more than the largest S3 object",
        );
        assert!(stdout.is_empty());
    }

    #[test]
    fn server_messages_are_escaped() {
        // Raw control characters in the XML text (not well-formed XML 1.0,
        // but what a hostile server sends).
        let server = HostileServer::start(|_| {
            Reply::s3_error(403, "AccessDenied", "go away\x1b]0;owned\x07\nforged")
        });
        let want = "go away\\e]0;owned\\a\\nforged";
        let (stderr, _) = fails_saying(&server, &["rm", "s3://bkt/k"], want);
        no_raw_controls(&stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("AccessDenied"), "{stderr}");

        // A megabyte of message: a short line.
        let server = HostileServer::start(|_| {
            Reply::s3_error(403, "AccessDenied", &"blah ".repeat(200_000))
        });
        let (stderr, _) = fails_saying(&server, &["rm", "s3://bkt/k"], "… (1000000 bytes)");
        assert!(stderr.len() < 1000, "{} bytes", stderr.len());
    }
}

#[cfg(feature = "cli")]
mod cli_targets {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    /// An object `k` of 3 bytes ("abc"), HEAD and GET.
    fn one_object(req: &HostileRequest) -> Reply {
        match req.method.as_str() {
            "HEAD" => Reply::status(200, &[("Content-Length", "3"), ("ETag", "\"e\"")], b""),
            _ => Reply::status(200, &[("ETag", "\"e\"")], b"abc"),
        }
    }

    fn get(server: &HostileServer, dest: &std::path::Path) -> std::process::Output {
        let args = ["get", "s3://bkt/k", "--no-progress"].map(std::ffi::OsStr::new);
        cli_output(server, &[&args[..], &[dest.as_os_str()]].concat())
    }

    #[test]
    fn get_writes_through_a_fifo_and_keeps_a_files_mode() {
        let server = HostileServer::start(one_object);
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        mkfifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let out = get(&server, &fifo);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(reader.join().unwrap(), b"abc");
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );

        let file = dir.path().join("secret");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = get(&server, &file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"abc");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nothing else in the directory (no temporary file left).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // /dev/stdout, a link to a pipe here: written through.
        let out = get(&server, std::path::Path::new("/dev/stdout"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.starts_with(b"abc{"),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
