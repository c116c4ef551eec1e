//! The arguments of a download and what it returns.

use std::fmt;
use std::sync::Arc;

use crate::pipeline::plan::DEFAULT_DOWNLOAD_PART_SIZE;
use crate::pipeline::{CancelHandle, Progress, ProgressFn};
use crate::rdma::RdmaProvider;

/// The arguments of [`Client::download`](crate::Client::download) and
/// [`Client::download_to_file`](crate::Client::download_to_file),
/// set with chained methods.
///
/// ```
/// let args = s3pump::DownloadArgs::new()
///     .part_size(16 << 20)
///     .max_inflight_parts(16)
///     .on_progress(|p| {
///         eprintln!("{} of {:?} bytes", p.bytes_sent, p.total);
///         true // return false to cancel
///     });
/// # drop(args);
/// ```
///
/// `Clone`: a clone shares the progress callback, the cancel handle and the
/// RDMA provider with the original.
#[derive(Clone)]
pub struct DownloadArgs {
    pub(crate) part_size: u64,
    pub(crate) max_inflight_parts: usize,
    pub(crate) memory_limit: u64,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) verify_checksum: bool,
    pub(crate) strict_checksums: bool,
    pub(crate) progress: Option<Arc<parking_lot::Mutex<ProgressFn>>>,
    pub(crate) cancel: Option<CancelHandle>,
    pub(crate) rdma: Option<Arc<dyn RdmaProvider>>,
}

impl Default for DownloadArgs {
    fn default() -> Self {
        DownloadArgs {
            part_size: DEFAULT_DOWNLOAD_PART_SIZE,
            max_inflight_parts: 8,
            memory_limit: u64::MAX,
            headers: Vec::new(),
            verify_checksum: true,
            strict_checksums: false,
            progress: None,
            cancel: None,
            rdma: None,
        }
    }
}

impl fmt::Debug for DownloadArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownloadArgs")
            .field("part_size", &self.part_size)
            .field("max_inflight_parts", &self.max_inflight_parts)
            .field("memory_limit", &self.memory_limit)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("verify_checksum", &self.verify_checksum)
            .field("strict_checksums", &self.strict_checksums)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .field("rdma", &self.rdma.is_some())
            .finish()
    }
}

impl DownloadArgs {
    /// Arguments with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The size of each ranged GET (the last one may be shorter), 1 MiB to
    /// 5 GiB (4 GiB − 1 with RDMA). Ranged GETs have no 5 MiB minimum as
    /// parts of an upload do; below 1 MiB the per-request cost dominates.
    ///
    /// This is the largest range: with fewer ranges than would make full
    /// waves, ranges are made smaller (down to 1 MiB) so that they divide
    /// evenly among the ranges in flight. 200 MiB in 8 MiB ranges would be 25
    /// ranges, 4 waves of 8 with the last running one range alone; it is
    /// fetched as 32 ranges of 6.25 MiB instead.
    ///
    /// Defaults to 8 MiB.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// How many ranges are fetched at the same time, 1 to 100; each takes
    /// a worker thread and a connection of the client's, shared by all its
    /// transfers ([`ClientBuilder::max_connections`](crate::ClientBuilder::max_connections)),
    /// while it is on the wire. `1` is a strictly sequential download.
    ///
    /// Memory used is `(max_inflight_parts + 1) × part_size` (less for a
    /// small object), bounded by [`memory_limit`](Self::memory_limit).
    ///
    /// Defaults to 8.
    pub fn max_inflight_parts(mut self, n: usize) -> Self {
        self.max_inflight_parts = n;
        self
    }

    /// The most memory the buffers (slabs) of this download may take, within
    /// the client's [`memory_limit`](crate::ClientBuilder::memory_limit),
    /// which this can only lower. When `(max_inflight_parts + 1) × part_size`
    /// exceeds it, fewer parts are put in flight (logged at INFO); when not
    /// even two slabs fit, the download fails before anything is sent.
    ///
    /// Defaults to the client's limit.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Adds a header to the HeadObject and to every ranged GET (SSE-C keys,
    /// `x-amz-request-payer`, …).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Whether the HeadObject asks for the object's checksum
    /// (`x-amz-checksum-mode: ENABLED`) and, when the server returns a
    /// full-object CRC64NVME or CRC32C, the downloaded bytes are checked
    /// against it ([`Error::ChecksumMismatch`](crate::Error::ChecksumMismatch) otherwise). Composite
    /// (per-part) checksums cannot be checked this way and are ignored.
    ///
    /// Defaults to `true`.
    pub fn verify_checksum(mut self, verify: bool) -> Self {
        self.verify_checksum = verify;
        self
    }

    /// Whether a full-object checksum the server sent that cannot be a value
    /// of its algorithm (the wrong length: some servers send a CRC32 under
    /// the CRC64NVME header) fails the download. Without this it is
    /// "unverifiable": a warning in the log, and the download succeeds. A
    /// well-formed checksum that differs from the bytes fails either way.
    ///
    /// Defaults to `false`.
    pub fn strict_checksums(mut self, strict: bool) -> Self {
        self.strict_checksums = strict;
        self
    }

    /// Called on the caller's thread each time a range is written (into a
    /// `Write`: in order); `bytes_sent` counts the bytes downloaded so far and
    /// `total` is the object's size. Return `false` to cancel the download
    /// ([`Error::Cancelled`](crate::Error::Cancelled)).
    pub fn on_progress(mut self, f: impl FnMut(Progress) -> bool + Send + 'static) -> Self {
        self.progress = Some(Arc::new(parking_lot::Mutex::new(Box::new(f))));
        self
    }

    /// Lets another thread cancel the download.
    pub fn cancel_handle(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        self
    }

    /// Has the server write each range straight into the slabs by RDMA
    /// through this provider (a ranged GET carrying `x-amz-rdma-token`),
    /// falling back to HTTP when the server or the provider cannot, with the
    /// same rules as uploads (docs/RDMA.md).
    ///
    /// Defaults to none: ranges come over HTTP.
    pub fn rdma(mut self, provider: Arc<dyn RdmaProvider>) -> Self {
        self.rdma = Some(provider);
        self
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled)
    }
}

/// What a finished download returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOutput {
    /// The object's size: the bytes written.
    pub size: u64,
    /// The ETag every range was fetched under, exactly as HeadObject sent it.
    pub etag: String,
    /// The version id HeadObject reported, when the bucket is versioned.
    pub version_id: Option<String>,
    /// Number of ranged GETs (0 for an empty object).
    pub parts: u64,
    /// The full-object checksum (base64) the bytes were verified against,
    /// when the server returned one and verification was on.
    pub checksum: Option<String>,
    /// Number of buffers (slabs) this download mapped.
    pub slabs: usize,
    /// Bytes of buffers this download mapped.
    pub slab_bytes: u64,
}
