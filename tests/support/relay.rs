//! [`Relay`]: a throttling, fault-injecting TCP relay on loopback (plain std
//! threads). This kernel has no `netem`, so per-connection bandwidth caps and
//! latency are emulated here (docs/PERFORMANCE.md says how the figures were taken).
//!
//! Each accepted connection gets its own upstream connection and four threads:
//! per direction, a reader (reads ≤ 64 KiB, paces itself to the rate, stamps
//! each chunk with its due time) and a writer (waits until the chunk is due,
//! then writes it). So the delay is latency, not a per-chunk sleep: a chunk
//! read at `t` is written at `t + len/rate + delay`, while the reader is
//! already reading the next one. The channel between them is bounded, so a
//! slow receiver still pushes back on the sender.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Throttling of a [`Relay`]. `Default` is unthrottled, no delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayConfig {
    /// Bandwidth cap per connection and per direction, in bytes per second.
    /// `None` = no cap. Defaults to `None`.
    pub rate_bytes_per_sec: Option<u64>,
    /// Latency added in each direction. Defaults to zero.
    pub delay: Duration,
}

/// A one-shot fault, armed with [`Relay::arm`]. Positions count client→server
/// bytes across all connections from the moment of arming: `CutAfter(0)`
/// fires on the very next byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the names the tests were specified with
pub enum RelayFault {
    /// Forward that many more bytes, then close the connection carrying the
    /// next one (both its client and upstream sockets).
    CutAfter(u64),
    /// Forward that many more bytes, then stop forwarding in both directions on
    /// that connection (it stays open, nothing moves, until the relay drops).
    StallAfter(u64),
    /// XOR the byte at that position with 0x01 and carry on.
    FlipAfter(u64),
}

struct Shared {
    cfg: RelayConfig,
    shutdown: AtomicBool,
    armed: Mutex<Option<(RelayFault, u64)>>,
    /// A fault counting server→client bytes ([`Relay::arm_down`]).
    armed_down: Mutex<Option<(RelayFault, u64)>>,
    connections: AtomicUsize,
    bytes_up: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
}

struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    stalled: AtomicBool,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

enum Msg {
    /// Bytes to write at the given time.
    Data(Instant, Vec<u8>),
    /// The source reached EOF: half-close the destination.
    Eof,
    /// Close the whole connection at the given time (`CutAfter`).
    Cut(Instant),
}

enum Action {
    None,
    Cut,
    Stall,
}

