//! Uploading a file's parts with no part buffer: over plain HTTP each
//! part's body goes from the page cache to the socket with `sendfile(2)`
//! (the direct sender's `Body::File`), over HTTPS it is read from the file
//! 256 KiB at a time as rustls encrypts it (`transport::direct`); its
//! checksum (and its SHA-256 when the payload is signed) is computed from a
//! read-only mapping of the part's range, not from a buffer it was read
//! into. No slab is used. The slab path stays for RDMA, resuming, bodies
//! under the direct sender's 1 MiB, proxies the direct sender does not
//! speak to, and plain HTTP on systems without `sendfile`.
//!
//! A file that changes while it is uploaded must never make a silently
//! wrong object: the bytes sent are read when they are sent, not when they
//! were hashed. So the file's size, modification and change
//! times (`fstat`) are taken when the upload starts and checked before each
//! part is mapped, before each attempt to send it, and after its reply (by
//! then the server has every byte). Any difference is an error naming the
//! file (the upload is then aborted). The part's CRC is not computed a
//! second time after the reply: that pass cost 0.1 CPU s/GiB
//! (benches/files.rs), and the times catch every write on kernels with
//! fine-grained timestamps (Linux 6.13 and later); with coarse ones, a
//! write in the same clock tick (a few ms) as the last write before the
//! upload started keeps the times unchanged.
//!
//! Truncation: touching a mapped page past the end of a file that shrank
//! raises `SIGBUS`. The size is checked before each part is mapped, so a
//! file truncated before a part, during its send (`sendfile` then meets the
//! end of the file) or after it is an error, not a signal. What is not
//! covered: a truncation in the moment the part's own hash is being
//! computed from its mapping (the milliseconds one part's CRC or SHA-256
//! takes); reading the part into a buffer for hashing instead would close
//! that window at the cost of the copy this path exists to avoid.
//!
//! `s3pump::bench::set_sendfile(false)` turns this path off for the whole
//! process, so benches/files.rs can measure the slab path against it.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{Mmap, MmapOptions};

use super::Upload;
use crate::transport::pool::Conn;
use crate::upload::part::{Sent, Target, send_from_file};
use crate::{Client, Error, PutObjectArgs, PutObjectOutput, Result};

/// Off: every file part goes through a slab (see the module docs).
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the sendfile path on or off for the whole process (benchmarks).
pub(crate) fn set_enabled(enabled: bool) {
    DISABLED.store(!enabled, Ordering::SeqCst);
}

/// What `fstat` says of the file: any write or truncation changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(file: &File) -> io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp {
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// A file whose parts are sent from the file (see the module docs).
pub(crate) struct FileSource {
    /// The upload's own handle of the file.
    file: File,
    path: PathBuf,
    /// The file as it was when the upload started.
    start: Stamp,
}

impl FileSource {
    /// The file's source for `upload` when its parts go out from the file
    /// (by `sendfile` over plain HTTP, read as they are encrypted over
    /// HTTPS): with no RDMA provider, not resuming (`resume`), and parts of
    /// at least the direct sender's 1 MiB (the last part may be smaller: it
    /// then goes through ureq from its mapping). `size` is the file's size
    /// as the upload planned it.
    pub(crate) fn new(
        upload: &Upload,
        file: &File,
        path: &Path,
        size: u64,
        resume: bool,
    ) -> Option<FileSource> {
        if !FileSource::applies(&upload.client, &upload.args, size, resume) {
            return None;
        }
        // The stamp must describe the size the upload planned.
        let start = Stamp::of(file).ok().filter(|s| s.size == size)?;
        Some(FileSource {
            file: file.try_clone().ok()?,
            path: path.to_path_buf(),
            start,
        })
    }

    /// Whether a file of `size` bytes goes out from the file on `client`
    /// with `args` (see [`FileSource::new`]), before anything is opened.
    pub(crate) fn applies(client: &Client, args: &PutObjectArgs, size: u64, resume: bool) -> bool {
        !DISABLED.load(Ordering::SeqCst)
            && client.sends_from_files()
            && args.rdma.is_none()
            && !resume
            && size >= crate::transport::direct::MIN_BODY as u64
    }

