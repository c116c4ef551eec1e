//! `sendfile(2)`: a range of a file moved from the page cache to a socket
//! by the kernel, with no copy through this process (the direct sender's
//! [`Body::File`](super::direct::Body::File)).
//!
//! Through `libc`, already in the build (memmap2 depends on it): std has no
//! `sendfile`, and rustix would be a new dependency of every build for one
//! call.

use std::fs::File;
use std::io;
use std::net::TcpStream;

/// Sends `len` bytes of `file` from `offset` on `sock`, looping over short
/// sends and `EINTR`. A socket timeout (`SO_SNDTIMEO`, the idle timeout)
/// is the `WouldBlock` (`EAGAIN`) error, as for an ordinary `send`; a file
/// that ends early (truncated) is an `UnexpectedEof` error naming where.
/// A connection reset mid-body is an error, never a `SIGPIPE` (see
/// [`without_sigpipe`]). `moved` is told of every call's bytes (the
/// minimum-rate check), and of a send timeout (`EAGAIN`) as 0 bytes; its
/// error ends the send, else a timeout is tried again.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send(
    sock: &TcpStream,
    file: &File,
    offset: u64,
    len: usize,
    moved: &mut dyn FnMut(usize) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    /// The most Linux moves in one call.
    const MAX_CALL: usize = 0x7fff_f000;
    let end = offset
        .checked_add(len as u64)
        .filter(|&e| libc::off_t::try_from(e).is_ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file range too large"))?;
    let mut pos = offset as libc::off_t;
    without_sigpipe(|| {
        while (pos as u64) < end {
            let want = ((end - pos as u64) as usize).min(MAX_CALL);
            // SAFETY: both descriptors are open for the whole call (borrowed
            // from the `TcpStream` and the `File`), and `pos` is a live
            // `off_t` the kernel updates by the bytes it sent.
            let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut pos, want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        moved(0)?;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ends at byte {pos}, before the {len} bytes from byte {offset} \
                         were sent (it was truncated)"
                    ),
                ));
            }
            moved(n as usize)?;
        }
        Ok(())
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send(
    _: &TcpStream,
    _: &File,
    _: u64,
    _: usize,
    _: &mut dyn FnMut(usize) -> io::Result<()>,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "sendfile is not used on this system",
    ))
}

/// Runs `f` with `SIGPIPE` blocked on this thread, and discards a `SIGPIPE`
/// it raised. `sendfile` to a socket the peer has reset raises `SIGPIPE`
/// (it has no `MSG_NOSIGNAL`), which kills a host program that has not
/// ignored it (Rust programs ignore it; C programs embedding s3pump may
/// not). The signal is sent to the calling thread, so blocking it here and
/// taking it back with `sigtimedwait` leaves the process untouched; a
/// `SIGPIPE` already pending before is left pending.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn without_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    use std::mem::MaybeUninit;
    use std::ptr;
    // SAFETY: each sigset_t is initialised by sigemptyset (or filled by
    // sigpending/pthread_sigmask) before it is read; pthread_sigmask changes
    // only this thread's mask and is restored to `old` before returning;
    // sigtimedwait with a zero timeout only takes a pending SIGPIPE.
    unsafe {
        let mut pipe = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(pipe.as_mut_ptr());
        libc::sigaddset(pipe.as_mut_ptr(), libc::SIGPIPE);
        let pipe = pipe.assume_init();
        let pending = || {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigpending(set.as_mut_ptr()) == 0
                && libc::sigismember(set.as_ptr(), libc::SIGPIPE) == 1
        };
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(old.as_mut_ptr());
        let was_pending = pending();
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, old.as_mut_ptr()) == 0;
        let out = f();
        if blocked {
            if !was_pending && pending() {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&pipe, ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut());
        }
        out
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn file_of(data: &[u8]) -> File {
        let mut f = tempfile_in_target();
        f.write_all(data).unwrap();
        f
    }

    /// An unlinked temporary file (no tempfile crate in the library's
    /// dependencies).
    fn tempfile_in_target() -> File {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "s3pump-sendfile-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn sends_the_range_and_stops_at_a_short_file() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let file = file_of(&data);
        let (a, mut b) = pair();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        send(&a, &file, 12_345, 2_000_000, &mut |_| Ok(())).unwrap();
        // Past the end of the file: what exists is sent, then a clear error.
        let err = send(&a, &file, 2_900_000, 200_000, &mut |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        drop(a);
        let got = reader.join().unwrap();
        assert!(got[..2_000_000] == data[12_345..2_012_345]);
        assert!(got[2_000_000..] == data[2_900_000..]);
    }

    #[test]
    fn a_reset_connection_is_an_error_and_no_sigpipe_is_left() {
        let data = vec![7u8; 8 << 20];
        let file = file_of(&data);
        let (a, b) = pair();
        // A reset (RST) rather than a close: SO_LINGER 0 on the peer.
        socket_linger_zero(&b);
        drop(b);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The test thread blocks SIGPIPE itself, so a SIGPIPE that
        // `sendfile` raised stays pending where the test can see it (the
        // test binary ignores SIGPIPE: unblocked, it would just vanish).
        // SAFETY: as in `without_sigpipe`: this thread's mask only, restored below.
        let old = unsafe {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(old.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
            old.assume_init()
        };
        // The first send after the reset may say ECONNRESET; the next ones
        // EPIPE, which is what raises SIGPIPE.
        let mut errors = Vec::new();
        for _ in 0..4 {
            match send(&a, &file, 0, data.len(), &mut |_| Ok(())) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    errors.push(e);
                    break;
                }
                Err(e) => errors.push(e),
                Ok(()) => {}
            }
        }
        assert!(
            errors.last().map(|e| e.kind()) == Some(io::ErrorKind::BrokenPipe),
            "{errors:?}"
        );
        // SAFETY: sigpending fills the set it is given, initialised first.
        let pending = unsafe {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigpending(set.as_mut_ptr());
            libc::sigismember(set.as_ptr(), libc::SIGPIPE) == 1
        };
        // SAFETY: restores this thread's mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        assert!(!pending, "a SIGPIPE was left pending");
    }

    fn socket_linger_zero(s: &TcpStream) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads the `linger` struct it is given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }
}
