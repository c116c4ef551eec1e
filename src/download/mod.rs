//! Parallel ranged downloads: one HeadObject for the size and ETag, then N
//! worker threads, each with its own connection, fetching byte ranges with
//! `If-Match` into page-aligned slabs (over HTTP, or by RDMA where a provider
//! is set and the server takes it). Into a file, each worker writes its range
//! at its offset in a temporary file that is renamed over the destination at
//! the end; into a `Write`, the caller's thread writes the ranges strictly in
//! order as they become contiguous.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use ureq::Agent;
use ureq::http::{HeaderMap, Method};

use crate::client::retry::is_retryable;
use crate::client::{Request, Response, check_status, header};
use crate::pipeline::plan::{MAX_PART_SIZE, MAX_RDMA_BUFFER, check_inflight, fit_in_memory};
use crate::pipeline::slab::{Slab, SlabPool};
use crate::rdma::{RdmaOp, RdmaProvider, RdmaRegistration};
use crate::s3::checksum::Crc;
use crate::s3::object::validate_target;
use crate::upload::args::{GIB, MIB, ProgressFn};
use crate::upload::panic_message;
use crate::upload::part::{RDMA_REPLY_HEADER, RDMA_TOKEN_HEADER};
use crate::{CancelHandle, ChecksumAlgorithm, Client, Error, Progress, Result};

/// Reply header of an RDMA GetObject: how many bytes the server wrote into
/// the client's memory.
pub(crate) const RDMA_LENGTH_HEADER: &str = "x-amz-rdma-length";
/// Smallest range a download asks for at once.
pub(crate) const MIN_DOWNLOAD_PART_SIZE: u64 = MIB;
/// Range size unless the caller sets one.
pub(crate) const DEFAULT_DOWNLOAD_PART_SIZE: u64 = 8 * MIB;
/// How often the caller's thread looks at the cancel handle while waiting.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// The operation name of a ranged GET, in errors and logs.
const GET: &str = "GetObject";

/// The arguments of [`Client::download`] and [`Client::download_to_file`],
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
pub struct DownloadArgs {
    part_size: u64,
    max_inflight_parts: usize,
    memory_limit: u64,
    headers: Vec<(String, String)>,
    verify_checksum: bool,
    progress: Option<parking_lot::Mutex<ProgressFn>>,
    cancel: Option<CancelHandle>,
    rdma: Option<Arc<dyn RdmaProvider>>,
}

impl Default for DownloadArgs {
    fn default() -> Self {
        DownloadArgs {
            part_size: DEFAULT_DOWNLOAD_PART_SIZE,
            max_inflight_parts: 8,
            memory_limit: 2 * GIB,
            headers: Vec::new(),
            verify_checksum: true,
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
    /// Defaults to 8 MiB.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// How many ranges are fetched at the same time, 1 to 100; each has its
    /// own worker thread and connection. `1` is a strictly sequential
    /// download.
    ///
    /// Memory used is `(max_inflight_parts + 1) × part_size` (less for a
    /// small object), bounded by [`memory_limit`](Self::memory_limit).
    ///
    /// Defaults to 8.
    pub fn max_inflight_parts(mut self, n: usize) -> Self {
        self.max_inflight_parts = n;
        self
    }

    /// The most memory the buffers (slabs) of one download may take. When
    /// `(max_inflight_parts + 1) × part_size` exceeds it, fewer ranges are put
    /// in flight (logged once at INFO); when not even two slabs fit, the
    /// download fails before anything is fetched.
    ///
    /// Defaults to 2 GiB.
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
    /// against it ([`Error::ChecksumMismatch`] otherwise). Composite
    /// (per-part) checksums cannot be checked this way and are ignored.
    ///
    /// Defaults to `true`.
    pub fn verify_checksum(mut self, verify: bool) -> Self {
        self.verify_checksum = verify;
        self
    }

    /// Called on the caller's thread each time a range is written (into a
    /// `Write`: in order); `bytes_sent` counts the bytes downloaded so far and
    /// `total` is the object's size. Return `false` to cancel the download
    /// ([`Error::Cancelled`]).
    pub fn on_progress(mut self, f: impl FnMut(Progress) -> bool + Send + 'static) -> Self {
        self.progress = Some(parking_lot::Mutex::new(Box::new(f)));
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

    fn cancelled(&self) -> bool {
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

impl Client {
    /// Downloads `bucket/key` into the file at `path`, with up to
    /// [`max_inflight_parts`](DownloadArgs::max_inflight_parts) ranged GETs
    /// in flight, each written at its offset as soon as it arrives.
    ///
    /// The bytes go to a temporary file in the same directory
    /// (`.<name>.s3pump-<pid>-<n>.tmp`), renamed over `path` only when every
    /// range arrived and was checked; on any failure the temporary file is
    /// removed and `path` is left as it was. Every range is fetched with
    /// `If-Match: <ETag>`, so an object replaced during the download is
    /// [`Error::ObjectChanged`], never a file mixing two versions. The file
    /// is not fsynced.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let out = client.download_to_file("bucket", "big.bin", "big.bin", s3pump::DownloadArgs::new())?;
    /// println!("{} bytes in {} ranges", out.size, out.parts);
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn download_to_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
        args: DownloadArgs,
    ) -> Result<DownloadOutput> {
        let path = path.as_ref();
        validate_target(bucket, key)?;
        if path.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of the file to write",
                path.display()
            )));
        }
        let temp = TempFile::create(path)?;
        let out = self.download_into(bucket, key, Sink::<std::io::Sink>::File(&temp.file), args)?;
        temp.persist(path)?;
        Ok(out)
    }

