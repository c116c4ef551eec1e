//! Uploading a file: its size is known, so each part task reads its own
//! part with a positional read, in parallel on the client's workers (the
//! caller's side only hands out buffers and part numbers); and an
//! interrupted upload can be resumed by sending only what is missing.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use md5::{Digest, Md5};

use super::Upload;
use crate::pipeline::engine::Lane;
use crate::pipeline::plan;
use crate::pipeline::run::{Control, Event, PanicGuard, gather};
use crate::pipeline::slab::Slab;
use crate::s3::checksum::Crc;
use crate::s3::multipart::UploadedPart;
use crate::s3::object::validate_target;
use crate::upload::part::Sent;
use crate::upload::sendfile::FileSource;
use crate::{Client, Error, PutObjectArgs, PutObjectOutput, Result};

impl Client {
    /// Uploads the file at `path` with up to
    /// [`max_inflight_parts`](PutObjectArgs::max_inflight_parts) parts in
    /// flight. Each part is read on its worker with a positional read, so no
    /// single reader caps the upload; buffers, checksums, retries and the
    /// abort on failure are those of [`Client::put_object`]. The object's size
    /// is the file's size when the upload starts.
    ///
    /// With no RDMA provider, parts of 1 MiB or more go from the file with
    /// no buffer: over `http://` from the page cache to the socket with
    /// `sendfile(2)`, over `https://` read 256 KiB at a time as they are
    /// encrypted. A file written to or truncated during the upload is then
    /// an [`Error::Io`] naming the file, and the upload is aborted.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let out = client.upload_file("bucket", "disk.img", "/srv/disk.img", s3pump::PutObjectArgs::new())?;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
        args: PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        self.file_upload(bucket, key, path.as_ref(), None, args)
    }

    /// Resumes the multipart upload `upload_id` of the file at `path` (an
    /// upload that failed with
    /// [`keep_failed_upload`](PutObjectArgs::keep_failed_upload) set; its id
    /// is in the error, see [`Error::upload_id`]). Lists the parts already on
    /// the server, checks each against the file (size, then checksum or MD5
    /// ETag), uploads only the parts that are missing or differ, and
    /// completes the upload.
    pub fn resume_upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
        upload_id: &str,
        args: PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        self.file_upload(bucket, key, path.as_ref(), Some(upload_id), args)
    }

    fn file_upload(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        resume: Option<&str>,
        mut args: PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        validate_target(bucket, key)?;
        let io = |what: &str, e| Error::Io {
            context: format!("{what} {}", path.display()),
            source: e,
        };
        let file = File::open(path).map_err(|e| io("opening", e))?;
        let size = file
            .metadata()
            .map_err(|e| io("reading the size of", e))?
            .len();
        if let Some(declared) = args.size.filter(|&d| d != size) {
            return Err(Error::SizeMismatch(format!(
                "{} holds {size} bytes, but {declared} were declared",
                path.display()
            )));
        }
        args.size = Some(size);
        let limit = self.slabs().limit();
        let fresh = plan::upload(&args, limit)?;
        if args.cancelled() {
            return Err(Error::Cancelled);
        }
        let (mut plan, known) = match resume {
            Some(id) => {
                let listed = self.list_parts(bucket, key, id, args.checksum)?;
                // The parts already sent fix the part size, and the plan is
                // checked again with it.
                let plan = match listed.iter().find(|p| p.part_number == 1) {
                    Some(first) if first.size < size && first.size != fresh.part_size => {
                        plan::resumed(&args, first.size, limit).map_err(|e| {
                            Error::invalid(format!("upload {id} cannot be resumed: {e}"))
                        })?
                    }
                    _ => plan::resumed(&args, fresh.part_size, limit)?,
                };
                (
                    plan,
                    listed.into_iter().map(|p| (p.part_number, p)).collect(),
                )
            }
            None => (fresh, BTreeMap::new()),
        };
        let parts = plan.parts;
        // Each part in flight holds one buffer: no producer, no extra slab.
        // From the file a part takes none: only the minimum is reserved, in
        // case the file cannot be sent from after all (it then goes through
        // those one or two buffers).
        let from_file = FileSource::applies(self, &args, size, resume.is_some());
        let want = if from_file { 1 } else { plan.inflight };
        let slabs = plan.reserve(self.slabs(), want, args.rdma.clone(), &|| args.cancelled())?;
        if !from_file {
            plan.inflight = plan.inflight.min(slabs.slabs());
        }
        let upload = Upload::new(self, bucket, key, args, plan, slabs);
        // Parts go from the file where they can (upload/sendfile.rs).
        let zero_copy = FileSource::new(&upload, &file, path, size, resume.is_some());
        let mut out = match resume {
            None if parts == 1 => match &zero_copy {
                Some(zero_copy) => zero_copy.single(&upload, size as usize)?,
                None => {
                    let mut slab = upload.slabs.first()?;
                    let len = size as usize;
                    file.read_exact_at(&mut slab.as_mut_slice()[..len], 0)
                        .map_err(|e| io("reading", e))?;
                    upload.single(&slab, len)?
                }
            },
            _ => {
                let upload_id = match resume {
                    Some(id) => id.to_string(),
                    None => self
                        .create_upload(bucket, key, &upload.args, Some(&upload.stopped))
                        .map_err(|e| upload.or_cancelled(e))?,
                };
                let files = Arc::new(FileParts {
                    file,
                    path: path.to_path_buf(),
                    size,
                    parts: parts as u32,
                    known,
                    zero_copy,
                });
                upload.file_parts(&upload_id, &files)?
            }
        };
        (out.slabs, out.slab_bytes) = upload.slabs.used();
        Ok(out)
    }
}

