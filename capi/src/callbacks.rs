//! The C callbacks as the Rust traits and closures s3pump takes: a read
//! callback as `Read`, a write callback as `Write`, the progress callback,
//! the credentials callback as `ProvideCredentials`.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::time::{Duration, SystemTime};

use s3pump_core::{Credentials, Error, ProvideCredentials};

use crate::args::str_arg;

/// `s3pump_read_fn`.
pub(crate) type ReadFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> i64;
/// `s3pump_write_fn`.
pub(crate) type WriteFn = unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int;
/// `s3pump_progress_fn`.
pub(crate) type ProgressFn = unsafe extern "C" fn(*mut c_void, u64, u64) -> c_int;
/// `s3pump_credentials_fn`.
pub(crate) type CredentialsFn = unsafe extern "C" fn(*mut c_void, *mut CCredentials) -> c_int;

/// A caller's `ctx` pointer, handed to its callback on s3pump's threads.
#[derive(Clone, Copy)]
pub(crate) struct Ctx(pub *mut c_void);

// SAFETY: the header tells the caller that callbacks run on the library's
// threads, one at a time per transfer (the credentials callback: from any
// thread); the context is the caller's to make fit for that. s3pump never
// dereferences it.
unsafe impl Send for Ctx {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ctx {}

impl Ctx {
    /// The pointer (a method, so that closures capture the whole `Ctx`).
    pub fn get(self) -> *mut c_void {
        self.0
    }
}

/// A read callback as a `Read`.
pub(crate) struct CRead {
    pub f: ReadFn,
    pub ctx: Ctx,
}

impl io::Read for CRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the caller's callback (header: s3pump_read_fn), given a
        // buffer of `buf.len()` writable bytes.
        let n = unsafe { (self.f)(self.ctx.0, buf.as_mut_ptr(), buf.len()) };
        match usize::try_from(n) {
            Ok(n) if n <= buf.len() => Ok(n),
            Ok(n) => Err(io::Error::other(format!(
                "the read callback returned {n}, more than the {} bytes asked for",
                buf.len()
            ))),
            Err(_) => Err(io::Error::other(format!(
                "the read callback failed (returned {n})"
            ))),
        }
    }
}

/// A write callback as a `Write`.
pub(crate) struct CWrite {
    pub f: WriteFn,
    pub ctx: Ctx,
}

impl io::Write for CWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the caller's callback (header: s3pump_write_fn), given
        // `buf.len()` readable bytes.
        match unsafe { (self.f)(self.ctx.0, buf.as_ptr(), buf.len()) } {
            0 => Ok(buf.len()),
            rc => Err(io::Error::other(format!(
                "the write callback failed (returned {rc})"
            ))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The progress callback as the closure s3pump takes: `false` cancels.
pub(crate) fn progress(
    f: ProgressFn,
    ctx: Ctx,
) -> impl FnMut(s3pump_core::Progress) -> bool + Send + 'static {
    move |p| {
        let total = p.total.unwrap_or(u64::MAX);
        // SAFETY: the caller's callback (header: s3pump_progress_fn).
        unsafe { f(ctx.get(), p.bytes_sent, total) == 0 }
    }
}

/// `s3pump_credentials`.
#[repr(C)]
pub struct CCredentials {
    access_key_id: *const c_char,
    secret_access_key: *const c_char,
    session_token: *const c_char,
    expires_unix: i64,
}

/// A credentials callback as a `ProvideCredentials`.
pub(crate) struct CCredentialsProvider {
    pub f: CredentialsFn,
    pub ctx: Ctx,
}

impl ProvideCredentials for CCredentialsProvider {
    fn provide(&self) -> s3pump_core::Result<Credentials> {
        let mut out = CCredentials {
            access_key_id: std::ptr::null(),
            secret_access_key: std::ptr::null(),
            session_token: std::ptr::null(),
            expires_unix: 0,
        };
        // SAFETY: the caller's callback (header: s3pump_credentials_fn),
        // given a struct to fill; its strings live until it returns to us
        // and are copied below.
        let rc = unsafe { (self.f)(self.ctx.0, &mut out) };
        if rc != 0 {
            return Err(Error::Credentials(format!(
                "the credentials callback failed (returned {rc})"
            )));
        }
        let bad = |e: Error| Error::Credentials(format!("the credentials callback: {e}"));
        let key = str_arg(out.access_key_id, "access_key_id").map_err(bad)?;
        let secret = str_arg(out.secret_access_key, "secret_access_key").map_err(bad)?;
        let token = crate::args::opt_str(out.session_token, "session_token").map_err(bad)?;
        let mut creds = Credentials::new(key, secret, token);
        if out.expires_unix > 0 {
            creds = creds
                .with_expiry(SystemTime::UNIX_EPOCH + Duration::from_secs(out.expires_unix as u64));
        }
        Ok(creds)
    }

    fn describe(&self) -> String {
        "the C credentials callback".to_string()
    }
}
