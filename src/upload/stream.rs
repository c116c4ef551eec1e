//! A stream upload: `put_object` of any `Read`. One producer thread reads
//! the source strictly in order into slabs (probing one byte past each full
//! part to learn whether another follows) and hands each, as a task, to the
//! client's part workers (`crate::pipeline::engine`), at most
//! `max_inflight_parts` at once; the workers send them.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use super::Upload;
use crate::pipeline::engine::Lane;
use crate::pipeline::plan::{self, Plan};
use crate::pipeline::run::{Control, Event, PanicGuard, gather};
use crate::pipeline::slab::Slab;
use crate::s3::object::validate_target;
use crate::upload::part::Sent;
use crate::{Client, Error, PutObjectArgs, PutObjectOutput, Result};

impl Client {
    /// Uploads everything `reader` yields as the object `bucket/key`, with up
    /// to [`max_inflight_parts`](PutObjectArgs::max_inflight_parts) parts in
    /// flight.
    ///
    /// The reader is read on one producer thread, strictly in order, into
    /// page-aligned buffers; the client's worker threads checksum and send
    /// the parts straight from those buffers. An object that fits in one part is sent
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
        args: PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        validate_target(bucket, key)?;
        let mut plan = plan::upload(&args, self.slabs().limit())?;
        // One slab more than parts in flight: the producer fills it meanwhile.
        let slabs = plan.reserve(self.slabs(), plan.inflight + 1, args.rdma.clone(), &|| {
            args.cancelled()
        })?;
        plan.inflight = plan.inflight.min(slabs.slabs() - 1).max(1);
        let declared = args.size;
        let upload = Upload::new(self, bucket, key, args, plan, slabs);
        let mut source = Source {
            reader,
            offset: 0,
            plan: &upload.plan,
            declared,
        };
        let mut first = upload.slabs.first()?;
        let want = source.part_len(0);
        let len = source.fill(&mut first.as_mut_slice()[..want])?;
        let carry = source.probe_if_full(len, want)?;
        let mut out = match carry {
            None => upload.single(&first, len)?,
            Some(byte) => {
                let upload_id = self
                    .create_upload(bucket, key, &upload.args, Some(&upload.stopped))
                    .map_err(|e| upload.or_cancelled(e))?;
                log::debug!("CreateMultipartUpload {bucket}/{key}: upload id {upload_id}");
                upload.multipart(&upload_id, source, first, len, byte)?
            }
        };
        (out.slabs, out.slab_bytes) = upload.slabs.used();
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

/// A filled buffer on its way to a worker.
struct Job {
    number: u32,
    slab: Slab,
    len: usize,
}

impl Upload {
    /// The multipart path, once the upload exists and part 1 is read: the
    /// producer (its own thread, it reads the caller's `Read`) hands part
    /// after part to the client's workers; the caller's thread gathers.
    fn multipart<R: Read + Send>(
        self: &Arc<Self>,
        upload_id: &str,
        source: Source<'_, R>,
        first: Slab,
        first_len: usize,
        carry: u8,
    ) -> Result<PutObjectOutput> {
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event<Sent>>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let what = self.what(upload_id);
        let ctl = Control {
            what: &what,
            cancel: self.args.cancel.as_ref(),
            stopped: &self.stopped,
            progress: self.args.progress.as_deref(),
            total: self.args.size,
        };
        let upload_id: Arc<str> = upload_id.into();
        let mut parts = BTreeMap::new();
        let gathered = thread::scope(|s| {
            let id = Arc::clone(&upload_id);
            let producer = s.spawn(move || {
                let _guard = PanicGuard(&event_tx, "producer");
                let first = Job {
                    number: 1,
                    slab: first,
                    len: first_len,
                };
                if let Err(e) = self.produce(&id, source, first, carry, &event_tx, &stop_rx) {
                    let _ = event_tx.send(Event::Failed(e));
                }
            });
            gather(
                &ctl,
                event_rx,
                stop_tx,
                vec![producer],
                |number, len, sent| {
                    parts.insert(number, (sent, len));
                    Ok(len as u64)
                },
            )
        });
        self.finish(&upload_id, gathered, parts)
    }

    /// The producer: hands `first` over, then reads part after part and
    /// hands each over until the source ends, a stop is signalled, or
    /// reading fails.
    fn produce<R: Read>(
        self: &Arc<Self>,
        upload_id: &Arc<str>,
        mut source: Source<'_, R>,
        first: Job,
        carry: u8,
        events: &Sender<Event<Sent>>,
        stop: &Receiver<()>,
    ) -> Result<()> {
        let lane = Lane::new(self.plan.inflight);
        let mut job = first;
        let mut carry = Some(carry);
        loop {
            let number = job.number;
            let task = self.part_task(upload_id, job, events.clone());
            if !lane.run(self.client.engine(), stop, task)? {
                return Ok(());
            }
            let Some(byte) = carry else {
                let _ = events.send(Event::Produced {
                    parts: number,
                    bytes: source.offset,
                });
                return Ok(());
            };
            if self.stopped.is_set() {
                return Ok(());
            }
            let Some(mut slab) = self.slabs.acquire(stop)? else {
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

    /// The task that sends one filled part on a worker of the client.
    fn part_task(
        self: &Arc<Self>,
        upload_id: &Arc<str>,
        job: Job,
        events: Sender<Event<Sent>>,
    ) -> impl FnOnce() + Send + 'static {
        let (upload, upload_id) = (Arc::clone(self), Arc::clone(upload_id));
        move || {
            let _guard = PanicGuard(&events, "worker");
            let Job { number, slab, len } = job;
            let stopped = || upload.stopped.is_set();
            if stopped() {
                return;
            }
            // A connection of the client's pool, for this part only.
            let Some(conn) = upload.client.connections().acquire(&stopped) else {
                return;
            };
            let result = upload.send_part(&conn, &upload_id, number, &slab, len);
            // The first error ends the upload: send no further part, cut
            // the others (after the event, so that this error reaches the
            // caller's thread before those of the requests it cuts).
            let stop = result.is_err().then(|| Arc::clone(&upload.stopped));
            // All of the upload this task holds goes before the event: when
            // the caller's thread has seen every event, nothing of it is held.
            drop(conn);
            drop((slab, upload));
            let _ = events.send(Event::Done {
                number,
                len,
                result,
            });
            if let Some(stop) = stop {
                stop.set();
            }
        }
    }
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
            slab_len: part_size as usize,
            inflight: 1,
            parts: max_bytes.div_ceil(part_size),
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
