//! `s3pump_cancel`: a cancel handle C code can trigger from any thread.

use std::ffi::c_int;

use s3pump_core::CancelHandle;

use crate::error::{quietly, value};

/// A [`CancelHandle`]; transfers given it keep a clone, so freeing it while
/// they run is safe (they are just no longer cancellable through it).
pub struct s3pump_cancel(pub(crate) CancelHandle);

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_cancel_new() -> *mut s3pump_cancel {
    value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(s3pump_cancel(CancelHandle::new())))
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_cancel_cancel(cancel: *const s3pump_cancel) {
    // SAFETY: NULL or a handle from `s3pump_cancel_new` not yet freed.
    quietly(|| {
        if let Some(c) = unsafe { cancel.as_ref() } {
            c.0.cancel()
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_cancel_is_cancelled(cancel: *const s3pump_cancel) -> c_int {
    // SAFETY: as in `s3pump_cancel_cancel`.
    value(0, || {
        unsafe { cancel.as_ref() }.is_some_and(|c| c.0.is_cancelled()) as c_int
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_cancel_free(cancel: *mut s3pump_cancel) {
    if !cancel.is_null() {
        // SAFETY: made by `s3pump_cancel_new` (`Box::into_raw`), freed once.
        quietly(|| drop(unsafe { Box::from_raw(cancel) }))
    }
}

/// The handle an options struct names, if any.
pub(crate) fn from_ptr(p: *const s3pump_cancel) -> Option<CancelHandle> {
    // SAFETY: NULL or a live handle (header: the `cancel` option).
    unsafe { p.as_ref() }.map(|c| c.0.clone())
}
