//! Downloads: the options and output structs, and downloading into a file,
//! through an in-order write callback, or into a caller's buffer.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::mem::size_of;
use std::ptr;

use s3pump_core::{DownloadArgs, DownloadOutput, Error};

use crate::args::{
    CStruct, check_output, free_string, free_struct, init_struct, options, out_opt, out_string,
    str_arg, write_output,
};
use crate::callbacks::{CWrite, Ctx, ProgressFn, WriteFn, progress};
use crate::client::s3pump_client;
use crate::error::{quietly, s3pump_error, status};
use crate::upload::target;

/// `s3pump_download_options`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_download_options {
    struct_size: usize,
    part_size: u64,
    max_inflight_parts: u32,
    memory_limit: u64,
    verify_checksum: c_int,
    progress: Option<ProgressFn>,
    progress_ctx: *mut c_void,
    cancel: *const crate::cancel::s3pump_cancel,
}

// SAFETY: repr(C), starts with its size; integers, raw pointers and an
// optional function pointer: any bit pattern is valid.
unsafe impl CStruct for s3pump_download_options {
    const NAME: &'static str = "s3pump_download_options";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_download_options {
            struct_size: size_of::<Self>(),
            part_size: 0,
            max_inflight_parts: 0,
            memory_limit: 0,
            verify_checksum: 1,
            progress: None,
            progress_ctx: ptr::null_mut(),
            cancel: ptr::null(),
        }
    }
}

/// `s3pump_download_output`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_download_output {
    struct_size: usize,
    size: u64,
    parts: u64,
    etag: *mut c_char,
    version_id: *mut c_char,
    checksum: *mut c_char,
}

// SAFETY: repr(C), starts with its size; integers and raw pointers.
unsafe impl CStruct for s3pump_download_output {
    const NAME: &'static str = "s3pump_download_output";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_download_output {
            struct_size: size_of::<Self>(),
            size: 0,
            parts: 0,
            etag: ptr::null_mut(),
            version_id: ptr::null_mut(),
            checksum: ptr::null_mut(),
        }
    }
}

fn free_download_output(out: &mut s3pump_download_output) {
    free_string(&mut out.etag);
    free_string(&mut out.version_id);
    free_string(&mut out.checksum);
}

fn write_download_output(out: *mut s3pump_download_output, o: &DownloadOutput) {
    let value = s3pump_download_output {
        size: o.size,
        parts: o.parts,
        etag: out_string(&o.etag),
        version_id: out_opt(o.version_id.as_deref()),
        checksum: out_opt(o.checksum.as_deref()),
        ..s3pump_download_output::init()
    };
    write_output(out, value, free_download_output);
}

fn download_args(opts: *const s3pump_download_options) -> Result<DownloadArgs, Error> {
    let o = options(opts)?;
    let mut a = DownloadArgs::new().verify_checksum(o.verify_checksum != 0);
    if o.part_size != 0 {
        a = a.part_size(o.part_size);
    }
    if o.max_inflight_parts != 0 {
        a = a.max_inflight_parts(o.max_inflight_parts as usize);
    }
    if o.memory_limit != 0 {
        a = a.memory_limit(o.memory_limit);
    }
    if let Some(f) = o.progress {
        a = a.on_progress(progress(f, Ctx(o.progress_ctx)));
    }
    if let Some(cancel) = crate::cancel::from_ptr(o.cancel) {
        a = a.cancel_handle(&cancel);
    }
    Ok(a)
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_download_options_init(opts: *mut s3pump_download_options) {
    quietly(|| init_struct(opts))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_download_output_init(out: *mut s3pump_download_output) {
    quietly(|| init_struct(out))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_download_output_free(out: *mut s3pump_download_output) {
    quietly(|| free_struct(out, free_download_output))
}

/// Runs one kind of download: checks the common arguments, runs `run`,
/// writes the output.
fn run_download(
    client: *const s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    opts: *const s3pump_download_options,
    out: *mut s3pump_download_output,
    err: *mut *mut s3pump_error,
    run: impl FnOnce(&s3pump_core::Client, &str, &str, DownloadArgs) -> Result<DownloadOutput, Error>,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        let args = download_args(opts)?;
        check_output(out)?;
        let result = run(client, bucket, key, args)?;
        write_download_output(out, &result);
        Ok(())
    })
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_download_to_file(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    path: *const c_char,
    opts: *const s3pump_download_options,
    out: *mut s3pump_download_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    run_download(client, bucket, key, opts, out, err, |c, b, k, a| {
        c.download_to_file(b, k, str_arg(path, "path")?, a)
    })
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_download(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    write: Option<WriteFn>,
    ctx: *mut c_void,
    opts: *const s3pump_download_options,
    out: *mut s3pump_download_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    run_download(client, bucket, key, opts, out, err, |c, b, k, a| {
        let f = write.ok_or_else(|| Error::InvalidArgument("write is NULL".to_string()))?;
        c.download(b, k, &mut CWrite { f, ctx: Ctx(ctx) }, a)
    })
}

/// A caller's buffer as a `Write` that refuses to overflow it.
struct Buffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl io::Write for Buffer<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.buf.len() - self.len;
        if data.len() > room {
            return Err(io::Error::other(format!(
                "the object is larger than the buffer of {} bytes",
                self.buf.len()
            )));
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_download_to_buffer(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    buf: *mut u8,
    cap: usize,
    opts: *const s3pump_download_options,
    out: *mut s3pump_download_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    run_download(client, bucket, key, opts, out, err, |c, b, k, a| {
        let buf: &mut [u8] = match (buf.is_null(), cap) {
            (_, 0) => &mut [],
            (true, _) => return Err(Error::InvalidArgument("buf is NULL".to_string())),
            // SAFETY: not NULL; the caller's `cap` writable bytes, not used
            // by anyone else during the call (header).
            (false, _) => unsafe { std::slice::from_raw_parts_mut(buf, cap) },
        };
        c.download(b, k, &mut Buffer { buf, len: 0 }, a)
    })
}
