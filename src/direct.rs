//! Sends a request with a large body over plain HTTP/1.1 straight from the
//! caller's memory.
//!
//! ureq copies a request body through its 128 KiB output buffer and writes
//! it in 128 KiB `send`s. For a part that is a second pass over every byte
//! and 128 system calls per 16 MiB, about 0.05 CPU s per GiB on loopback
//! (docs/PERFORMANCE.md). Here the head and the whole body go out in one
//! vectored write from the slab, and the (small) reply is read back into
//! memory and handed over as an ordinary `http::Response<ureq::Body>`, so
//! everything after the send (status check, ETag, error parsing, retries)
//! is unchanged.
//!
//! Used only for `http://` endpoints without a proxy; TLS and everything
//! else go through ureq. Each thread keeps one keep-alive connection (the
//! pipeline's workers are threads that end with the upload, so their
//! connections close with them).

use std::cell::RefCell;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ureq::http;

/// Bodies at least this long are sent directly; smaller ones through ureq.
pub(crate) const MIN_BODY: usize = 1 << 20;

/// Largest reply head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest reply body read into memory (error documents are small).
const MAX_BODY: u64 = 16 << 20;
const MAX_HEADERS: usize = 64;

/// One request to send.
pub(crate) struct DirectRequest<'a> {
    /// `host[:port]`, as in the `Host` header.
    pub authority: &'a str,
    pub method: &'a str,
    /// Path and query, as on the request line.
    pub target: &'a str,
    /// Every header but `content-length`.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub connect_timeout: Duration,
    /// Read/write inactivity timeout.
    pub idle_timeout: Duration,
}

struct Conn {
    authority: String,
    stream: TcpStream,
}

thread_local! {
    /// This thread's keep-alive connection.
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
}

/// Sends `req` and returns the reply. A kept-alive connection that turns out
/// to be closed before any reply byte arrives is replaced once, as ureq does
/// with pooled connections.
pub(crate) fn send(req: &DirectRequest<'_>) -> io::Result<http::Response<ureq::Body>> {
    let cached = CONN
        .with(|c| c.borrow_mut().take())
        .filter(|c| c.authority == req.authority && is_open(&c.stream));
    let reused = cached.is_some();
    let mut conn = match cached {
        Some(c) => c,
        None => connect(req)?,
    };
    let result = match exchange(&mut conn.stream, req) {
        Err(Failure::BeforeReply(e)) if reused => {
            log::debug!(
                "kept-alive connection to {} failed ({e}); reconnecting",
                req.authority
            );
            conn = connect(req)?;
            exchange(&mut conn.stream, req)
        }
        other => other,
    };
    match result {
        Ok((response, keep_alive)) => {
            if keep_alive {
                CONN.with(|c| *c.borrow_mut() = Some(conn));
            }
            Ok(response)
        }
        Err(Failure::BeforeReply(e) | Failure::Other(e)) => Err(e),
    }
}

enum Failure {
    /// Nothing of a reply was read: the request may be resent on a new connection.
    BeforeReply(io::Error),
    Other(io::Error),
}

fn connect(req: &DirectRequest<'_>) -> io::Result<Conn> {
    let addrs = if req.authority.contains(':') && !req.authority.ends_with(']') {
        req.authority.to_socket_addrs()?
    } else {
        (req.authority.trim_matches(['[', ']']), 80).to_socket_addrs()?
    };
    let mut last = io::Error::new(ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, req.connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(req.idle_timeout))?;
                stream.set_write_timeout(Some(req.idle_timeout))?;
                return Ok(Conn {
                    authority: req.authority.to_string(),
                    stream,
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
/// can be kept.
fn exchange(
    stream: &mut TcpStream,
    req: &DirectRequest<'_>,
) -> Result<(http::Response<ureq::Body>, bool), Failure> {
    let mut head = String::with_capacity(1024);
    head.push_str(req.method);
    head.push(' ');
    head.push_str(req.target);
    head.push_str(" HTTP/1.1\r\n");
    for (name, value) in req.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "user-agent: s3pump/{}\r\ncontent-length: {}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        req.body.len()
    ));
    write_all_vectored(
        stream,
        &mut [IoSlice::new(head.as_bytes()), IoSlice::new(req.body)],
    )
    .map_err(Failure::BeforeReply)?;
    read_reply(stream, req.method == "HEAD")
}

fn write_all_vectored(stream: &mut TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one reply (skipping interim 1xx replies).
fn read_reply(
    stream: &mut TcpStream,
    head_request: bool,
) -> Result<(http::Response<ureq::Body>, bool), Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut got_any = false;
    loop {
        // Read until a complete head is buffered.
        let (status, version_1_0, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers: Vec<(String, Vec<u8>)> = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect();
                    break (
                        parsed.code.unwrap_or(0),
                        parsed.version == Some(0),
                        headers,
                        len,
                    );
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failure::Other(invalid("reply head too large")));
                }
                Err(e) => return Err(Failure::Other(invalid(&format!("bad reply head: {e}")))),
            }
            let n = read_more(stream, &mut buf).map_err(|e| {
                if got_any {
                    Failure::Other(e)
                } else {
                    Failure::BeforeReply(e)
                }
            })?;
            if n == 0 {
                let e = io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed before the reply",
                );
                return Err(if got_any {
                    Failure::Other(e)
                } else {
                    Failure::BeforeReply(e)
                });
            }
            got_any = true;
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            continue;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut keep_alive =
            !version_1_0 && !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if head_request || status == 204 || status == 304 {
            keep_alive &= buf.is_empty();
            Vec::new()
        } else if chunked {
            let (body, clean) = read_chunked(stream, buf).map_err(Failure::Other)?;
            keep_alive &= clean;
            body
        } else if let Some(len) = header("content-length") {
            let len: u64 = len
                .trim()
                .parse()
                .map_err(|_| Failure::Other(invalid("bad Content-Length")))?;
            if len > MAX_BODY {
                return Err(Failure::Other(invalid("reply body too large")));
            }
            let (body, clean) =
                read_exact_body(stream, buf, len as usize).map_err(Failure::Other)?;
            keep_alive &= clean;
            body
        } else {
            keep_alive = false;
            let mut body = buf;
            stream
                .take(MAX_BODY)
                .read_to_end(&mut body)
                .map_err(Failure::Other)?;
            body
        };
        let mut builder = http::Response::builder().status(status);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let response = builder
            .body(ureq::Body::builder().data(body))
            .map_err(|e| Failure::Other(invalid(&format!("bad reply: {e}"))))?;
        return Ok((response, keep_alive));
    }
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
            // Trailers, if any, up to the empty line.
            loop {
                let end = loop {
                    if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        break pos + i;
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
        if (body.len() + size) as u64 > MAX_BODY {
            return Err(invalid("reply body too large"));
        }
        fill(&mut buf, pos, size + 2)?;
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}
