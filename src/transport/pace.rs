//! The time limits every request is held to ([`Limits`], set on the
//! `ClientBuilder`), and the checks that enforce the two that a socket
//! timeout cannot: a minimum rate for bodies ([`Rate`], [`RateReader`]) and
//! a deadline for a whole reply head or a small reply body
//! ([`deadline_error`]).

use std::io::{self, ErrorKind, Read};
use std::time::{Duration, Instant};

/// The time limits of every request of a client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Establishing a connection (TCP, proxy tunnel, TLS handshake).
    pub connect: Duration,
    /// The longest a socket may go without moving a byte.
    pub idle: Duration,
    /// From the request sent to its reply head in full (interim `1xx`
    /// replies do not extend it); also the whole body of a small reply (an
    /// XML document), from its head.
    pub reply: Duration,
    /// The whole body of a reply the server may hold open while it works
    /// (CompleteMultipartUpload, copies: S3 sends whitespace meanwhile).
    pub processing: Duration,
    /// Bodies of data (a part sent, a range received) must move at least
    /// this many bytes a second, on average over each [`Limits::window`];
    /// 0 turns the check off.
    pub min_rate: u64,
    /// The window over which [`Limits::min_rate`] is measured.
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            reply: Duration::from_secs(30),
            processing: Duration::from_secs(120),
            min_rate: 1024,
            window: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// How long the whole body of a small reply to `operation` may take.
    pub fn small_body(&self, operation: &str) -> Duration {
        match operation {
            "CompleteMultipartUpload" | "CopyObject" | "UploadPartCopy" => self.processing,
            _ => self.reply,
        }
    }
}

/// Checks that a body keeps [`Limits::min_rate`]: every window, the bytes
/// moved in it are counted and compared.
#[derive(Debug)]
pub(crate) struct Rate {
    min: u64,
    window: Duration,
    idle: Duration,
    started: Instant,
    bytes: u64,
    /// When a byte last moved.
    last: Instant,
}

impl Rate {
    pub fn new(limits: &Limits) -> Rate {
        let now = Instant::now();
        Rate {
            min: limits.min_rate,
            window: limits.window,
            idle: limits.idle,
            started: now,
            bytes: 0,
            last: now,
        }
    }

    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// How long a socket operation may block before this rate is looked
    /// at again: the window when it is shorter than the idle timeout.
    pub fn poll(&self) -> Duration {
        if self.min == 0 {
            self.idle
        } else {
            self.window.min(self.idle)
        }
    }

    /// After a socket operation that moved nothing within [`Rate::poll`]
    /// (`WouldBlock`): the rate's error once its window has gone by, the
    /// `WouldBlock` itself once nothing moved for the idle timeout, else
    /// `Ok` (try again).
    pub fn stalled(&mut self, what: &str) -> io::Result<()> {
        self.moved(0, what)?;
        if self.last.elapsed() >= self.idle {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Counts `n` more bytes moved; a `TimedOut` error naming `what` when
    /// a whole window has gone by below the minimum rate.
    pub fn moved(&mut self, n: usize, what: &str) -> io::Result<()> {
        self.bytes += n as u64;
        if n > 0 {
            self.last = Instant::now();
        }
        let elapsed = self.started.elapsed();
        if self.min == 0 || elapsed < self.window {
            return Ok(());
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if rate < self.min as f64 {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "{what} moved {} bytes in {:.0} s, below the minimum of {} bytes/s \
                     (ClientBuilder::min_throughput)",
                    self.bytes,
                    elapsed.as_secs_f64(),
                    self.min
                ),
            ));
        }
        self.started = Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

/// A reader of a body that must keep the minimum rate.
pub(crate) struct RateReader<R> {
    inner: R,
    rate: Rate,
}

impl<R: Read> RateReader<R> {
    pub fn new(inner: R, limits: &Limits) -> Self {
        RateReader {
            inner,
            rate: Rate::new(limits),
        }
    }
}

impl<R: Read> Read for RateReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.rate.moved(n, "the reply body")?;
        Ok(n)
    }
}

/// What is left of `limit` since `since`, or the `TimedOut` error naming
/// `what` and the limit when nothing is.
pub(crate) fn remaining(since: Instant, limit: Duration, what: &str) -> io::Result<Duration> {
    let left = limit.saturating_sub(since.elapsed());
    if left.is_zero() {
        return Err(deadline_error(what, limit));
    }
    Ok(left)
}

/// The error of a deadline passed: `what` did not arrive within `limit`.
pub(crate) fn deadline_error(what: &str, limit: Duration) -> io::Error {
    io::Error::new(
        ErrorKind::TimedOut,
        format!("{what} did not arrive within {} s", limit.as_secs_f64()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_below_the_rate_fails_after_a_window_and_a_steady_one_does_not() {
        let limits = Limits {
            min_rate: 1000,
            window: Duration::from_millis(50),
            ..Limits::default()
        };
        let mut slow = Rate::new(&limits);
        slow.moved(10, "x").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let err = slow.moved(1, "the part body").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(
            err.to_string().contains("the part body moved 11 bytes"),
            "{err}"
        );

        let mut steady = Rate::new(&limits);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            steady.moved(1000, "x").unwrap();
        }
    }

    #[test]
    fn a_rate_of_zero_is_no_check() {
        let limits = Limits {
            min_rate: 0,
            window: Duration::ZERO,
            ..Limits::default()
        };
        let mut rate = Rate::new(&limits);
        rate.moved(0, "x").unwrap();
    }

    #[test]
    fn a_deadline_passed_names_what_and_the_limit() {
        let since = Instant::now() - Duration::from_secs(2);
        let err = remaining(since, Duration::from_secs(1), "the reply head").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "the reply head did not arrive within 1 s");
        assert!(remaining(Instant::now(), Duration::from_secs(5), "x").is_ok());
    }
}
