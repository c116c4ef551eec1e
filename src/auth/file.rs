//! Local files credentials come from (the shared config and credentials
//! files, token files, the SSO token cache), read bounded: only a regular
//! file (a FIFO is never waited on, a device never read), and only up to
//! [`MAX_LOCAL_FILE`] bytes (`/dev/zero` or a huge file is an error, not
//! memory exhausted).

use std::fs::OpenOptions;
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest config, credentials or token file read: 1 MiB (a real one
/// is a few KiB).
pub(crate) const MAX_LOCAL_FILE: u64 = 1 << 20;

/// Reads the file at `path` as UTF-8 text if it is a regular file (a
/// symbolic link to one is followed) of at most [`MAX_LOCAL_FILE`] bytes.
/// A missing file is an error of kind `NotFound`; anything else that is
/// not such a file is `InvalidData` with a message saying why.
pub(crate) fn read_bounded(path: &Path) -> io::Result<String> {
    // O_NONBLOCK: opening a FIFO with no writer would otherwise block
    // before its kind can be seen. It changes nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            "it is not a regular file",
        ));
    }
    let too_big = || {
        io::Error::new(
            ErrorKind::InvalidData,
            format!("it is larger than {MAX_LOCAL_FILE} bytes"),
        )
    };
    if meta.len() > MAX_LOCAL_FILE {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read stops at the limit too.
    file.take(MAX_LOCAL_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_LOCAL_FILE {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "[default]\nregion = x\n").unwrap();
        assert_eq!(read_bounded(&ok).unwrap(), "[default]\nregion = x\n");

        let missing = dir.path().join("missing");
        assert_eq!(
            read_bounded(&missing).unwrap_err().kind(),
            ErrorKind::NotFound
        );

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_LOCAL_FILE as usize + 1]).unwrap();
        let e = read_bounded(&big).unwrap_err();
        assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");

        // A FIFO with no writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");

        // A device that never ends, and a directory.
        for path in ["/dev/zero", "/"] {
            let e = read_bounded(Path::new(path)).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{path}: {e}");
        }

        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(
            read_bounded(&binary)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
