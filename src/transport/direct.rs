//! Sends a request with a large body over HTTP/1.1, plain or TLS, straight
//! from the caller's memory.
//!
//! ureq copies a request body through its 128 KiB output buffer and writes
//! it in 128 KiB `send`s. For a part that is a second pass over every byte
//! and 128 system calls per 16 MiB, about 0.05 CPU s per GiB on loopback
//! (docs/PERFORMANCE.md). Here, over plain HTTP, the head goes out in one
//! `send` and the whole body in one more, straight from the slab. Over TLS
//! (rustls on a `TcpStream`) the body is encrypted from the slab in
//! [`TLS_CHUNK`] pieces, each written out as a run of 16 KiB records in one
//! `writev`: rustls's copy into its records, encrypting, is the one pass
//! over the bytes. The (small) reply is read back into memory and handed
//! over as an ordinary `http::Response<ureq::Body>`, so everything after the
//! send (status check, ETag, error parsing, retries) is unchanged.
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
//! `Proxy-Authorization`. Everything else goes through ureq. A part
//! connection of the client's pool keeps its own keep-alive connection (so
//! it serves transfer after transfer); a request sent on the client's
//! shared connection uses one kept per calling thread. Every TLS connection
//! of a client shares the client's one `rustls::ClientConfig`, so a new
//! connection resumes a session of an earlier one (a shorter handshake).
//!
//! Over 600 lines only with its unit tests, which script hostile and broken
//! replies against the private reply parser.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::http;

use super::pace::{Limits, Rate, deadline_error, remaining};
use super::proxy::Proxy;
use super::stop::{Stop, stopped};
use super::{sendfile, tls};

/// Bodies at least this long are sent directly; smaller ones through ureq.
pub(crate) const MIN_BODY: usize = 1 << 20;

/// How much of a body is encrypted into TLS records before they are written
/// out (16 records of 16 KiB): large enough that the system calls do not
/// count, small enough that the records are still in cache when sent.
const TLS_CHUNK: usize = 256 << 10;

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

