//! The direct path: a request sent and its reply read by s3pump itself,
//! over HTTP/1.1, plain or TLS, on a kept-alive connection s3pump holds
//! (so that a transfer's stop can shut its socket down).
//!
//! ureq copies a request body through its 128 KiB output buffer and writes
//! it in 128 KiB `send`s. For a part that is a second pass over every byte
//! and 128 system calls per 16 MiB, about 0.05 CPU s per GiB on loopback
//! (docs/PERFORMANCE.md). Here, over plain HTTP, the head goes out in one
//! `send` and the whole body in one more, straight from the slab (or the
//! file, with `sendfile(2)`). Over TLS the body is encrypted from the slab
//! in 256 KiB pieces, each written out as a run of 16 KiB records:
//! rustls's copy into its records, encrypting, is the one pass over the
//! bytes. The (small) reply is read back into memory and handed over as an
//! ordinary `http::Response<ureq::Body>`, so everything after the send
//! (status check, ETag, error parsing, retries) is the same as for ureq.
//!
//! A download's ranged GETs ([`get_into`]) go the other way on the same
//! connections: the head out, the reply head parsed, and a 2xx body of the
//! range's length read from the socket (over TLS, from rustls's plaintext
//! buffer) straight into the range's slab, instead of through ureq's body
//! reader and the copy out of it. Error replies come back in memory as
//! above.
//!
//! Used for `http://` and `https://` endpoints, directly or through a proxy
//! spoken to in plain HTTP: for `http://` with the absolute-form request
//! target (`PUT http://host/...`), for `https://` in a `CONNECT` tunnel made
//! on the socket before the handshake; both with the proxy's
//! `Proxy-Authorization`. A part connection of the client's pool keeps its
//! own keep-alive connection (so it serves transfer after transfer); the
//! client's shared connection keeps a few for the requests sent on it from
//! any thread ([`Slot`]). Every TLS connection of a client shares the client's one
//! `rustls::ClientConfig`, so a new connection resumes a session of an
//! earlier one (a shorter handshake).
//!
//! This file holds the exchanges and the kept-alive connection; the wire
//! format is `http1`, the socket (TCP, tunnel, TLS, pacing) `socket`. Over
//! 800 lines only with its unit tests, which script hostile and broken
//! replies against real sockets.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use ureq::http;

use super::http1::{MAX_BODY, read_final_head, reply_in_memory, request_head, response};
use super::pace::{Limits, Rate};
use super::proxy::Proxy;
use super::socket::{Stream, Timed, connect};
use super::stop::{Stop, stopped};

/// Bodies at least this long are sent directly; smaller ones through ureq.
pub(crate) const MIN_BODY: usize = 1 << 20;

/// How long a kept-alive connection may sit unused and still be reused
/// (ureq's default `max_idle_age`).
const MAX_IDLE: Duration = Duration::from_secs(15);

/// Whether a request goes out here rather than through ureq: an UploadPart
/// or a PutObject of at least [`MIN_BODY`] bytes to an `http://` or
/// `https://` endpoint, directly or through a proxy spoken to in plain HTTP.
pub(crate) fn takes(scheme: &str, operation: &str, body_len: usize, proxy: Option<&Proxy>) -> bool {
    matches!(scheme, "http" | "https")
        && matches!(operation, "UploadPart" | "PutObject")
        && body_len >= MIN_BODY
        && proxy.is_none_or(|p| p.plain)
}

/// Whether any request to a `scheme` endpoint (through `proxy`) can go out
/// here: the endpoints and proxies of [`takes`], whatever the request.
pub(crate) fn takes_any(scheme: &str, proxy: Option<&Proxy>) -> bool {
    matches!(scheme, "http" | "https") && proxy.is_none_or(|p| p.plain)
}

/// Whether a body taken here ([`takes`]) can be sent from a file
/// ([`Body::File`]): over plain HTTP with `sendfile(2)` (on Linux), over
/// TLS read from the file piece by piece as it is encrypted; directly or
/// through a plain-HTTP proxy.
pub(crate) fn takes_file(scheme: &str, proxy: Option<&Proxy>) -> bool {
    let sendfile = cfg!(any(target_os = "linux", target_os = "android"));
    ((scheme == "http" && sendfile) || scheme == "https") && proxy.is_none_or(|p| p.plain)
}

