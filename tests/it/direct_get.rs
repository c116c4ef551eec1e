//! A download's ranged GETs over http and https go through the direct
//! sender (src/transport/direct.rs `get_into`), which reads each range's
//! body straight into its slab: byte-identical results, hostile replies to
//! it (a short body, a wrong Content-Range, no Content-Length, chunked, an
//! oversize body, a 503, a garbage head) end in a retry or a clean error,
//! and the fault matrix (cut mid-body, stall, flipped byte, 503, dropped
//! connection) over TLS ends with the identical file.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s3pump::{Client, DownloadArgs, Error};
use support::harness::{Harness, data, fast_retries};
use support::server::REGION;
use support::tls_front::{TestCa, TlsFront, Validity};
use support::{Fault, FaultKind, Op, Relay, RelayConfig, RelayFault};

const MIB: usize = 1 << 20;
const PART: usize = MIB;

fn args(n: usize) -> DownloadArgs {
    DownloadArgs::new()
        .part_size(PART as u64)
        .max_inflight_parts(n)
}

/// The direct sender's TRACE lines of ranged GETs to `port`.
fn ranged_gets(scheme: &str, port: u16) -> Vec<String> {
    support::logger::lines_containing(&format!("ranged GET {scheme}://127.0.0.1:{port}"))
}

fn tls_front(upstream: SocketAddr, ca: &TestCa) -> TlsFront {
    TlsFront::start(upstream, &ca.issue(&["127.0.0.1"], Validity::Current))
}

/// The files in `dir` (a failed download leaves none).
fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn ranged_downloads_over_http_and_https_go_through_the_direct_path() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let body = data(6 * PART + 11, 21);
    let key = h.key("direct-get");
    server.put_object_bytes(&h.bucket, &key, &body);
    let ca = TestCa::new("s3pump direct GET CA");
    let front = tls_front(server.addr(), &ca);
    let dir = tempfile::tempdir().unwrap();
    for (scheme, endpoint, port) in [
        ("http", server.endpoint(), server.addr().port()),
        ("https", front.endpoint("127.0.0.1"), front.addr().port()),
    ] {
        let client = h
            .builder()
            .endpoint(endpoint)
            .add_root_certificates_pem(ca.pem().as_bytes())
            .build()
            .unwrap();
        let path = dir.path().join(scheme);
        let out = client
            .download_to_file(&h.bucket, &key, &path, args(3))
            .unwrap();
        assert_eq!(out.parts, 7);
        assert!(
            std::fs::read(&path).unwrap() == body,
            "{scheme}: file differs"
        );
        let mut sink = Vec::new();
        client
            .download(&h.bucket, &key, &mut sink, args(3))
            .unwrap();
        assert!(sink == body, "{scheme}: writer differs");
        // Every range went through the direct sender (the last one, 11
        // bytes, too: a transfer's requests go where a cancel can cut
        // them), on at most N connections (the others kept alive).
        let lines = ranged_gets(scheme, port);
        assert_eq!(lines.len(), 14, "{scheme}: {lines:#?}");
        let new = lines.iter().filter(|l| l.contains("a new connection"));
        assert!(new.count() <= 3, "{scheme}: {lines:#?}");
    }
}

/// What the [`Hostile`] server does to one GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misreply {
    /// Half the body, then the close.
    ShortThenClose,
    /// The Content-Range of the next byte's range.
    WrongContentRange,
    /// No Content-Length: the body up to the close.
    NoContentLength,
    /// The range chunked, no Content-Length.
    Chunked,
    /// Content-Length and body 100 bytes longer than the range.
    Oversize,
    /// A 503 with an S3 error document.
    Status503,
    /// Not HTTP at all, then the close.
    GarbageHead,
}

/// A minimal S3 object server (HeadObject and ranged GetObject of one
/// object, ETag "v1", no signature checked) that answers its `bad`-th GET
/// with `misreply`.
struct Hostile {
    addr: SocketAddr,
    gets: Arc<AtomicUsize>,
}