/// A TCP relay on 127.0.0.1 in front of `upstream`; see the module docs.
/// Dropping it stops accepting and closes every connection.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on an ephemeral loopback port forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, cfg: RelayConfig) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay local_addr");
        let shared = Arc::new(Shared {
            cfg,
            shutdown: AtomicBool::new(false),
            armed: Mutex::new(None),
            armed_down: Mutex::new(None),
            connections: AtomicUsize::new(0),
            bytes_up: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(listener, upstream, sh))
            .expect("spawn relay acceptor");
        Relay {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The relay's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` of the relay.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Arms a one-shot fault (replacing one armed earlier and not fired yet).
    pub fn arm(&self, fault: RelayFault) {
        let n = match fault {
            RelayFault::CutAfter(n) | RelayFault::StallAfter(n) | RelayFault::FlipAfter(n) => n,
        };
        *self.shared.armed.lock() = Some((fault, n));
    }

    /// Arms a one-shot fault whose position counts server→client bytes
    /// (a reply's, such as a download's body), from the moment of arming;
    /// replaces one armed that way earlier and not fired yet.
    pub fn arm_down(&self, fault: RelayFault) {
        let n = match fault {
            RelayFault::CutAfter(n) | RelayFault::StallAfter(n) | RelayFault::FlipAfter(n) => n,
        };
        *self.shared.armed_down.lock() = Some((fault, n));
    }

    /// Whether an armed fault (either direction) has not fired yet.
    pub fn fault_pending(&self) -> bool {
        self.shared.armed.lock().is_some() || self.shared.armed_down.lock().is_some()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Client→server bytes forwarded (written upstream) so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the acceptor out of accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().drain(..) {
            if let Some(c) = c.upgrade() {
                c.close();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(up) = TcpStream::connect(upstream) else {
            continue; // dropping `client` closes it
        };
        let _ = client.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let conn = Arc::new(Conn {
            client,
            upstream: up,
            stalled: AtomicBool::new(false),
        });
        {
            let mut conns = shared.conns.lock();
            conns.retain(|w| w.strong_count() > 0);
            conns.push(Arc::downgrade(&conn));
        }
        for up_dir in [true, false] {
            let (tx, rx) = sync_channel(channel_capacity(&shared.cfg));
            let (c1, s1) = (Arc::clone(&conn), Arc::clone(&shared));
            let (c2, s2) = (Arc::clone(&conn), Arc::clone(&shared));
            let name = if up_dir { "relay-up" } else { "relay-down" };
            let r = thread::Builder::new()
                .name(format!("{name}-read"))
                .spawn(move || reader(c1, s1, up_dir, tx));
            let w = thread::Builder::new()
                .name(format!("{name}-write"))
                .spawn(move || writer(c2, s2, up_dir, rx));
            if r.is_err() || w.is_err() {
                conn.close();
            }
        }
    }
}

/// Chunks the reader→writer channel holds: enough for the bandwidth-delay
/// product (so the delay does not cut bandwidth), small enough to keep
/// backpressure and memory bounded.
fn channel_capacity(cfg: &RelayConfig) -> usize {
    match cfg.rate_bytes_per_sec {
        Some(rate) => {
            let bdp = rate as f64 * (cfg.delay.as_secs_f64() + 0.01);
            (bdp / chunk_size(cfg) as f64) as usize * 2 + 16
        }
        None if cfg.delay.is_zero() => 8,
        None => 256,
    }
    .min(4096)
}

/// Read size: 64 KiB, or about 10 ms worth of bytes at slow rates (≥ 4 KiB).
fn chunk_size(cfg: &RelayConfig) -> usize {
    match cfg.rate_bytes_per_sec {
        Some(rate) => ((rate / 100) as usize).clamp(4096, 65536),
        None => 65536,
    }
}

fn park_until_shutdown(conn: &Conn, shared: &Shared) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(50));
    }
    conn.close();
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

fn reader(conn: Arc<Conn>, shared: Arc<Shared>, up: bool, tx: SyncSender<Msg>) {
    let cfg = shared.cfg;
    let src = if up { &conn.client } else { &conn.upstream };
    let mut buf = vec![0u8; chunk_size(&cfg)];
    // Token-bucket pacing: the link is busy until `free_at`; a 2 ms burst credit
    // absorbs sleep overshoot so the long-run rate stays at `rate`.
    let burst = Duration::from_millis(2);
    let mut free_at = Instant::now();
    loop {
        let n = match (&*src).read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Msg::Eof);
                return;
            }
            Ok(n) => n,
            Err(_) => {
                conn.close();
                return;
            }
        };
        if conn.stalled.load(Ordering::SeqCst) {
            drop(tx);
            park_until_shutdown(&conn, &shared);
            return;
        }
        let mut chunk = buf[..n].to_vec();
        let mut action = Action::None;
        {
            let mut armed = if up {
                shared.armed.lock()
            } else {
                shared.armed_down.lock()
            };
            if let Some((fault, remaining)) = armed.as_mut() {
                if *remaining < n as u64 {
                    let pos = *remaining as usize;
                    match *fault {
                        RelayFault::CutAfter(_) => {
                            chunk.truncate(pos);
                            action = Action::Cut;
                        }
                        RelayFault::StallAfter(_) => {
                            chunk.truncate(pos);
                            // Stop the other direction now, before the prefix
                            // can provoke an answer.
                            conn.stalled.store(true, Ordering::SeqCst);
                            action = Action::Stall;
                        }
                        RelayFault::FlipAfter(_) => chunk[pos] ^= 0x01,
                    }
                    *armed = None;
                } else {
                    *remaining -= n as u64;
                }
            }
        }
        let now = Instant::now();
        let due = match cfg.rate_bytes_per_sec {
            Some(rate) if rate > 0 => {
                let start = free_at.max(now.checked_sub(burst).unwrap_or(now));
                free_at = start + Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
                // The burst credit speeds up pacing, never the latency.
                free_at.max(now) + cfg.delay
            }
            _ => now + cfg.delay,
        };
        if !chunk.is_empty() && tx.send(Msg::Data(due, chunk)).is_err() {
            return;
        }
        match action {
            Action::None => {}
            Action::Cut => {
                let _ = tx.send(Msg::Cut(due));
                return;
            }
            Action::Stall => {
                drop(tx);
                park_until_shutdown(&conn, &shared);
                return;
            }
        }
        if cfg.rate_bytes_per_sec.is_some() {
            sleep_until(free_at);
        }
    }
}

fn writer(conn: Arc<Conn>, shared: Arc<Shared>, up: bool, rx: Receiver<Msg>) {
    let dst = if up { &conn.upstream } else { &conn.client };
    for msg in rx {
        match msg {
            Msg::Data(due, chunk) => {
                sleep_until(due);
                if (&*dst).write_all(&chunk).is_err() {
                    conn.close();
                    return;
                }
                if up {
                    shared
                        .bytes_up
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
            Msg::Eof => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Msg::Cut(due) => {
                sleep_until(due);
                conn.close();
                return;
            }
        }
    }
}
