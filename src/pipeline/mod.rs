//! What uploads and downloads share: planning, part buffers (slabs), the
//! client's part workers (the engine), the events their tasks send, and the
//! caller's gather/cancel/join loop.

pub(crate) mod engine;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod slab;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::transport::stop::Stop;

/// 1 MiB.
pub(crate) const MIB: u64 = 1 << 20;
/// 1 GiB.
pub(crate) const GIB: u64 = 1 << 30;

/// How far an upload or a download has got, as given to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes done so far: acknowledged by the server (upload), or written
    /// (download).
    pub bytes_sent: u64,
    /// The object's size, when it was declared.
    pub total: Option<u64>,
}

/// Cancels an upload or a download from any thread.
///
/// A cancel reaches the requests in flight: their sockets are shut down at
/// once, whatever the server is doing (even one that stopped answering
/// mid-part), then the multipart upload is aborted or the partial file
/// removed, and the transfer returns [`Error::Cancelled`](crate::Error::Cancelled).
///
/// ```
/// let cancel = s3pump::CancelHandle::new();
/// let args = s3pump::PutObjectArgs::new().cancel_handle(&cancel);
/// // from another thread, while `put_object` runs:
/// cancel.cancel();
/// # drop(args);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    /// The stops of the transfers using this handle.
    stops: Mutex<Vec<Weak<Stop>>>,
}

impl CancelHandle {
    /// A handle that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every upload and download using this handle to stop, abort and return
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    pub fn cancel(&self) {
        let stops = {
            let mut stops = self.0.stops.lock();
            self.0.cancelled.store(true, Ordering::SeqCst);
            std::mem::take(&mut *stops)
        };
        for stop in stops.iter().filter_map(Weak::upgrade) {
            stop.set();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Has a cancel set `stop` (at once if already cancelled).
    pub(crate) fn attach(&self, stop: &Arc<Stop>) {
        let mut stops = self.0.stops.lock();
        if self.is_cancelled() {
            drop(stops);
            stop.set();
            return;
        }
        stops.retain(|s| s.strong_count() > 0);
        stops.push(Arc::downgrade(stop));
    }
}

/// The progress callback. The args hold it as `Arc<Mutex<ProgressFn>>`: the
/// mutex only makes them `Sync` (it is called from the caller's thread
/// alone), the `Arc` lets them be `Clone`.
pub(crate) type ProgressFn = Box<dyn FnMut(Progress) -> bool + Send>;
