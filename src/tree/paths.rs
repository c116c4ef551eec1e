//! Keys to local paths and back: what may be written where, and the walk of
//! an uploaded directory.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The longest name of one path component most Unix file systems hold.
const NAME_MAX: usize = 255;
/// The longest relative path accepted (Linux's PATH_MAX, less room for the
/// target directory).
const REL_PATH_MAX: usize = 3072;

/// The prefix as keys are made from it: empty, or ending in `/`.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// The relative path a key's remainder (the key after the prefix) names, or
/// why it may not be written: every `/`-separated segment must be a plain
/// name (not empty, not `.` or `..`, no NUL, at most 255 bytes), so that the
/// path can only lead below the target directory.
pub(crate) fn safe_relative(rest: &str) -> std::result::Result<PathBuf, String> {
    if rest.is_empty() {
        return Err("the key names the prefix itself, not a file under it".into());
    }
    if rest.len() > REL_PATH_MAX {
        return Err(format!(
            "the path would be {} bytes long; at most {REL_PATH_MAX} are written",
            rest.len()
        ));
    }
    let mut path = PathBuf::new();
    for segment in rest.split('/') {
        let why = match segment {
            "" if path.as_os_str().is_empty() => Some("it starts with '/' (an absolute path)"),
            "" => Some("it has an empty path segment ('//')"),
            "." => Some("it has a '.' segment"),
            ".." => Some("it has a '..' segment, which would leave the target directory"),
            s if s.contains('\0') => Some("it holds a NUL byte"),
            s if s.len() > NAME_MAX => Some("a segment is longer than 255 bytes"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(format!("refused to write it: {why}"));
        }
        path.push(segment);
    }
    Ok(path)
}

/// Creates the directories of `rel` (all but its last component) under
/// `root`, one at a time, refusing any that exists as something else than a
/// real directory (a symbolic link there could lead outside `root`).
/// Returns the full path of the file, refused if something other than a
/// regular file is there (a symbolic link, a FIFO, a device, a directory).
pub(crate) fn prepare_parent(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let components: Vec<_> = rel.components().collect();
    let (last, parents) = components
        .split_last()
        .ok_or_else(|| Error::invalid("empty path"))?;
    for c in parents {
        dir.push(c);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(format!("cannot create {}", dir.display()), e)),
        }
        let meta =
            fs::symlink_metadata(&dir).map_err(|e| io_error(format!("{}", dir.display()), e))?;
        if !meta.file_type().is_dir() {
            return Err(Error::invalid(format!(
                "{} exists and is not a directory (a symbolic link is not followed)",
                dir.display()
            )));
        }
    }
    dir.push(last);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::invalid(format!(
            "{} is a symbolic link; it is not written through",
            dir.display()
        ))),
        // A FIFO, device or socket planted in the tree is not written
        // through (a FIFO's open would wait for a reader).
        Ok(m) if !m.is_file() => Err(Error::invalid(format!(
            "{} exists and is not a regular file; a tree download writes only regular files",
            dir.display()
        ))),
        _ => Ok(dir),
    }
}

fn io_error(context: String, source: io::Error) -> Error {
    Error::Io { context, source }
}

/// One entry found by [`walk`].
pub(crate) enum Found {
    /// A regular file to upload: its relative key (`/`-separated), path and size.
    File {
        rel: String,
        path: PathBuf,
        size: u64,
    },
    /// Something that cannot be uploaded: its relative key (lossy when the
    /// name is not UTF-8), path and why.
    Bad {
        rel: String,
        path: PathBuf,
        error: Error,
    },
    /// Skipped on purpose (a symbolic link not followed, a special file).
    Skipped,
}

/// Walks `root` depth-first, in name order. An unreadable `root` is the
/// error; anything wrong below it is a [`Found::Bad`].
pub(crate) fn walk(root: &Path, follow_symlinks: bool) -> Result<Vec<Found>> {
    let meta = fs::metadata(root).map_err(|e| io_error(format!("{}", root.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut out = Vec::new();
    let mut ancestors = HashSet::new();
    ancestors.insert((meta.dev(), meta.ino()));
    let entries = read_sorted(root).map_err(|e| io_error(format!("{}", root.display()), e))?;
    walk_dir(entries, "", follow_symlinks, &mut ancestors, &mut out);
    Ok(out)
}

fn read_sorted(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn walk_dir(
    entries: Vec<fs::DirEntry>,
    rel_dir: &str,
    follow: bool,
    ancestors: &mut HashSet<(u64, u64)>,
    out: &mut Vec<Found>,
) {
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let lossy = name.to_string_lossy();
        let rel = format!("{rel_dir}{lossy}");
        let bad = |error: Error| Found::Bad {
            rel: rel.clone(),
            path: path.clone(),
            error,
        };
        if name.to_str().is_none() {
            out.push(bad(Error::invalid(format!(
                "{}: the name is not UTF-8, so it cannot be a key",
                path.display()
            ))));
            continue;
        }
        let meta = match entry.file_type() {
            Ok(t) if t.is_symlink() && !follow => {
                log::warn!(
                    "{}: a symbolic link, not followed (follow_symlinks is off)",
                    path.display()
                );
                out.push(Found::Skipped);
                continue;
            }
            Ok(_) => fs::metadata(&path),
            Err(e) => Err(e),
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                out.push(bad(io_error(format!("{}", path.display()), e)));
                continue;
            }
        };
        if meta.is_file() {
            out.push(Found::File {
                rel,
                path,
                size: meta.len(),
            });
        } else if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if !ancestors.insert(id) {
                out.push(bad(Error::invalid(format!(
                    "{}: a directory loop through a symbolic link",
                    path.display()
                ))));
                continue;
            }
            match read_sorted(&path) {
                Ok(children) => walk_dir(children, &format!("{rel}/"), follow, ancestors, out),
                Err(e) => out.push(bad(io_error(format!("{}", path.display()), e))),
            }
            ancestors.remove(&id);
        } else {
            log::warn!("{}: not a regular file, skipped", path.display());
            out.push(Found::Skipped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_refused() {
        for rest in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "a//b",
            "a/./b",
            "a\0b",
            &"n".repeat(256),
        ] {
            assert!(safe_relative(rest).is_err(), "{rest:?} was accepted");
        }
        assert_eq!(
            safe_relative("a b/ü/c.txt").unwrap(),
            Path::new("a b").join("ü").join("c.txt")
        );
        assert_eq!(safe_relative("..a/b..").unwrap(), Path::new("..a/b.."));
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("p"), "p/");
        assert_eq!(normalize_prefix("p/"), "p/");
    }
}
