//! A hostile S3 server for adversarial tests ([`HostileServer`]): real
//! HTTP/1.1 over `std::net` on 127.0.0.1, one thread per connection, each
//! request answered by a script of [`Step`]s that a test's handler returns.
//!
//! The server parses what the client sends (request head, then the body if it
//! has a `Content-Length` or is chunked) and records every request; what it
//! sends back is whatever the script says, byte for byte: a valid reply, a
//! truncated one, one trickled a byte at a time, nothing at all (`Hang`), a
//! close in the middle. It checks no signature and stores nothing.
//!
//! `Expect: 100-continue`: by default the server answers `100 Continue`
//! itself, reads the body and then calls the handler (the request's
//! `continue_sent` says so). Started with [`HostileServer::start_withholding_continue`]
//! it calls the handler with the head alone (`body` empty), writes no
//! `100 Continue` unless the script does ([`Step::Write`]), and closes the
//! connection after the script, since the body may follow unread.
//!
//! After a script, the connection is kept for the next request unless the
//! script closed it or the request asked for `Connection: close`.
//! Dropping the server stops everything promptly: every `Sleep`, `Trickle`
//! and `Hang` polls for the shutdown, sockets are shut down, threads joined.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Largest request head the server reads before answering 431 and closing.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the server keeps (a longer one is an error: 413).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How often blocked reads, sleeps and hangs look for the shutdown.
const POLL: Duration = Duration::from_millis(20);

type Handler = dyn Fn(&HostileRequest) -> Reply + Send + Sync + 'static;

/// One request as the server read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostileRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The request target as sent: path and query (`/b/k?uploads`).
    pub target: String,
    /// Every header, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty when there is none or it was not read).
    pub body: Vec<u8>,
    /// The request had `Expect: 100-continue` and the server answered
    /// `100 Continue` before reading the body.
    pub continue_sent: bool,
}

impl HostileRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target, still percent-encoded (`/b/k`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The decoded value of query parameter `name` (`Some("")` for a bare
    /// `?uploads`), `None` when absent.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// Whether the query has parameter `name` (with or without a value).
    pub fn has_query(&self, name: &str) -> bool {
        self.query(name).is_some()
    }
}

/// One thing the server does while answering.
#[derive(Clone, Debug)]
pub enum Step {
    /// Writes these bytes at once.
    Write(Vec<u8>),
    /// Writes these bytes one at a time, waiting `every` before each.
    Trickle {
        /// What to write.
        bytes: Vec<u8>,
        /// The pause before each byte.
        every: Duration,
    },
    /// Waits (reading nothing).
    Sleep(Duration),
    /// Closes the connection (the script ends there).
    Close,
    /// Keeps the socket open and reads nothing until the server is dropped
    /// or the client goes away (the script ends there).
    Hang,
}

/// The script answering one request.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// What to do, in order.
    pub steps: Vec<Step>,
}

impl Reply {
    /// `200 OK` with an XML body and its `Content-Length`.
    pub fn ok_xml(body: &str) -> Reply {
        Reply::status(200, &[("Content-Type", "application/xml")], body.as_bytes())
    }

    /// A whole reply: status line, `headers`, then `body`. A
    /// `Content-Length` of the body is added unless `headers` has a
    /// `Content-Length` or a `Transfer-Encoding` (for a HEAD reply give the
    /// object's length and an empty body).
    pub fn status(code: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        Reply {
            steps: vec![Step::Write(response_bytes(code, headers, body))],
        }
    }

    /// An S3 error document (`<Error><Code>…`) with status `code`.
    pub fn s3_error(code: u16, s3_code: &str, message: &str) -> Reply {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3_code}</Code>\
             <Message>{message}</Message></Error>"
        );
        Reply::status(
            code,
            &[("Content-Type", "application/xml")],
            body.as_bytes(),
        )
    }

    /// A script of nothing but `step`.
    pub fn step(step: Step) -> Reply {
        Reply { steps: vec![step] }
    }

    /// This script, then `step`.
    pub fn then(mut self, step: Step) -> Reply {
        self.steps.push(step);
        self
    }
}