    /// The error for a file that is no longer as it was when the upload
    /// started, `now` being what it is now.
    fn changed(&self, now: Stamp, what: &str) -> Error {
        let how = if now.size < self.start.size {
            format!(
                "it was truncated during the upload ({} bytes now, {} when it started)",
                now.size, self.start.size
            )
        } else {
            "it changed during the upload (written to since it started)".to_string()
        };
        Error::Io {
            context: format!("uploading {}", self.path.display()),
            source: io::Error::other(format!("{how}; detected {what}")),
        }
    }

    /// `Ok` while the file is as it was when the upload started.
    fn check(&self, what: &str) -> Result<()> {
        let now = Stamp::of(&self.file).map_err(|e| Error::Io {
            context: format!("reading the size of {}", self.path.display()),
            source: e,
        })?;
        if now == self.start {
            Ok(())
        } else {
            Err(self.changed(now, what))
        }
    }

    /// Sends `len` bytes from `offset` as `target` on `conn`: checks the
    /// file, maps the range, computes its checksum from the mapping, sends
    /// it with `sendfile` (retries too), then checks again that the file did
    /// not change meanwhile (see the module docs).
    pub(crate) fn send(
        &self,
        upload: &Upload,
        conn: &Conn,
        target: &Target<'_>,
        offset: u64,
        len: usize,
    ) -> Result<Sent> {
        let part = match target {
            Target::Object => "the object".to_string(),
            Target::Part { part_number, .. } => format!("part {part_number}"),
        };
        self.check(&format!("before {part} was read"))?;
        // SAFETY: a read-only mapping of a range that exists (the size was
        // checked just above). Others may change the file while it is
        // mapped: s3pump only reads the mapping (no `&mut`, no reference
        // kept past this call), a change to the bytes is caught by the
        // check of the file's size and times after the send. The mapping
        // is read (the CRC here; the SHA-256 of a signed payload, or a body
        // under 1 MiB sent through ureq, at each attempt) only right after
        // a check of the size. A truncation racing such a read raises
        // SIGBUS (see the module docs).
        let map: Mmap = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len)
                .populate()
                .map(&self.file)
        }
        .map_err(|e| Error::Io {
            context: format!(
                "mapping {} bytes of {} at byte {offset}",
                len,
                self.path.display()
            ),
            source: e,
        })?;
        let crc = upload.args.checksum.compute(&map);
        let attempt = format!("while {part} was sent");
        let result = send_from_file(
            &upload.client,
            conn,
            &upload.bucket,
            &upload.key,
            target,
            (&self.file, offset, &map),
            crc,
            &upload.args,
            Some(&upload.stopped),
            &|| self.check(&attempt),
        );
        // A change during the send is the error, whatever the server said.
        self.check(&format!("after {part} was sent"))?;
        log::trace!(
            "{} {part}: {len} bytes from byte {offset} of {} sent from the page cache",
            upload.key,
            self.path.display()
        );
        result
    }
}

impl FileSource {
    /// Sends part `number` of the multipart upload `upload_id` on a
    /// connection of the client's pool; also returns the part's length.
    pub(crate) fn send_part(
        &self,
        upload: &Upload,
        upload_id: &str,
        number: u32,
    ) -> (usize, Result<Sent>) {
        let (offset, len) = upload.plan.range(number as u64);
        let stopped = || upload.stopped.is_set();
        let target = Target::Part {
            upload_id,
            part_number: number,
        };
        let result = match upload.client.connections().acquire(&stopped) {
            Some(conn) => self.send(upload, &conn, &target, offset, len),
            None => Err(Error::Cancelled),
        };
        (len, result)
    }

    /// The one-part upload: a single PutObject of the whole file (`len`
    /// bytes).
    pub(crate) fn single(&self, upload: &Upload, len: usize) -> Result<PutObjectOutput> {
        let sent = self
            .send(upload, upload.client.conn(), &Target::Object, 0, len)
            .map_err(|e| upload.or_cancelled(e))?;
        Ok(sent.into_single(len))
    }
}