    /// Downloads `bucket/key` into `dest`, strictly in order, with up to
    /// [`max_inflight_parts`](DownloadArgs::max_inflight_parts) ranged GETs
    /// in flight. Ranges that arrive early wait in their buffers (at most
    /// `max_inflight_parts + 1` of them, so memory stays bounded) until the
    /// ones before them are written; all writing happens on the caller's
    /// thread, and `dest` is flushed at the end.
    ///
    /// Every range is fetched with `If-Match: <ETag>`: an object replaced
    /// during the download is [`Error::ObjectChanged`]. On any error `dest`
    /// may already have received a prefix of the object: a `Write` cannot
    /// be rewound.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let out = client.download("bucket", "big.bin", &mut std::io::stdout().lock(), s3pump::DownloadArgs::new())?;
    /// eprintln!("{} bytes, ETag {}", out.size, out.etag);
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn download<W: Write + ?Sized>(
        &self,
        bucket: &str,
        key: &str,
        dest: &mut W,
        args: DownloadArgs,
    ) -> Result<DownloadOutput> {
        validate_target(bucket, key)?;
        let out = self.download_into(bucket, key, Sink::Writer(&mut *dest), args)?;
        dest.flush().map_err(|e| Error::Io {
            context: format!("{bucket}/{key}: flushing the destination"),
            source: e,
        })?;
        Ok(out)
    }

    fn download_into<W: Write + ?Sized>(
        &self,
        bucket: &str,
        key: &str,
        sink: Sink<'_, W>,
        mut args: DownloadArgs,
    ) -> Result<DownloadOutput> {
        if args.cancelled() {
            return Err(Error::Cancelled);
        }
        check_args(&args)?;
        let head = head(self, bucket, key, &args)?;
        let plan = plan(head.size, &args)?;
        let progress = args.progress.take().map(parking_lot::Mutex::into_inner);
        let pool = SlabPool::new(plan.slab_len, plan.slabs, args.rdma.clone());
        let download = Download {
            client: self,
            bucket,
            key,
            args: &args,
            head: &head,
            plan: &plan,
            pool: &pool,
            next: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            http_only: AtomicBool::new(false),
        };
        let local = download.run(sink, progress)?;
        if let Some(expected) = &head.checksum {
            let local = local.unwrap_or_else(|| {
                expected
                    .0
                    .compute(&[])
                    .expect("a full-object checksum has an algorithm")
            });
            let local = local.to_base64();
            if local != expected.1 {
                return Err(Error::ChecksumMismatch(format!(
                    "{bucket}/{key}: the server reports full-object {} {}, the bytes downloaded \
                     have {local}",
                    expected.0.name().unwrap_or("checksum"),
                    expected.1
                )));
            }
        }
        let (slabs, slab_bytes) = pool.mapped();
        Ok(DownloadOutput {
            size: head.size,
            etag: head.etag.clone().unwrap_or_default(),
            version_id: head.version_id.clone(),
            parts: plan.parts,
            checksum: head.checksum.map(|c| c.1),
            slabs,
            slab_bytes,
        })
    }
}

/// Where the bytes go.
enum Sink<'a, W: ?Sized> {
    /// Workers write each range at its offset.
    File(&'a File),
    /// The caller's thread writes the ranges in order.
    Writer(&'a mut W),
}

/// What HeadObject said about the object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    size: u64,
    etag: Option<String>,
    version_id: Option<String>,
    /// A full-object checksum to verify: algorithm and base64 value.
    checksum: Option<(ChecksumAlgorithm, String)>,
}

