//! The C ABI of s3pump: `libs3pump.so` and `libs3pump.a`, declared by
//! `include/s3pump.h` (the contract; read it for what each function does,
//! who owns what, and which thread calls a callback).
//!
//! Every entry point goes through [`error::status`] or [`error::handle`],
//! which catch panics and turn errors into a status and an `s3pump_error`.
//! Arguments are read by [`args`]: NULL or non-UTF-8 strings, NULL handles
//! and options structs without their `struct_size` are errors there.
#![deny(missing_docs)]
// The functions are `extern "C"` for C callers; their raw pointer arguments
// are checked (NULL is an error) and documented in the header, not in Rust.
#![allow(clippy::missing_safety_doc)]
#![allow(non_camel_case_types)]

mod args;
mod callbacks;
mod cancel;
mod client;
mod download;
mod error;
mod objects;
mod push;
mod upload;

use std::ffi::c_char;

/// The library's version, a static string (`S3PUMP_VERSION` of the header).
#[unsafe(no_mangle)]
pub extern "C" fn s3pump_version() -> *const c_char {
    c"0.1.0".as_ptr()
}