/// The parts of a file being uploaded.
struct FileParts {
    file: File,
    path: PathBuf,
    size: u64,
    parts: u32,
    /// Parts already on the server (when resuming).
    known: BTreeMap<u32, UploadedPart>,
    /// Set when parts go from the file, not through a buffer.
    zero_copy: Option<FileSource>,
}

impl Upload {
    /// Hands the file's parts, in order, to the client's workers (at most
    /// `max_inflight_parts` at once, each with its buffer taken first),
    /// then completes or aborts.
    fn file_parts(
        self: &Arc<Self>,
        upload_id: &str,
        files: &Arc<FileParts>,
    ) -> Result<PutObjectOutput> {
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event<Sent>>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let _ = event_tx.send(Event::Produced {
            parts: files.parts,
            bytes: files.size,
        });
        let what = self.what(upload_id);
        let ctl = Control {
            what: &what,
            cancel: self.args.cancel.as_ref(),
            stopped: &self.stopped,
            progress: self.args.progress.as_deref(),
            total: Some(files.size),
        };
        let upload_id: Arc<str> = upload_id.into();
        let mut parts = BTreeMap::new();
        let gathered = thread::scope(|s| {
            let id = Arc::clone(&upload_id);
            let feeder = s.spawn(move || {
                let _guard = PanicGuard(&event_tx, "feeder");
                if let Err(e) = self.feed_file(&id, files, &event_tx, &stop_rx) {
                    let _ = event_tx.send(Event::Failed(e));
                }
            });
            gather(
                &ctl,
                event_rx,
                stop_tx,
                vec![feeder],
                |number, len, sent| {
                    parts.insert(number, (sent, len));
                    Ok(len as u64)
                },
            )
        });
        self.finish(&upload_id, gathered, parts)
    }

