//! A stream source (standard input, a pipe, a device) that a cancel can
//! interrupt.
//!
//! The upload's producer thread blocks in `read` while the stream is idle,
//! and the upload cannot finish aborting until that read returns. So before
//! each read, wait for data with `poll(2)` in short slices, looking at the
//! cancel handle between them; after a cancel every read fails. A read that
//! returns after the cancel (data, or the end of the stream because the
//! writer was killed by the same Ctrl-C) fails too, so that a cut-short
//! stream is never completed as an object.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use s3pump::CancelHandle;

/// How long one wait for data lasts before the cancel handle is looked at.
const SLICE: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// A stream read straight from its file descriptor (no buffering), until
/// cancelled.
pub struct Cancellable {
    file: File,
    cancel: CancelHandle,
}

impl Cancellable {
    /// Reads `fd`.
    pub fn new(fd: OwnedFd, cancel: CancelHandle) -> Self {
        Cancellable {
            file: File::from(fd),
            cancel,
        }
    }

    /// Standard input, unbuffered (a duplicate of descriptor 0).
    pub fn stdin(cancel: CancelHandle) -> io::Result<Self> {
        Ok(Self::new(io::stdin().as_fd().try_clone_to_owned()?, cancel))
    }

    fn check(&self) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        Ok(())
    }
}

impl Read for Cancellable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.check()?;
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match poll(&mut fds, Some(&SLICE)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                // Readable, at its end, or in error: the read says which.
                Ok(_) => break,
                // Something poll cannot wait on: just read.
                Err(_) => break,
            }
        }
        let n = self.file.read(buf)?;
        self.check()?;
        Ok(n)
    }
}