fn head(client: &Client, bucket: &str, key: &str, args: &DownloadArgs) -> Result<Head> {
    let mut req =
        Request::new("HeadObject", Method::HEAD, bucket, Some(key)).headers(args.headers.clone());
    if args.verify_checksum {
        req = req.header("x-amz-checksum-mode", "ENABLED");
    }
    let response = client.send_retrying(client.agent(), &req, true)?;
    let h = response.headers();
    let size = header(h, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::InvalidResponse {
            operation: "HeadObject",
            message: "no Content-Length".into(),
        })?;
    let etag = header(h, "etag").filter(|e| !e.is_empty());
    if etag.is_none() {
        log::warn!(
            "{bucket}/{key}: HeadObject sent no ETag; the ranges are fetched without If-Match"
        );
    }
    Ok(Head {
        size,
        etag,
        version_id: header(h, "x-amz-version-id"),
        checksum: if args.verify_checksum {
            full_object_checksum(h)
        } else {
            None
        },
    })
}

/// The full-object checksum in a reply's headers, if it has one s3pump can
/// verify: CRC64NVME (always full-object), or CRC32C unless it is composite
/// (`x-amz-checksum-type: COMPOSITE`, or a value ending in `-<parts>`).
fn full_object_checksum(h: &HeaderMap) -> Option<(ChecksumAlgorithm, String)> {
    if let Some(v) = header(h, "x-amz-checksum-crc64nvme") {
        return Some((ChecksumAlgorithm::Crc64Nvme, v));
    }
    let composite = header(h, "x-amz-checksum-type").is_some_and(|t| t == "COMPOSITE");
    header(h, "x-amz-checksum-crc32c")
        .filter(|v| !composite && !v.contains('-'))
        .map(|v| (ChecksumAlgorithm::Crc32c, v))
}

/// How one download will run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    size: u64,
    part_size: u64,
    /// Number of ranged GETs.
    parts: u64,
    /// Worker threads, i.e. ranges in flight.
    inflight: usize,
    /// Bytes per buffer: the part size, or the object's size when smaller.
    slab_len: usize,
    /// Most buffers the download maps: `inflight + 1`.
    slabs: usize,
}

/// Checks what can be checked before anything is sent.
fn check_args(args: &DownloadArgs) -> Result<()> {
    check_inflight(args.max_inflight_parts)?;
    let ps = args.part_size;
    let max = if args.rdma.is_some() {
        MAX_RDMA_BUFFER
    } else {
        MAX_PART_SIZE
    };
    if !(MIN_DOWNLOAD_PART_SIZE..=max).contains(&ps) {
        return Err(Error::invalid(format!(
            "part_size is {ps} bytes; a download's part size must be between \
             {MIN_DOWNLOAD_PART_SIZE} (1 MiB) and {max} bytes{}",
            if args.rdma.is_some() {
                " (4 GiB - 1 with RDMA)"
            } else {
                " (5 GiB)"
            }
        )));
    }
    Ok(())
}

fn plan(size: u64, args: &DownloadArgs) -> Result<Plan> {
    check_args(args)?;
    let part_size = args.part_size;
    let parts = size.div_ceil(part_size);
    let slab_len = part_size.min(size).max(1);
    let inflight = fit_in_memory(args.max_inflight_parts, parts, slab_len, args.memory_limit)?;
    Ok(Plan {
        size,
        part_size,
        parts,
        inflight,
        slab_len: usize::try_from(slab_len)
            .map_err(|_| Error::invalid("part_size does not fit in memory"))?,
        slabs: inflight + 1,
    })
}

/// One download's shared state, borrowed by every thread.
struct Download<'a> {
    client: &'a Client,
    bucket: &'a str,
    key: &'a str,
    args: &'a DownloadArgs,
    head: &'a Head,
    plan: &'a Plan,
    pool: &'a SlabPool,
    /// The next range to claim (0-based).
    next: AtomicU64,
    /// Set on the first error: workers stop claiming ranges.
    stopped: AtomicBool,
    /// Set once the server has shown it does not take RDMA.
    http_only: AtomicBool,
}

/// What the workers tell the caller's thread.
enum Event {
    /// A range arrived (and, into a file, was written). Into a `Write`, its
    /// buffer comes along to be written in order.
    Range {
        index: u64,
        len: usize,
        crc: Option<Crc>,
        slab: Option<Slab>,
    },
    /// A range failed for good, or a worker failed or panicked.
    Failed { index: Option<u64>, error: Error },
}

