//! The parallel upload pipeline: one producer thread reads the source into
//! buffers, N workers send them as parts, the caller's thread collects
//! ETags and completes or aborts. See DESIGN.md §1.

pub(crate) mod args;
pub(crate) mod file;
pub(crate) mod part;

use std::any::Any;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::pipeline::plan::{Plan, plan};
use crate::pipeline::slab::{Slab, SlabPool};
use crate::s3::checksum::Crc;
use crate::s3::multipart::UploadedPart;
use crate::s3::object::validate_target;
use crate::upload::args::ProgressFn;
use crate::upload::part::{RdmaSlot, Sent, Target, send_slab};
use crate::{Client, Error, Progress, PutObjectArgs, PutObjectOutput, Result};

/// How often the caller's thread looks at the cancel handle while waiting.
const CANCEL_POLL: Duration = Duration::from_millis(20);

impl Client {
    /// Uploads everything `reader` yields as the object `bucket/key`, with up
    /// to [`max_inflight_parts`](PutObjectArgs::max_inflight_parts) parts in
    /// flight.
    ///
    /// The reader is read on one producer thread, strictly in order, into
    /// page-aligned buffers; worker threads checksum and send the parts
    /// straight from those buffers. An object that fits in one part is sent
    /// with a single PutObject. On any failure the first error is returned
    /// (as [`Error::Upload`] with the upload id once a multipart upload
    /// exists) and the multipart upload is aborted, so nothing is left
    /// behind.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let file = std::fs::File::open("backup.tar")?;
    /// let out = client.put_object("bucket", "backup.tar", file, s3pump::PutObjectArgs::new())?;
    /// println!("{} parts, ETag {}", out.parts, out.etag);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_object<R: Read + Send>(
        &self,
        bucket: &str,
        key: &str,
        reader: R,
        mut args: PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        validate_target(bucket, key)?;
        let plan = plan(&args)?;
        if args.cancelled() {
            return Err(Error::Cancelled);
        }
        let progress = args.progress.take().map(parking_lot::Mutex::into_inner);
        let rdma = args.rdma.clone();
        let pool = SlabPool::new(plan.slab_len as usize, plan.slabs, rdma);
        let upload = Upload::new(self, bucket, key, &args, &plan, &pool);
        let mut source = Source {
            reader,
            offset: 0,
            plan: &plan,
            declared: args.size,
        };
        let mut first = pool.first()?;
        let want = source.part_len(0);
        let len = source.fill(&mut first.as_mut_slice()[..want])?;
        let carry = source.probe_if_full(len, want)?;
        let mut out = match carry {
            None => upload.single(&first, len)?,
            Some(byte) => {
                let upload_id = self.create_multipart_upload(bucket, key, &args)?;
                log::debug!("CreateMultipartUpload {bucket}/{key}: upload id {upload_id}");
                upload.multipart(&upload_id, source, first, len, byte, progress)?
            }
        };
        (out.slabs, out.slab_bytes) = pool.mapped();
        Ok(out)
    }
}

/// The source being read, with the checks that keep an object from being
/// silently truncated or overlong.
struct Source<'a, R> {
    reader: R,
    /// Bytes read so far.
    offset: u64,
    plan: &'a Plan,
    declared: Option<u64>,
}

impl<R: Read> Source<'_, R> {
    /// The length of the part starting at byte `start`.
    fn part_len(&self, start: u64) -> usize {
        let len = match self.declared {
            Some(d) => self.plan.part_size.min(d.saturating_sub(start)),
            None => self.plan.part_size,
        };
        len as usize
    }

    /// Reads until `buf` is full or the source ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("reading the source at byte {}", self.offset + n as u64),
                        source: e,
                    });
                }
            }
        }
        self.offset += n as u64;
        if n < buf.len() {
            self.check_end()?;
        }
        Ok(n)
    }

    /// After a part of `len` bytes out of `want`: reads one more byte when
    /// the part is full, to learn whether another part follows.
    fn probe_if_full(&mut self, len: usize, want: usize) -> Result<Option<u8>> {
        if len < want {
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        let got = self.fill(&mut byte)?;
        if got == 0 {
            return Ok(None);
        }
        if self.offset > self.plan.max_bytes {
            return Err(Error::SizeMismatch(match self.declared {
                Some(d) => format!("the source holds more than the declared {d} bytes"),
                None => format!(
                    "the stream is longer than {} bytes, the most that 10,000 parts of {} bytes \
                     hold; set a larger part_size",
                    self.plan.max_bytes, self.plan.part_size
                ),
            }));
        }
        Ok(Some(byte[0]))
    }

    /// At the end of the source: was it as long as declared?
    fn check_end(&self) -> Result<()> {
        match self.declared {
            Some(d) if self.offset < d => Err(Error::SizeMismatch(format!(
                "the source ended after {} bytes, but {d} were declared",
                self.offset
            ))),
            _ => Ok(()),
        }
    }
}

