//! A scripted HTTP/1.1 server on loopback: each request (method, target,
//! headers, body) goes to a handler that returns the reply. For replaying
//! what a real third-party server answers (moto's `<ListPartsResponse>`, its
//! 500 `NoSuchUpload`, a CRC32 under the CRC64NVME header) where the
//! in-process server answers as S3 does. Keep-alive, `Content-Length` bodies
//! only (which is what s3pump sends).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`…
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the query has parameter `name`.
    pub fn has_query(&self, name: &str) -> bool {
        self.target
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.split('=').next() == Some(name)))
    }
}

/// A reply: status, headers (Content-Length is added) and body.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (not sent for HEAD; its length still is).
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `status` and an XML `body`.
    pub fn xml(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The running server: its endpoint and every request it has answered.
pub struct Scripted {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Scripted {
    /// Starts a server answering each request with `handler`'s reply.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || {
                    let mut writer = conn.try_clone().unwrap();
                    let mut reader = BufReader::new(conn);
                    while let Some(req) = read_request(&mut reader) {
                        let reply = handler(&req);
                        let head_only = req.method == "HEAD";
                        log.lock().unwrap().push(req);
                        if write_reply(&mut writer, &reply, head_only).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { endpoint, seen }
    }

    /// The requests answered so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn write_reply(w: &mut impl Write, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    let mut has_length = false;
    for (k, v) in &reply.headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if !head_only {
        w.write_all(&reply.body)?;
    }
    w.flush()
}
