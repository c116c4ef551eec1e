//! A transfer's stop signal. Setting it (a cancel, or the transfer's first
//! failure) does more than tell the transfer's threads to start nothing
//! new: it shuts down the sockets its requests are using at that moment,
//! so that a request waiting on a server that has stopped answering (or
//! trickles) returns at once instead of at its deadline.
//!
//! A request registers its socket for as long as it uses it
//! ([`Stop::watch`]); a registration made after the stop was set fails at
//! once, so a request can never start on a stopped transfer and then wait.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    /// The sockets of the requests in flight, by registration number.
    sockets: Mutex<Sockets>,
}

#[derive(Debug, Default)]
struct Sockets {
    next: u64,
    live: Vec<(u64, TcpStream)>,
}

impl Stop {
    /// Whether the stop was set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Sets the stop and shuts down every registered socket (both ways):
    /// their reads and writes in progress return at once.
    pub fn set(&self) {
        // The flag is set under the lock, so a registration either sees it
        // or is in the list this shuts down.
        let sockets = self.sockets.lock();
        if self.set.swap(true, Ordering::SeqCst) {
            return;
        }
        for (_, socket) in &sockets.live {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Registers `socket` (a handle of the socket a request is about to use)
    /// until the returned guard is dropped. An `Interrupted` error when the
    /// stop is already set.
    pub fn watch(&self, socket: &TcpStream) -> io::Result<Watch<'_>> {
        let mut sockets = self.sockets.lock();
        if self.is_set() {
            return Err(stopped());
        }
        let id = sockets.next;
        sockets.next += 1;
        sockets.live.push((id, socket.try_clone()?));
        Ok(Watch { stop: self, id })
    }
}

/// The error of a request cut short by its transfer's stop.
pub(crate) fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "the request was cut short: its transfer was cancelled or had failed",
    )
}

/// A socket registered with a [`Stop`]; dropping it removes it.
pub(crate) struct Watch<'a> {
    stop: &'a Stop,
    id: u64,
}

impl Watch<'_> {
    /// Whether the stop was set while the socket was registered (its
    /// errors are then the stop's, not the server's).
    pub fn fired(&self) -> bool {
        self.stop.is_set()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.stop
            .sockets
            .lock()
            .live
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    #[test]
    fn setting_the_stop_ends_a_read_in_progress_and_refuses_new_watches() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let stop = std::sync::Arc::new(Stop::default());
        let watch = stop.watch(&client).unwrap();
        let setter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                stop.set();
            })
        };
        let started = Instant::now();
        // The server never writes: only the stop can end this read.
        let n = client.read(&mut [0u8; 16]).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(watch.fired());
        drop(watch);
        setter.join().unwrap();
        let err = stop.watch(&client).err().expect("a stopped transfer");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