/// Sends `Event::Failed` if the worker it lives on unwinds.
struct PanicGuard<'a>(&'a Sender<Event>);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(Event::Failed {
                index: None,
                error: Error::Panic("a download worker".into()),
            });
        }
    }
}

/// The CRC of the object so far, from ranges that may arrive in any order.
#[derive(Default)]
struct CrcFold {
    next: u64,
    acc: Option<Crc>,
    early: BTreeMap<u64, Crc>,
}

impl CrcFold {
    fn add(&mut self, index: u64, crc: Crc) {
        self.early.insert(index, crc);
        while let Some(c) = self.early.remove(&self.next) {
            self.acc = Some(match self.acc {
                Some(acc) => acc.combine(c),
                None => c,
            });
            self.next += 1;
        }
    }
}

impl Download<'_> {
    /// `(offset, length)` of range `index`.
    fn range(&self, index: u64) -> (u64, usize) {
        let start = index * self.plan.part_size;
        let len = self.plan.part_size.min(self.plan.size - start);
        (start, len as usize)
    }

    /// Runs the workers and, on the caller's thread, collects the ranges
    /// (writing them in order into a `Write`). Returns the combined CRC of
    /// the object when a checksum is being verified.
    fn run<W: Write + ?Sized>(
        &self,
        sink: Sink<'_, W>,
        mut progress: Option<ProgressFn>,
    ) -> Result<Option<Crc>> {
        if self.plan.parts == 0 {
            return Ok(None);
        }
        let (file, mut writer) = match sink {
            Sink::File(f) => (Some(f), None),
            Sink::Writer(w) => (None, Some(w)),
        };
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut stop_tx = Some(stop_tx);
        let mut failure: Option<(Option<u64>, Error)> = None;
        let mut crc = CrcFold::default();
        let mut waiting: BTreeMap<u64, (Slab, usize)> = BTreeMap::new();
        let mut next_write = 0u64;
        let mut done = 0u64;
        let mut bytes = 0u64;

        thread::scope(|s| {
            let workers: Vec<_> = (0..self.plan.inflight)
                .map(|_| {
                    let (event_tx, stop_rx) = (event_tx.clone(), stop_rx.clone());
                    s.spawn(move || {
                        let _guard = PanicGuard(&event_tx);
                        self.work(file, &event_tx, &stop_rx);
                    })
                })
                .collect();
            drop((event_tx, stop_rx));

            let mut fail =
                |failure: &mut Option<(Option<u64>, Error)>, index: Option<u64>, e: Error| {
                    if failure.is_none() {
                        log::debug!(
                            "download of {}/{} failing{}: {e}",
                            self.bucket,
                            self.key,
                            index
                                .map(|i| format!(" at part {}", i + 1))
                                .unwrap_or_default()
                        );
                        *failure = Some((index, e));
                        self.stopped.store(true, Ordering::SeqCst);
                        stop_tx.take();
                    }
                };
            loop {
                select! {
                    recv(event_rx) -> event => match event {
                        Err(_) => break, // every worker is done
                        Ok(Event::Failed { index, error }) => fail(&mut failure, index, error),
                        Ok(Event::Range { index, len, crc: c, slab }) => {
                            if let Some(c) = c {
                                crc.add(index, c);
                            }
                            let mut written = 0u64;
                            match (slab, writer.as_mut()) {
                                (Some(slab), Some(w)) => {
                                    waiting.insert(index, (slab, len));
                                    while failure.is_none() {
                                        let Some((slab, len)) = waiting.remove(&next_write) else {
                                            break;
                                        };
                                        let start = next_write * self.plan.part_size;
                                        let result = w.write_all(&slab.as_slice()[..len]);
                                        self.pool.release(slab);
                                        if let Err(e) = result {
                                            let e = Error::Io {
                                                context: format!(
                                                    "{}/{}: writing bytes {start}.. to the \
                                                     destination",
                                                    self.bucket, self.key
                                                ),
                                                source: e,
                                            };
                                            fail(&mut failure, Some(next_write), e);
                                            break;
                                        }
                                        next_write += 1;
                                        done += 1;
                                        written += len as u64;
                                    }
                                }
                                (Some(slab), None) => self.pool.release(slab),
                                (None, _) => {
                                    done += 1;
                                    written = len as u64;
                                }
                            }
                            bytes += written;
                            if self.args.cancelled() {
                                fail(&mut failure, None, Error::Cancelled);
                            }
                            if written > 0
                                && let Some(f) = progress.as_mut().filter(|_| failure.is_none())
                            {
                                let p = Progress { bytes_sent: bytes, total: Some(self.plan.size) };
                                if !f(p) {
                                    fail(&mut failure, None, Error::Cancelled);
                                }
                            }
                        }
                    },
                    default(CANCEL_POLL) => {
                        if self.args.cancelled() {
                            fail(&mut failure, None, Error::Cancelled);
                        }
                    }
                }
            }
            if self.args.cancelled() {
                fail(&mut failure, None, Error::Cancelled);
            }
            for handle in workers {
                if let Err(panic) = handle.join() {
                    fail(&mut failure, None, Error::Panic(panic_message(&panic)));
                }
            }
        });
        for (slab, _) in std::mem::take(&mut waiting).into_values() {
            self.pool.release(slab);
        }
        if let Some((_, e)) = failure {
            return Err(e);
        }
        if done != self.plan.parts || bytes != self.plan.size {
            return Err(Error::Panic(format!(
                "the download ended with {done} of {} ranges",
                self.plan.parts
            )));
        }
        Ok(crc.acc)
    }

    /// A worker: claims ranges until none is left or the download stops.
    /// A buffer is taken before a range is claimed, so that into a `Write`
    /// the range the caller waits for always has one.
    fn work(&self, file: Option<&File>, events: &Sender<Event>, stop: &Receiver<()>) {
        let agent = self.client.new_agent();
        loop {
            if self.stopped.load(Ordering::SeqCst)
                || self.next.load(Ordering::SeqCst) >= self.plan.parts
            {
                return;
            }
            let mut slab = match self.pool.acquire(stop) {
                Ok(Some(slab)) => slab,
                Ok(None) => return,
                Err(error) => {
                    let _ = events.send(Event::Failed { index: None, error });
                    return;
                }
            };
            let index = self.next.fetch_add(1, Ordering::SeqCst);
            if index >= self.plan.parts {
                self.pool.release(slab);
                return;
            }
            let (start, len) = self.range(index);
            let mut result = self.fetch(&agent, index, &mut slab);
            if let (Ok(_), Some(file)) = (&result, file)
                && let Err(e) = write_at(file, &slab.as_slice()[..len], start)
            {
                result = Err(Error::Io {
                    context: format!(
                        "{}/{}: writing bytes {start}..{} to the file",
                        self.bucket,
                        self.key,
                        start + len as u64
                    ),
                    source: e,
                });
            }
            let event = match result {
                Ok(crc) => Event::Range {
                    index,
                    len,
                    crc,
                    slab: if file.is_some() {
                        self.pool.release(slab);
                        None
                    } else {
                        Some(slab)
                    },
                },
                Err(error) => {
                    self.pool.release(slab);
                    Event::Failed {
                        index: Some(index),
                        error,
                    }
                }
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }

    /// The ranged GET of range `index`, without the RDMA token.
    fn request(&self, index: u64) -> Request<'_> {
        let (start, len) = self.range(index);
        let mut req = Request::new(GET, Method::GET, self.bucket, Some(self.key))
            .header("range", format!("bytes={start}-{}", start + len as u64 - 1))
            .headers(self.args.headers.clone());
        if let Some(etag) = &self.head.etag {
            req = req.header("if-match", etag.as_str());
        }
        req
    }

    /// Fetches range `index` into `slab`: by RDMA when the slab is
    /// registered and the server takes it, else over HTTP, retried on its
    /// own from scratch into the same slab. Returns the range's CRC when the
    /// object's checksum is being verified.
    fn fetch(&self, agent: &Agent, index: u64, slab: &mut Slab) -> Result<Option<Crc>> {
        let (start, len) = self.range(index);
        let part = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let req = self.request(index);
        let mut reply = None;
        if let Some(registration) = slab.registration()
            && !self.http_only.load(Ordering::Relaxed)
        {
            match self.fetch_by_rdma(agent, &req, part, registration, start, len)? {
                ByRdma::Done => return Ok(self.checksum(&slab.as_slice()[..len])),
                ByRdma::Http(r) => reply = r,
            }
        }
        let buf = &mut slab.as_mut_slice()[..len];
        self.client.retrying(&req, Some(part), true, |_| {
            let response = match reply.take() {
                Some(r) => r,
                None => self.client.send(agent, &req).map_err(|e| self.changed(e))?,
            };
            self.read_range(response, start, buf)
        })?;
        Ok(self.checksum(buf))
    }

    fn checksum(&self, data: &[u8]) -> Option<Crc> {
        self.head
            .checksum
            .as_ref()
            .and_then(|(alg, _)| alg.compute(data))
    }

    /// Tries RDMA: the ranged GET with a fresh token, retried once with a
    /// new token. [`ByRdma::Http`] means the server does not take RDMA (a
    /// reply without the reply header, or 501) or the provider could not
    /// mint a token: the range comes over HTTP, and when the server refused,
    /// every later range too. A 2xx reply without the reply header already
    /// carries the range in its body and is handed back to be read.
    fn fetch_by_rdma(
        &self,
        agent: &Agent,
        req: &Request<'_>,
        part: u32,
        registration: &dyn RdmaRegistration,
        start: u64,
        len: usize,
    ) -> Result<ByRdma> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = match registration.token(0, len, RdmaOp::Get) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!(
                        "{}/{}: {e}; downloading part {part} over HTTP",
                        self.bucket,
                        self.key
                    );
                    return Ok(ByRdma::Http(None));
                }
            };
            let rdma_req = Request::new(GET, Method::GET, self.bucket, Some(self.key))
                .headers(req.headers.clone())
                .header(RDMA_TOKEN_HEADER, token.as_str());
            // While the request is out, no Rust reference to the slab's bytes
            // exists: the server writes them through the registration.
            let result = self.client.send_raw(agent, &rdma_req);
            registration.release_token(token);
            let refused = match &result {
                Ok(r) => r.headers().get(RDMA_REPLY_HEADER).is_none() || r.status() == 501,
                Err(_) => false,
            };
            if refused {
                if !self.http_only.swap(true, Ordering::Relaxed) {
                    log::info!(
                        "{}/{}: the server does not take RDMA (GetObject answered without \
                         {RDMA_REPLY_HEADER}); downloading this and every later part over HTTP",
                        self.bucket,
                        self.key
                    );
                }
                let reply = result.ok().filter(|r| r.status().is_success());
                return Ok(ByRdma::Http(reply));
            }
            let checked = result
                .and_then(|r| check_status(&rdma_req, r))
                .map_err(|e| self.changed(e))
                .and_then(|r| self.check_rdma_reply(r, start, len));
            match checked {
                Ok(()) => return Ok(ByRdma::Done),
                Err(e) if attempt < 2 && is_retryable(&e, true) => log::debug!(
                    "{GET} part {part} RDMA attempt {attempt} failed, retrying with a fresh \
                     token: {e}"
                ),
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks a successful RDMA reply: the right range of the right object,
    /// and as many bytes written as the range holds.
    fn check_rdma_reply(&self, mut response: Response, start: u64, len: usize) -> Result<()> {
        self.check_reply_head(&response, start, len as u64)?;
        match header(response.headers(), RDMA_LENGTH_HEADER) {
            Some(n) if n.trim().parse::<u64>().ok() == Some(len as u64) => {}
            Some(n) => {
                return Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "the server wrote {n} bytes by RDMA for a range of {len} (bytes {start}..)"
                    ),
                });
            }
            // Without the length, the Content-Range checked above vouches for it.
            None if response.headers().contains_key("content-range") => {}
            None => {
                return Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "an RDMA reply with neither {RDMA_LENGTH_HEADER} nor Content-Range"
                    ),
                });
            }
        }
        // The body should be empty; read it to its end so that the
        // connection can be reused.
        let _ = std::io::copy(
            &mut response.body_mut().as_reader().take(1 << 16),
            &mut std::io::sink(),
        );
        Ok(())
    }

    /// Checks a reply's status, ETag and range against what was asked.
    fn check_reply_head(&self, response: &Response, start: u64, len: u64) -> Result<()> {
        let h = response.headers();
        if let (Some(want), Some(got)) = (&self.head.etag, header(h, "etag"))
            && !same_etag(want, &got)
        {
            return Err(Error::ObjectChanged(format!(
                "{}/{} had ETag {want} when the download started, a GET of bytes {start}.. \
                 answered for ETag {got}",
                self.bucket, self.key
            )));
        }
        let status = response.status().as_u16();
        let size = self.plan.size;
        match status {
            206 => match header(h, "content-range")
                .as_deref()
                .map(parse_content_range)
            {
                Some(Some((a, b, total))) if total != Some(size) => {
                    Err(Error::ObjectChanged(format!(
                        "{}/{} was {size} bytes when the download started; a GET of bytes \
                         {a}-{b} says it is {} now",
                        self.bucket,
                        self.key,
                        total.map_or("of unknown size".to_string(), |t| t.to_string())
                    )))
                }
                Some(Some((a, b, _))) if a == start && b + 1 == start + len => Ok(()),
                Some(other) => Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "asked for bytes {start}-{}, the reply's Content-Range is {:?}",
                        start + len - 1,
                        other.map(|_| header(h, "content-range").unwrap_or_default())
                    ),
                }),
                // An RDMA reply may not carry one; the length header is checked then.
                None if h.contains_key(RDMA_REPLY_HEADER) => Ok(()),
                None => Err(Error::InvalidResponse {
                    operation: GET,
                    message: "a 206 reply without Content-Range".into(),
                }),
            },
            // Some servers answer a range covering the whole object with 200.
            200 if start == 0 && len == size => Ok(()),
            200 => Err(Error::InvalidResponse {
                operation: GET,
                message: format!(
                    "asked for bytes {start}-{}, the server sent the whole object (200): it \
                     ignores Range",
                    start + len - 1
                ),
            }),
            other => Err(Error::InvalidResponse {
                operation: GET,
                message: format!("unexpected status {other} for a ranged GET"),
            }),
        }
    }

    /// Reads a ranged GET's reply into `buf`. A body shorter than the range
    /// is a (retryable) transport error; one longer is an invalid reply.
    fn read_range(&self, mut response: Response, start: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        self.check_reply_head(&response, start, len)?;
        if let Some(cl) = header(response.headers(), "content-length")
            && cl.trim().parse::<u64>().ok() != Some(len)
        {
            return Err(Error::InvalidResponse {
                operation: GET,
                message: format!("Content-Length {cl} for a range of {len} bytes"),
            });
        }
        let mut reader = response.body_mut().as_reader();
        let mut n = 0;
        while n < buf.len() {
            match reader.read(&mut buf[n..]) {
                Ok(0) => {
                    return Err(Error::Transport {
                        operation: GET,
                        source: format!(
                            "the body of bytes {start}.. ended after {n} of {len} bytes"
                        )
                        .into(),
                        timeout: false,
                    });
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Transport {
                        operation: GET,
                        timeout: e.kind() == ErrorKind::TimedOut,
                        source: std::io::Error::new(
                            e.kind(),
                            format!("reading bytes {start}.. after {n} of {len}: {e}"),
                        )
                        .into(),
                    });
                }
            }
        }
        // Read to the end, so that the connection can be reused and a
        // longer body is noticed.
        let mut extra = [0u8; 1];
        if let Ok(k) = reader.read(&mut extra)
            && k > 0
        {
            return Err(Error::InvalidResponse {
                operation: GET,
                message: format!("the body of bytes {start}.. is longer than {len} bytes"),
            });
        }
        Ok(())
    }

    /// Turns the replies that mean "the object is not the one HeadObject
    /// described" into [`Error::ObjectChanged`].
    fn changed(&self, e: Error) -> Error {
        match &e {
            Error::S3 { status: 412, .. } => Error::ObjectChanged(format!(
                "{}/{} no longer has ETag {} ({e})",
                self.bucket,
                self.key,
                self.head.etag.as_deref().unwrap_or("")
            )),
            Error::S3 { status: 416, .. } => Error::ObjectChanged(format!(
                "{}/{} is no longer {} bytes long ({e})",
                self.bucket, self.key, self.plan.size
            )),
            _ => e,
        }
    }
}