/// One upload's shared state, borrowed by every thread of the pipeline.
pub(crate) struct Upload<'a> {
    pub client: &'a Client,
    pub bucket: &'a str,
    pub key: &'a str,
    pub args: &'a PutObjectArgs,
    pub plan: &'a Plan,
    pub pool: &'a SlabPool,
    /// Set once the server has shown it does not take RDMA.
    pub http_only: AtomicBool,
    /// Set on the first error: the producer stops, workers drain.
    pub stopped: AtomicBool,
}

/// What the caller's thread gathered from a pipeline.
pub(crate) struct Gathered {
    parts: BTreeMap<u32, (Sent, usize)>,
    produced: Option<(u32, u64)>,
    failure: Option<(Option<u32>, Error)>,
}

/// A filled buffer on its way to a worker.
struct Job {
    number: u32,
    slab: Slab,
    len: usize,
}

/// What the pipeline's threads tell the caller's thread.
pub(crate) enum Event {
    /// A part was sent (or failed for good).
    Part {
        /// Its number.
        number: u32,
        /// Its length.
        len: usize,
        /// What the server said.
        result: Result<Sent>,
    },
    /// The source is exhausted: the number of parts and bytes it made.
    Produced { parts: u32, bytes: u64 },
    /// The producer failed, or a thread panicked.
    Failed(Error),
}

/// Sends `Event::Failed` if the thread it lives on unwinds, so that a panic
/// stops the pipeline instead of leaving the others waiting.
pub(crate) struct PanicGuard<'a>(pub &'a Sender<Event>, pub &'static str);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(Event::Failed(Error::Panic(format!(
                "the {} thread",
                self.1
            ))));
        }
    }
}