impl Hostile {
    fn start(body: Arc<Vec<u8>>, misreply: Misreply, bad: usize) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let gets = Arc::new(AtomicUsize::new(0));
        let g = Arc::clone(&gets);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (body, g) = (Arc::clone(&body), Arc::clone(&g));
                std::thread::spawn(move || {
                    let _ = serve(conn, &body, &g, misreply, bad);
                });
            }
        });
        Hostile { addr, gets }
    }
}

fn serve(
    conn: TcpStream,
    body: &[u8],
    gets: &AtomicUsize,
    misreply: Misreply,
    bad: usize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        let size = body.len();
        if lines[0].starts_with("HEAD ") {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nETag: \"v1\"\r\n\r\n");
            out.write_all(head.as_bytes())?;
            continue;
        }
        let range = lines
            .iter()
            .find_map(|l| l.strip_prefix("range: bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        let Some((a, b)) = range else {
            out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let bytes = &body[a..=b];
        let len = bytes.len();
        let n = gets.fetch_add(1, Ordering::SeqCst) + 1;
        let ok_head = |extra: &str| {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\n\
                 ETag: \"v1\"\r\n{extra}\r\n"
            )
        };
        if n != bad {
            out.write_all(ok_head(&format!("Content-Length: {len}\r\n")).as_bytes())?;
            out.write_all(bytes)?;
            continue;
        }
        match misreply {
            Misreply::ShortThenClose => {
                out.write_all(ok_head(&format!("Content-Length: {len}\r\n")).as_bytes())?;
                out.write_all(&bytes[..len / 2])?;
                return Ok(());
            }
            Misreply::WrongContentRange => {
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{size}\r\n\
                     ETag: \"v1\"\r\nContent-Length: {len}\r\n\r\n",
                    a + 1,
                    b + 1
                );
                out.write_all(head.as_bytes())?;
                out.write_all(bytes)?;
            }
            Misreply::NoContentLength => {
                out.write_all(ok_head("connection: close\r\n").as_bytes())?;
                out.write_all(bytes)?;
                return Ok(());
            }
            Misreply::Chunked => {
                out.write_all(ok_head("Transfer-Encoding: chunked\r\n").as_bytes())?;
                for chunk in bytes.chunks(100_000) {
                    write!(out, "{:x}\r\n", chunk.len())?;
                    out.write_all(chunk)?;
                    out.write_all(b"\r\n")?;
                }
                out.write_all(b"0\r\n\r\n")?;
            }
            Misreply::Oversize => {
                out.write_all(ok_head(&format!("Content-Length: {}\r\n", len + 100)).as_bytes())?;
                out.write_all(bytes)?;
                out.write_all(&[b'x'; 100])?;
            }
            Misreply::Status503 => {
                let doc = "<Error><Code>SlowDown</Code><Message>busy</Message></Error>";
                let head = format!(
                    "HTTP/1.1 503 Slow Down\r\nContent-Length: {}\r\n\r\n",
                    doc.len()
                );
                out.write_all(head.as_bytes())?;
                out.write_all(doc.as_bytes())?;
            }
            Misreply::GarbageHead => {
                out.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")?;
                return Ok(());
            }
        }
    }
}

