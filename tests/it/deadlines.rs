//! Deadlines and cancels against servers that stall or trickle: every
//! attempt ends by the client's limits (reply head, small-body and
//! processing deadlines, minimum throughput), and a cancel cuts the
//! requests in flight, aborts the upload or removes the partial file, and
//! returns within seconds whatever the server does. The servers are
//! `support::hostile` scripts (real HTTP on loopback) and, for a server
//! that reads a body slowly, a raw socket.

use std::io::{Cursor, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s3pump::{
    CancelHandle, Client, Credentials, DownloadArgs, ErrorKind, PutObjectArgs, RetryPolicy,
};

use crate::support::hostile::{HostileRequest, HostileServer, Reply, Step, response_bytes};

const MIB: usize = 1 << 20;
const UPLOAD_ID: &str = "up-1";
const CREATED: &str = "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>\
                       <UploadId>up-1</UploadId></InitiateMultipartUploadResult>";
const COMPLETED: &str = "<CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>\
                         <ETag>\"c-3\"</ETag></CompleteMultipartUploadResult>";

/// A client of `endpoint` with short limits and no retries, so that each
/// test sees one attempt end.
fn builder(endpoint: &str) -> s3pump::ClientBuilder {
    Client::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(Credentials::new("AKIDTEST", "secret-key-test", None))
        .retry_policy(RetryPolicy::none())
        .idle_timeout(Duration::from_secs(10))
        .reply_timeout(Duration::from_secs(1))
}

/// Runs `call`, which must fail as a timeout within `limit`; its error.
fn times_out<T: std::fmt::Debug>(
    limit: Duration,
    call: impl FnOnce() -> s3pump::Result<T>,
) -> s3pump::Error {
    let started = Instant::now();
    let err = call().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    err
}

/// The request kinds of a multipart upload.
fn is_create(r: &HostileRequest) -> bool {
    r.method == "POST" && r.has_query("uploads")
}
fn is_part(r: &HostileRequest) -> bool {
    r.method == "PUT" && r.has_query("partNumber")
}
fn is_complete(r: &HostileRequest) -> bool {
    r.method == "POST" && r.has_query("uploadId")
}
fn is_abort(r: &HostileRequest) -> bool {
    r.method == "DELETE" && r.query("uploadId").as_deref() == Some(UPLOAD_ID)
}

/// Answers a multipart upload as S3 does, except what `odd` answers.
fn multipart(
    odd: impl Fn(&HostileRequest) -> Option<Reply> + Send + Sync + 'static,
) -> HostileServer {
    let parts = AtomicUsize::new(0);
    HostileServer::start(move |r| {
        if let Some(reply) = odd(r) {
            return reply;
        }
        if is_create(r) {
            Reply::ok_xml(CREATED)
        } else if is_part(r) {
            let n = parts.fetch_add(1, Ordering::SeqCst);
            Reply::status(200, &[("ETag", &format!("\"p{n}\""))], b"")
        } else if is_complete(r) {
            Reply::ok_xml(COMPLETED)
        } else if is_abort(r) {
            Reply::status(204, &[], b"")
        } else {
            Reply::s3_error(400, "Unexpected", "not part of this script")
        }
    })
}

/// 12 MiB in 5 MiB parts: three parts, two in flight.
fn upload_args() -> PutObjectArgs {
    PutObjectArgs::new()
        .part_size(5 * MIB as u64)
        .max_inflight_parts(2)
}

fn cancel_after(cancel: &CancelHandle, after: Duration) -> std::thread::JoinHandle<()> {
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        cancel.cancel();
    })
}

