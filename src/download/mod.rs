//! Parallel ranged downloads: one HeadObject for the size and ETag, then up
//! to N tasks at once on the client's part workers and connections
//! (`crate::pipeline::engine`), fetching byte ranges with
//! `If-Match` into page-aligned slabs (`fetch`: over HTTP, or by RDMA where
//! a provider is set and the server takes it). The ranges go into a file at
//! their offsets or into a `Write` in order (`sink`); the caller's thread
//! gathers them (`crate::pipeline::run`).

mod args;
mod fetch;
mod sink;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use ureq::http::HeaderMap;

pub use args::{DownloadArgs, DownloadOutput};
use sink::{InOrder, Sink, Target, TempFile};

use crate::client::header;
use crate::pipeline::engine::Lane;
use crate::pipeline::plan::{self, Plan};
use crate::pipeline::run::{Control, Event, PanicGuard, gather};
use crate::pipeline::slab::{Reservation, Slab};
use crate::rdma::attempt::RdmaSlot;
use crate::s3::checksum::{Crc, verify_full_object};
use crate::s3::object::validate_target;
use crate::transport::stop::Stop;
use crate::{ChecksumAlgorithm, Client, Error, Result};

impl Client {
    /// Downloads `bucket/key` into the file at `path`, with up to
    /// [`max_inflight_parts`](DownloadArgs::max_inflight_parts) ranged GETs
    /// in flight, each written at its offset as soon as it arrives.
    ///
    /// Into a regular file (or a new one), the bytes go to a temporary file
    /// in the same directory (`.<name>.s3pump-<pid>-<n>.tmp`), renamed over
    /// `path` only when every range arrived and was checked; on any failure
    /// the temporary file is removed and `path` is left as it was. A file
    /// replaced keeps its permission bits (`rwx` for user, group and
    /// others) and, where the system allows it (as root), its owner. The
    /// file is not fsynced.
    ///
    /// What is at `path` decides how it is written:
    /// - a character or block device (`/dev/null`), a FIFO or a Unix socket
    ///   is written through, strictly in order as by [`Client::download`]:
    ///   no temporary file, never replaced (opening a FIFO waits for a
    ///   reader, as a shell's `>` does); on a failure it may have received
    ///   part of the object;
    /// - a symbolic link is followed: the file it points to is the target
    ///   (replaced as above, or written through), the link itself stays; a
    ///   link to nothing is an error;
    /// - a directory is an error.
    ///
    /// Every range is fetched with `If-Match: <ETag>`, so an object replaced
    /// during the download is [`Error::ObjectChanged`], never a file mixing
    /// two versions.
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
        let (path, keep) = match Target::of(path)? {
            Target::Through(mut writer) => return self.download(bucket, key, &mut writer, args),
            Target::Replace { path, keep } => (path, keep),
        };
        let temp = TempFile::create(&path)?;
        if let Some(keep) = &keep {
            temp.keep(keep)?;
        }
        let file = temp.file.try_clone().map_err(|e| Error::Io {
            context: format!("opening {} again for the part workers", path.display()),
            source: e,
        })?;
        let sink = Sink::<std::io::Sink>::File(file);
        let out = self.download_into(bucket, key, sink, args)?;
        temp.persist(&path)?;
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
        args: DownloadArgs,
    ) -> Result<DownloadOutput> {
        if args.cancelled() {
            return Err(Error::Cancelled);
        }
        plan::check_download_args(&args)?;
        let stopped = Arc::new(Stop::default());
        if let Some(cancel) = &args.cancel {
            cancel.attach(&stopped);
        }
        let head = head(self, bucket, key, &args, &stopped).map_err(|e| {
            if stopped.is_set() {
                Error::Cancelled
            } else {
                e
            }
        })?;
        let mut plan = plan::download(head.size, &args, self.slabs().limit())?;
        // One slab more than ranges in flight: into a `Write`, the range the
        // caller waits for always finds one.
        let slabs = plan.reserve(self.slabs(), plan.inflight + 1, args.rdma.clone(), &|| {
            args.cancelled()
        })?;
        plan.inflight = plan.inflight.min(slabs.slabs().saturating_sub(1)).max(1);
        let verify = head.checksum.clone();
        let download = Arc::new(Download {
            client: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            args,
            head,
            plan,
            slabs,
            stopped,
            http_only: AtomicBool::new(false),
        });
        let local = download.run(sink)?;
        if let Some((algorithm, expected)) = &verify {
            let local = local
                .or_else(|| algorithm.compute(&[]))
                .map(|c| c.to_base64())
                .unwrap_or_default();
            verify_full_object(
                *algorithm,
                expected,
                &local,
                &format!("{bucket}/{key}"),
                "the bytes downloaded have",
                download.args.strict_checksums,
            )?;
        }
        let (slabs, slab_bytes) = download.slabs.used();
        let head = &download.head;
        Ok(DownloadOutput {
            size: head.size,
            etag: head.etag.clone().unwrap_or_default(),
            version_id: head.version_id.clone(),
            parts: download.plan.parts,
            checksum: verify.map(|c| c.1),
            slabs,
            slab_bytes,
        })
    }
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

