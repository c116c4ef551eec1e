//! A do-nothing S3 server for benchmarks ([`SinkServer`]) and a raw TCP sink
//! ([`raw_sink`]). Plain std threads, one per connection, HTTP/1.1 keep-alive.
//!
//! The S3 sink answers the multipart protocol correctly but stores nothing and
//! checks no signature:
//! - `POST /b/k?uploads` → 200 `<InitiateMultipartUploadResult>`
//! - `PUT /b/k?partNumber=N&uploadId=U` → body discarded, 200 with an `ETag`
//! - `POST /b/k?uploadId=U` → body discarded, 200 `<CompleteMultipartUploadResult>`
//! - `PUT /b/k` → body discarded, 200 with an `ETag`
//! - `DELETE …` → 204
//! - anything else → 404 `NoSuchKey` (no body for HEAD)
//!
//! Request bodies need a `Content-Length` (no chunked transfer encoding: 411).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

const BUF_SIZE: usize = 1 << 20;
const MAX_HEAD: usize = 64 * 1024;

/// Counters of a [`SinkServer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Requests answered.
    pub requests: u64,
    /// UploadPart requests answered.
    pub parts: u64,
    /// Request body bytes read and discarded.
    pub body_bytes: u64,
}

#[derive(Default)]
struct SinkShared {
    shutdown: AtomicBool,
    requests: AtomicU64,
    parts: AtomicU64,
    body_bytes: AtomicU64,
    next_id: AtomicU64,
    conns: Mutex<Vec<Weak<TcpStream>>>,
}