/// The body of a request sent here.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    /// Bytes in memory (a slab), written straight from there.
    Memory(&'a [u8]),
    /// `len` bytes of `file` from `offset`: over plain HTTP moved from the
    /// page cache to the socket by the kernel (`sendfile(2)`), never copied
    /// into this process; over TLS read piece by piece as it is encrypted
    /// (see `Stream::send_file`). A file that ends before `offset + len` is
    /// an `UnexpectedEof` error.
    File {
        file: &'a File,
        offset: u64,
        len: usize,
    },
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Memory(b) => b.len(),
            Body::File { len, .. } => *len,
        }
    }
}

/// How a request goes out on the direct path.
pub(crate) struct Route<'a> {
    /// The client's time limits.
    pub limits: &'a Limits,
    /// The longest the whole body of a small reply (not a range) may take
    /// ([`Limits::small_body`] of the operation).
    pub small_body: Duration,
    pub proxy: Option<&'a Proxy>,
    /// The client's TLS configuration (shared, for session resumption).
    pub tls: &'a Arc<ClientConfig>,
    /// Where the kept-alive connections of this way to the server wait.
    pub slot: &'a Slot,
    /// The stop of the transfer the request belongs to: setting it shuts
    /// the request's socket down.
    pub stop: Option<&'a Stop>,
}

/// A kept-alive connection of the direct sender.
pub(crate) struct Conn {
    /// The scheme and the server's authority, and the proxy's when there is one.
    key: String,
    stream: Stream,
    idle_since: Instant,
}

/// The idle kept-alive connections of a way to the server, newest last: a
/// part connection of the client's pool keeps at most one (it is leased to
/// one part at a time); the client's shared connection, used from any
/// thread, up to [`MAX_SHARED_IDLE`]. The client owns them: they are closed
/// when it goes away.
pub(crate) type Slot = parking_lot::Mutex<Vec<Conn>>;

/// The most idle connections a [`Slot`] keeps (the oldest goes first).
const MAX_SHARED_IDLE: usize = 32;

/// A kept-alive connection of the slot to `key`, if one is young enough
/// and still open; the stale ones met on the way are closed.
fn take_idle(slot: &Slot, key: &str) -> Option<Conn> {
    let mut idle = slot.lock();
    idle.retain(|c| c.idle_since.elapsed() < MAX_IDLE);
    while let Some(i) = idle.iter().rposition(|c| c.key == key) {
        let mut conn = idle.remove(i);
        if conn.stream.is_open() {
            return Some(conn);
        }
    }
    None
}

/// Keeps `conn` in the slot for the next request.
fn keep_idle(slot: &Slot, mut conn: Conn) {
    conn.idle_since = Instant::now();
    let mut idle = slot.lock();
    if idle.len() >= MAX_SHARED_IDLE {
        idle.remove(0);
    }
    idle.push(conn);
}

/// Sends `request` (already validated by the `http` crate's builder) and
/// returns the reply, or an error as ureq would report it (a certificate
/// that fails verification as the `rustls::Error` inside an I/O error, as
/// ureq does, so `tls::certificate_error` maps both the same way).
///
/// Like ureq's pool, a kept-alive connection is reused only while it is
/// younger than [`MAX_IDLE`] and the server has not closed it; a request that
/// fails is not resent here (the caller's retry policy decides).
pub(crate) fn send(
    request: &http::Request<Body<'_>>,
    route: &Route<'_>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    on_connection(request.uri(), route, |stream, reused| {
        log::trace!(
            "direct sender: {} {}, {} bytes {}, {} connection",
            request.method(),
            origin(request.uri()),
            request.body().len(),
            match request.body() {
                Body::Memory(_) => "from memory",
                Body::File { .. } => "from the file",
            },
            if reused { "a kept-alive" } else { "a new" }
        );
        exchange(stream, request, route)
    })
}

/// `scheme://authority` of `uri`, for logs and connection keys.
fn origin(uri: &http::Uri) -> String {
    let scheme = if uri.scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", uri.authority().map_or("", |a| a.as_str()))
}

