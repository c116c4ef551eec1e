//! `s3pump_error`, the status codes, and the two guards every entry point
//! runs its body in: no panic crosses the boundary, every error becomes a
//! status and (when asked for) an `s3pump_error`.

use std::any::Any;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use s3pump_core::{Error, ErrorKind};

/// A failure, as C sees it: its kind and texts, owned by the error.
pub struct s3pump_error {
    kind: c_int,
    message: CString,
    s3_code: Option<CString>,
    upload_id: Option<CString>,
    retryable: bool,
}

/// `S3PUMP_OK`.
pub const OK: c_int = 0;
/// `S3PUMP_INVALID_ARGUMENT`.
const INVALID_ARGUMENT: c_int = 10;
/// `S3PUMP_INTERNAL`.
const INTERNAL: c_int = 17;

/// The names of the statuses, indexed by value (the header's `s3pump_status`).
const NAMES: [&std::ffi::CStr; 19] = [
    c"OK",
    c"NOT_FOUND",
    c"ACCESS_DENIED",
    c"THROTTLED",
    c"SERVER_ERROR",
    c"TIMEOUT",
    c"TRANSPORT",
    c"TLS",
    c"PRECONDITION",
    c"OBJECT_CHANGED",
    c"INVALID_ARGUMENT",
    c"INVALID_RESPONSE",
    c"CHECKSUM",
    c"CANCELLED",
    c"CREDENTIALS",
    c"IO",
    c"RDMA",
    c"INTERNAL",
    c"OTHER",
];

/// The status of an error kind: the header's `s3pump_status`.
fn status_of(kind: ErrorKind) -> c_int {
    match kind {
        ErrorKind::NotFound => 1,
        ErrorKind::AccessDenied => 2,
        ErrorKind::Throttled => 3,
        ErrorKind::ServerError => 4,
        ErrorKind::Timeout => 5,
        ErrorKind::Transport => 6,
        ErrorKind::Tls => 7,
        ErrorKind::Precondition => 8,
        ErrorKind::ObjectChanged => 9,
        ErrorKind::InvalidArgument => INVALID_ARGUMENT,
        ErrorKind::InvalidResponse => 11,
        ErrorKind::Checksum => 12,
        ErrorKind::Cancelled => 13,
        ErrorKind::Credentials => 14,
        ErrorKind::Io => 15,
        ErrorKind::Rdma => 16,
        ErrorKind::Internal => INTERNAL,
        _ => 18,
    }
}

/// A C string of `s`, any NUL in it replaced (messages quote server text).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{fffd}")).expect("no NUL left")
}

impl s3pump_error {
    fn new(e: &Error) -> s3pump_error {
        s3pump_error {
            kind: status_of(e.kind()),
            message: c_string(&e.to_string()),
            s3_code: e.s3_code().map(c_string),
            upload_id: e.upload_id().map(c_string),
            retryable: e.is_retryable(),
        }
    }
}

/// Stores `e` into `*err` (when `err` is not NULL) and returns its status.
pub(crate) fn report(err: *mut *mut s3pump_error, e: &Error) -> c_int {
    let boxed = Box::new(s3pump_error::new(e));
    let kind = boxed.kind;
    if !err.is_null() {
        // SAFETY: the caller passes NULL or a pointer to an `s3pump_error *`
        // it owns (header: every `err` argument).
        unsafe { *err = Box::into_raw(boxed) };
    }
    kind
}

fn panic_error(payload: Box<dyn Any + Send>) -> Error {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    Error::Panic(format!("in the C API: {text}"))
}

/// Runs the body of a function that returns a status.
pub(crate) fn status(err: *mut *mut s3pump_error, f: impl FnOnce() -> Result<(), Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => OK,
        Ok(Err(e)) => report(err, &e),
        Err(payload) => report(err, &panic_error(payload)),
    }
}

/// Runs the body of a function that returns a new handle (NULL on failure).
pub(crate) fn handle<T>(
    err: *mut *mut s3pump_error,
    f: impl FnOnce() -> Result<T, Error>,
) -> *mut T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Box::into_raw(Box::new(value)),
        Ok(Err(e)) => {
            report(err, &e);
            ptr::null_mut()
        }
        Err(payload) => {
            report(err, &panic_error(payload));
            ptr::null_mut()
        }
    }
}

/// Runs the body of a function that returns nothing (a `_free`, a cancel):
/// a panic there is swallowed, it has nowhere to go.
pub(crate) fn quietly(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Runs the body of a function returning a plain value, `fallback` if it panics.
pub(crate) fn value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The error `err` points to, if any.
fn get<'a>(err: *const s3pump_error) -> Option<&'a s3pump_error> {
    // SAFETY: NULL or an error made by `report` and not freed yet (header).
    unsafe { err.as_ref() }
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_message(err: *const s3pump_error) -> *const c_char {
    value(c"".as_ptr(), || {
        get(err).map_or(c"".as_ptr(), |e| e.message.as_ptr())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_kind(err: *const s3pump_error) -> c_int {
    value(INTERNAL, || get(err).map_or(OK, |e| e.kind))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_s3_code(err: *const s3pump_error) -> *const c_char {
    value(ptr::null(), || {
        get(err)
            .and_then(|e| e.s3_code.as_ref())
            .map_or(ptr::null(), |s| s.as_ptr())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_upload_id(err: *const s3pump_error) -> *const c_char {
    value(ptr::null(), || {
        get(err)
            .and_then(|e| e.upload_id.as_ref())
            .map_or(ptr::null(), |s| s.as_ptr())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_is_retryable(err: *const s3pump_error) -> c_int {
    value(0, || get(err).is_some_and(|e| e.retryable) as c_int)
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_error_free(err: *mut s3pump_error) {
    if !err.is_null() {
        // SAFETY: made by `Box::into_raw` in `report`, freed once (header).
        quietly(|| drop(unsafe { Box::from_raw(err) }));
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_status_name(status: c_int) -> *const c_char {
    usize::try_from(status)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or(c"UNKNOWN".as_ptr(), |s| s.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_header_status_and_name() {
        let cases = [
            (Error::InvalidArgument("x".into()), "INVALID_ARGUMENT"),
            (Error::Cancelled, "CANCELLED"),
            (Error::Credentials("x".into()), "CREDENTIALS"),
            (Error::Internal("x".into()), "INTERNAL"),
            (Error::Rdma("x".into()), "RDMA"),
        ];
        for (e, name) in cases {
            let mut out = ptr::null_mut();
            let st = report(&mut out, &e);
            let got = unsafe { std::ffi::CStr::from_ptr(s3pump_status_name(st)) };
            assert_eq!(got.to_str().unwrap(), name);
            assert_eq!(s3pump_error_kind(out), st);
            s3pump_error_free(out);
        }
        let unknown = unsafe { std::ffi::CStr::from_ptr(s3pump_status_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "UNKNOWN");
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let mut out = ptr::null_mut();
        let st = status(&mut out, || panic!("boom"));
        assert_eq!(st, INTERNAL);
        let msg = unsafe { std::ffi::CStr::from_ptr(s3pump_error_message(out)) };
        assert!(msg.to_str().unwrap().contains("boom"), "{msg:?}");
        s3pump_error_free(out);
    }
}
