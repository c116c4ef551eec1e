//! The part connections of a client, shared by all its transfers: at most
//! `max_connections` parts are on the wire at once across every transfer,
//! and a connection kept alive by one transfer carries the next transfer's
//! parts (no new TCP or TLS handshake per transfer). Idle connections are
//! closed after [`IDLE_CONNECTION_TIME`], and all of them when the client
//! goes away.

use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use ureq::Agent;

use super::direct;

/// How long an idle part connection is kept for the next part (ureq's and
/// the direct sender's own limit on reusing an idle connection is 15 s).
pub(crate) const IDLE_CONNECTION_TIME: Duration = Duration::from_secs(15);

/// A way to the server: a ureq agent (its own keep-alive connection) and,
/// for parts sent straight from their slab and ranges read straight into
/// theirs (http or https), the direct sender's kept-alive socket.
pub(crate) struct Conn {
    pub agent: Agent,
    /// The direct sender's kept-alive sockets (one for a part connection,
    /// a few for the client's shared one, used from any thread).
    pub direct: direct::Slot,
}

impl Conn {
    /// The client's shared connection (single requests from any thread).
    pub fn shared(agent: Agent) -> Conn {
        Conn {
            agent,
            direct: direct::Slot::default(),
        }
    }
}

#[derive(Default)]
struct State {
    idle: Vec<(Conn, Instant)>,
    leased: usize,
    peak: usize,
    opened: u64,
}

/// The part connections of one client.
pub(crate) struct Connections {
    max: usize,
    make: Box<dyn Fn() -> Agent + Send + Sync>,
    state: Mutex<State>,
    returned: Condvar,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("max", &self.max)
            .finish()
    }
}

/// What the part connections of a client are doing, as counted by the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Part connections in use now.
    pub in_use: usize,
    /// The most in use at once.
    pub peak_in_use: usize,
    /// Part connections made since the client was built (one made by a
    /// transfer and reused by the next counts once).
    pub opened: u64,
    /// Part worker threads running now (busy or idle), shared by every
    /// transfer: at most `max_connections`, started as parts need them and
    /// ended after 15 s without work.
    pub workers: usize,
    /// The most part worker threads that ran at once.
    pub peak_workers: usize,
}

impl Connections {
    /// A pool of at most `max` connections, made with `make`.
    pub fn new(max: usize, make: Box<dyn Fn() -> Agent + Send + Sync>) -> Connections {
        Connections {
            max: max.max(1),
            make,
            state: Mutex::new(State::default()),
            returned: Condvar::new(),
        }
    }

    /// What the pool holds now.
    pub fn stats(&self) -> ConnectionStats {
        let st = self.state.lock();
        ConnectionStats {
            in_use: st.leased,
            peak_in_use: st.peak,
            opened: st.opened,
            workers: 0,
            peak_workers: 0,
        }
    }

    /// A connection for one part: an idle one (the most recently used),
    /// else a new one while fewer than `max` are in use, else the next one
    /// given back (waiters are woken one at a time as connections come back;
    /// there is no strict queue). `None` when `stop` says the
    /// transfer ended while it waited.
    pub fn acquire(&self, stop: &dyn Fn() -> bool) -> Option<Lease<'_>> {
        let mut st = self.state.lock();
        loop {
            let now = Instant::now();
            st.idle
                .retain(|(_, since)| now.duration_since(*since) < IDLE_CONNECTION_TIME);
            if st.leased < self.max {
                st.leased += 1;
                st.peak = st.peak.max(st.leased);
                let conn = match st.idle.pop() {
                    Some((conn, _)) => conn,
                    None => {
                        st.opened += 1;
                        drop(st);
                        let conn = Conn {
                            agent: (self.make)(),
                            direct: direct::Slot::default(),
                        };
                        return Some(Lease {
                            pool: self,
                            conn: Some(conn),
                        });
                    }
                };
                return Some(Lease {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if stop() {
                return None;
            }
            self.returned.wait_for(&mut st, Duration::from_millis(20));
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut st = self.state.lock();
        st.leased -= 1;
        st.idle.push((conn, Instant::now()));
        drop(st);
        self.returned.notify_one();
    }
}

/// A connection leased for one part; given back when dropped.
pub(crate) struct Lease<'a> {
    pool: &'a Connections,
    conn: Option<Conn>,
}

impl Deref for Lease<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_max_in_use_and_reused() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&made);
        let pool = Arc::new(Connections::new(
            2,
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
                Agent::new_with_defaults()
            }),
        ));
        let a = pool.acquire(&|| false).unwrap();
        let b = pool.acquire(&|| false).unwrap();
        // A third waits until one comes back, or gives up when told to.
        assert!(pool.acquire(&|| true).is_none());
        let p = Arc::clone(&pool);
        let waiter = std::thread::spawn(move || p.acquire(&|| false).map(|_| ()).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(a);
        assert!(waiter.join().unwrap());
        drop(b);
        let _c = pool.acquire(&|| false).unwrap();
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "given-back connections are reused"
        );
        let s = pool.stats();
        assert_eq!((s.peak_in_use, s.opened), (2, 2));
    }
}
