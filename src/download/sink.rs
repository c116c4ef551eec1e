//! Where a download's bytes go: a file, written at each range's offset by
//! the worker that fetched it, through a temporary file renamed into place
//! at the end; or any `Write`, written strictly in order on the caller's
//! thread, ranges that arrive early waiting in their slabs. [`Target::of`]
//! says which a path the user named gets.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::slab::Slab;
use crate::{Error, Result};

/// Where the bytes go.
pub(crate) enum Sink<'a, W: ?Sized> {
    /// Workers write each range at its offset (into this handle of the
    /// temporary file).
    File(File),
    /// The caller's thread writes the ranges in order.
    Writer(&'a mut W),
}

/// A `Write` fed in order: range `n` is written once ranges `1..n` are.
pub(crate) struct InOrder<'a, W: ?Sized> {
    writer: &'a mut W,
    /// The next range to write (1-based).
    next: u32,
    /// Ranges that arrived early, in their slabs, with their lengths.
    waiting: BTreeMap<u32, (Slab, usize)>,
}

impl<'a, W: Write + ?Sized> InOrder<'a, W> {
    pub fn new(writer: &'a mut W) -> Self {
        InOrder {
            writer,
            next: 1,
            waiting: BTreeMap::new(),
        }
    }

    /// Takes range `number` and writes every range that is now next, giving
    /// their slabs back. Returns the bytes written; `offset(n)` is
    /// the byte offset of range `n`, for the error message.
    pub fn push(
        &mut self,
        number: u32,
        slab: Slab,
        len: usize,
        offset: impl Fn(u32) -> u64,
    ) -> Result<u64> {
        self.waiting.insert(number, (slab, len));
        let mut written = 0u64;
        while let Some((slab, len)) = self.waiting.remove(&self.next) {
            let result = self.writer.write_all(&slab.as_slice()[..len]);
            drop(slab);
            result.map_err(|e| Error::Io {
                context: format!("writing bytes {}.. to the destination", offset(self.next)),
                source: e,
            })?;
            self.next += 1;
            written += len as u64;
        }
        Ok(written)
    }
}

/// What a download to a path writes, by the kind of file at the path.
pub(crate) enum Target {
    /// A regular file (new or replaced) at `path` (a symbolic link's
    /// target, resolved): written through a temporary file renamed over it;
    /// `keep` is the mode and owner of the file replaced.
    Replace { path: PathBuf, keep: Option<Kept> },
    /// A character or block device, a FIFO or a socket: written through, in
    /// order, never replaced.
    Through(Box<dyn Write + Send>),
}

/// What a replaced file keeps: its permission bits and owner.
pub(crate) struct Kept {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Target {
    /// Looks at what is at `path`: nothing or a regular file is
    /// [`Target::Replace`]; a device, FIFO or socket is opened (a FIFO's
    /// open waits for a reader, as a shell's `>` does) or connected to; a
    /// symbolic link is followed (the file it points to is the target; the
    /// link stays), a dangling one is an error; a directory is an error.
    pub fn of(path: &Path) -> Result<Target> {
        let io = |what: &str, e| Error::Io {
            context: format!("{what} {}", path.display()),
            source: e,
        };
        let meta = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Target::Replace {
                    path: path.to_path_buf(),
                    keep: None,
                });
            }
            Err(e) => return Err(io("inspecting", e)),
            Ok(m) => m,
        };
        let link = meta.file_type().is_symlink();
        let meta = if link {
            // Followed as open(2) follows it (/dev/stdout to a pipe included).
            std::fs::metadata(path).map_err(|e| match e.kind() {
                ErrorKind::NotFound => Error::invalid(format!(
                    "{} is a symbolic link to a file that does not exist; s3pump writes \
                     through a link only to an existing file",
                    path.display()
                )),
                _ => io("inspecting", e),
            })?
        } else {
            meta
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of the file to write",
                path.display()
            )));
        }
        if kind.is_file() {
            // The file replaced is the link's target, in its directory.
            let real = if link {
                std::fs::canonicalize(path).map_err(|e| io("resolving the symbolic link", e))?
            } else {
                path.to_path_buf()
            };
            return Ok(Target::Replace {
                path: real,
                keep: Some(Kept {
                    mode: meta.mode() & 0o777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                }),
            });
        }
        if kind.is_socket() {
            let stream =
                UnixStream::connect(path).map_err(|e| io("connecting to the socket", e))?;
            return Ok(Target::Through(Box::new(stream)));
        }
        // A character or block device or a FIFO: opened as it is, never
        // created, truncated or replaced.
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io("opening", e))?;
        Ok(Target::Through(Box::new(file)))
    }
}

/// The temporary file a download writes before it is renamed over the
/// destination; removed on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    pub file: File,
    keep: bool,
}

impl TempFile {
    pub fn create(dest: &Path) -> Result<TempFile> {
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

    /// Gives the file the owner (when allowed: as root, or a group of the
    /// user's) and the permission bits of the file it will replace.
    pub fn keep(&self, kept: &Kept) -> Result<()> {
        if let Err(e) = std::os::unix::fs::fchown(&self.file, Some(kept.uid), Some(kept.gid)) {
            log::debug!("{}: keeping the owner: {e}", self.path.display());
        }
        self.file
            .set_permissions(Permissions::from_mode(kept.mode))
            .map_err(|e| Error::Io {
                context: format!("setting the mode of {}", self.path.display()),
                source: e,
            })
    }

    /// Renames the file over `dest`.
    pub fn persist(mut self, dest: &Path) -> Result<()> {
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
