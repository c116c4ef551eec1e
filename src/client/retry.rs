//! When to retry a request and how long to wait first.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// How often a backoff looks at its transfer's stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

use crate::client::Request;
use crate::transport::stop::Stop;
use crate::{Client, Error, Result};

/// How failed requests are retried.
///
/// Every request is retried on its own (a part is retried from its slab,
/// never by reading the source again). Retried: the errors for which
/// [`Error::is_retryable`] is true (connect errors, resets and timeouts, 5xx,
/// 429, `SlowDown`, `InternalError`, `RequestTimeout`, and a body damaged in
/// transit: `BadDigest`, `XAmzContentSHA256Mismatch`, as the buffer it is
/// resent from is intact). Not retried: any other 4xx.
///
/// Waits are "full jitter" exponential backoff: before attempt `k + 1` the
/// wait is uniform in `[0, min(max_backoff, base_backoff × 2^k))`.
///
/// ```
/// use std::time::Duration;
/// let policy = s3pump::RetryPolicy::default()
///     .max_attempts(10)
///     .max_elapsed(Duration::from_secs(300));
/// assert_eq!(policy.max_attempts, 10);
/// ```
///
/// The settings are public fields, to be read (or set) directly; the
/// methods of the same names set them in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (0 counts as 1).
    /// Defaults to 5.
    pub max_attempts: u32,
    /// The backoff before the first retry; it doubles on each retry.
    /// Defaults to 100 ms.
    pub base_backoff: Duration,
    /// The longest backoff between two attempts. Defaults to 10 s.
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt started.
    /// Defaults to 120 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Attempts per request, the first one included (at least 1).
    ///
    /// Defaults to 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The backoff before the first retry; it doubles on each retry.
    ///
    /// Defaults to 100 ms.
    pub fn base_backoff(mut self, d: Duration) -> Self {
        self.base_backoff = d;
        self
    }

    /// The longest backoff between two attempts.
    ///
    /// Defaults to 10 s.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// No retry starts later than this after the first attempt started.
    ///
    /// Defaults to 120 s.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = d;
        self
    }

    /// Starts tracking the attempts of one request.
    pub(crate) fn start(&self) -> RetryState<'_> {
        RetryState {
            policy: self,
            attempt: 1,
            started: Instant::now(),
        }
    }
}

/// The attempts of one request so far.
pub(crate) struct RetryState<'a> {
    policy: &'a RetryPolicy,
    attempt: u32,
    started: Instant,
}

impl RetryState<'_> {
    /// The number of the attempt about to be made (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After a failed attempt: the wait before the next one, or `None` when
    /// the error is final or the budget is spent.
    pub fn next_backoff(&mut self, err: &Error, idempotent: bool) -> Option<Duration> {
        if !err.retryable(idempotent) || self.attempt >= self.policy.max_attempts.max(1) {
            return None;
        }
        let exp = self
            .policy
            .base_backoff
            .saturating_mul(1u32 << (self.attempt - 1).min(20));
        let cap = exp.min(self.policy.max_backoff);
        let wait = cap.mul_f64(random_unit());
        if self.started.elapsed() + wait > self.policy.max_elapsed {
            return None;
        }
        self.attempt += 1;
        Some(wait)
    }
}

/// A uniformly distributed number in `[0, 1)`.
fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Client {
    /// Runs `attempt` until it succeeds, fails for good, or the retry budget
    /// is spent; logs every retry at DEBUG with the operation, part and
    /// attempt. Once the request's stop is set (its transfer failed elsewhere
    /// or was cancelled), no retry starts and a backoff in progress ends at
    /// once, with the last error.
    pub(crate) fn retrying<T>(
        &self,
        req: &Request<'_>,
        part: Option<u32>,
        idempotent: bool,
        mut attempt: impl FnMut(u32) -> Result<T>,
    ) -> Result<T> {
        let stopped = || req.stop.is_some_and(Stop::is_set);
        let operation = req.operation;
        let object = match req.key {
            Some(key) => format!("{}/{key}", req.bucket),
            None => req.bucket.to_string(),
        };
        let mut state = self.inner.retry.start();
        loop {
            let n = state.attempt();
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(e) => match state.next_backoff(&e, idempotent).filter(|_| !stopped()) {
                    Some(wait) => {
                        match part {
                            Some(p) => log::debug!(
                                "{operation} {object} part {p} attempt {n} failed, retrying in {wait:?}: {e}"
                            ),
                            None => log::debug!(
                                "{operation} {object} attempt {n} failed, retrying in {wait:?}: {e}"
                            ),
                        }
                        let until = Instant::now() + wait;
                        while !stopped() {
                            let left = until.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(STOP_POLL));
                        }
                        if stopped() {
                            return Err(e);
                        }
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(status: u16, code: &str) -> Error {
        Error::S3 {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        }
    }

    #[test]
    fn attempts_and_backoff_are_bounded() {
        let policy = RetryPolicy::default()
            .max_attempts(3)
            .base_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(15));
        let mut st = policy.start();
        let err = s3(503, "SlowDown");
        let w1 = st.next_backoff(&err, true).unwrap();
        assert!(w1 < Duration::from_millis(10));
        assert_eq!(st.attempt(), 2);
        let w2 = st.next_backoff(&err, true).unwrap();
        assert!(w2 < Duration::from_millis(15));
        assert_eq!(st.attempt(), 3);
        assert!(st.next_backoff(&err, true).is_none());
    }
}