/// Runs `exchange` on a connection to `uri`'s server (through `proxy`): the
/// kept-alive one of `slot` (else of this thread) when it is to the same
/// place, younger than [`MAX_IDLE`] and still open, else a new one; told
/// whether it was reused. The connection is kept for the next request
/// when `exchange` says it can be. While `exchange` runs, the socket is
/// registered with the route's stop (a stop shuts it down; the error is
/// then the stop's). Errors as ureq reports them (a socket timeout
/// surfaces as EAGAIN).
fn on_connection<T>(
    uri: &http::Uri,
    route: &Route<'_>,
    exchange: impl FnOnce(&mut Stream, bool) -> io::Result<(T, bool)>,
) -> Result<T, ureq::Error> {
    let proxy = route.proxy;
    if route.stop.is_some_and(Stop::is_set) {
        return Err(ureq::Error::Io(stopped()));
    }
    let https = uri.scheme_str() == Some("https");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let key = match proxy {
        Some(p) => format!("{} via {}", origin(uri), p.authority),
        None => origin(uri),
    };
    let cached = take_idle(route.slot, &key);
    let reused = cached.is_some();
    let result = match cached {
        Some(c) => Ok(c),
        None => connect(authority, https, proxy, route.limits, route.tls).map(|stream| Conn {
            key,
            stream,
            idle_since: Instant::now(),
        }),
    }
    .and_then(|mut conn| {
        let watch = route
            .stop
            .map(|s| s.watch(conn.stream.sock()))
            .transpose()?;
        let result = exchange(&mut conn.stream, reused);
        let (out, keep_alive) = match (result, &watch) {
            (Err(_), Some(w)) if w.fired() => return Err(stopped()),
            (result, _) => result?,
        };
        drop(watch);
        if keep_alive {
            keep_idle(route.slot, conn);
        }
        Ok(out)
    });
    result.map_err(|e| {
        ureq::Error::Io(match e.kind() {
            ErrorKind::WouldBlock => {
                io::Error::new(ErrorKind::TimedOut, "no byte moved within the idle timeout")
            }
            _ => e,
        })
    })
}

/// Writes the request, reads the reply; also says whether the connection
/// can be kept.
fn exchange(
    stream: &mut Stream,
    request: &http::Request<Body<'_>>,
    route: &Route<'_>,
) -> io::Result<(http::Response<ureq::Body>, bool)> {
    let body = *request.body();
    let mut rate = Rate::new(route.limits);
    let length = match request.method() {
        &http::Method::PUT | &http::Method::POST => Some(body.len()),
        _ => None,
    };
    stream.send(&request_head(request, route.proxy, length), &mut rate)?;
    match body {
        Body::Memory(data) => stream.send(data, &mut rate)?,
        Body::File { file, offset, len } => stream.send_file(file, offset, len, &mut rate)?,
    }
    let idle = route.limits.idle;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let head = read_final_head(
        &mut Timed::new(stream, route.limits.reply, idle, "the reply head"),
        &mut buf,
    )?;
    let head_request = request.method() == http::Method::HEAD;
    let mut body = Timed::new(stream, route.small_body, idle, "the reply body");
    reply_in_memory(&mut body, head, buf, head_request, MAX_BODY)
}

/// Whether a ranged GET of `len` bytes is read here straight into its
/// buffer rather than through ureq: the endpoints and proxies of [`takes`],
/// ranges of at least [`MIN_BODY`] bytes.
pub(crate) fn takes_get(scheme: &str, len: usize, proxy: Option<&Proxy>) -> bool {
    matches!(scheme, "http" | "https") && len >= MIN_BODY && proxy.is_none_or(|p| p.plain)
}

/// Sends the GET `request` (a range of `into.buf.len()` bytes) on a
/// kept-alive connection, as [`send`] sends a request with a body (same
/// timeouts, keep-alive rules, proxies and errors), and reads the reply.
///
/// A 2xx reply with a `Content-Length` of the range's length (not chunked)
/// has its body read straight from the socket (over TLS, from rustls's
/// plaintext) into `into.buf`, and written through to `into.file` when
/// there is one; it comes back with an empty body and `true`. A body that
/// ends early is an `UnexpectedEof` I/O error naming how much came; a
/// failed write to the file an I/O error with `into.file_error` set. Any
/// other reply comes back as [`send`] hands it over, with `false`: an
/// error reply (or a 2xx one chunked or delimited by the close, at most
/// the range's length + 1 bytes of it) read into memory, a 2xx one of another
/// length with its body unread (the connection is then closed), for the
/// caller's checks to name.
pub(crate) fn get_into(
    request: &http::Request<()>,
    route: &Route<'_>,
    into: &mut RangeInto<'_>,
) -> Result<(http::Response<ureq::Body>, bool), ureq::Error> {
    on_connection(request.uri(), route, |stream, reused| {
        log::trace!(
            "direct sender: ranged GET {}, {} bytes into memory{}, {} connection",
            origin(request.uri()),
            into.buf.len(),
            if into.file.is_some() {
                " and the file"
            } else {
                ""
            },
            if reused { "a kept-alive" } else { "a new" }
        );
        get_exchange(stream, request, route, into)
    })
}

