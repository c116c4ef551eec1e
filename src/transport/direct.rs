//! Sends a request with a large body over plain HTTP/1.1 straight from the
//! caller's memory.
//!
//! ureq copies a request body through its 128 KiB output buffer and writes
//! it in 128 KiB `send`s. For a part that is a second pass over every byte
//! and 128 system calls per 16 MiB, about 0.05 CPU s per GiB on loopback
//! (docs/PERFORMANCE.md). Here the head goes out in one `send` and the whole
//! body in one more, straight from the slab, and the (small) reply is read back into
//! memory and handed over as an ordinary `http::Response<ureq::Body>`, so
//! everything after the send (status check, ETag, error parsing, retries)
//! is unchanged.
//!
//! Used only for `http://` endpoints, directly or through a plain-http
//! proxy (then with the absolute-form request target, `PUT http://host/...`,
//! and the proxy's `Proxy-Authorization`); TLS and everything else go
//! through ureq. A part connection of the client's pool keeps its own
//! keep-alive socket (so it serves transfer after transfer); a request sent
//! on the client's shared connection uses one kept per calling thread.
//!
//! Over 600 lines only with its unit tests, which script hostile and broken
//! replies against the private reply parser.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ureq::http;

use super::proxy::Proxy;

/// Bodies at least this long are sent directly; smaller ones through ureq.
pub(crate) const MIN_BODY: usize = 1 << 20;

/// How long a kept-alive connection may sit unused and still be reused
/// (ureq's default `max_idle_age`).
const MAX_IDLE: Duration = Duration::from_secs(15);
/// Largest reply head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest reply body read into memory (error documents are small).
const MAX_BODY: u64 = 16 << 20;
/// Largest trailer section of a chunked reply.
const MAX_TRAILERS: usize = 64 << 10;
const MAX_HEADERS: usize = 64;

/// Whether a request goes out here rather than through ureq: an UploadPart
/// of at least [`MIN_BODY`] bytes to an `http://` endpoint, directly or
/// through a proxy spoken to in plain HTTP.
pub(crate) fn takes(scheme: &str, operation: &str, body_len: usize, proxy: Option<&Proxy>) -> bool {
    scheme == "http"
        && operation == "UploadPart"
        && body_len >= MIN_BODY
        && proxy.is_none_or(|p| p.plain)
}

/// A kept-alive connection of the direct sender.
pub(crate) struct Conn {
    /// The server's authority, and the proxy's when there is one.
    key: String,
    stream: TcpStream,
    idle_since: Instant,
}

thread_local! {
    /// This thread's keep-alive connection.
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
}

/// Sends `request` (already validated by the `http` crate's builder) and
/// returns the reply, or an error as ureq would report it.
///
/// Like ureq's pool, a kept-alive connection is reused only while it is
/// younger than [`MAX_IDLE`] and the server has not closed it; a request that
/// fails is not resent here (the caller's retry policy decides).
pub(crate) fn send(
    request: &http::Request<&[u8]>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    proxy: Option<&Proxy>,
    slot: Option<&parking_lot::Mutex<Option<Conn>>>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let authority = request.uri().authority().map_or("", |a| a.as_str());
    let key = match proxy {
        Some(p) => format!("{authority} via {}", p.authority),
        None => authority.to_string(),
    };
    let taken = match slot {
        Some(slot) => slot.lock().take(),
        None => CONN.with(|c| c.borrow_mut().take()),
    };
    let cached =
        taken.filter(|c| c.key == key && c.idle_since.elapsed() < MAX_IDLE && is_open(&c.stream));
    let result = match cached {
        Some(c) => Ok(c),
        None => connect(
            proxy.map_or(authority, |p| p.authority.as_str()),
            key,
            connect_timeout,
            idle_timeout,
        ),
    }
    .and_then(|mut conn| {
        let (response, keep_alive) = exchange(&mut conn.stream, request, proxy)?;
        if keep_alive {
            conn.idle_since = Instant::now();
            match slot {
                Some(slot) => *slot.lock() = Some(conn),
                None => CONN.with(|c| *c.borrow_mut() = Some(conn)),
            }
        }
        Ok(response)
    });
    result.map_err(|e| {
        ureq::Error::Io(match e.kind() {
            // A socket timeout surfaces as EAGAIN.
            ErrorKind::WouldBlock => {
                io::Error::new(ErrorKind::TimedOut, "no byte moved within the idle timeout")
            }
            _ => e,
        })
    })
}

