//! Where a download's bytes go: a file, written at each range's offset by
//! the worker that fetched it, through a temporary file renamed into place
//! at the end; or any `Write`, written strictly in order on the caller's
//! thread, ranges that arrive early waiting in their slabs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