/// Writes the GET's head and reads the reply (see [`get_into`]); also says
/// whether the connection can be kept.
fn get_exchange(
    stream: &mut Stream,
    request: &http::Request<()>,
    route: &Route<'_>,
    into: &mut RangeInto<'_>,
) -> io::Result<((http::Response<ureq::Body>, bool), bool)> {
    let (limits, idle) = (route.limits, route.limits.idle);
    let mut rate = Rate::new(limits);
    stream.send(&request_head(request, route.proxy, None), &mut rate)?;
    let mut pending: Vec<u8> = Vec::with_capacity(8192);
    let reply = read_final_head(
        &mut Timed::new(stream, limits.reply, idle, "the reply head"),
        &mut pending,
    )?;
    let keep_alive = reply.keep_alive();
    let chunked = reply.chunked();
    let length = reply.get("content-length").map(|v| v.trim().parse::<u64>());
    let success = (200..300).contains(&reply.status);
    match length {
        Some(Ok(len)) if success && !chunked && len == into.buf.len() as u64 => {
            let have = pending.len().min(into.buf.len());
            into.buf[..have].copy_from_slice(&pending[..have]);
            read_body_into(stream, into, have, &mut Rate::new(limits))?;
            let response = response(&reply, Vec::new())?;
            // Bytes past the body: the connection is out of step.
            Ok(((response, true), keep_alive && pending.len() == have))
        }
        // Another length: not read (the caller's check names it).
        Some(Ok(_)) if success && !chunked => Ok(((response(&reply, Vec::new())?, false), false)),
        _ => {
            let (response, keep) = if success {
                let limit = into.buf.len() as u64 + 1;
                let mut body = super::pace::RateReader::new(&mut *stream, limits);
                reply_in_memory(&mut body, reply, pending, false, limit)?
            } else {
                let mut body = Timed::new(stream, limits.reply, idle, "the reply body");
                reply_in_memory(&mut body, reply, pending, false, MAX_BODY)?
            };
            Ok(((response, false), keep))
        }
    }
}

/// Where a ranged GET's body goes ([`get_into`]): the range's buffer and,
/// for a download into a file, the file at the range's offset.
///
/// Into a file, the body is written through as it arrives, every
/// [`WRITE_THROUGH`] bytes, while those bytes are still in the CPU's cache:
/// copying a whole 8 MiB range into the page cache after it arrived reads
/// it back from memory, and cost over three times the CPU of the receive
/// itself (docs/PERFORMANCE.md, "download_to_file: each range written
/// through").
pub(crate) struct RangeInto<'a> {
    /// The range's buffer: the body is read into it.
    pub(crate) buf: &'a mut [u8],
    /// The file and the offset in it of the range's first byte.
    pub(crate) file: Option<(&'a File, u64)>,
    /// Set when a write to the file failed: the exchange then ends with an
    /// I/O error, and this is the file's error, not the connection's.
    pub(crate) file_error: Option<io::Error>,
}

/// How many bytes of a range are written through to its file at once.
const WRITE_THROUGH: usize = 256 << 10;