#[test]
fn hostile_replies_to_a_direct_ranged_get_are_retried_or_fail_cleanly() {
    support::logger::capture();
    let body = Arc::new(data(4 * PART + 7, 22));
    let ca = TestCa::new("s3pump hostile GET CA");
    let dir = tempfile::tempdir().unwrap();
    for misreply in [
        Misreply::ShortThenClose,
        Misreply::WrongContentRange,
        Misreply::NoContentLength,
        Misreply::Chunked,
        Misreply::Oversize,
        Misreply::Status503,
        Misreply::GarbageHead,
    ] {
        let server = Hostile::start(Arc::clone(&body), misreply, 2);
        let front = tls_front(server.addr, &ca);
        for (scheme, endpoint, port) in [
            (
                "http",
                format!("http://{}", server.addr),
                server.addr.port(),
            ),
            ("https", front.endpoint("127.0.0.1"), front.addr().port()),
        ] {
            let name = format!("{misreply:?} over {scheme}");
            server.gets.store(0, Ordering::SeqCst);
            let client = Client::builder()
                .endpoint(endpoint)
                .region(REGION)
                .anonymous()
                .add_root_certificates_pem(ca.pem().as_bytes())
                .idle_timeout(Duration::from_secs(2))
                .retry_policy(fast_retries())
                .build()
                .unwrap();
            let path = dir.path().join("out");
            let started = Instant::now();
            let result = client.download_to_file("bucket", "key", &path, args(2));
            assert!(started.elapsed() < Duration::from_secs(20), "{name}: slow");
            assert!(
                !ranged_gets(scheme, port).is_empty(),
                "{name}: not direct: {result:?}"
            );
            match misreply {
                Misreply::WrongContentRange | Misreply::Oversize => {
                    let err = result.expect_err(&name);
                    assert!(
                        matches!(err, Error::InvalidResponse { .. }),
                        "{name}: {err:?}"
                    );
                    let text = err.to_string();
                    let says = if misreply == Misreply::Oversize {
                        "Content-Length"
                    } else {
                        "Content-Range"
                    };
                    assert!(text.contains(says), "{name}: {text}");
                    assert_eq!(files_in(dir.path()), 0, "{name}: a file was left");
                }
                _ => {
                    result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(std::fs::read(&path).unwrap() == *body, "{name}: differs");
                    std::fs::remove_file(&path).unwrap();
                    // Five ranges; a retried one twice, the others once.
                    let gets = server.gets.load(Ordering::SeqCst);
                    let want = match misreply {
                        Misreply::NoContentLength | Misreply::Chunked => 5,
                        _ => 6,
                    };
                    assert_eq!(gets, want, "{name}");
                }
            }
        }
    }
}

/// Downloads `key` into `path` with `client` and checks the bytes.
fn download_identical(
    client: &Client,
    h: &Harness,
    key: &str,
    path: &Path,
    body: &[u8],
    name: &str,
) {
    client
        .download_to_file(&h.bucket, key, path, args(2))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(std::fs::read(path).unwrap() == body, "{name}: differs");
    std::fs::remove_file(path).unwrap();
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn download_faults_over_tls_end_with_the_identical_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let body = data(6 * PART + 11, 23);
    let key = h.key("tls-faults");
    server.put_object_bytes(&h.bucket, &key, &body);
    let ca = TestCa::new("s3pump TLS download faults CA");
    let front = tls_front(server.addr(), &ca);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let idle = Duration::from_millis(800);
    let client = |endpoint: String| {
        h.builder()
            .endpoint(endpoint)
            .add_root_certificates_pem(ca.pem().as_bytes())
            .idle_timeout(idle)
            .retry_policy(fast_retries())
            .build()
            .unwrap()
    };
    // The server's faults, on the third GET: 503, a dropped connection, a
    // body cut mid-way, a server that stalls past the idle timeout.
    let c = client(front.endpoint("127.0.0.1"));
    for fault in [
        FaultKind::status(503, "SlowDown"),
        FaultKind::DropConnection,
        FaultKind::CutBody(PART / 2),
        FaultKind::Delay(idle + Duration::from_millis(400)),
    ] {
        let name = format!("{fault:?}");
        server.reset_stats();
        server.inject(Fault::new(Op::GetObject, fault).attempt(3));
        download_identical(&c, &h, &key, &path, &body, &name);
        assert_eq!(server.pending_faults(), 0, "{name}: never fired");
        assert_eq!(server.stats().get_object_calls, 8, "{name}: one retry");
    }
    // The wire's: the TLS bytes from the front cut, stalled or with one
    // bit flipped (a record that fails authentication) in the middle of a
    // range's body.
    for fault in [
        RelayFault::CutAfter((2 * PART + PART / 2) as u64),
        RelayFault::StallAfter((2 * PART + PART / 2) as u64),
        RelayFault::FlipAfter((2 * PART + PART / 2) as u64),
    ] {
        let name = format!("{fault:?}");
        let relay = Relay::start(front.addr(), RelayConfig::default());
        let c = client(format!("https://127.0.0.1:{}", relay.addr().port()));
        server.reset_stats();
        relay.arm_down(fault);
        download_identical(&c, &h, &key, &path, &body, &name);
        assert!(!relay.fault_pending(), "{name}: never fired");
        let gets = server.stats().get_object_calls;
        assert!((8..=9).contains(&gets), "{name}: {gets} GETs");
    }
}