/// How an RDMA attempt ended, when it did not fail.
enum ByRdma {
    /// The server wrote the range into the slab.
    Done,
    /// Over HTTP instead; with the reply to read when the server already
    /// sent the range in its body.
    Http(Option<Response>),
}

/// Whether two ETags name the same version (weak prefix and quotes ignored).
fn same_etag(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    bare(a) == bare(b)
}

/// Parses `bytes a-b/total` (`total` may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The temporary file a download writes before it is renamed over the
/// destination; removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dest: &Path) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} has no file name", dest.display())))?;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let path = dir.join(format!(
            ".{}.s3pump-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::Io {
                context: format!("creating {}", path.display()),
                source: e,
            })?;
        Ok(TempFile {
            path,
            file,
            keep: false,
        })
    }

    /// Renames the file over `dest`.
    fn persist(mut self, dest: &Path) -> Result<()> {
        std::fs::rename(&self.path, dest).map_err(|e| Error::Io {
            context: format!("renaming {} to {}", self.path.display(), dest.display()),
            source: e,
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            log::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    #[test]
    fn plans() {
        let args = DownloadArgs::new();
        let p = plan(20 * MIB + 1, &args).unwrap();
        assert_eq!(
            (p.part_size, p.parts, p.inflight, p.slabs),
            (8 * MIB, 3, 3, 4)
        );
        assert_eq!(p.slab_len, 8 << 20);
        let p = plan(1000, &args).unwrap();
        assert_eq!((p.parts, p.inflight, p.slabs, p.slab_len), (1, 1, 2, 1000));
        let p = plan(0, &args).unwrap();
        assert_eq!((p.parts, p.slab_len), (0, 1));
        let p = plan(GIB, &DownloadArgs::new().part_size(MIB)).unwrap();
        assert_eq!((p.parts, p.inflight), (1024, 8));
    }

    #[test]
    fn memory_limit_lowers_inflight_or_refuses() {
        let args = DownloadArgs::new()
            .part_size(100 * MIB)
            .max_inflight_parts(16)
            .memory_limit(GIB);
        assert_eq!(plan(10 * GIB, &args).unwrap().inflight, 9);
        let args = DownloadArgs::new()
            .part_size(100 * MIB)
            .memory_limit(150 * MIB);
        assert!(
            plan(GIB, &args)
                .unwrap_err()
                .to_string()
                .contains("memory_limit")
        );
        // A small object needs small buffers only.
        assert_eq!(plan(MIB, &args).unwrap().slab_len, MIB as usize);
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, what) in [
            (
                DownloadArgs::new().max_inflight_parts(0),
                "max_inflight_parts",
            ),
            (
                DownloadArgs::new().max_inflight_parts(101),
                "max_inflight_parts",
            ),
            (DownloadArgs::new().part_size(MIB - 1), "part_size"),
            (DownloadArgs::new().part_size(6 * GIB), "part_size"),
        ] {
            let err = check_args(&args).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn etags_compare_without_quotes_or_weakness() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(same_etag("\"abc-3\"", "W/\"abc-3\""));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_full_object_checksums_are_verified() {
        let h = headers(&[("x-amz-checksum-crc64nvme", "AAAAAAAAAAA=")]);
        assert_eq!(
            full_object_checksum(&h),
            Some((ChecksumAlgorithm::Crc64Nvme, "AAAAAAAAAAA=".into()))
        );
        let h = headers(&[("x-amz-checksum-crc32c", "yZRlqg==")]);
        assert_eq!(
            full_object_checksum(&h).unwrap().0,
            ChecksumAlgorithm::Crc32c
        );
        let h = headers(&[("x-amz-checksum-crc32c", "yZRlqg==-3")]);
        assert_eq!(full_object_checksum(&h), None);
        let h = headers(&[
            ("x-amz-checksum-crc32c", "yZRlqg=="),
            ("x-amz-checksum-type", "COMPOSITE"),
        ]);
        assert_eq!(full_object_checksum(&h), None);
        let h = headers(&[("x-amz-checksum-sha256", "abc=")]);
        assert_eq!(full_object_checksum(&h), None);
    }

    #[test]
    fn crcs_of_ranges_in_any_order_fold_into_the_objects() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let alg = ChecksumAlgorithm::Crc64Nvme;
        let chunks: Vec<Crc> = data
            .chunks(7_000)
            .map(|c| alg.compute(c).unwrap())
            .collect();
        let mut fold = CrcFold::default();
        for i in [3usize, 0, 2, 1, 6, 4, 5, 7] {
            fold.add(i as u64, chunks[i]);
        }
        assert_eq!(fold.acc, alg.compute(&data));
        assert!(fold.early.is_empty());
        // A different byte anywhere gives a different value.
        let mut bad = data.clone();
        bad[12_345] ^= 1;
        assert_ne!(
            alg.compute(&bad).unwrap().to_base64(),
            fold.acc.unwrap().to_base64()
        );
    }

    #[test]
    fn temp_files_go_away_unless_persisted() {
        let dir = std::env::temp_dir().join(format!("s3pump-tmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.bin");
        let t = TempFile::create(&dest).unwrap();
        let tmp = t.path.clone();
        assert!(tmp.exists());
        drop(t);
        assert!(!tmp.exists() && !dest.exists());
        let t = TempFile::create(&dest).unwrap();
        t.persist(&dest).unwrap();
        assert!(dest.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