/// Connects to `authority` (the server's, or the proxy's).
fn connect(
    authority: &str,
    key: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> io::Result<Conn> {
    let addrs = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_socket_addrs()?
    } else {
        (authority.trim_matches(['[', ']']), 80).to_socket_addrs()?
    };
    let mut last = io::Error::new(ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(idle_timeout))?;
                stream.set_write_timeout(Some(idle_timeout))?;
                return Ok(Conn {
                    key,
                    stream,
                    idle_since: Instant::now(),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a kept-alive connection can take another request: nothing to
/// read and not closed by the server.
fn is_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}

/// Writes the request, reads the reply; also says whether the connection
/// can be kept. Through a proxy, the request target is the absolute URL.
fn exchange(
    stream: &mut TcpStream,
    request: &http::Request<&[u8]>,
    proxy: Option<&Proxy>,
) -> io::Result<(http::Response<ureq::Body>, bool)> {
    let body: &[u8] = request.body();
    let uri = request.uri().to_string();
    let target = match proxy {
        Some(_) => uri.as_str(),
        None => request.uri().path_and_query().map_or("/", |p| p.as_str()),
    };
    let mut head = Vec::with_capacity(1024);
    for part in [request.method().as_str(), " ", target, " HTTP/1.1\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    if let Some(auth) = proxy.and_then(|p| p.authorization.as_deref()) {
        head.extend_from_slice(b"proxy-authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in request.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(
        format!(
            "user-agent: s3pump/{}\r\ncontent-length: {}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            body.len()
        )
        .as_bytes(),
    );
    // Two `send`s rather than one `writev`: std sends with MSG_NOSIGNAL, so a
    // connection reset mid-body is an error, never a SIGPIPE in a host
    // program that has not ignored it (writev cannot take that flag).
    stream.write_all(&head)?;
    stream.write_all(body)?;
    read_reply(stream, request.method() == http::Method::HEAD)
}

/// A parsed reply head.
struct Head {
    status: u16,
    http_1_0: bool,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads until `buf` starts with a complete reply head; parses and removes it.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    status: parsed.code.unwrap_or(0),
                    http_1_0: parsed.version == Some(0),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                };
                buf.drain(..len);
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(invalid("reply head too large")),
            Err(e) => return Err(invalid(&format!("bad reply head: {e}"))),
        }
        if read_more(stream, buf)? == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the server closed the connection before its reply",
            ));
        }
    }
}

/// Reads one reply (skipping interim 1xx replies) and says whether the
/// connection can be kept.
fn read_reply(
    stream: &mut TcpStream,
    head_request: bool,
) -> io::Result<(http::Response<ureq::Body>, bool)> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let head = loop {
        let head = read_head(stream, &mut buf)?;
        if !(100..200).contains(&head.status) {
            break head;
        }
    };
    let mut keep_alive = !head.http_1_0
        && !head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let chunked = head
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if head_request || head.status == 204 || head.status == 304 {
        keep_alive &= buf.is_empty();
        Vec::new()
    } else if chunked {
        let (body, clean) = read_chunked(stream, buf)?;
        keep_alive &= clean;
        body
    } else if let Some(len) = head.get("content-length") {
        let len: u64 = len
            .trim()
            .parse()
            .map_err(|_| invalid("bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(invalid("reply body too large"));
        }
        let (body, clean) = read_exact_body(stream, buf, len as usize)?;
        keep_alive &= clean;
        body
    } else {
        // Delimited by the end of the connection.
        keep_alive = false;
        let mut body = buf;
        stream.take(MAX_BODY).read_to_end(&mut body)?;
        body
    };
    let mut builder = http::Response::builder().status(head.status);
    for (name, value) in &head.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let response = builder
        .body(ureq::Body::builder().data(body))
        .map_err(|e| invalid(&format!("bad reply: {e}")))?;
    Ok((response, keep_alive))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.to_string())
}