/// A reply's bytes: status line, headers, `Content-Length` (unless given or
/// chunked), blank line, body.
pub fn response_bytes(code: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {code} {}\r\n", reason(code)).into_bytes();
    let mut has_length = false;
    for (k, v) in headers {
        has_length |=
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding");
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !has_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

struct Shared {
    handler: Box<Handler>,
    auto_continue: bool,
    shutdown: AtomicBool,
    requests: Mutex<Vec<HostileRequest>>,
    conns: Mutex<Vec<(Arc<TcpStream>, JoinHandle<()>)>>,
    open: AtomicUsize,
    accepted: AtomicUsize,
}

/// The hostile server, on 127.0.0.1 with an ephemeral port. Dropping it
/// stops it and ends all its threads.
pub struct HostileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HostileServer {
    /// Starts on 127.0.0.1:0; `handler` is called for each request (after
    /// its head and body are read) and returns what to do.
    pub fn start(handler: impl Fn(&HostileRequest) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_inner(Box::new(handler), true)
    }

    /// As [`HostileServer::start`], but a request with `Expect:
    /// 100-continue` is handed to `handler` before its body is read and no
    /// `100 Continue` is sent unless the script writes one; the connection
    /// is closed after that request's script.
    pub fn start_withholding_continue(
        handler: impl Fn(&HostileRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_inner(Box::new(handler), false)
    }

    fn start_inner(handler: Box<Handler>, auto_continue: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hostile server");
        let addr = listener.local_addr().expect("hostile server local_addr");
        let shared = Arc::new(Shared {
            handler,
            auto_continue,
            shutdown: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("hostile-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn hostile acceptor");
        HostileServer {
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

    /// Every request seen, in order of arrival.
    pub fn requests(&self) -> Vec<HostileRequest> {
        self.shared.requests.lock().clone()
    }

    /// How many requests were seen.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().len()
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections not yet closed (by either side; a client's close is seen
    /// when the server next reads, within a poll interval).
    pub fn connections_open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for every connection to be closed; whether they
    /// all were.
    pub fn wait_all_closed(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while self.connections_open() > 0 {
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(POLL);
        }
        true
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let conns: Vec<_> = self.shared.conns.lock().drain(..).collect();
        for (stream, _) in &conns {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, handle) in conns {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(POLL));
        // A write blocked on a client that reads nothing ends at shutdown
        // (the socket is shut down) or after this long.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let stream = Arc::new(stream);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.open.fetch_add(1, Ordering::SeqCst);
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stream));
        let spawned = thread::Builder::new()
            .name("hostile-conn".into())
            .spawn(move || {
                let _ = serve(&st, &sh);
                let _ = st.shutdown(Shutdown::Both);
                sh.open.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(handle) => {
                let mut conns = shared.conns.lock();
                // Forget finished connections so a long test does not grow the list.
                let (done, live): (Vec<_>, Vec<_>) =
                    conns.drain(..).partition(|(_, h)| h.is_finished());
                *conns = live;
                conns.push((stream, handle));
                drop(conns);
                for (_, h) in done {
                    let _ = h.join();
                }
            }
            Err(_) => {
                shared.open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Why a connection ends.
enum End {
    /// The script or the request said so, or the client went away.
    Closed,
    /// The server is being dropped.
    Shutdown,
}

/// Reads from the client with a buffer, polling for the shutdown.
struct Conn<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
    buf: Vec<u8>,
}

impl Conn<'_> {
    fn stopping(&self) -> bool {
        self.shared.shutdown.load(Ordering::SeqCst)
    }

    /// Reads more into `buf`; `Err` at end of stream, error or shutdown.
    fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stopping() {
                return Err(End::Shutdown);
            }
            match (&*self.stream).read(&mut chunk) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// Takes exactly `n` bytes.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, End> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one line ending in CRLF (without it).
    fn line(&mut self) -> Result<Vec<u8>, End> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(End::Closed);
            }
            self.fill()?;
        }
    }

    fn write(&self, bytes: &[u8]) -> Result<(), End> {
        if self.stopping() {
            return Err(End::Shutdown);
        }
        (&*self.stream)
            .write_all(bytes)
            .and_then(|()| (&*self.stream).flush())
            .map_err(|_| End::Closed)
    }

    /// Sleeps `d`, looking for the shutdown.
    fn sleep(&self, d: Duration) -> Result<(), End> {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return Err(End::Shutdown);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            thread::sleep(POLL.min(end - now));
        }
    }

    /// Waits without reading until the shutdown (or the client closes:
    /// peeked without consuming anything).
    fn hang(&self) -> End {
        let mut probe = [0u8; 1];
        loop {
            if self.stopping() {
                return End::Shutdown;
            }
            match self.stream.peek(&mut probe) {
                Ok(0) => return End::Closed,
                // Data waiting: leave it unread, just wait.
                Ok(_) => thread::sleep(POLL),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return End::Closed,
            }
        }
    }
}

/// Serves requests on one connection until it ends.
fn serve(stream: &TcpStream, shared: &Shared) -> End {
    let mut conn = Conn {
        stream,
        shared,
        buf: Vec::new(),
    };
    loop {
        match serve_one(&mut conn) {
            Ok(true) => {}
            Ok(false) => return End::Closed,
            Err(end) => return end,
        }
    }
}

/// Reads one request, runs its script; whether the connection goes on.
fn serve_one(conn: &mut Conn<'_>) -> Result<bool, End> {
    // The head.
    let head_end = loop {
        if let Some(i) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if conn.buf.len() > MAX_HEAD {
            let _ = conn.write(&response_bytes(431, &[("Connection", "close")], b""));
            return Ok(false);
        }
        conn.fill()?;
    };
    let head: Vec<u8> = conn.buf.drain(..head_end).collect();
    let mut header_slots = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut header_slots);
    if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
        let _ = conn.write(&response_bytes(400, &[("Connection", "close")], b""));
        return Ok(false);
    }
    let mut req = HostileRequest {
        method: parsed.method.unwrap_or("").to_owned(),
        target: parsed.path.unwrap_or("").to_owned(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        continue_sent: false,
    };
    let close_asked = req
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let expects = req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let length = match req.header("content-length") {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                let _ = conn.write(&response_bytes(400, &[("Connection", "close")], b""));
                return Ok(false);
            }
        },
        None => None,
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let has_body = chunked || length.is_some_and(|n| n > 0);
    let mut body_unread = false;
    if has_body && expects && !conn.shared.auto_continue {
        body_unread = true;
    } else if has_body {
        if length.is_some_and(|n| n > MAX_BODY) {
            let _ = conn.write(&response_bytes(413, &[("Connection", "close")], b""));
            return Ok(false);
        }
        if expects {
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            req.continue_sent = true;
        }
        req.body = if chunked {
            read_chunked(conn)?
        } else {
            conn.take(length.unwrap_or(0))?
        };
    }
    conn.shared.requests.lock().push(req.clone());
    let reply = (conn.shared.handler)(&req);
    for step in reply.steps {
        match step {
            Step::Write(bytes) => conn.write(&bytes)?,
            Step::Trickle { bytes, every } => {
                for b in bytes {
                    conn.sleep(every)?;
                    conn.write(&[b])?;
                }
            }
            Step::Sleep(d) => conn.sleep(d)?,
            Step::Close => return Ok(false),
            Step::Hang => return Err(conn.hang()),
        }
    }
    Ok(!close_asked && !body_unread)
}

/// Reads a chunked body (trailers discarded).
fn read_chunked(conn: &mut Conn<'_>) -> Result<Vec<u8>, End> {
    let mut body = Vec::new();
    loop {
        let line = conn.line()?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| End::Closed)?;
        if size == 0 {
            // Trailers up to the blank line.
            while !conn.line()?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(End::Closed);
        }
        body.extend(conn.take(size)?);
        if !conn.take(2)?.eq(b"\r\n") {
            return Err(End::Closed);
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as in form encoding; S3 clients
/// send `%20`, so this changes nothing for them).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