fn head(
    client: &Client,
    bucket: &str,
    key: &str,
    args: &DownloadArgs,
    stop: &Stop,
) -> Result<Head> {
    let mut headers = args.headers.clone();
    if args.verify_checksum {
        headers.push(("x-amz-checksum-mode".into(), "ENABLED".into()));
    }
    let (info, h) = client.head(bucket, key, headers, Some(stop))?;
    let etag = Some(info.etag).filter(|e| !e.is_empty());
    if etag.is_none() {
        log::warn!(
            "{bucket}/{key}: HeadObject sent no ETag; the ranges are fetched without If-Match"
        );
    }
    Ok(Head {
        size: info.size,
        etag,
        version_id: info.version_id,
        checksum: if args.verify_checksum {
            full_object_checksum(&h)
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

/// One download's shared state: the caller's thread and the feeder borrow
/// it, each range task on the client's workers holds it in an `Arc`.
pub(crate) struct Download {
    client: Client,
    bucket: String,
    key: String,
    args: DownloadArgs,
    head: Head,
    plan: Plan,
    slabs: Reservation,
    /// Set on the first error: no further range is handed out.
    stopped: Arc<Stop>,
    /// Set once the server has shown it does not take RDMA.
    http_only: AtomicBool,
}

/// The CRC of the object so far, from ranges that may arrive in any order.
struct CrcFold {
    /// The next range to fold in (1-based).
    next: u32,
    acc: Option<Crc>,
    early: BTreeMap<u32, Crc>,
}

impl Default for CrcFold {
    fn default() -> Self {
        CrcFold {
            next: 1,
            acc: None,
            early: BTreeMap::new(),
        }
    }
}

impl CrcFold {
    fn add(&mut self, number: u32, crc: Crc) {
        self.early.insert(number, crc);
        while let Some(c) = self.early.remove(&self.next) {
            self.acc = Some(match self.acc {
                Some(acc) => acc.combine(c),
                None => c,
            });
            self.next += 1;
        }
    }
}

impl Download {
    fn rdma_slot<'s>(&'s self, slab: &'s Slab) -> Option<RdmaSlot<'s>> {
        RdmaSlot::of(slab, &self.http_only)
    }

    /// Hands the ranges to the client's workers and, on the caller's
    /// thread, gathers them (writing them in order into a `Write`). Returns
    /// the combined CRC of the object when a checksum is being verified.
    fn run<W: Write + ?Sized>(self: &Arc<Self>, sink: Sink<'_, W>) -> Result<Option<Crc>> {
        if self.plan.parts == 0 {
            return Ok(None);
        }
        let (file, mut writer) = match sink {
            Sink::File(f) => (Some(Arc::new(f)), None),
            Sink::Writer(w) => (None, Some(InOrder::new(w))),
        };
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event<Fetched>>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let what = format!("download of {}/{}", self.bucket, self.key);
        let ctl = Control {
            what: &what,
            cancel: self.args.cancel.as_ref(),
            stopped: &self.stopped,
            progress: self.args.progress.as_deref(),
            total: Some(self.plan.max_bytes),
        };
        let mut crc = CrcFold::default();
        let mut ranges = 0u64;
        let mut bytes = 0u64;
        let g = thread::scope(|s| {
            let feeder = s.spawn(move || {
                let _guard = PanicGuard(&event_tx, "download feeder");
                if let Err(e) = self.feed(file, &event_tx, &stop_rx) {
                    let _ = event_tx.send(Event::Failed(e));
                }
            });
            gather(
                &ctl,
                event_rx,
                stop_tx,
                vec![feeder],
                |number, len, fetched| {
                    if let Some(c) = fetched.crc {
                        crc.add(number, c);
                    }
                    let written = match (fetched.slab, writer.as_mut()) {
                        (Some(slab), Some(w)) => {
                            w.push(number, slab, len, |n| self.plan.range(n.into()).0)?
                        }
                        (Some(slab), None) => {
                            drop(slab);
                            len as u64
                        }
                        (None, _) => len as u64,
                    };
                    ranges += 1;
                    bytes += written;
                    Ok(written)
                },
            )
        });
        if let Some(w) = writer {
            drop(w);
        }
        if let Some((_, e)) = g.failure {
            return Err(e);
        }
        if ranges != self.plan.parts || bytes != self.plan.max_bytes {
            return Err(Error::Internal(format!(
                "the download ended with {ranges} of {} ranges",
                self.plan.parts
            )));
        }
        Ok(crc.acc)
    }

    /// Takes a buffer for each range in turn and hands the range over, at
    /// most `max_inflight_parts` at once, until every range is or the
    /// download stops. Buffers are taken in range order, so that into a
    /// `Write` the range the caller waits for always has one.
    fn feed(
        self: &Arc<Self>,
        file: Option<Arc<File>>,
        events: &Sender<Event<Fetched>>,
        stop: &Receiver<()>,
    ) -> Result<()> {
        let lane = Lane::new(self.plan.inflight);
        for number in 1..=self.plan.parts {
            if self.stopped.is_set() {
                break;
            }
            let Some(slab) = self.slabs.acquire(stop)? else {
                break;
            };
            let task = self.range_task(number, slab, file.clone(), events.clone());
            if !lane.run(self.client.engine(), stop, task)? {
                break;
            }
        }
        Ok(())
    }

    /// The task that fetches range `number` into `slab` and, into a file,
    /// at its offset in the file.
    fn range_task(
        self: &Arc<Self>,
        number: u64,
        mut slab: Slab,
        file: Option<Arc<File>>,
        events: Sender<Event<Fetched>>,
    ) -> impl FnOnce() + Send + 'static {
        let download = Arc::clone(self);
        move || {
            let _guard = PanicGuard(&events, "download worker");
            let stopped = || download.stopped.is_set();
            if stopped() {
                return;
            }
            let len = download.plan.range(number).1;
            // A connection of the client's pool, for this range only.
            let result = match download.client.connections().acquire(&stopped) {
                Some(conn) => download.fetch(&conn, number, &mut slab, file.as_deref()),
                None => Err(Error::Cancelled),
            };
            // The first error cuts the other ranges (after the event, so
            // that it reaches the caller's thread before theirs).
            let stop = result.is_err().then(|| Arc::clone(&download.stopped));
            let result = match result {
                Ok(crc) if file.is_none() => Ok(Fetched {
                    crc,
                    slab: Some(slab),
                }),
                other => {
                    drop(slab);
                    other.map(|crc| Fetched { crc, slab: None })
                }
            };
            // All of the download this task holds goes before the event:
            // when the caller's thread has seen every event, nothing of it
            // is held (but a slab on its way to the in-order writer).
            drop((download, file));
            let _ = events.send(Event::Done {
                number: u32::try_from(number).unwrap_or(u32::MAX),
                len,
                result,
            });
            if let Some(stop) = stop {
                stop.set();
            }
        }
    }
}

/// A range a worker fetched: its CRC when the object's is verified, and
/// into a `Write` the slab holding it, to be written in order.
struct Fetched {
    crc: Option<Crc>,
    slab: Option<Slab>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

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
            fold.add(i as u32 + 1, chunks[i]);
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
}