impl<'a> Upload<'a> {
    pub(crate) fn new(
        client: &'a Client,
        bucket: &'a str,
        key: &'a str,
        args: &'a PutObjectArgs,
        plan: &'a Plan,
        pool: &'a SlabPool,
    ) -> Self {
        Upload {
            client,
            bucket,
            key,
            args,
            plan,
            pool,
            http_only: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn rdma_slot<'s>(&'s self, slab: &'s Slab) -> Option<RdmaSlot<'s>> {
        slab.registration().map(|registration| RdmaSlot {
            registration,
            http_only: &self.http_only,
        })
    }

    /// The one-part path: a single PutObject from the first buffer.
    pub(crate) fn single(&self, slab: &Slab, len: usize) -> Result<PutObjectOutput> {
        let sent = send_slab(
            self.client,
            self.client.agent(),
            self.bucket,
            self.key,
            &Target::Object,
            &slab.as_slice()[..len],
            self.args,
            self.rdma_slot(slab).as_ref(),
        )?;
        Ok(PutObjectOutput {
            etag: sent.etag,
            version_id: sent.version_id,
            parts: 1,
            bytes: len as u64,
            checksum: sent.crc.map(|c| c.to_base64()),
            slabs: 0,
            slab_bytes: 0,
        })
    }

    /// The multipart path, once the upload exists and part 1 is read.
    fn multipart<R: Read + Send>(
        &self,
        upload_id: &str,
        source: Source<'_, R>,
        first: Slab,
        first_len: usize,
        carry: u8,
        progress: Option<ProgressFn>,
    ) -> Result<PutObjectOutput> {
        let (work_tx, work_rx) = crossbeam_channel::bounded::<Job>(self.plan.inflight);
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let gathered = thread::scope(|s| {
            let mut handles = Vec::with_capacity(self.plan.inflight + 1);
            let (events, stop) = (event_tx.clone(), stop_rx.clone());
            handles.push(s.spawn(move || {
                let _guard = PanicGuard(&events, "producer");
                let first = Job {
                    number: 1,
                    slab: first,
                    len: first_len,
                };
                if let Err(e) = self.produce(source, first, carry, &work_tx, &events, &stop) {
                    let _ = events.send(Event::Failed(e));
                }
            }));
            for _ in 0..self.plan.inflight {
                let (work_rx, events) = (work_rx.clone(), event_tx.clone());
                handles.push(s.spawn(move || {
                    let _guard = PanicGuard(&events, "worker");
                    self.work(upload_id, &work_rx, &events);
                }));
            }
            drop((event_tx, work_rx, stop_rx));
            self.gather(upload_id, event_rx, stop_tx, progress, handles)
        });
        self.finish(upload_id, gathered)
    }

    /// The caller's side of a running pipeline: collects every part's result
    /// until all threads are done, calls the progress callback, watches the
    /// cancel handle, and on the first error stops the others (the stop
    /// channel is dropped). Joins every thread; a panic becomes an error.
    pub(crate) fn gather(
        &self,
        upload_id: &str,
        event_rx: Receiver<Event>,
        stop_tx: Sender<()>,
        mut progress: Option<ProgressFn>,
        handles: Vec<thread::ScopedJoinHandle<'_, ()>>,
    ) -> Gathered {
        let mut g = Gathered {
            parts: BTreeMap::new(),
            produced: None,
            failure: None,
        };
        let mut stop_tx = Some(stop_tx);
        let mut bytes_sent = 0u64;
        let mut fail = |g: &mut Gathered, part: Option<u32>, e: Error| {
            if g.failure.is_none() {
                log::debug!(
                    "upload {upload_id} failing{}: {e}",
                    part.map(|p| format!(" at part {p}")).unwrap_or_default()
                );
                g.failure = Some((part, e));
                self.stopped.store(true, Ordering::SeqCst);
                stop_tx.take();
            }
        };
        loop {
            select! {
                recv(event_rx) -> event => match event {
                    Err(_) => break, // every thread is done
                    Ok(Event::Part { number, len, result: Ok(sent) }) => {
                        bytes_sent += len as u64;
                        g.parts.insert(number, (sent, len));
                        if let Some(f) = progress.as_mut().filter(|_| g.failure.is_none()) {
                            let p = Progress { bytes_sent, total: self.args.size };
                            if !f(p) {
                                fail(&mut g, None, Error::Cancelled);
                            }
                        }
                    }
                    Ok(Event::Part { number, result: Err(e), .. }) => fail(&mut g, Some(number), e),
                    Ok(Event::Produced { parts, bytes }) => g.produced = Some((parts, bytes)),
                    Ok(Event::Failed(e)) => fail(&mut g, None, e),
                },
                default(CANCEL_POLL) => {
                    if self.args.cancelled() {
                        fail(&mut g, None, Error::Cancelled);
                    }
                }
            }
        }
        if self.args.cancelled() {
            fail(&mut g, None, Error::Cancelled);
        }
        for handle in handles {
            if let Err(panic) = handle.join() {
                fail(&mut g, None, Error::Panic(panic_message(&panic)));
            }
        }
        g
    }

    /// Completes the upload when every part is in, else aborts it (unless
    /// asked to keep it) and returns the first error with the upload id.
    pub(crate) fn finish(&self, upload_id: &str, g: Gathered) -> Result<PutObjectOutput> {
        let result = match (g.failure, g.produced) {
            (Some((part, e)), _) => Err((part, e)),
            (None, Some((count, bytes))) if count as usize == g.parts.len() => self
                .complete(upload_id, &g.parts, bytes)
                .map_err(|e| (None, e)),
            (None, _) => Err((
                None,
                Error::Panic("the pipeline ended without every part".into()),
            )),
        };
        result.map_err(|(part_number, source)| {
            if self.args.keep_failed_upload {
                log::info!("upload {upload_id} failed; kept on the server for resuming");
            } else {
                self.abort(upload_id);
            }
            Error::Upload {
                upload_id: upload_id.to_string(),
                part_number,
                source: Box::new(source),
            }
        })
    }

    /// The producer: sends `first`, then reads part after part until the
    /// source ends, a stop is signalled, or reading fails.
    fn produce<R: Read>(
        &self,
        mut source: Source<'_, R>,
        first: Job,
        carry: u8,
        work_tx: &Sender<Job>,
        event_tx: &Sender<Event>,
        stop: &Receiver<()>,
    ) -> Result<()> {
        let mut job = first;
        let mut carry = Some(carry);
        loop {
            let number = job.number;
            select! {
                send(work_tx, job) -> sent => if sent.is_err() { return Ok(()) },
                recv(stop) -> _ => return Ok(()),
            }
            let Some(byte) = carry else {
                let _ = event_tx.send(Event::Produced {
                    parts: number,
                    bytes: source.offset,
                });
                return Ok(());
            };
            if self.stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            let Some(mut slab) = self.pool.acquire(stop)? else {
                return Ok(());
            };
            let start = source.offset - 1;
            let want = source.part_len(start);
            let buf = &mut slab.as_mut_slice()[..want];
            buf[0] = byte;
            let len = 1 + source.fill(&mut buf[1..])?;
            carry = source.probe_if_full(len, want)?;
            job = Job {
                number: number + 1,
                slab,
                len,
            };
        }
    }

    /// A worker: sends parts until the producer is done, then returns.
    fn work(&self, upload_id: &str, work_rx: &Receiver<Job>, event_tx: &Sender<Event>) {
        let agent = self.client.new_agent();
        for job in work_rx {
            if self.stopped.load(Ordering::SeqCst) {
                self.pool.release(job.slab);
                continue;
            }
            let target = Target::Part {
                upload_id,
                part_number: job.number,
            };
            let result = send_slab(
                self.client,
                &agent,
                self.bucket,
                self.key,
                &target,
                &job.slab.as_slice()[..job.len],
                self.args,
                self.rdma_slot(&job.slab).as_ref(),
            );
            self.pool.release(job.slab);
            if result.is_err() {
                // The first error ends the upload: send no further part.
                self.stopped.store(true, Ordering::SeqCst);
            }
            let _ = event_tx.send(Event::Part {
                number: job.number,
                len: job.len,
                result,
            });
        }
    }

    /// CompleteMultipartUpload with the parts in ascending order, then the
    /// full-object checksum check.
    fn complete(
        &self,
        upload_id: &str,
        parts: &BTreeMap<u32, (Sent, usize)>,
        bytes: u64,
    ) -> Result<PutObjectOutput> {
        let list: Vec<UploadedPart> = parts
            .iter()
            .map(|(&number, (sent, len))| UploadedPart {
                part_number: number,
                etag: sent.etag.clone(),
                size: *len as u64,
                checksum: sent.crc.map(|c| c.to_base64()),
            })
            .collect();
        let done = match self.client.complete_multipart_upload(
            self.bucket,
            self.key,
            upload_id,
            &list,
            self.args.checksum,
        ) {
            Ok(done) => done,
            // No definite answer (the connection failed, or the server kept
            // erring): the Complete may have been applied. Look before the
            // caller aborts.
            Err(e @ (Error::Transport { .. } | Error::S3 { status: 500.., .. })) => {
                let refs: Vec<&UploadedPart> = list.iter().collect();
                self.client
                    .completed_earlier(self.bucket, self.key, &refs)
                    .ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        let local = parts
            .values()
            .filter_map(|(sent, _)| sent.crc)
            .reduce(Crc::combine)
            .map(|c| c.to_base64());
        if let (Some(local), Some(remote)) = (&local, &done.checksum) {
            // A composite checksum ("…-N") is not comparable to a full-object CRC.
            if !remote.contains('-') && remote != local {
                return Err(Error::ChecksumMismatch(format!(
                    "the server reports full-object checksum {remote}, the data read had {local}"
                )));
            }
        }
        Ok(PutObjectOutput {
            etag: done.etag,
            version_id: done.version_id,
            parts: list.len() as u32,
            bytes,
            checksum: local,
            slabs: 0,
            slab_bytes: 0,
        })
    }

    /// Aborts the upload after a failure; a failed abort is logged, the
    /// caller still gets the first error.
    fn abort(&self, upload_id: &str) {
        log::debug!(
            "aborting upload {upload_id} of {}/{}",
            self.bucket,
            self.key
        );
        if let Err(e) = self
            .client
            .abort_multipart_upload(self.bucket, self.key, upload_id)
        {
            log::warn!("AbortMultipartUpload of upload {upload_id} failed: {e}");
        }
    }
}

/// The message a thread panicked with, as text.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a pipeline thread panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads parts the way the producer does until the source ends or fails.
    fn read_all(
        data: &[u8],
        part_size: u64,
        max_bytes: u64,
        declared: Option<u64>,
    ) -> Result<Vec<usize>> {
        let plan = Plan {
            part_size,
            slab_len: part_size,
            inflight: 1,
            slabs: 2,
            max_bytes,
        };
        let mut source = Source {
            reader: data,
            offset: 0,
            plan: &plan,
            declared,
        };
        let mut buf = vec![0u8; part_size as usize];
        let mut parts = Vec::new();
        let mut carried = 0;
        loop {
            let want = source.part_len(source.offset - carried as u64);
            let len = carried + source.fill(&mut buf[carried..want])?;
            parts.push(len);
            match source.probe_if_full(len, want)? {
                Some(_) => carried = 1,
                None => return Ok(parts),
            }
        }
    }

    #[test]
    fn a_stream_past_the_part_ceiling_is_an_error_not_a_truncation() {
        // 3 parts of 10 bytes is the ceiling here, as 10,000 parts are in S3.
        assert_eq!(read_all(&[1; 30], 10, 30, None).unwrap(), vec![10, 10, 10]);
        let err = read_all(&[1; 31], 10, 30, None).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch(_)), "{err:?}");
        assert!(err.to_string().contains("set a larger part_size"), "{err}");
    }

    #[test]
    fn declared_sizes_are_enforced() {
        assert_eq!(
            read_all(&[1; 25], 10, 25, Some(25)).unwrap(),
            vec![10, 10, 5]
        );
        let err = read_all(&[1; 26], 10, 25, Some(25)).unwrap_err();
        assert!(
            err.to_string().contains("more than the declared 25"),
            "{err}"
        );
        let err = read_all(&[1; 24], 10, 25, Some(25)).unwrap_err();
        assert!(err.to_string().contains("ended after 24 bytes"), "{err}");
        assert_eq!(read_all(&[], 10, 0, Some(0)).unwrap(), vec![0]);
    }
}
