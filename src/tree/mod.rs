//! Many objects at once: a local directory tree to a prefix
//! ([`Client::upload_dir`]) and a prefix to a local directory
//! ([`Client::download_prefix`]).
//!
//! Each object goes through [`Client::upload_file`] or
//! [`Client::download_to_file`] (their parts, checksums, retries, aborts and
//! temporary files); this module only decides which objects, runs
//! [`TreeArgs::concurrency`] of them at once on scoped threads (one per
//! slot, taking the next object when done), sums their progress and
//! collects the summary. The objects share the client's buffers and memory
//! limit as any concurrent transfers do.

pub(crate) mod args;
mod paths;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::error::quote;
use crate::pipeline::{CancelHandle, Progress};
use crate::s3::object::validate_bucket;
use crate::{Client, Error, Result};
use args::{RefusedKey, TreeArgs, TreeFailure, TreeProgress, TreeSummary};
use paths::Found;

/// One object to transfer.
struct Job {
    key: String,
    /// The local file; `Err` when the key was refused (download) or the entry
    /// cannot be uploaded.
    path: std::result::Result<PathBuf, String>,
    size: u64,
}

/// What the slots share.
struct Shared {
    cancel: CancelHandle,
    /// Set by the first failure (without keep_going): start nothing new.
    stop: AtomicBool,
    next: AtomicUsize,
    started: AtomicU64,
    objects_done: AtomicU64,
    bytes_done: AtomicU64,
    objects_total: u64,
    bytes_total: u64,
    progress: Option<Arc<Mutex<args::TreeProgressFn>>>,
    outcome: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    objects: u64,
    bytes: u64,
    failures: Vec<TreeFailure>,
}

impl Shared {
    /// Calls the tree's callback; `false` if it asked to cancel.
    fn report(&self) -> bool {
        let Some(f) = &self.progress else {
            return true;
        };
        let p = TreeProgress {
            objects_done: self.objects_done.load(Ordering::SeqCst),
            objects_total: self.objects_total,
            bytes_done: self.bytes_done.load(Ordering::SeqCst),
            bytes_total: self.bytes_total,
        };
        let go_on = (f.lock())(p);
        if !go_on {
            self.cancel.cancel();
        }
        go_on
    }

    /// A per-object progress callback adding this object's bytes to the
    /// tree's; `last` keeps what it reported so far.
    fn object_progress(
        self: &Arc<Self>,
        last: &Arc<AtomicU64>,
    ) -> Arc<Mutex<crate::pipeline::ProgressFn>> {
        let shared = Arc::clone(self);
        let last = Arc::clone(last);
        let f = move |p: Progress| {
            let before = last.swap(p.bytes_sent, Ordering::SeqCst);
            let delta = p.bytes_sent.wrapping_sub(before);
            shared.bytes_done.fetch_add(delta, Ordering::SeqCst);
            shared.report()
        };
        Arc::new(Mutex::new(Box::new(f)))
    }
}

