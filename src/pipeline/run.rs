//! The caller's side of a running transfer, the same for uploads and
//! downloads: worker threads report each part as an [`Event`]; the caller's
//! thread gathers them, reports progress, watches the cancel handle, stops
//! everything on the first error (the first error wins), and joins every
//! thread, turning a panic into an error.

use std::any::Any;
use std::thread::{self, ScopedJoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::pipeline::{CancelHandle, Progress, ProgressFn};
use crate::transport::stop::Stop;
use crate::{Error, Result};

/// How often the caller's thread looks at the cancel handle while waiting.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// What a transfer's threads tell the caller's thread.
pub(crate) enum Event<T> {
    /// Part `number` (1-based: an upload's part, a download's range) is
    /// done, `len` bytes, with what its worker made of it.
    Done {
        number: u32,
        len: usize,
        result: Result<T>,
    },
    /// The producer of a stream upload read the whole source: this many
    /// parts and bytes.
    Produced { parts: u32, bytes: u64 },
    /// A thread failed outside any one part.
    Failed(Error),
}

/// Sends [`Event::Failed`] if the thread it lives on unwinds, so that a
/// panic stops the transfer instead of leaving the others waiting.
pub(crate) struct PanicGuard<'a, T>(pub &'a Sender<Event<T>>, pub &'static str);

impl<T> Drop for PanicGuard<'_, T> {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(Event::Failed(Error::Panic(format!(
                "the {} thread",
                self.1
            ))));
        }
    }
}

/// The transfer-wide state the gather loop drives.
pub(crate) struct Control<'a> {
    /// What is being transferred, for logs: `upload <id> of b/k`, …
    pub what: &'a str,
    pub cancel: Option<&'a CancelHandle>,
    /// Set on the first error: producers and workers stop taking parts,
    /// requests in flight are cut short.
    pub stopped: &'a Stop,
    /// Called with the bytes done so far; `false` cancels.
    pub progress: Option<&'a parking_lot::Mutex<ProgressFn>>,
    /// The size, when known, for the progress callback.
    pub total: Option<u64>,
}

impl Control<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelHandle::is_cancelled)
    }
}

/// How a transfer's threads ended, as the caller's thread saw it.
pub(crate) struct Gathered {
    /// The first error, with the part it happened at when it was one part's.
    pub failure: Option<(Option<u32>, Error)>,
    /// What the producer reported ([`Event::Produced`]).
    pub produced: Option<(u32, u64)>,
}

/// Gathers `events` until every sender is gone (every thread is done), then
/// joins `handles`. Each successful part goes to `on_done`, which returns
/// how many bytes that made done (an in-order writer may hold a part back
/// and later write several) or an error that fails the transfer. On the
/// first error `stop` is dropped, which wakes every thread waiting on its
/// receiver, and `ctl.stopped` is set.
pub(crate) fn gather<T>(
    ctl: &Control<'_>,
    events: Receiver<Event<T>>,
    stop: Sender<()>,
    handles: Vec<ScopedJoinHandle<'_, ()>>,
    mut on_done: impl FnMut(u32, usize, T) -> Result<u64>,
) -> Gathered {
    let mut g = Gathered {
        failure: None,
        produced: None,
    };
    let mut stop = Some(stop);
    let mut fail = |g: &mut Gathered, part: Option<u32>, e: Error| {
        if g.failure.is_none() {
            // Requests cut short by a cancel fail with the cut: the
            // transfer was cancelled.
            let e = if ctl.cancelled() { Error::Cancelled } else { e };
            log::debug!(
                "{} failing{}: {e}",
                ctl.what,
                part.map(|p| format!(" at part {p}")).unwrap_or_default()
            );
            g.failure = Some((part, e));
            ctl.stopped.set();
            stop.take();
        }
    };
    let mut done = 0u64;
    loop {
        select! {
            recv(events) -> event => match event {
                Err(_) => break,
                Ok(Event::Done { number, len, result: Ok(value) }) => {
                    match on_done(number, len, value) {
                        Ok(0) => {}
                        Ok(bytes) => {
                            done += bytes;
                            if report(ctl, g.failure.is_none(), done) == Some(false) {
                                fail(&mut g, None, Error::Cancelled);
                            }
                        }
                        Err(e) => fail(&mut g, Some(number), e),
                    }
                }
                Ok(Event::Done { number, result: Err(e), .. }) => fail(&mut g, Some(number), e),
                Ok(Event::Produced { parts, bytes }) => g.produced = Some((parts, bytes)),
                Ok(Event::Failed(e)) => fail(&mut g, None, e),
            },
            default(CANCEL_POLL) => {}
        }
        if ctl.cancelled() {
            fail(&mut g, None, Error::Cancelled);
        }
    }
    for handle in handles {
        if let Err(panic) = handle.join() {
            fail(&mut g, None, Error::Panic(panic_message(&panic)));
        }
    }
    g
}

/// Calls the progress callback, when there is one and the transfer is still
/// running; `Some(false)` when it asked to cancel.
fn report(ctl: &Control<'_>, running: bool, done: u64) -> Option<bool> {
    let f = ctl.progress.filter(|_| running)?;
    let mut f = f.lock();
    Some(f(Progress {
        bytes_sent: done,
        total: ctl.total,
    }))
}

/// The message a thread panicked with, as text.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a pipeline thread panicked".into())
}