    /// Takes a buffer for each part in turn and hands the part over, until
    /// every part is or the upload stops.
    fn feed_file(
        self: &Arc<Self>,
        upload_id: &Arc<str>,
        files: &Arc<FileParts>,
        events: &Sender<Event<Sent>>,
        stop: &Receiver<()>,
    ) -> Result<()> {
        let lane = Lane::new(self.plan.inflight);
        for number in 1..=files.parts {
            if self.stopped.is_set() {
                break;
            }
            // From the file a part needs no buffer.
            let slab = match &files.zero_copy {
                Some(_) => None,
                None => match self.slabs.acquire(stop)? {
                    Some(slab) => Some(slab),
                    None => break,
                },
            };
            let task = self.file_part_task(upload_id, files, number, slab, events.clone());
            if !lane.run(self.client.engine(), stop, task)? {
                break;
            }
        }
        Ok(())
    }

    /// The task that sends part `number` of the file: from the file, or
    /// read into `slab` first.
    fn file_part_task(
        self: &Arc<Self>,
        upload_id: &Arc<str>,
        files: &Arc<FileParts>,
        number: u32,
        slab: Option<Slab>,
        events: Sender<Event<Sent>>,
    ) -> impl FnOnce() + Send + 'static {
        let (upload, upload_id, files) =
            (Arc::clone(self), Arc::clone(upload_id), Arc::clone(files));
        move || {
            let _guard = PanicGuard(&events, "worker");
            if upload.stopped.is_set() {
                return;
            }
            let (len, result) = match (&files.zero_copy, slab) {
                (Some(zero_copy), _) => zero_copy.send_part(&upload, &upload_id, number),
                (None, Some(slab)) => upload.file_part(&upload_id, &files, number, slab),
                (None, None) => (
                    0,
                    Err(Error::Internal("a file part without a buffer".into())),
                ),
            };
            // The first error ends the upload: take no further part, cut
            // the others (after the event, so that this error reaches the
            // caller's thread before those of the requests it cuts).
            let stop = result.is_err().then(|| Arc::clone(&upload.stopped));
            // All of the upload this task holds goes before the event: when
            // the caller's thread has seen every event, nothing of it is held.
            drop((upload, files));
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

    /// Reads part `number` of the file into `slab` and sends it, unless the
    /// server already holds it intact; also returns the part's length.
    fn file_part(
        &self,
        upload_id: &str,
        files: &FileParts,
        number: u32,
        mut slab: Slab,
    ) -> (usize, Result<Sent>) {
        let (start, len) = self.plan.range(number as u64);
        let read = files
            .file
            .read_exact_at(&mut slab.as_mut_slice()[..len], start);
        let buf = &slab.as_slice()[..len];
        let result = match read {
            Err(e) => Err(Error::Io {
                context: format!("reading {} at byte {start}", files.path.display()),
                source: e,
            }),
            Ok(()) => match files.known.get(&number).and_then(|p| self.intact(p, buf)) {
                Some(sent) => Ok(sent),
                // A connection of the client's pool, for this part only.
                None => {
                    let stopped = || self.stopped.is_set();
                    match self.client.connections().acquire(&stopped) {
                        Some(conn) => self.send_part(&conn, upload_id, number, &slab, len),
                        None => Err(Error::Cancelled),
                    }
                }
            },
        };
        (len, result)
    }

    /// Whether the part the server holds is `data`: same size, and the same
    /// checksum (when the server listed one) or MD5 ETag. `None` when it
    /// differs or cannot be checked, so it is sent again.
    fn intact(&self, part: &UploadedPart, data: &[u8]) -> Option<Sent> {
        if part.size != data.len() as u64 {
            return None;
        }
        let crc = self.args.checksum.compute(data);
        let same = match (&part.checksum, crc) {
            (Some(listed), Some(local)) => {
                Crc::from_base64(self.args.checksum, listed, part.size) == Some(local)
            }
            _ => {
                let md5: String = Md5::digest(data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                part.etag.trim_matches('"') == md5
            }
        };
        log::debug!(
            "resume: part {} on the server is {}",
            part.part_number,
            if same {
                "intact, kept"
            } else {
                "different, sent again"
            }
        );
        same.then(|| Sent {
            etag: part.etag.clone(),
            version_id: None,
            crc,
        })
    }
}