/// Appends what one `read` returns to `buf`; returns its length.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + 8192, 0);
    let result = loop {
        match stream.read(&mut buf[start..]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

/// Reads a body of `len` bytes; `buf` holds what was already read. Also says
/// whether nothing followed the body (else the connection is out of step).
fn read_exact_body(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    len: usize,
) -> io::Result<(Vec<u8>, bool)> {
    if buf.len() > len {
        buf.truncate(len);
        return Ok((buf, false));
    }
    let have = buf.len();
    buf.resize(len, 0);
    stream.read_exact(&mut buf[have..])?;
    Ok((buf, true))
}

/// Decodes a chunked body; `buf` holds what was already read. Also says
/// whether nothing followed the body.
fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> io::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    let mut pos = 0;
    // Makes sure `buf[pos..]` holds at least `n` bytes.
    let mut fill = |buf: &mut Vec<u8>, pos: usize, n: usize| -> io::Result<()> {
        while buf.len() - pos < n {
            if read_more(stream, buf)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    };
    loop {
        // The size line.
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if buf.len() - pos > 1024 {
                return Err(invalid("chunk size line too long"));
            }
            let want = buf.len() - pos + 1;
            fill(&mut buf, pos, want)?;
        };
        let line =
            std::str::from_utf8(&buf[pos..line_end]).map_err(|_| invalid("bad chunk size"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid("bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers, if any, up to the empty line; a server that sends
            // more than MAX_TRAILERS bytes of them is broken or hostile.
            let trailers_start = pos;
            loop {
                let end = loop {
                    if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        break pos + i;
                    }
                    if buf.len() - trailers_start > MAX_TRAILERS {
                        return Err(invalid("chunked trailers too long"));
                    }
                    let want = buf.len() - pos + 1;
                    fill(&mut buf, pos, want)?;
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok((body, pos == buf.len()));
                }
            }
        }
        // `size` is the server's word: check it before any arithmetic.
        if size as u64 > MAX_BODY - body.len() as u64 {
            return Err(invalid("reply body too large"));
        }
        fill(&mut buf, pos, size + 2)?;
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Head and body of each request a [`Fake`] received.
    type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A server answering requests with the scripted replies, in order,
    /// across connections; records each request's head and body.
    struct Fake {
        addr: String,
        connections: Arc<AtomicUsize>,
        requests: Requests,
    }

    fn fake(replies: Vec<&'static str>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let (r, replies) = (Arc::clone(&r), Arc::clone(&replies));
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    loop {
                        let Ok(head) = read_request_head(&mut conn, &mut buf) else {
                            return;
                        };
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < len {
                            let mut chunk = [0u8; 65536];
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..len).collect();
                        r.lock().unwrap().push((head, body));
                        let Some(reply) = replies.lock().unwrap().next() else {
                            return;
                        };
                        // "CLOSE " before a reply: close after it, silently.
                        let (reply, close) = match reply.strip_prefix("CLOSE ") {
                            Some(r) => (r, true),
                            None => (reply, false),
                        };
                        conn.write_all(reply.as_bytes()).unwrap();
                        let delimited =
                            reply.contains("Content-Length") || reply.contains("chunked");
                        if close || !delimited || reply.contains("connection: close") {
                            return;
                        }
                    }
                });
            }
        });
        Fake {
            addr,
            connections,
            requests,
        }
    }

    fn read_request_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<String> {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buf.drain(..i + 4).collect()).unwrap();
                return Ok(head);
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk)? {
                0 => return Err(ErrorKind::UnexpectedEof.into()),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn request<'b>(addr: &str, body: &'b [u8]) -> http::Request<&'b [u8]> {
        http::Request::builder()
            .method("PUT")
            .uri(format!("http://{addr}/bucket/key?partNumber=1&uploadId=u"))
            .header("host", addr)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(body)
            .unwrap()
    }

    fn put(addr: &str, body: &[u8]) -> Result<(u16, String, Vec<u8>), ureq::Error> {
        let mut response = send(
            &request(addr, body),
            Duration::from_secs(5),
            Duration::from_secs(5),
            None,
            None,
        )?;
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().unwrap();
        Ok((status, etag, body))
    }

    fn io_kind(e: &ureq::Error) -> ErrorKind {
        match e {
            ureq::Error::Io(io) => io.kind(),
            other => panic!("not an I/O error: {other:?}"),
        }
    }

    #[test]
    fn sends_head_and_body_and_keeps_the_connection() {
        let f = fake(vec![
            "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nETag: \"b\"\r\nContent-Length: 0\r\n\r\n",
        ]);
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(put(&f.addr, &body).unwrap(), (200, "\"a\"".into(), vec![]));
        assert_eq!(
            put(&f.addr, b"second").unwrap(),
            (200, "\"b\"".into(), vec![])
        );
        assert_eq!(
            f.connections.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
        let requests = f.requests.lock().unwrap();
        assert!(
            requests[0]
                .0
                .starts_with("PUT /bucket/key?partNumber=1&uploadId=u HTTP/1.1\r\n")
        );
        assert!(requests[0].0.contains("\r\ncontent-length: 3000000\r\n"));
        assert!(
            requests[0]
                .0
                .contains("\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n")
        );
        assert!(requests[0].1 == body);
        assert_eq!(requests[1].1, b"second");
    }

    #[test]
    fn chunked_replies_interim_replies_and_connection_close() {
        let f = fake(vec![
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n\
             Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n<Erro\r\n3\r\nr/>\r\n0\r\nx-trailer: t\r\n\r\n",
            "HTTP/1.1 200 OK\r\nETag: \"c\"\r\nconnection: close\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nETag: \"d\"\r\n\r\nto the end",
        ]);
        let (status, _, body) = put(&f.addr, b"x").unwrap();
        assert_eq!((status, body.as_slice()), (503, &b"<Error/>"[..]));
        assert_eq!(
            put(&f.addr, b"x").unwrap(),
            (200, "\"c\"".into(), b"ok".to_vec())
        );
        // The server closed: a new connection, and a body that runs to its end.
        let (status, etag, body) = put(&f.addr, b"x").unwrap();
        assert_eq!(
            (status, etag.as_str(), body.as_slice()),
            (200, "\"d\"", &b"to the end"[..])
        );
        assert_eq!(f.connections.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_hostile_chunked_reply_is_an_error_not_a_panic() {
        // After a 1-byte chunk, a chunk size of 2^64 - 1 overflowed the
        // body length arithmetic (a panic in debug builds, an out-of-bounds
        // slice in release). Then: a chunk past the body limit, and a
        // trailer section that never ends.
        let endless_trailers: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
                "x-t: y\r\n".repeat(20_000)
            )
            .into_boxed_str(),
        );
        for reply in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
            endless_trailers,
        ] {
            let f = fake(vec![reply]);
            let err = put(&f.addr, b"x").unwrap_err();
            assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");
        }
    }

    #[test]
    fn a_connection_the_server_closed_while_idle_is_not_reused() {
        let f = fake(vec![
            "CLOSE HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nETag: \"f\"\r\nContent-Length: 0\r\n\r\n",
        ]);
        assert_eq!(put(&f.addr, b"x").unwrap().1, "\"e\"");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(put(&f.addr, b"y").unwrap().1, "\"f\"");
        assert_eq!(f.connections.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_server_that_closes_without_replying_is_an_error() {
        let f = fake(vec![]);
        let err = put(&f.addr, b"x").unwrap_err();
        assert!(
            matches!(
                io_kind(&err),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_server_that_stops_answering_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _hold = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(conn);
        });
        let started = Instant::now();
        let err = send(
            &request(&addr, b"small"),
            Duration::from_secs(5),
            Duration::from_millis(200),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::TimedOut, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
