//! The arguments of a tree transfer and what it returns.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::pipeline::CancelHandle;
use crate::{DownloadArgs, Error, PutObjectArgs};

/// Objects transferred at once by default.
///
/// A tree of small files is bound by per-request latency, not bandwidth: one
/// object at a time leaves the link idle between requests. 16 objects in
/// flight keep a loopback or LAN server busy (the AWS transfer manager and
/// `aws s3 cp` run 10 to 16 by default) while staying well within the
/// client's memory limit and a server's connection limits; large objects
/// bring their own parallelism (their parts in flight) on top.
pub const DEFAULT_TREE_CONCURRENCY: usize = 16;

/// How far a tree transfer has got, passed to
/// [`TreeArgs::on_progress`]'s callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TreeProgress {
    /// Objects finished (successfully or not).
    pub objects_done: u64,
    /// Objects in the tree (files found, or keys listed).
    pub objects_total: u64,
    /// Bytes acknowledged (upload) or written (download) so far, over every
    /// object; the bytes of an object that failed are taken back.
    pub bytes_done: u64,
    /// Bytes in the tree (the files' sizes when walked, or the listed sizes).
    pub bytes_total: u64,
}

/// The tree progress callback (in a mutex: it is called from every slot).
pub(crate) type TreeProgressFn = Box<dyn FnMut(TreeProgress) -> bool + Send>;

/// The arguments of [`Client::upload_dir`](crate::Client::upload_dir) and
/// [`Client::download_prefix`](crate::Client::download_prefix), set with
/// chained methods.
///
/// ```
/// use s3pump::{PutObjectArgs, TreeArgs};
/// let args = TreeArgs::new()
///     .concurrency(32)
///     .keep_going(true)
///     .put_args(PutObjectArgs::new().max_inflight_parts(4))
///     .on_progress(|p| {
///         eprintln!("{}/{} objects, {} bytes", p.objects_done, p.objects_total, p.bytes_done);
///         true // return false to cancel
///     });
/// # drop(args);
/// ```
#[derive(Clone)]
pub struct TreeArgs {
    pub(crate) concurrency: usize,
    pub(crate) keep_going: bool,
    pub(crate) follow_symlinks: bool,
    pub(crate) put: PutObjectArgs,
    pub(crate) get: DownloadArgs,
    pub(crate) progress: Option<Arc<parking_lot::Mutex<TreeProgressFn>>>,
    pub(crate) cancel: Option<CancelHandle>,
}

impl Default for TreeArgs {
    fn default() -> Self {
        TreeArgs {
            concurrency: DEFAULT_TREE_CONCURRENCY,
            keep_going: false,
            follow_symlinks: false,
            put: PutObjectArgs::new(),
            get: DownloadArgs::new(),
            progress: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for TreeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeArgs")
            .field("concurrency", &self.concurrency)
            .field("keep_going", &self.keep_going)
            .field("follow_symlinks", &self.follow_symlinks)
            .field("put", &self.put)
            .field("get", &self.get)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl TreeArgs {
    /// Arguments with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Objects transferred at once (at least 1), each on its own thread,
    /// each with its own parts in flight.
    ///
    /// Defaults to [`DEFAULT_TREE_CONCURRENCY`] (16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Whether to go on with the other objects after one failed. Without it
    /// the first failure starts no new object; the ones already running
    /// finish (successfully or not), and every failure is in the summary.
    ///
    /// Defaults to `false`.
    pub fn keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Whether an upload follows symbolic links (to files and to
    /// directories; a directory loop is then reported as a failure).
    /// Without it a symbolic link is skipped, with a warning in the log, and
    /// counted in [`TreeSummary::skipped`].
    ///
    /// Defaults to `false`.
    pub fn follow_symlinks(mut self, follow: bool) -> Self {
        self.follow_symlinks = follow;
        self
    }

    /// The arguments of each object's upload (part size, parts in flight,
    /// checksum, content type, metadata, …). Their progress callback and
    /// cancel handle are replaced by the tree's.
    ///
    /// Defaults to `PutObjectArgs::new()`.
    pub fn put_args(mut self, args: PutObjectArgs) -> Self {
        self.put = args;
        self
    }

    /// The arguments of each object's download. Their progress callback and
    /// cancel handle are replaced by the tree's.
    ///
    /// Defaults to `DownloadArgs::new()`.
    pub fn download_args(mut self, args: DownloadArgs) -> Self {
        self.get = args;
        self
    }

    /// Called (from any of the transfer's threads, one call at a time) as
    /// bytes and objects complete; return `false` to cancel the whole tree.
    pub fn on_progress(mut self, f: impl FnMut(TreeProgress) -> bool + Send + 'static) -> Self {
        self.progress = Some(Arc::new(parking_lot::Mutex::new(Box::new(f))));
        self
    }

    /// A handle that cancels the whole tree: running objects stop (uploads
    /// are aborted, partial downloads removed) and the call returns
    /// [`Error::Cancelled`].
    pub fn cancel_handle(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        self
    }
}

/// One object of a tree that failed (or was refused).
#[derive(Debug)]
#[non_exhaustive]
pub struct TreeFailure {
    /// The object's key.
    pub key: String,
    /// The local file (uploaded from, or to be written), when there is one:
    /// a refused key has none.
    pub path: Option<PathBuf>,
    /// What went wrong.
    pub error: Error,
}

/// A listed key a tree download skipped without asking for it, and why: a
/// key outside the prefix, or one that would leave the target directory or
/// that a file system cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedKey {
    /// The key, as listed.
    pub key: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What a tree transfer did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TreeSummary {
    /// Objects transferred successfully.
    pub objects: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Objects that failed, in key order.
    pub failures: Vec<TreeFailure>,
    /// Listed keys a download skipped (each also warned of in the log), in
    /// listing order: outside the prefix, or unsafe as a local path.
    pub refused: Vec<RefusedKey>,
    /// Objects not started because an earlier one failed (without
    /// [`TreeArgs::keep_going`]).
    pub not_started: u64,
    /// Entries skipped on purpose: symbolic links not followed, special
    /// files (upload), directory markers (download).
    pub skipped: u64,
    /// Wall time of the whole transfer, listing or walking included.
    pub seconds: f64,
}

impl TreeSummary {
    /// Whether every object was transferred (none failed, none left
    /// unstarted, no listed key refused).
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty() && self.not_started == 0 && self.refused.is_empty()
    }
}
