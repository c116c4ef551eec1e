//! The socket of a direct-path connection: TCP (with its connect and idle
//! timeouts), a `CONNECT` tunnel through a plain-HTTP proxy, TLS over it
//! (rustls, the client's one configuration), and the paced writes and
//! timed reads the client's limits ask for.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::http1::{invalid, read_head};
use super::pace::{Limits, Rate, deadline_error, remaining};
use super::proxy::Proxy;
use super::{sendfile, tls};

/// How much of a body is encrypted into TLS records before they are written
/// out (16 records of 16 KiB): large enough that the system calls do not
/// count, small enough that the records are still in cache when sent.
pub(super) const TLS_CHUNK: usize = 256 << 10;

/// The socket of a connection: plain, or TLS over it.
pub(super) enum Stream {
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
    pub fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Writes `data` (the request head, or its body) straight from memory,
    /// at no less than `rate`'s minimum: the socket's send timeout is cut to
    /// [`Rate::poll`] meanwhile, so that the rate is looked at while a send
    /// blocks.
    pub fn send(&mut self, data: &[u8], rate: &mut Rate) -> io::Result<()> {
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
    pub fn send_file(
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
    pub fn is_open(&mut self) -> bool {
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
pub(super) struct Timed<'a> {
    stream: &'a mut Stream,
    since: Instant,
    limit: Duration,
    idle: Duration,
    what: &'static str,
}

impl<'a> Timed<'a> {
    pub fn new(
        stream: &'a mut Stream,
        limit: Duration,
        idle: Duration,
        what: &'static str,
    ) -> Self {
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
pub(super) fn connect(
    authority: &str,
    https: bool,
    proxy: Option<&Proxy>,
    limits: &Limits,
    config: &Arc<ClientConfig>,
) -> io::Result<Stream> {
    let server = with_port(authority, if https { 443 } else { 80 });
    let mut sock = match proxy {
        Some(p) => tcp(&with_port(&p.authority, 80), limits.connect, limits.idle)?,
        None => tcp(&server, limits.connect, limits.idle)?,
    };
    Ok(if https {
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