/// The socket of a connection: plain, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Stream {
    /// The socket underneath.
    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Writes `data` (the request head, or its body) straight from memory,
    /// at no less than `rate`'s minimum: the socket's send timeout is cut to
    /// [`Rate::poll`] meanwhile, so that the rate is looked at while a send
    /// blocks.
    fn send(&mut self, data: &[u8], rate: &mut Rate) -> io::Result<()> {
        self.sock().set_write_timeout(Some(rate.poll()))?;
        let sent = self.send_paced(data, rate);
        self.sock().set_write_timeout(Some(rate.idle()))?;
        sent
    }

    fn send_paced(&mut self, data: &[u8], rate: &mut Rate) -> io::Result<()> {
        match self {
            // std sends with MSG_NOSIGNAL, so a connection reset mid-body is
            // an error, never a SIGPIPE in a host program that has not
            // ignored it (`writev` cannot take that flag).
            Stream::Plain(s) => {
                let mut done = 0;
                while done < data.len() {
                    match s.write(&data[done..]) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            done += n;
                            rate.moved(n, "the request body")?;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            rate.stalled("the request body")?
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Stream::Tls(s) => {
                for chunk in data.chunks(TLS_CHUNK) {
                    // Encrypts the whole chunk into records (no buffer limit:
                    // see `connect`), then writes them out.
                    s.conn.writer().write_all(chunk)?;
                    while s.conn.wants_write() {
                        match s.conn.write_tls(&mut s.sock) {
                            Ok(0) => return Err(ErrorKind::WriteZero.into()),
                            Ok(n) => rate.moved(n, "the request body")?,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                rate.stalled("the request body")?
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends `len` bytes of `file` from `offset`: with `sendfile(2)` over
    /// plain HTTP; over TLS read in [`TLS_CHUNK`] pieces into one small
    /// buffer, each encrypted and sent while it is still in cache. No slab:
    /// the part's bytes are not first copied into one and read back out of
    /// it to be encrypted. A file that ends early is an `UnexpectedEof`
    /// error naming where.
    fn send_file(
        &mut self,
        file: &File,
        offset: u64,
        len: usize,
        rate: &mut Rate,
    ) -> io::Result<()> {
        if let Stream::Plain(s) = self {
            s.set_write_timeout(Some(rate.poll()))?;
            let sent = sendfile::send(s, file, offset, len, &mut |n| match n {
                0 => rate.stalled("the request body"),
                n => rate.moved(n, "the request body"),
            });
            s.set_write_timeout(Some(rate.idle()))?;
            return sent;
        }
        let mut buf = vec![0u8; TLS_CHUNK.min(len)];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(buf.len());
            let at = offset + done as u64;
            file.read_exact_at(&mut buf[..want], at).map_err(|e| {
                if e.kind() != ErrorKind::UnexpectedEof {
                    return e;
                }
                io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "the file ends before byte {}, before the {len} bytes from byte \
                         {offset} were sent (it was truncated)",
                        at + want as u64
                    ),
                )
            })?;
            self.send(&buf[..want], rate)?;
            done += want;
        }
        Ok(())
    }

    /// Whether a kept-alive connection can take another request: nothing
    /// to read (over TLS: nothing but a session ticket or the like, which
    /// is taken in) and not closed by the server.
    fn is_open(&mut self) -> bool {
        if self.sock().set_nonblocking(true).is_err() {
            return false;
        }
        let open = match self {
            Stream::Plain(s) => {
                let mut byte = [0u8; 1];
                matches!(s.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => loop {
                match s.conn.read_tls(&mut s.sock) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                    Ok(0) | Err(_) => break false,
                    Ok(_) => {
                        if s.conn.process_new_packets().is_err() {
                            break false;
                        }
                        // Application data out of step, or the server's
                        // close_notify, or a close without one: not open.
                        match s.conn.reader().read(&mut [0u8; 1]) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            _ => break false,
                        }
                    }
                }
            },
        };
        self.sock().set_nonblocking(false).is_ok() && open
    }
}

/// Reads from a [`Stream`] that must deliver what is read (a reply head, a
/// small reply body) within `limit` of `since`: the socket's read timeout
/// is cut to what is left before each read, and put back to the idle
/// timeout when this is dropped (the connection may be kept).
struct Timed<'a> {
    stream: &'a mut Stream,
    since: Instant,
    limit: Duration,
    idle: Duration,
    what: &'static str,
}

impl<'a> Timed<'a> {
    fn new(stream: &'a mut Stream, limit: Duration, idle: Duration, what: &'static str) -> Self {
        Timed {
            stream,
            since: Instant::now(),
            limit,
            idle,
            what,
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = remaining(self.since, self.limit, self.what)?;
        let wait = left.min(self.idle);
        self.stream.sock().set_read_timeout(Some(wait))?;
        match self.stream.read(buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if wait < self.idle {
                    Err(deadline_error(self.what, self.limit))
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        let _ = self.stream.sock().set_read_timeout(Some(self.idle));
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
    /// The kept-alive connection of a part connection of the client's
    /// pool; `None`: this thread's.
    pub slot: Option<&'a parking_lot::Mutex<Option<Conn>>>,
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

thread_local! {
    /// This thread's keep-alive connection.
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
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
    let (proxy, slot) = (route.proxy, route.slot);
    if route.stop.is_some_and(Stop::is_set) {
        return Err(ureq::Error::Io(stopped()));
    }
    let https = uri.scheme_str() == Some("https");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let key = match proxy {
        Some(p) => format!("{} via {}", origin(uri), p.authority),
        None => origin(uri),
    };
    let taken = match slot {
        Some(slot) => slot.lock().take(),
        None => CONN.with(|c| c.borrow_mut().take()),
    };
    let cached = taken
        .filter(|c| c.key == key && c.idle_since.elapsed() < MAX_IDLE)
        .and_then(|mut c| c.stream.is_open().then_some(c));
    let reused = cached.is_some();
    let result = match cached {
        Some(c) => Ok(c),
        None => connect(authority, https, proxy, key, route.limits, route.tls),
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
            conn.idle_since = Instant::now();
            match slot {
                Some(slot) => *slot.lock() = Some(conn),
                None => CONN.with(|c| *c.borrow_mut() = Some(conn)),
            }
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

/// `authority` with its port, `default_port` when it names none.
fn with_port(authority: &str, default_port: u16) -> String {
    if tls::host_name(authority) == authority {
        format!("{authority}:{default_port}")
    } else {
        authority.to_string()
    }
}

/// Connects to the server at `authority` (through `proxy` when there is
/// one), over TLS when `https`, the handshake done.
fn connect(
    authority: &str,
    https: bool,
    proxy: Option<&Proxy>,
    key: String,
    limits: &Limits,
    config: &Arc<ClientConfig>,
) -> io::Result<Conn> {
    let server = with_port(authority, if https { 443 } else { 80 });
    let mut sock = match proxy {
        Some(p) => tcp(&with_port(&p.authority, 80), limits.connect, limits.idle)?,
        None => tcp(&server, limits.connect, limits.idle)?,
    };
    let stream = if https {
        if let Some(p) = proxy {
            tunnel(&mut sock, &server, p)?;
        }
        let host = tls::host_name(authority).trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                ErrorKind::InvalidInput,
                format!("TLS server name {host:?}: {e}"),
            )
        })?;
        let mut conn = ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        // `Stream::send` encrypts a whole TLS_CHUNK before writing it out.
        conn.set_buffer_limit(None);
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        log::trace!(
            "direct sender: TLS connection to {server}: {:?} handshake, {:?}",
            conn.handshake_kind(),
            conn.negotiated_cipher_suite().map(|s| s.suite())
        );
        Stream::Tls(Box::new(StreamOwned::new(conn, sock)))
    } else {
        Stream::Plain(sock)
    };
    Ok(Conn {
        key,
        stream,
        idle_since: Instant::now(),
    })
}

/// A TCP connection to `authority` (`host:port`).
fn tcp(
    authority: &str,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::NotFound, "the host has no address");
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(idle_timeout))?;
                stream.set_write_timeout(Some(idle_timeout))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens a `CONNECT` tunnel to `server` (`host:port`) through the proxy
/// `sock` is connected to.
fn tunnel(sock: &mut TcpStream, server: &str, proxy: &Proxy) -> io::Result<()> {
    let mut head = format!("CONNECT {server} HTTP/1.1\r\nhost: {server}\r\n");
    if let Some(auth) = &proxy.authorization {
        head.push_str("proxy-authorization: ");
        head.push_str(auth);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes())?;
    let mut buf = Vec::new();
    let reply = loop {
        let reply = read_head(sock, &mut buf)?;
        if !(100..200).contains(&reply.status) {
            break reply;
        }
    };
    if !(200..300).contains(&reply.status) {
        return Err(io::Error::other(format!(
            "the proxy refused CONNECT {server}: status {}",
            reply.status
        )));
    }
    if !buf.is_empty() {
        return Err(invalid(
            "the proxy sent bytes into the tunnel before the handshake",
        ));
    }
    Ok(())
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

/// The HTTP/1.1 head of `request`, with a `content-length` when it has a
/// body. Through a proxy over plain HTTP, the request target is the
/// absolute URL, with the proxy's `Proxy-Authorization` (in a tunnel, the
/// path as usual).
fn request_head<B>(
    request: &http::Request<B>,
    proxy: Option<&Proxy>,
    content_length: Option<usize>,
) -> Vec<u8> {
    let uri = request.uri().to_string();
    let absolute = proxy.is_some() && request.uri().scheme_str() != Some("https");
    let target = if absolute {
        uri.as_str()
    } else {
        request.uri().path_and_query().map_or("/", |p| p.as_str())
    };
    let mut head = Vec::with_capacity(1024);
    for part in [request.method().as_str(), " ", target, " HTTP/1.1\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    if let Some(auth) = proxy
        .and_then(|p| p.authorization.as_deref())
        .filter(|_| absolute)
    {
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
        concat!("user-agent: s3pump/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
    );
    if let Some(len) = content_length {
        head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
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

    /// Whether the server lets the connection carry another request.
    fn keep_alive(&self) -> bool {
        !self.http_1_0
            && !self
                .get("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// The head of the final reply (past any 1xx), into `buf` with whatever
/// was read past it.
fn read_final_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        let head = read_head(stream, buf)?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
}

/// Reads until `buf` starts with a complete reply head; parses and removes it.
fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Head> {
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

/// Reads the body of the reply `head` into memory (`buf` holds what was
/// read past the head; at most `limit` bytes) and says whether the
/// connection can be kept.
fn reply_in_memory(
    stream: &mut impl Read,
    head: Head,
    buf: Vec<u8>,
    head_request: bool,
    limit: u64,
) -> io::Result<(http::Response<ureq::Body>, bool)> {
    let mut keep_alive = head.keep_alive();
    let body = if head_request || head.status == 204 || head.status == 304 {
        keep_alive &= buf.is_empty();
        Vec::new()
    } else if head.chunked() {
        let (body, clean) = read_chunked(stream, buf, limit)?;
        keep_alive &= clean;
        body
    } else if let Some(len) = head.get("content-length") {
        let len: u64 = len
            .trim()
            .parse()
            .map_err(|_| invalid("bad Content-Length"))?;
        if len > limit {
            return Err(invalid("reply body too large"));
        }
        let (body, clean) = read_exact_body(stream, buf, len as usize)?;
        keep_alive &= clean;
        body
    } else {
        // Delimited by the end of the connection.
        keep_alive = false;
        let mut body = buf;
        stream.by_ref().take(limit).read_to_end(&mut body)?;
        body
    };
    Ok((response(&head, body)?, keep_alive))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.to_string())
}

/// Appends what one `read` returns to `buf`; returns its length.
fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
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
    stream: &mut impl Read,
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
fn read_chunked(
    stream: &mut impl Read,
    mut buf: Vec<u8>,
    limit: u64,
) -> io::Result<(Vec<u8>, bool)> {
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
        if size as u64 > limit.saturating_sub(body.len() as u64) {
            return Err(invalid("reply body too large"));
        }
        fill(&mut buf, pos, size + 2)?;
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
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

/// The reply `head` with `body`, as ureq would hand it over.
fn response(head: &Head, body: Vec<u8>) -> io::Result<http::Response<ureq::Body>> {
    let mut builder = http::Response::builder().status(head.status);
    for (name, value) in &head.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    builder
        .body(ureq::Body::builder().data(body))
        .map_err(|e| invalid(&format!("bad reply: {e}")))
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
        put_over("http", &no_tls(), None, addr, body)
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
    fn route<'a>(
        limits: &'a Limits,
        tls: &'a Arc<ClientConfig>,
        slot: Option<&'a parking_lot::Mutex<Option<Conn>>>,
    ) -> Route<'a> {
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
        slot: Option<&parking_lot::Mutex<Option<Conn>>>,
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
        let err = send(&request(&addr, b"small"), &route(&limits, &tls, None)).unwrap_err();
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
        let slot = parking_lot::Mutex::new(None);
        // Not a multiple of TLS_CHUNK, nor of the record size.
        let body: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        let put = |b: &[u8]| put_over("https", &client, Some(&slot), &f.addr, b).unwrap();
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
            let err = put_over("https", &client, None, &f.addr, b"x").unwrap_err();
            assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");
        }
    }

    #[test]
    fn over_tls_an_unknown_ca_is_a_certificate_error() {
        let (server, _) = test_tls();
        let (_, other_ca) = test_tls();
        let f = fake_with(vec![], Some(server));
        let err = put_over("https", &client_tls(&other_ca), None, &f.addr, b"x").unwrap_err();
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
        slot: Option<&parking_lot::Mutex<Option<Conn>>>,
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
        let slot = parking_lot::Mutex::new(None);
        let get = || get_over("http", &no_tls(), Some(&slot), &f.addr, 10).unwrap();
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
        let slot = parking_lot::Mutex::new(None);
        for _ in 0..2 {
            let got = get_over("https", &client, Some(&slot), &f.addr, 100_001).unwrap();
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
        let got = get_into(&request, &route(&limits, tls, None), &mut into);
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
        let err = get_over("http", &no_tls(), None, &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::UnexpectedEof, "{err:?}");
        assert!(err.to_string().contains("after 5 of 10 bytes"), "{err}");

        // Garbage instead of a head.
        let f = fake(vec!["CLOSE \x00\x01garbage\r\n\r\n"]);
        let err = get_over("http", &no_tls(), None, &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");

        // Another length (oversize): handed back unread, the connection closed.
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 99999999999\r\n\r\n0123456789",
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789",
        ]);
        let slot = parking_lot::Mutex::new(None);
        let got = get_over("http", &no_tls(), Some(&slot), &f.addr, 10).unwrap();
        assert_eq!(got, (206, false, vec![]));
        assert!(slot.lock().is_none(), "not kept");
        get_over("http", &no_tls(), Some(&slot), &f.addr, 10).unwrap();
        assert_eq!(f.connections.load(Ordering::SeqCst), 2);

        // The right length, then more bytes: the body, the connection not kept.
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789EXTRA",
        ]);
        let slot = parking_lot::Mutex::new(None);
        let got = get_over("http", &no_tls(), Some(&slot), &f.addr, 10).unwrap();
        assert_eq!(got, (206, true, b"0123456789".to_vec()));
        assert!(slot.lock().is_none(), "out of step: not kept");

        // Chunked, or up to the close: in memory, as before (at most len + 1).
        let f = fake(vec![
            "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
            "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n",
            "HTTP/1.1 206 Partial Content\r\n\r\n0123456789",
        ]);
        let got = get_over("http", &no_tls(), None, &f.addr, 10).unwrap();
        assert_eq!(got, (206, false, b"0123456789".to_vec()));
        // A chunk longer than the range: refused before it is read.
        let err = get_over("http", &no_tls(), None, &f.addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::InvalidData, "{err:?}");
        let got = get_over("http", &no_tls(), None, &f.addr, 10).unwrap();
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
        let err = get_over("http", &no_tls(), None, &addr, 10).unwrap_err();
        assert_eq!(io_kind(&err), ErrorKind::TimedOut, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
