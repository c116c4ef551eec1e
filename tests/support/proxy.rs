//! [`TestProxy`]: an HTTP proxy on loopback (plain std threads) that speaks
//! both forms a client may use: `CONNECT host:port` tunnels (https, and
//! ureq's plain http) and absolute-form requests (`PUT http://host/path
//! HTTP/1.1`, forwarded request by request with keep-alive). It counts
//! both, can require `Proxy-Authorization: Basic`, and can refuse everything.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// How a [`TestProxy`] treats requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards everything.
    Open,
    /// Answers every request (CONNECT included) with this status.
    Refuse(u16),
    /// Requires `Proxy-Authorization: Basic base64(user:password)`, else 407.
    RequireAuth { user: String, password: String },
}

#[derive(Default)]
struct Counters {
    tunnels: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    targets: Mutex<Vec<String>>,
}

/// An HTTP proxy on `127.0.0.1`. Dropping it stops accepting.
pub struct TestProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: Arc<AtomicBool>,
}

impl TestProxy {
    /// Starts a proxy on an ephemeral port.
    pub fn start(mode: ProxyMode) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let counters = Arc::new(Counters::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let (c, stop) = (Arc::clone(&counters), Arc::clone(&shutdown));
        std::thread::Builder::new()
            .name("s3pump-test-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (c, mode) = (Arc::clone(&c), mode.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &mode, &c);
                    });
                }
            })
            .expect("proxy thread");
        TestProxy {
            addr,
            counters,
            shutdown,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:PORT`
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// `CONNECT` tunnels established.
    pub fn tunnels(&self) -> u64 {
        self.counters.tunnels.load(Ordering::SeqCst)
    }

    /// Absolute-form requests forwarded.
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::SeqCst)
    }

    /// Requests refused (mode [`ProxyMode::Refuse`], or missing credentials).
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }

    /// The request line of every request received (CONNECT included).
    pub fn targets(&self) -> Vec<String> {
        self.counters.targets.lock().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads a head (request or reply) up to the empty line; `None` at a clean EOF.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The status to refuse a request with, if any.
fn refusal(mode: &ProxyMode, lines: &[String]) -> Option<u16> {
    match mode {
        ProxyMode::Open => None,
        ProxyMode::Refuse(status) => Some(*status),
        ProxyMode::RequireAuth { user, password } => {
            let want = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
            (header(lines, "proxy-authorization") != Some(want.as_str())).then_some(407)
        }
    }
}

fn serve(client: TcpStream, mode: &ProxyMode, c: &Counters) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::with_capacity(64 * 1024, client.try_clone()?);
    let mut writer = client;
    // For absolute-form requests: the upstream connection and its target.
    let mut upstream: Option<(String, TcpStream, BufReader<TcpStream>)> = None;
    loop {
        let Some(lines) = read_head(&mut reader)? else {
            return Ok(());
        };
        c.targets.lock().push(lines[0].clone());
        let mut parts = lines[0].split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if let Some(status) = refusal(mode, &lines) {
            c.refused.fetch_add(1, Ordering::SeqCst);
            let auth = if status == 407 {
                "Proxy-Authenticate: Basic realm=\"test\"\r\n"
            } else {
                ""
            };
            write!(
                writer,
                "HTTP/1.1 {status} Refused\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        if method == "CONNECT" {
            let up = TcpStream::connect(target)?;
            c.tunnels.fetch_add(1, Ordering::SeqCst);
            writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            writer.set_read_timeout(None)?;
            // Bytes the client sent after the head are in `reader`'s buffer.
            let pending = reader.buffer().to_vec();
            let mut up_w = up.try_clone()?;
            up_w.write_all(&pending)?;
            let mut up_r = up;
            let mut back = writer.try_clone()?;
            let down = std::thread::spawn(move || {
                let _ = io::copy(&mut up_r, &mut back);
                let _ = back.shutdown(Shutdown::Write);
            });
            let mut raw = reader.into_inner();
            let _ = io::copy(&mut raw, &mut up_w);
            let _ = up_w.shutdown(Shutdown::Write);
            let _ = down.join();
            return Ok(());
        }
        // Absolute form: http://authority/path
        let Some(rest) = target.strip_prefix("http://") else {
            write!(
                writer,
                "HTTP/1.1 400 Not absolute-form\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        c.forwarded.fetch_add(1, Ordering::SeqCst);
        if upstream.as_ref().is_none_or(|(a, _, _)| a != authority) {
            let s = TcpStream::connect(authority)?;
            let r = BufReader::with_capacity(64 * 1024, s.try_clone()?);
            upstream = Some((authority.to_string(), s, r));
        }
        let (_, up_w, up_r) = upstream.as_mut().expect("upstream");
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for l in &lines[1..] {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !name.starts_with("proxy-") {
                head.push_str(l);
                head.push_str("\r\n");
            }
        }
        head.push_str("\r\n");
        up_w.write_all(head.as_bytes())?;
        if header(&lines, "transfer-encoding").is_some() {
            write!(
                writer,
                "HTTP/1.1 501 Chunked requests not supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        let len: u64 = header(&lines, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
        io::copy(&mut (&mut reader).take(len), up_w)?;
        relay_reply(up_r, &mut writer, method == "HEAD")?;
    }
}

/// Copies one reply (after any 1xx) from upstream to the client.
fn relay_reply(
    up: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
    head_only: bool,
) -> io::Result<()> {
    loop {
        let lines = read_head(up)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut head = lines.join("\r\n");
        head.push_str("\r\n\r\n");
        client.write_all(head.as_bytes())?;
        let status: u16 = lines[0]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            continue;
        }
        if head_only || status == 204 || status == 304 {
            return Ok(());
        }
        let chunked = header(&lines, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let mut line = Vec::new();
                up.read_until(b'\n', &mut line)?;
                client.write_all(&line)?;
                let text = String::from_utf8_lossy(&line);
                let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        let mut t = Vec::new();
                        up.read_until(b'\n', &mut t)?;
                        client.write_all(&t)?;
                        if t == b"\r\n" || t.is_empty() {
                            return Ok(());
                        }
                    }
                }
                io::copy(&mut up.take(size as u64 + 2), client)?;
            }
        }
        if let Some(len) = header(&lines, "content-length") {
            let len: u64 = len.parse().unwrap_or(0);
            io::copy(&mut up.take(len), client)?;
            return Ok(());
        }
        io::copy(up, client)?;
        let _ = client.shutdown(Shutdown::Write);
        return Ok(());
    }
}