impl Client {
    /// Uploads every regular file under `dir` to `bucket`, each as the key
    /// `prefix` + its path relative to `dir` with `/` separators (a `/` is
    /// put after a non-empty `prefix` that lacks one), with up to
    /// [`TreeArgs::concurrency`] files at once, each through
    /// [`Client::upload_file`] with [`TreeArgs::put_args`].
    ///
    /// Symbolic links are skipped unless [`TreeArgs::follow_symlinks`];
    /// empty directories make no object. A file that fails (or cannot be a
    /// key: a name that is not UTF-8) is a [`TreeFailure`] in the summary;
    /// without [`TreeArgs::keep_going`] the first one starts no new file.
    /// The error is for the whole tree: `dir` unreadable, an invalid
    /// bucket, or [`Error::Cancelled`].
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let s = client.upload_dir("./photos", "bucket", "photos/", s3pump::TreeArgs::new())?;
    /// println!("{} objects, {} bytes, {} failed", s.objects, s.bytes, s.failures.len());
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn upload_dir(
        &self,
        dir: impl AsRef<Path>,
        bucket: &str,
        prefix: &str,
        args: TreeArgs,
    ) -> Result<TreeSummary> {
        let started = Instant::now();
        validate_bucket(bucket)?;
        let prefix = paths::normalize_prefix(prefix);
        let mut skipped = 0;
        let mut jobs = Vec::new();
        for found in paths::walk(dir.as_ref(), args.follow_symlinks)? {
            match found {
                Found::File { rel, path, size } => jobs.push(Job {
                    key: format!("{prefix}{rel}"),
                    path: Ok(path),
                    size,
                }),
                Found::Bad { rel, path, error } => jobs.push(Job {
                    key: format!("{prefix}{rel}"),
                    path: Err(format!("{}: {error}", path.display())),
                    size: 0,
                }),
                Found::Skipped => skipped += 1,
            }
        }
        let mut summary = self.run_tree(jobs, &args, |client, job, path, cancel, progress| {
            let mut put = args.put.clone();
            put.cancel = Some(cancel);
            put.progress = Some(progress);
            client
                .upload_file(bucket, &job.key, path, put)
                .map(|o| o.bytes)
        })?;
        summary.skipped = skipped;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// Downloads every object under `prefix` in `bucket` into `dir` (made if
    /// missing), each to `dir` + the key after `prefix` (a `/` is put after
    /// a non-empty `prefix` that lacks one), with up to
    /// [`TreeArgs::concurrency`] objects at once, each through
    /// [`Client::download_to_file`] with [`TreeArgs::download_args`]: a
    /// temporary file renamed into place when complete.
    ///
    /// Keys ending in `/` (directory markers) are skipped. A listed key
    /// that does not start with `prefix` (a server that ignores `prefix=`),
    /// or that would leave `dir` or that the file system cannot hold (a
    /// `..`, `.` or empty segment, a leading `/`, a NUL, a segment over 255
    /// bytes) is refused: warned of in the log, listed in
    /// [`TreeSummary::refused`], nothing asked or written for it, and the
    /// other objects go on. No file is written through a symbolic link found
    /// under `dir`, nor into a FIFO, device or socket there (that object fails).
    /// Without [`TreeArgs::keep_going`] the first failure starts
    /// no new object. The error is for the whole tree: the listing failed,
    /// `dir` cannot be made, or [`Error::Cancelled`].
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let s = client.download_prefix("bucket", "photos/", "./copy", s3pump::TreeArgs::new())?;
    /// assert!(s.is_complete());
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn download_prefix(
        &self,
        bucket: &str,
        prefix: &str,
        dir: impl AsRef<Path>,
        args: TreeArgs,
    ) -> Result<TreeSummary> {
        let started = Instant::now();
        validate_bucket(bucket)?;
        let root = dir.as_ref();
        let prefix = paths::normalize_prefix(prefix);
        let mut skipped = 0;
        let mut jobs = Vec::new();
        let mut refused = Vec::new();
        for object in self.list_objects(bucket, &prefix) {
            let object = object?;
            let reason = match object.key.strip_prefix(&prefix) {
                None => Err(format!("not under the prefix {}", quote(&prefix))),
                Some(rest) if rest.ends_with('/') => {
                    skipped += 1;
                    continue;
                }
                Some(rest) => paths::safe_relative(rest),
            };
            match reason {
                Ok(path) => jobs.push(Job {
                    key: object.key,
                    path: Ok(path),
                    size: object.size,
                }),
                Err(reason) => {
                    log::warn!("skipped s3://{bucket}/{}: {reason}", quote(&object.key));
                    refused.push(RefusedKey {
                        key: object.key,
                        reason,
                    });
                }
            }
        }
        std::fs::create_dir_all(root).map_err(|e| Error::Io {
            context: format!("cannot create {}", root.display()),
            source: e,
        })?;
        let mut summary = self.run_tree(jobs, &args, |client, job, rel, cancel, progress| {
            let path = paths::prepare_parent(root, rel)?;
            let mut get = args.get.clone();
            get.cancel = Some(cancel);
            get.progress = Some(progress);
            client
                .download_to_file(bucket, &job.key, &path, get)
                .map(|o| o.size)
        })?;
        // Failures name the file that was to be written.
        for f in &mut summary.failures {
            if let Some(rel) = &f.path {
                f.path = Some(root.join(rel));
            }
        }
        summary.skipped = skipped;
        summary.refused = refused;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// Runs `jobs` on up to `args.concurrency` scoped threads; `one`
    /// transfers one object (its path, the cancel handle and progress
    /// callback to give it) and returns its bytes.
    fn run_tree<F>(&self, jobs: Vec<Job>, args: &TreeArgs, one: F) -> Result<TreeSummary>
    where
        F: Fn(
                &Client,
                &Job,
                &Path,
                CancelHandle,
                Arc<Mutex<crate::pipeline::ProgressFn>>,
            ) -> Result<u64>
            + Sync,
    {
        let cancel = args.cancel.clone().unwrap_or_default();
        let shared = Arc::new(Shared {
            cancel: cancel.clone(),
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            objects_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            objects_total: jobs.len() as u64,
            bytes_total: jobs.iter().map(|j| j.size).sum(),
            progress: args.progress.clone(),
            outcome: Mutex::new(Outcome::default()),
        });
        let slots = args.concurrency.min(jobs.len());
        std::thread::scope(|scope| {
            for _ in 0..slots {
                scope.spawn(|| {
                    self.run_slot(&jobs, &shared, args.keep_going, &one);
                });
            }
        });
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let started = shared.started.load(Ordering::SeqCst);
        let mut outcome = std::mem::take(&mut *shared.outcome.lock());
        outcome.failures.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(TreeSummary {
            objects: outcome.objects,
            bytes: outcome.bytes,
            failures: outcome.failures,
            not_started: jobs.len() as u64 - started,
            refused: Vec::new(),
            skipped: 0,
            seconds: 0.0,
        })
    }

    fn run_slot<F>(&self, jobs: &[Job], shared: &Arc<Shared>, keep_going: bool, one: &F)
    where
        F: Fn(
                &Client,
                &Job,
                &Path,
                CancelHandle,
                Arc<Mutex<crate::pipeline::ProgressFn>>,
            ) -> Result<u64>
            + Sync,
    {
        loop {
            if shared.cancel.is_cancelled() || shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let i = shared.next.fetch_add(1, Ordering::SeqCst);
            let Some(job) = jobs.get(i) else { return };
            shared.started.fetch_add(1, Ordering::SeqCst);
            let last = Arc::new(AtomicU64::new(0));
            let result = match &job.path {
                Err(why) => Err(Error::invalid(why)),
                Ok(path) => one(
                    self,
                    job,
                    path,
                    shared.cancel.clone(),
                    shared.object_progress(&last),
                ),
            };
            let reported = last.load(Ordering::SeqCst);
            match result {
                Ok(bytes) => {
                    shared
                        .bytes_done
                        .fetch_add(bytes.saturating_sub(reported), Ordering::SeqCst);
                    let mut o = shared.outcome.lock();
                    o.objects += 1;
                    o.bytes += bytes;
                }
                Err(error) => {
                    shared.bytes_done.fetch_sub(reported, Ordering::SeqCst);
                    if !keep_going && !error.is_cancelled() {
                        shared.stop.store(true, Ordering::SeqCst);
                    }
                    shared.outcome.lock().failures.push(TreeFailure {
                        key: job.key.clone(),
                        path: job.path.as_ref().ok().cloned(),
                        error,
                    });
                }
            }
            shared.objects_done.fetch_add(1, Ordering::SeqCst);
            shared.report();
        }
    }
}
