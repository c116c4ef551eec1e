//! Single-object operations (head, delete) and listing.

use std::ffi::{c_char, c_int};
use std::mem::size_of;
use std::ptr;

use s3pump_core::{Error, ListObjects};

use crate::args::{
    CStruct, check_output, free_string, free_struct, handle_arg, handle_mut, init_struct, out_opt,
    out_string, str_arg, write_output,
};
use crate::client::s3pump_client;
use crate::error::{handle, quietly, s3pump_error, status};
use crate::upload::target;

/// `s3pump_object_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_object_info {
    struct_size: usize,
    size: u64,
    etag: *mut c_char,
    content_type: *mut c_char,
    version_id: *mut c_char,
    last_modified: *mut c_char,
}

// SAFETY: repr(C), starts with its size; integers and raw pointers.
unsafe impl CStruct for s3pump_object_info {
    const NAME: &'static str = "s3pump_object_info";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_object_info {
            struct_size: size_of::<Self>(),
            size: 0,
            etag: ptr::null_mut(),
            content_type: ptr::null_mut(),
            version_id: ptr::null_mut(),
            last_modified: ptr::null_mut(),
        }
    }
}

fn free_info(info: &mut s3pump_object_info) {
    free_string(&mut info.etag);
    free_string(&mut info.content_type);
    free_string(&mut info.version_id);
    free_string(&mut info.last_modified);
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_object_info_init(info: *mut s3pump_object_info) {
    quietly(|| init_struct(info))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_object_info_free(info: *mut s3pump_object_info) {
    quietly(|| free_struct(info, free_info))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_head_object(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    out: *mut s3pump_object_info,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        check_output(out)?;
        let info = client.head_object(bucket, key)?;
        let value = s3pump_object_info {
            size: info.size,
            etag: out_string(&info.etag),
            content_type: out_opt(info.content_type.as_deref()),
            version_id: out_opt(info.version_id.as_deref()),
            last_modified: out_opt(info.last_modified.as_deref()),
            ..s3pump_object_info::init()
        };
        write_output(out, value, free_info);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_delete_object(
    client: *mut s3pump_client,
    bucket: *const c_char,
    key: *const c_char,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let (client, bucket, key) = target(client, bucket, key)?;
        client.delete_object(bucket, key)
    })
}

/// `s3pump_object_summary`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_object_summary {
    struct_size: usize,
    key: *mut c_char,
    size: u64,
    etag: *mut c_char,
    last_modified: *mut c_char,
}

// SAFETY: repr(C), starts with its size; integers and raw pointers.
unsafe impl CStruct for s3pump_object_summary {
    const NAME: &'static str = "s3pump_object_summary";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_object_summary {
            struct_size: size_of::<Self>(),
            key: ptr::null_mut(),
            size: 0,
            etag: ptr::null_mut(),
            last_modified: ptr::null_mut(),
        }
    }
}

fn free_summary(item: &mut s3pump_object_summary) {
    free_string(&mut item.key);
    free_string(&mut item.etag);
    free_string(&mut item.last_modified);
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_object_summary_init(item: *mut s3pump_object_summary) {
    quietly(|| init_struct(item))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_object_summary_free(item: *mut s3pump_object_summary) {
    quietly(|| free_struct(item, free_summary))
}

/// A listing in progress: pages are fetched as `s3pump_list_next` asks.
pub struct s3pump_list(ListObjects);

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_list_objects(
    client: *mut s3pump_client,
    bucket: *const c_char,
    prefix: *const c_char,
    err: *mut *mut s3pump_error,
) -> *mut s3pump_list {
    handle(err, || {
        let client = &handle_arg(client, "client")?.0;
        let bucket = str_arg(bucket, "bucket")?;
        let prefix = str_arg(prefix, "prefix")?;
        Ok(s3pump_list(client.list_objects(bucket, prefix)))
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_list_next(
    list: *mut s3pump_list,
    out: *mut s3pump_object_summary,
    err: *mut *mut s3pump_error,
) -> c_int {
    status(err, || {
        let list = handle_mut(list, "list")?;
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        check_output(out)?;
        let value = match list.0.next().transpose()? {
            None => s3pump_object_summary::init(),
            Some(o) => s3pump_object_summary {
                key: out_string(&o.key),
                size: o.size,
                etag: out_opt(o.etag.as_deref()),
                last_modified: out_opt(o.last_modified.as_deref()),
                ..s3pump_object_summary::init()
            },
        };
        write_output(out, value, free_summary);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_list_free(list: *mut s3pump_list) {
    if !list.is_null() {
        // SAFETY: made by `handle` (`Box::into_raw`), freed once (header).
        quietly(|| drop(unsafe { Box::from_raw(list) }))
    }
}
