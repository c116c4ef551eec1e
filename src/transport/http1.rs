//! HTTP/1.1 as the direct path speaks it, on any `Read`/`Write`: the
//! request head out; the reply head, a body of a `Content-Length`, a chunked
//! body (its sizes and trailers bounded) and a body delimited by the close
//! in. Every length is the server's word and is checked before use: a
//! hostile reply is an `InvalidData` error, never a panic or an unbounded
//! read.

use std::io::{self, ErrorKind, Read};

use ureq::http;

use super::proxy::Proxy;

/// Largest reply head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest reply body read into memory (error documents are small).
pub(super) const MAX_BODY: u64 = 16 << 20;
/// Largest trailer section of a chunked reply.
const MAX_TRAILERS: usize = 64 << 10;
const MAX_HEADERS: usize = 64;

/// The HTTP/1.1 head of `request`, with a `content-length` when it has a
/// body. Through a proxy over plain HTTP, the request target is the
/// absolute URL, with the proxy's `Proxy-Authorization` (in a tunnel, the
/// path as usual).
pub(super) fn request_head<B>(
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
pub(super) struct Head {
    pub status: u16,
    pub http_1_0: bool,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Whether the server lets the connection carry another request.
    pub fn keep_alive(&self) -> bool {
        !self.http_1_0
            && !self
                .get("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// The head of the final reply (past any 1xx), into `buf` with whatever
/// was read past it.
pub(super) fn read_final_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        let head = read_head(stream, buf)?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
}

/// Reads until `buf` starts with a complete reply head; parses and removes it.
pub(super) fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Head> {
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
pub(super) fn reply_in_memory(
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

pub(super) fn invalid(message: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.to_string())
}

/// Appends what one `read` returns to `buf`; returns its length.
pub(super) fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
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
pub(super) fn read_exact_body(
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
pub(super) fn read_chunked(
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

/// The reply `head` with `body`, as ureq would hand it over.
pub(super) fn response(head: &Head, body: Vec<u8>) -> io::Result<http::Response<ureq::Body>> {
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
    use rand::{Rng, SeedableRng};

    /// Reads one reply from `bytes` as the direct path does: its final head
    /// (past any 1xx), then its body into memory (at most 1 MiB).
    fn reply(bytes: &[u8]) -> io::Result<(u16, Vec<u8>, bool)> {
        let mut stream = bytes;
        let mut buf = Vec::new();
        let head = read_final_head(&mut stream, &mut buf)?;
        let status = head.status;
        let (mut response, keep) = reply_in_memory(&mut stream, head, buf, false, 1 << 20)?;
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(io::Error::other)?;
        Ok((status, body, keep))
    }

    #[test]
    fn interim_replies_content_length_and_chunked_bodies() {
        let (status, body, keep) = reply(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!((status, body.as_slice(), keep), (200, &b"hello"[..], true));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let (_, body, keep) = reply(chunked).unwrap();
        assert_eq!((body.as_slice(), keep), (&b"abcde"[..], true));
        // A close-delimited body; the connection cannot be kept.
        let (_, body, keep) = reply(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!((body.as_slice(), keep), (&b"to the end"[..], false));
    }

    #[test]
    fn lengths_from_the_server_are_checked_before_use() {
        for (bytes, what) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"[..],
                "reply body too large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
                "reply body too large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "bad reply head"),
        ] {
            let err = reply(bytes).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        // A body shorter than its Content-Length, a head cut short.
        let short = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap_err();
        assert_eq!(short.kind(), ErrorKind::UnexpectedEof);
        let cut = reply(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap_err();
        assert_eq!(cut.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn random_mutations_of_valid_replies_are_errors_or_replies_never_panics() {
        let valid: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\n\
              Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Slow Down\r\nConnection: close\r\nContent-Length: 7\r\n\r\n<Error>",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e_ed);
        for round in 0..5000 {
            let mut bytes = valid[round % valid.len()].to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..4) {
                    0 => bytes[at] = rng.random(),
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, *b"\r\n0:;f9 -".get(rng.random_range(0..9)).unwrap()),
                    _ => bytes.truncate(at),
                }
                if bytes.is_empty() {
                    bytes.push(b'H');
                }
            }
            // Whatever comes back, it came back: no panic, no overflow, and a
            // body never longer than the bytes given.
            if let Ok((_, body, _)) = reply(&bytes) {
                assert!(
                    body.len() <= bytes.len(),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}
