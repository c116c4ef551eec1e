//! Uploads: the options and output structs, and uploading from a read
//! callback, a caller's buffer or a file.

use std::ffi::{c_char, c_int, c_void};
use std::mem::size_of;
use std::ptr;

use s3pump_core::{ChecksumAlgorithm, Error, PutObjectArgs, PutObjectOutput};

use crate::args::{
    CStruct, check_output, free_string, free_struct, handle_arg, init_struct, opt_str, options,
    out_opt, out_string, str_arg, write_output,
};
use crate::callbacks::{CRead, Ctx, ProgressFn, ReadFn, progress};
use crate::client::s3pump_client;
use crate::error::{quietly, s3pump_error, status};

/// `s3pump_put_options`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_put_options {
    struct_size: usize,
    part_size: u64,
    max_inflight_parts: u32,
    size: u64,
    memory_limit: u64,
    content_type: *const c_char,
    checksum: c_int,
    keep_failed_upload: c_int,
    progress: Option<ProgressFn>,
    progress_ctx: *mut c_void,
    cancel: *const crate::cancel::s3pump_cancel,
}

// SAFETY: repr(C), starts with its size; integers, raw pointers and an
// optional function pointer: any bit pattern is valid.
unsafe impl CStruct for s3pump_put_options {
    const NAME: &'static str = "s3pump_put_options";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_put_options {
            struct_size: size_of::<Self>(),
            part_size: 0,
            max_inflight_parts: 0,
            size: u64::MAX,
            memory_limit: 0,
            content_type: ptr::null(),
            checksum: 0,
            keep_failed_upload: 0,
            progress: None,
            progress_ctx: ptr::null_mut(),
            cancel: ptr::null(),
        }
    }
}

/// `s3pump_put_output`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_put_output {
    struct_size: usize,
    bytes: u64,
    parts: u32,
    etag: *mut c_char,
    version_id: *mut c_char,
    checksum: *mut c_char,
}

// SAFETY: repr(C), starts with its size; integers and raw pointers.
unsafe impl CStruct for s3pump_put_output {
    const NAME: &'static str = "s3pump_put_output";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_put_output {
            struct_size: size_of::<Self>(),
            bytes: 0,
            parts: 0,
            etag: ptr::null_mut(),
            version_id: ptr::null_mut(),
            checksum: ptr::null_mut(),
        }
    }
}

fn free_put_output(out: &mut s3pump_put_output) {
    free_string(&mut out.etag);
    free_string(&mut out.version_id);
    free_string(&mut out.checksum);
}

/// The output struct of an upload's result.
pub(crate) fn put_output(o: &PutObjectOutput) -> s3pump_put_output {
    s3pump_put_output {
        bytes: o.bytes,
        parts: o.parts,
        etag: out_string(&o.etag),
        version_id: out_opt(o.version_id.as_deref()),
        checksum: out_opt(o.checksum.as_deref()),
        ..s3pump_put_output::init()
    }
}

/// Writes an upload's result into the caller's output.
pub(crate) fn write_put_output(out: *mut s3pump_put_output, o: &PutObjectOutput) {
    write_output(out, put_output(o), free_put_output);
}

/// The arguments the options ask for (NULL: the defaults).
pub(crate) fn put_args(opts: *const s3pump_put_options) -> Result<PutObjectArgs, Error> {
    let o = options(opts)?;
    let mut a = PutObjectArgs::new();
    if o.part_size != 0 {
        a = a.part_size(o.part_size);
    }
    if o.max_inflight_parts != 0 {
        a = a.max_inflight_parts(o.max_inflight_parts as usize);
    }
    if o.size != u64::MAX {
        a = a.size(o.size);
    }
    if o.memory_limit != 0 {
        a = a.memory_limit(o.memory_limit);
    }
    if let Some(t) = opt_str(o.content_type, "content_type")? {
        a = a.content_type(t);
    }
    a = a.checksum(match o.checksum {
        0 => ChecksumAlgorithm::Crc64Nvme,
        1 => ChecksumAlgorithm::Crc32c,
        2 => ChecksumAlgorithm::None,
        n => {
            return Err(Error::InvalidArgument(format!(
                "checksum is {n}: not an s3pump_checksum"
            )));
        }
    });
    a = a.keep_failed_upload(o.keep_failed_upload != 0);
    if let Some(f) = o.progress {
        a = a.on_progress(progress(f, Ctx(o.progress_ctx)));
    }
    if let Some(cancel) = crate::cancel::from_ptr(o.cancel) {
        a = a.cancel_handle(&cancel);
    }
    Ok(a)
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_put_options_init(opts: *mut s3pump_put_options) {
    quietly(|| init_struct(opts))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_put_output_init(out: *mut s3pump_put_output) {
    quietly(|| init_struct(out))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_put_output_free(out: *mut s3pump_put_output) {
    quietly(|| free_struct(out, free_put_output))
}

/// The client, bucket and key of an upload or a download, checked.
pub(crate) fn target<'a>(
    client: *const s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
) -> Result<(&'a s3pump_core::Client, &'a str, &'a str), Error> {
    Ok((
        &handle_arg(client, "client")?.0,
        str_arg(bucket, "bucket")?,
        str_arg(key, "key")?,
    ))
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_put_object(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    read: Option<ReadFn>,
    ctx: *mut c_void,
    opts: *const s3pump_put_options,
    out: *mut s3pump_put_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        let f = read.ok_or_else(|| Error::InvalidArgument("read is NULL".to_string()))?;
        let args = put_args(opts)?;
        check_output(out)?;
        let result = client.put_object(bucket, key, CRead { f, ctx: Ctx(ctx) }, args)?;
        write_put_output(out, &result);
        Ok(())
    })
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_put_buffer(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    buf: *const u8,
    len: usize,
    opts: *const s3pump_put_options,
    out: *mut s3pump_put_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        let data: &[u8] = match (buf.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Error::InvalidArgument("buf is NULL".to_string())),
            // SAFETY: not NULL; the caller's `len` readable bytes, not
            // changed during the call (header: s3pump_put_buffer).
            (false, _) => unsafe { std::slice::from_raw_parts(buf, len) },
        };
        let args = put_args(opts)?.size(data.len() as u64);
        check_output(out)?;
        let result = client.put_object(bucket, key, data, args)?;
        write_put_output(out, &result);
        Ok(())
    })
}

#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn s3pump_upload_file(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    path: *const c_char,
    opts: *const s3pump_put_options,
    out: *mut s3pump_put_output,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        let path = str_arg(path, "path")?;
        let args = put_args(opts)?;
        check_output(out)?;
        let result = client.upload_file(bucket, key, path, args)?;
        write_put_output(out, &result);
        Ok(())
    })
}
