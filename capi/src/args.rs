//! Reading the arguments of a C call: strings, handles, and the options and
//! output structs that start with their `struct_size`.

use std::ffi::{CStr, CString, c_char};
use std::mem::size_of;
use std::ptr;

use s3pump_core::Error;

/// `what` as a `&str`: NULL and invalid UTF-8 are errors naming `what`.
pub(crate) fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: not NULL; the caller passes a NUL-terminated string that lives
    // for the call (header: string arguments).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| Error::InvalidArgument(format!("{what} is not valid UTF-8 ({e})")))
}

/// An optional string: NULL is `None`, invalid UTF-8 an error.
pub(crate) fn opt_str(p: *const c_char, what: &str) -> Result<Option<String>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    str_arg(p, what).map(|s| Some(s.to_string()))
}

/// The handle `p` points to: NULL is an error naming `what`.
pub(crate) fn handle_arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: NULL or a handle this library made and the caller has not freed
    // (header: handles).
    unsafe { p.as_ref() }.ok_or_else(|| Error::InvalidArgument(format!("{what} is NULL")))
}

/// The mutable handle `p` points to: NULL is an error naming `what`.
pub(crate) fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: as `handle_arg`; the header allows one thread at a time on
    // the handles taken mutably (an upload, a listing).
    unsafe { p.as_mut() }.ok_or_else(|| Error::InvalidArgument(format!("{what} is NULL")))
}

/// A `repr(C)` options or output struct whose first field is
/// `size_t struct_size`.
///
/// # Safety
/// `Self` must be `repr(C)`, start with a `usize`, and every bit pattern a C
/// caller can put in its fields must be valid (integers, raw pointers,
/// `Option` of function pointers).
pub(crate) unsafe trait CStruct: Copy {
    /// The C name, for error messages (`s3pump_put_options`).
    const NAME: &'static str;
    /// The size of the first version of the struct: a smaller `struct_size`
    /// means the caller did not call its `_init`.
    const FIRST_SIZE: usize;
    /// The value `_init` sets (its `struct_size` included).
    fn init() -> Self;
}

fn check_size(size: usize, name: &str, first: usize) -> Result<(), Error> {
    if size < first {
        return Err(Error::InvalidArgument(format!(
            "{name}.struct_size is {size}, not at least {first}: initialise it with {name}_init"
        )));
    }
    Ok(())
}

/// The options `p` points to, or the defaults when it is NULL. Only the
/// first `struct_size` bytes are read: fields an older caller does not know
/// keep their defaults.
pub(crate) fn options<T: CStruct>(p: *const T) -> Result<T, Error> {
    let mut value = T::init();
    if p.is_null() {
        return Ok(value);
    }
    // SAFETY: not NULL; points to a `T` whose first field is its size
    // (`CStruct`), initialised by the caller (header: options).
    let size = unsafe { ptr::read(p.cast::<usize>()) };
    check_size(size, T::NAME, T::FIRST_SIZE)?;
    // SAFETY: the caller's struct has at least `size` bytes; we copy no more
    // than ours has, and every bit pattern is valid for `T` (`CStruct`).
    unsafe {
        ptr::copy_nonoverlapping(
            p.cast::<u8>(),
            (&mut value as *mut T).cast::<u8>(),
            size.min(size_of::<T>()),
        )
    };
    // SAFETY: `T` starts with its `usize` size (`CStruct`).
    unsafe { ptr::write((&mut value as *mut T).cast::<usize>(), size_of::<T>()) };
    Ok(value)
}

/// Checks an output pointer before the work starts (NULL: no output wanted),
/// so that a bad `struct_size` fails before anything is sent.
pub(crate) fn check_output<T: CStruct>(p: *mut T) -> Result<(), Error> {
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: not NULL; points to a caller's `T` (header: outputs).
    let size = unsafe { ptr::read(p.cast::<usize>()) };
    check_size(size, T::NAME, T::FIRST_SIZE)
}

/// Writes `value` into the caller's output (checked by `check_output`);
/// with NULL, `value` is dropped by `free`, which releases its strings.
pub(crate) fn write_output<T: CStruct>(p: *mut T, mut value: T, free: fn(&mut T)) {
    if p.is_null() {
        free(&mut value);
        return;
    }
    // SAFETY: checked by `check_output`: the caller's struct is at least the
    // first version's size, which is this version's (a later version that
    // adds fields must copy `struct_size` bytes and free what does not fit).
    unsafe {
        let size = ptr::read(p.cast::<usize>());
        debug_assert!(size >= size_of::<T>());
        ptr::write(p, value);
        ptr::write(p.cast::<usize>(), size);
    }
}

/// A string for an output struct, freed with `free_string`.
pub(crate) fn out_string(s: &str) -> *mut c_char {
    crate::error::c_string(s).into_raw()
}

/// An optional string for an output struct: `None` is NULL.
pub(crate) fn out_opt(s: Option<&str>) -> *mut c_char {
    s.map_or(ptr::null_mut(), out_string)
}

/// Frees a string of an output struct and sets it to NULL.
pub(crate) fn free_string(p: &mut *mut c_char) {
    if !p.is_null() {
        // SAFETY: made by `out_string` (`CString::into_raw`), freed once: the
        // pointer is set to NULL here.
        drop(unsafe { CString::from_raw(*p) });
        *p = ptr::null_mut();
    }
}

/// Runs `_init` on the caller's struct (NULL is a no-op).
pub(crate) fn init_struct<T: CStruct>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: not NULL; the caller's storage for a `T` (header: _init).
        unsafe { ptr::write(p, T::init()) };
    }
}

/// Runs a `_free` of an output struct (NULL is a no-op).
pub(crate) fn free_struct<T: CStruct>(p: *mut T, free: fn(&mut T)) {
    // SAFETY: NULL or the caller's output struct (header: _free).
    if let Some(out) = unsafe { p.as_mut() } {
        free(out);
    }
}