#[test]
fn a_cancel_cuts_parts_in_flight_to_a_silent_server_and_aborts_the_upload() {
    let server = multipart(|r| is_part(r).then(|| Reply::step(Step::Hang)));
    // Without the cut, the parts would wait out the 10 s idle timeout.
    let client = builder(&server.endpoint())
        .reply_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let cancel = CancelHandle::new();
    let canceller = cancel_after(&cancel, Duration::from_millis(500));
    let started = Instant::now();
    let err = client
        .put_object(
            "bkt",
            "k",
            Cursor::new(vec![7u8; 12 * MIB]),
            upload_args().cancel_handle(&cancel),
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert!(err.is_cancelled(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(server.requests().iter().any(is_abort), "no abort sent");
    assert!(!server.requests().iter().any(is_complete));
}

#[test]
fn a_cancel_cuts_a_stalled_complete_and_aborts_the_upload() {
    let server = Arc::new(multipart(|r| {
        is_complete(r).then(|| Reply::step(Step::Hang))
    }));
    let client = builder(&server.endpoint())
        .reply_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let cancel = CancelHandle::new();
    // Cancelled once the Complete has waited a little.
    let canceller = {
        let (server, cancel) = (server.clone(), cancel.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !server.requests().iter().any(is_complete) {
                if started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
            Instant::now()
        })
    };
    let err = client
        .put_object(
            "bkt",
            "k",
            Cursor::new(vec![7u8; 12 * MIB]),
            upload_args().cancel_handle(&cancel),
        )
        .unwrap_err();
    let cancelled = canceller.join().unwrap();
    assert!(err.is_cancelled(), "{err}");
    assert!(
        cancelled.elapsed() < Duration::from_secs(5),
        "{:?}",
        cancelled.elapsed()
    );
    let requests = server.requests();
    assert!(
        requests.iter().any(is_complete),
        "the Complete was never sent"
    );
    assert!(requests.iter().any(is_abort), "no abort sent");
}

#[test]
fn a_reply_head_trickled_a_byte_at_a_time_ends_at_the_reply_deadline() {
    let head = response_bytes(200, &[("ETag", "\"e\""), ("Content-Length", "5")], b"");
    let server = HostileServer::start(move |_| {
        Reply::step(Step::Trickle {
            bytes: head.clone(),
            every: Duration::from_millis(100),
        })
    });
    let client = builder(&server.endpoint()).build().unwrap();
    // A HeadObject of the client's own (through its shared HTTP agent)...
    times_out(Duration::from_secs(4), || client.head_object("bkt", "k"));
    // ...and a download's, on the path its ranges take.
    let err = times_out(Duration::from_secs(4), || {
        client.download("bkt", "k", &mut Vec::new(), DownloadArgs::new())
    });
    assert!(
        err.to_string()
            .contains("the reply head did not arrive within 1 s"),
        "{err}"
    );
}

#[test]
fn endless_100_continue_replies_do_not_extend_the_reply_deadline() {
    let server = multipart(|r| {
        is_part(r).then(|| {
            let mut reply = Reply::default();
            for _ in 0..100 {
                reply = reply
                    .then(Step::Write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()))
                    .then(Step::Sleep(Duration::from_millis(100)));
            }
            reply
        })
    });
    let client = builder(&server.endpoint()).build().unwrap();
    times_out(Duration::from_secs(5), || {
        client.put_object("bkt", "k", Cursor::new(vec![7u8; 12 * MIB]), upload_args())
    });
    assert!(server.requests().iter().any(is_abort), "no abort sent");
}

/// A server holding `size` bytes whose ranged GETs answer a head at once
/// and then trickle the body a byte every 20 ms.
fn trickling_object(size: usize) -> HostileServer {
    HostileServer::start(move |r| {
        let len = size.to_string();
        if r.method == "HEAD" {
            return Reply::status(200, &[("ETag", "\"e\""), ("Content-Length", &len)], b"");
        }
        let range = format!("bytes 0-{}/{size}", size - 1);
        let head = response_bytes(
            206,
            &[
                ("ETag", "\"e\""),
                ("Content-Range", &range),
                ("Content-Length", &len),
            ],
            b"",
        );
        Reply::step(Step::Write(head)).then(Step::Trickle {
            bytes: vec![b'x'; size],
            every: Duration::from_millis(20),
        })
    })
}

#[test]
fn a_body_trickled_below_the_minimum_throughput_times_out() {
    let server = trickling_object(2 * MIB);
    let client = builder(&server.endpoint())
        .min_throughput(10_000, Duration::from_secs(1))
        .build()
        .unwrap();
    // A download's range, read straight into its buffer...
    let err = times_out(Duration::from_secs(5), || {
        client.download("bkt", "k", &mut Vec::new(), DownloadArgs::new())
    });
    assert!(
        err.to_string()
            .contains("below the minimum of 10000 bytes/s"),
        "{err}"
    );
    // ...and a single GetObject through the HTTP agent.
    times_out(Duration::from_secs(5), || {
        client.get_object("bkt", "k", &mut Vec::new())
    });
}

#[test]
fn a_server_that_reads_a_part_slowly_fails_the_minimum_throughput() {
    // Reads the request 4 KiB every 100 ms (40 KB/s), never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let reader = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(15) {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    let client = builder(&endpoint)
        .min_throughput(1 << 20, Duration::from_secs(1))
        .build()
        .unwrap();
    let err = times_out(Duration::from_secs(8), || {
        client.put_object(
            "bkt",
            "k",
            Cursor::new(vec![7u8; 32 * MIB]),
            PutObjectArgs::new().part_size(32 * MIB as u64),
        )
    });
    assert!(err.to_string().contains("the request body moved"), "{err}");
    reader.join().unwrap();
}

#[test]
fn a_complete_kept_open_with_whitespace_is_waited_for_up_to_the_processing_deadline() {
    let whitespace = |secs: u64| {
        let head = response_bytes(
            200,
            &[
                ("Content-Type", "application/xml"),
                ("Transfer-Encoding", "chunked"),
            ],
            b"",
        );
        let mut reply = Reply::step(Step::Write(head));
        for _ in 0..secs * 5 {
            reply = reply
                .then(Step::Write(b"1\r\n \r\n".to_vec()))
                .then(Step::Sleep(Duration::from_millis(200)));
        }
        let end = format!("{:x}\r\n{COMPLETED}\r\n0\r\n\r\n", COMPLETED.len());
        reply.then(Step::Write(end.into_bytes()))
    };
    // S3's keep-alive Complete: 2 s of whitespace, then the result, within
    // a 5 s processing deadline (longer than the 1 s reply deadline).
    let server = multipart(move |r| is_complete(r).then(|| whitespace(2)));
    let client = builder(&server.endpoint())
        .processing_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let out = client
        .put_object("bkt", "k", Cursor::new(vec![7u8; 12 * MIB]), upload_args())
        .unwrap();
    assert_eq!(out.etag, "\"c-3\"");

    // Whitespace for longer than the processing deadline: a timeout, aborted.
    let server = multipart(move |r| is_complete(r).then(|| whitespace(30)));
    let client = builder(&server.endpoint())
        .processing_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    times_out(Duration::from_secs(6), || {
        client.put_object("bkt", "k", Cursor::new(vec![7u8; 12 * MIB]), upload_args())
    });
    assert!(server.requests().iter().any(is_abort), "no abort sent");
}

#[test]
fn a_cancelled_download_to_a_file_cuts_its_ranges_and_leaves_no_file() {
    let server = HostileServer::start(|r| {
        if r.method == "HEAD" {
            let len = (64 * MIB).to_string();
            return Reply::status(200, &[("ETag", "\"e\""), ("Content-Length", &len)], b"");
        }
        Reply::step(Step::Hang)
    });
    let client = builder(&server.endpoint())
        .reply_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.bin");
    let cancel = CancelHandle::new();
    let canceller = cancel_after(&cancel, Duration::from_millis(500));
    let started = Instant::now();
    let err = client
        .download_to_file(
            "bkt",
            "k",
            &target,
            DownloadArgs::new().cancel_handle(&cancel),
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert!(err.is_cancelled(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cli_sigint_against_a_server_stalled_mid_part_exits_130_within_seconds_and_aborts() {
    let server = Arc::new(multipart(|r| is_part(r).then(|| Reply::step(Step::Hang))));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![5u8; 12 * MIB]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3pump"))
        .env_clear()
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret-key-test")
        .env("AWS_REGION", "us-east-1")
        .args([
            "put",
            file.to_str().unwrap(),
            "s3://bkt/k",
            "--part-size",
            "5MiB",
        ])
        .args(["--no-progress", "--endpoint", &server.endpoint()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the parts are on the wire (and stalled).
    let started = Instant::now();
    while !server.requests().iter().any(is_part) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no part was sent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("s3pump still running 10 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(server.requests().iter().any(is_abort), "no abort: {stderr}");
}