/// The S3 sink, in process, on 127.0.0.1 with an ephemeral port. Dropping it
/// stops accepting and closes its connections.
pub struct SinkServer {
    addr: SocketAddr,
    shared: Arc<SinkShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl SinkServer {
    /// Starts the sink.
    pub fn start() -> SinkServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let addr = listener.local_addr().expect("sink local_addr");
        let shared = Arc::new(SinkShared::default());
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("sink-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn sink acceptor");
        SinkServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            parts: self.shared.parts.load(Ordering::Relaxed),
            body_bytes: self.shared.body_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().drain(..) {
            if let Some(c) = c.upgrade() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Runs the S3 sink on `listener` in the calling thread, forever (for a
/// benchmark that runs the server in a separate process).
pub fn run_sink_forever(listener: TcpListener) -> ! {
    accept_loop(listener, Arc::new(SinkShared::default()));
    // accept_loop only returns after a shutdown, which nothing can request here.
    loop {
        thread::park();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<SinkShared>) {
    for conn in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = conn.set_nodelay(true);
        let conn = Arc::new(conn);
        track(&shared, &conn);
        let sh = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name("sink-conn".into())
            .spawn(move || {
                let _ = serve_s3_conn(&conn, &sh);
            });
    }
}

/// Remembers a connection (weakly, so it closes when its thread is done) to
/// shut it down on drop.
fn track(shared: &SinkShared, conn: &Arc<TcpStream>) {
    let mut conns = shared.conns.lock();
    conns.retain(|w| w.strong_count() > 0);
    conns.push(Arc::downgrade(conn));
}

struct Head {
    method: String,
    path: String,
    query: String,
    content_length: Option<u64>,
    chunked: bool,
    expect_continue: bool,
    close: bool,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut rl = lines.next()?.split(' ');
    let method = rl.next()?.to_owned();
    let target = rl.next()?;
    let version = rl.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = Head {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        content_length: None,
        chunked: false,
        expect_continue: false,
        close: version == "HTTP/1.0",
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => h.content_length = Some(value.parse().ok()?),
            "transfer-encoding" => h.chunked = value.to_ascii_lowercase().contains("chunked"),
            "expect" => h.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "connection" => h.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Some(h)
}

fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == name)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|p| match p.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if p == name => Some(""),
        _ => None,
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn response(status: &str, headers: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nx-amz-request-id: SINK\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

/// Serves one connection until it closes. `buf` holds unparsed bytes in
/// `buf[start..end]`.
fn serve_s3_conn(mut conn: &TcpStream, shared: &SinkShared) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Read until the end of the head.
        let head_end = loop {
            if let Some(i) = buf[start..end].windows(4).position(|w| w == b"\r\n\r\n") {
                break start + i + 4;
            }
            if end - start > MAX_HEAD {
                conn.write_all(&response(
                    "431 Request Header Fields Too Large",
                    &[("Connection", "close".into())],
                    "",
                ))?;
                return Ok(());
            }
            if end == buf.len() {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let n = conn.read(&mut buf[end..])?;
            if n == 0 {
                return Ok(());
            }
            end += n;
        };
        let Some(head) = parse_head(&buf[start..head_end - 4]) else {
            conn.write_all(&response(
                "400 Bad Request",
                &[("Connection", "close".into())],
                "",
            ))?;
            return Ok(());
        };
        start = head_end;
        if head.chunked {
            conn.write_all(&response(
                "411 Length Required",
                &[("Connection", "close".into())],
                "",
            ))?;
            return Ok(());
        }
        if head.expect_continue {
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }

        // Discard the body: first what is buffered, then big reads.
        let mut remaining = head.content_length.unwrap_or(0);
        let buffered = ((end - start) as u64).min(remaining) as usize;
        start += buffered;
        remaining -= buffered as u64;
        if start == end {
            start = 0;
            end = 0;
        }
        while remaining > 0 {
            let want = (buf.len() - end).min(remaining.min(usize::MAX as u64) as usize);
            let n = conn.read(&mut buf[end..end + want])?;
            if n == 0 {
                return Ok(());
            }
            remaining -= n as u64;
        }
        shared
            .body_bytes
            .fetch_add(head.content_length.unwrap_or(0), Ordering::Relaxed);
        shared.requests.fetch_add(1, Ordering::Relaxed);

        let reply = answer(&head, shared);
        conn.write_all(&reply)?;
        if head.close {
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn answer(head: &Head, shared: &SinkShared) -> Vec<u8> {
    let path = head.path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let (bucket, key) = (xml_escape(bucket), xml_escape(key));
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let etag = format!(
        "\"{:032x}\"",
        0x5157_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(id)
    );
    let xml = [("Content-Type", "application/xml".to_owned())];
    match head.method.as_str() {
        "POST" if has_param(&head.query, "uploads") => response(
            "200 OK",
            &xml,
            &format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>sink-upload-{id}</UploadId></InitiateMultipartUploadResult>"
            ),
        ),
        "POST" if param(&head.query, "uploadId").is_some() => {
            let etag = format!("\"{:032x}-1\"", u128::from(id));
            response(
                "200 OK",
                &xml,
                &format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Location>/{bucket}/{key}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
                    xml_escape(&etag)
                ),
            )
        }
        "PUT" => {
            if has_param(&head.query, "partNumber") {
                shared.parts.fetch_add(1, Ordering::Relaxed);
            }
            response("200 OK", &[("ETag", etag)], "")
        }
        "DELETE" => response("204 No Content", &[], ""),
        "HEAD" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        _ => response(
            "404 Not Found",
            &xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The sink stores nothing.</Message><RequestId>SINK</RequestId></Error>",
        ),
    }
}

/// A raw TCP sink (see [`raw_sink`]); dropping it stops accepting and closes
/// its connections.
pub struct RawSink {
    addr: SocketAddr,
    shared: Arc<SinkShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl RawSink {
    /// Bytes read and discarded so far.
    pub fn bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::Relaxed)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RawSink {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().drain(..) {
            if let Some(c) = c.upgrade() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A TCP listener on 127.0.0.1 that reads and discards everything sent to it
/// (1 MiB reads, one thread per connection), for measuring raw loopback TCP.
pub fn raw_sink() -> (SocketAddr, RawSink) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw sink");
    let addr = listener.local_addr().expect("raw sink local_addr");
    let shared = Arc::new(SinkShared::default());
    let sh = Arc::clone(&shared);
    let acceptor = thread::Builder::new()
        .name("raw-sink-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if sh.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let conn = Arc::new(conn);
                track(&sh, &conn);
                let sh = Arc::clone(&sh);
                let _ = thread::Builder::new()
                    .name("raw-sink-conn".into())
                    .spawn(move || {
                        let mut buf = vec![0u8; BUF_SIZE];
                        while let Ok(n) = (&*conn).read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            sh.body_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    });
            }
        })
        .expect("spawn raw sink acceptor");
    (
        addr,
        RawSink {
            addr,
            shared,
            acceptor: Some(acceptor),
        },
    )
}