/// Fills `into.buf` from `stream` after its first `have` bytes (which came
/// with the head), writing them through to the file when there is one.
fn read_body_into(
    stream: &mut Stream,
    into: &mut RangeInto<'_>,
    have: usize,
    rate: &mut Rate,
) -> io::Result<()> {
    let len = into.buf.len();
    let (mut n, mut written) = (have, 0);
    loop {
        if let Some((file, offset)) = into.file
            && n > written
            && (n - written >= WRITE_THROUGH || n == len)
        {
            if let Err(e) = file.write_all_at(&into.buf[written..n], offset + written as u64) {
                into.file_error = Some(e);
                return Err(io::Error::other(format!(
                    "writing bytes {written}..{n} of the reply body to the file failed"
                )));
            }
            written = n;
        }
        if n == len {
            return Ok(());
        }
        match stream.read(&mut into.buf[n..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("the reply body ended after {n} of {len} bytes"),
                ));
            }
            Ok(k) => {
                n += k;
                rate.moved(k, "the reply body")?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "reading the reply body after {n} of {len} bytes: no byte within the \
                         idle timeout"
                    ),
                ));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading the reply body after {n} of {len} bytes: {e}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls;
    use super::*;
    use rustls::StreamOwned;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Head and body of each request a [`Fake`] received.
    type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A server answering requests with the scripted replies, in order,
    /// across connections; records each request's head and body.
    struct Fake {
        addr: String,
        connections: Arc<AtomicUsize>,
        /// TLS handshakes that resumed an earlier session.
        resumed: Arc<AtomicUsize>,
        requests: Requests,
    }

    /// A [`Fake`]'s side of a connection.
    enum ServerStream {
        Plain(TcpStream),
        Tls(Box<StreamOwned<rustls::ServerConnection, TcpStream>>),
    }

    impl Read for ServerStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self {
                ServerStream::Plain(s) => s.read(buf),
                ServerStream::Tls(s) => s.read(buf),
            }
        }
    }

    impl Write for ServerStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self {
                ServerStream::Plain(s) => s.write(buf),
                ServerStream::Tls(s) => s.write(buf),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            match self {
                ServerStream::Plain(s) => s.flush(),
                ServerStream::Tls(s) => s.flush(),
            }
        }
    }

    fn fake(replies: Vec<&'static str>) -> Fake {
        fake_with(replies, None)
    }

    /// A [`Fake`] speaking TLS with `tls` when given.
    fn fake_with(replies: Vec<&'static str>, tls: Option<Arc<rustls::ServerConfig>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let (c, res, r) = (
            Arc::clone(&connections),
            Arc::clone(&resumed),
            Arc::clone(&requests),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let conn = conn.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let mut conn = match &tls {
                    Some(config) => ServerStream::Tls(Box::new(StreamOwned::new(
                        rustls::ServerConnection::new(Arc::clone(config)).unwrap(),
                        conn,
                    ))),
                    None => ServerStream::Plain(conn),
                };
                let (r, res, replies) = (Arc::clone(&r), Arc::clone(&res), Arc::clone(&replies));
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut first = true;
                    loop {
                        let Ok(head) = read_request_head(&mut conn, &mut buf) else {
                            return;
                        };
                        if let (ServerStream::Tls(s), true) = (&conn, first)
                            && s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
                        {
                            res.fetch_add(1, Ordering::SeqCst);
                        }
                        first = false;
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
                        conn.flush().unwrap();
                        let delimited =
                            reply.contains("Content-Length") || reply.contains("chunked");
                        if close {
                            return;
                        }
                        if !delimited || reply.contains("connection: close") {
                            // Over TLS, the end of the body is a close_notify.
                            if let ServerStream::Tls(s) = &mut conn {
                                s.conn.send_close_notify();
                                let _ = s.flush();
                            }
                            return;
                        }
                    }
                });
            }
        });
        Fake {
            addr,
            connections,
            resumed,
            requests,
        }
    }

    /// A CA made now, and a server configuration with a certificate for
    /// 127.0.0.1 signed by it; also the CA's certificate.
    fn test_tls() -> (Arc<rustls::ServerConfig>, Vec<u8>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        static CAS: AtomicUsize = AtomicUsize::new(0);
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        let name = format!("direct test CA {}", CAS.fetch_add(1, Ordering::SeqCst));
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        (Arc::new(config), ca_cert.der().to_vec())
    }

    /// A client configuration trusting `ca` (DER).
    fn client_tls(ca: &[u8]) -> Arc<ClientConfig> {
        tls::rustls_config(&[ureq::tls::Certificate::from_der(ca).to_owned()]).unwrap()
    }

    /// A client configuration trusting nothing the tests serve.
    fn no_tls() -> Arc<ClientConfig> {
        tls::rustls_config(&[]).unwrap()
    }

    fn read_request_head(conn: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<String> {
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

    fn request<'b>(addr: &str, body: &'b [u8]) -> http::Request<Body<'b>> {
        request_over("http", addr, body)
    }

    fn request_over<'b>(scheme: &str, addr: &str, body: &'b [u8]) -> http::Request<Body<'b>> {
        http::Request::builder()
            .method("PUT")
            .uri(format!(
                "{scheme}://{addr}/bucket/key?partNumber=1&uploadId=u"
            ))
            .header("host", addr)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(Body::Memory(body))
            .unwrap()
    }

    fn put(addr: &str, body: &[u8]) -> Result<(u16, String, Vec<u8>), ureq::Error> {
        put_over("http", &no_tls(), this_thread(), addr, body)
    }

    thread_local! {
        /// The kept-alive connections of this test's thread.
        static SLOT: &'static Slot = Box::leak(Box::default());
    }

    /// The slot of this test's thread (as a client's shared one).
    fn this_thread() -> &'static Slot {
        SLOT.with(|s| *s)
    }

    /// Limits with this idle timeout (and a 5 s connect timeout).
    fn limits(idle: Duration) -> Limits {
        Limits {
            connect: Duration::from_secs(5),
            idle,
            ..Limits::default()
        }
    }

    /// A route straight to the server, with no stop.
    fn route<'a>(limits: &'a Limits, tls: &'a Arc<ClientConfig>, slot: &'a Slot) -> Route<'a> {
        Route {
            limits,
            small_body: limits.reply,
            proxy: None,
            tls,
            slot,
            stop: None,
        }
    }

    /// Sends an UploadPart over `scheme`, on the connection kept in `slot`
    /// (else this thread's).
    fn put_over(
        scheme: &str,
        tls: &Arc<ClientConfig>,
        slot: &Slot,
        addr: &str,
        body: &[u8],
    ) -> Result<(u16, String, Vec<u8>), ureq::Error> {
        let limits = limits(Duration::from_secs(5));
        let mut response = send(
            &request_over(scheme, addr, body),
            &route(&limits, tls, slot),
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
        let (limits, tls) = (limits(Duration::from_millis(200)), no_tls());
        let err = send(
            &request(&addr, b"small"),
            &route(&limits, &tls, this_thread()),
        )
        .unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::TimedOut, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn over_tls_sends_from_memory_keeps_the_connection_and_resumes_sessions() {
        let (server, ca) = test_tls();
        let f = fake_with(
            vec![
                "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 0\r\n\r\n",
                "CLOSE HTTP/1.1 200 OK\r\nETag: \"b\"\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nETag: \"c\"\r\nContent-Length: 0\r\n\r\n",
            ],
            Some(server),
        );
        let client = client_tls(&ca);
        let slot = Slot::default();
        // Not a multiple of TLS_CHUNK, nor of the record size.
        let body: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        let put = |b: &[u8]| put_over("https", &client, &slot, &f.addr, b).unwrap();
        assert_eq!(put(&body), (200, "\"a\"".into(), vec![]));
        assert_eq!(put(b"second"), (200, "\"b\"".into(), vec![]));
        assert_eq!(f.connections.load(Ordering::SeqCst), 1, "kept alive");
        std::thread::sleep(Duration::from_millis(50));
        // The server closed it while idle: a new connection, which resumes
        // the first one's session (the client's one configuration).
        assert_eq!(put(&body), (200, "\"c\"".into(), vec![]));
        assert_eq!(f.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            f.resumed.load(Ordering::SeqCst),
            1,
            "the session was resumed"
        );
        let requests = f.requests.lock().unwrap();
        assert!(
            requests[0]
                .0
                .starts_with("PUT /bucket/key?partNumber=1&uploadId=u HTTP/1.1\r\n")
        );
        assert!(requests[0].1 == body && requests[2].1 == body);
        assert_eq!(requests[1].1, b"second");
    }

    #[test]
    fn over_tls_a_hostile_chunked_reply_is_an_error_not_a_panic() {
        let (server, ca) = test_tls();
        let client = client_tls(&ca);
        for reply in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            let f = fake_with(vec![reply], Some(Arc::clone(&server)));
            let err = put_over("https", &client, this_thread(), &f.addr, b"x").unwrap_err();
            assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");
        }
    }

    #[test]
    fn over_tls_an_unknown_ca_is_a_certificate_error() {
        let (server, _) = test_tls();
        let (_, other_ca) = test_tls();
        let f = fake_with(vec![], Some(server));
        let err = put_over(
            "https",
            &client_tls(&other_ca),
            this_thread(),
            &f.addr,
            b"x",
        )
        .unwrap_err();
        let mapped = tls::certificate_error("UploadPart", &f.addr, &err).expect("a TLS error");
        assert!(matches!(mapped, crate::Error::Tls { .. }), "{mapped:?}");
        assert!(mapped.to_string().contains("unknown issuer"), "{mapped}");
        assert!(f.requests.lock().unwrap().is_empty(), "nothing was sent");
    }

    /// A ranged GET of `len` bytes into a buffer: the status, whether the
    /// body went into the buffer, and the body (the buffer's bytes when it
    /// did, else the reply's).
    fn get_over(
        scheme: &str,
        tls: &Arc<ClientConfig>,
        slot: &Slot,
        addr: &str,
        len: usize,
    ) -> Result<(u16, bool, Vec<u8>), ureq::Error> {
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("{scheme}://{addr}/bucket/key"))
            .header("host", addr)
            .header("range", format!("bytes=0-{}", len - 1))
            .body(())
            .unwrap();
        let mut buf = vec![0u8; len];
        let mut into = RangeInto {
            buf: &mut buf,
            file: None,
            file_error: None,
        };
        let limits = limits(Duration::from_millis(500));
        let (mut response, filled) = get_into(&request, &route(&limits, tls, slot), &mut into)?;
        let status = response.status().as_u16();
        let body = if filled {
            assert!(response.body_mut().read_to_vec().unwrap().is_empty());
            buf
        } else {
            response.body_mut().read_to_vec().unwrap()
        };
        Ok((status, filled, body))
    }

    #[test]
    fn a_ranged_get_reads_its_body_into_the_buffer_and_keeps_the_connection() {
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 10\r\n\r\n0123456789",
            "HTTP/1.1 503 Slow Down\r\nContent-Length: 8\r\n\r\n<Error/>",
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nabcdefghij",
        ]);
        let slot = Slot::default();
        let get = || get_over("http", &no_tls(), &slot, &f.addr, 10).unwrap();
        assert_eq!(get(), (206, true, b"0123456789".to_vec()));
        // An error reply comes back in memory, as ureq would hand it over.
        assert_eq!(get(), (503, false, b"<Error/>".to_vec()));
        assert_eq!(get(), (206, true, b"abcdefghij".to_vec()));
        assert_eq!(f.connections.load(Ordering::SeqCst), 1, "kept alive");
        let requests = f.requests.lock().unwrap();
        assert!(
            requests[0].0.starts_with("GET /bucket/key HTTP/1.1\r\n"),
            "{}",
            requests[0].0
        );
        assert!(requests[0].0.contains("\r\nrange: bytes=0-9\r\n"));
        assert!(!requests[0].0.contains("content-length"));
    }

    #[test]
    fn a_ranged_get_over_tls_reads_into_the_buffer_and_keeps_the_connection() {
        let (server, ca) = test_tls();
        let body: &'static str = Box::leak("x".repeat(100_001).into_boxed_str());
        let reply: &'static str = Box::leak(
            format!("HTTP/1.1 206 Partial Content\r\nContent-Length: 100001\r\n\r\n{body}")
                .into_boxed_str(),
        );
        let f = fake_with(vec![reply, reply], Some(server));
        let client = client_tls(&ca);
        let slot = Slot::default();
        for _ in 0..2 {
            let got = get_over("https", &client, &slot, &f.addr, 100_001).unwrap();
            assert_eq!((got.0, got.1), (206, true));
            assert!(got.2 == body.as_bytes());
        }
        assert_eq!(f.connections.load(Ordering::SeqCst), 1, "kept alive");
    }

    /// A ranged GET of `len` bytes into a buffer and through to `file` at
    /// `offset`: whether the body was read into the buffer (or the error),
    /// the buffer, and the file's error when one was set.
    fn get_through(
        scheme: &str,
        tls: &Arc<ClientConfig>,
        addr: &str,
        len: usize,
        file: &File,
        offset: u64,
    ) -> (Result<bool, ureq::Error>, Vec<u8>, Option<io::Error>) {
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("{scheme}://{addr}/bucket/key"))
            .header("host", addr)
            .body(())
            .unwrap();
        let mut buf = vec![0u8; len];
        let mut into = RangeInto {
            buf: &mut buf,
            file: Some((file, offset)),
            file_error: None,
        };
        let limits = limits(Duration::from_millis(500));
        let got = get_into(&request, &route(&limits, tls, this_thread()), &mut into);
        let file_error = into.file_error.take();
        (got.map(|(_, filled)| filled), buf, file_error)
    }

    #[test]
    fn a_ranged_get_into_a_file_writes_the_body_through_at_its_offset() {
        // Several write-through batches and a short last one, in bytes
        // that differ from one batch to the next.
        let len = 3 * WRITE_THROUGH + 12_345;
        let mut x = 12345u32;
        let body: String = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (b'a' + (x >> 16) as u8 % 26) as char
            })
            .collect();
        let reply: &'static str = Box::leak(
            format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {len}\r\n\r\n{body}")
                .into_boxed_str(),
        );
        let (server, ca) = test_tls();
        for (scheme, f, tls) in [
            ("http", fake(vec![reply]), no_tls()),
            (
                "https",
                fake_with(vec![reply], Some(server)),
                client_tls(&ca),
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("range");
            let file = File::create(&path).unwrap();
            let (got, buf, file_error) = get_through(scheme, &tls, &f.addr, len, &file, 1000);
            assert!(got.unwrap(), "{scheme}: read into the buffer");
            assert!(file_error.is_none());
            assert!(buf == body.as_bytes(), "{scheme}: the buffer");
            let written = std::fs::read(&path).unwrap();
            assert_eq!(written.len(), 1000 + len, "{scheme}");
            assert!(written[..1000].iter().all(|&b| b == 0), "{scheme}");
            assert!(&written[1000..] == body.as_bytes(), "{scheme}: the file");
        }
    }

    #[test]
    fn a_failed_write_to_the_file_ends_the_get_as_the_files_error() {
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("range");
        std::fs::write(&path, b"").unwrap();
        // Opened for reading only: every write fails.
        let file = File::open(&path).unwrap();
        let (got, _, file_error) = get_through("http", &no_tls(), &f.addr, 10, &file, 0);
        assert!(got.is_err());
        assert!(file_error.is_some(), "the file's error is kept");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn hostile_replies_to_a_ranged_get_are_errors_or_handed_back_never_a_panic() {
        // Short body, then the close: an UnexpectedEof naming how much came.
        let f = fake(vec![
            "CLOSE HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n01234",
        ]);
        let err = get_over("http", &no_tls(), this_thread(), &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::UnexpectedEof, "{err:?}");
        assert!(err.to_string().contains("after 5 of 10 bytes"), "{err}");

        // Garbage instead of a head.
        let f = fake(vec!["CLOSE \x00\x01garbage\r\n\r\n"]);
        let err = get_over("http", &no_tls(), this_thread(), &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");

        // Another length (oversize): handed back unread, the connection closed.
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 99999999999\r\n\r\n0123456789",
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789",
        ]);
        let slot = Slot::default();
        let got = get_over("http", &no_tls(), &slot, &f.addr, 10).unwrap();
        assert_eq!(got, (206, false, vec![]));
        assert!(slot.lock().is_empty(), "not kept");
        get_over("http", &no_tls(), &slot, &f.addr, 10).unwrap();
        assert_eq!(f.connections.load(Ordering::SeqCst), 2);

        // The right length, then more bytes: the body, the connection not kept.
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789EXTRA",
        ]);
        let slot = Slot::default();
        let got = get_over("http", &no_tls(), &slot, &f.addr, 10).unwrap();
        assert_eq!(got, (206, true, b"0123456789".to_vec()));
        assert!(slot.lock().is_empty(), "out of step: not kept");

        // Chunked, or up to the close: in memory, as before (at most len + 1).
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
            "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n",
            "HTTP/1.1 206 Partial Content\r\n\r\n0123456789",
        ]);
        let got = get_over("http", &no_tls(), this_thread(), &f.addr, 10).unwrap();
        assert_eq!(got, (206, false, b"0123456789".to_vec()));
        // A chunk longer than the range: refused before it is read.
        let err = get_over("http", &no_tls(), this_thread(), &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");
        let got = get_over("http", &no_tls(), this_thread(), &f.addr, 10).unwrap();
        assert_eq!(got, (206, false, b"0123456789".to_vec()));

        // A server that stops mid-body: a timeout, not a hang.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _hold = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            read_request_head(&mut conn, &mut buf).unwrap();
            conn.write_all(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n012")
                .unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let started = Instant::now();
        let err = get_over("http", &no_tls(), this_thread(), &addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::TimedOut, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
