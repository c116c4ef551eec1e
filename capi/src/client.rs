//! `s3pump_client`: creating one from the environment or from explicit
//! settings, and freeing it.

use std::ffi::{c_char, c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::time::Duration;

use s3pump_core::{Addressing, Client, ClientBuilder, Credentials, Error};

use crate::args::{CStruct, init_struct, opt_str, options};
use crate::callbacks::{CCredentialsProvider, CredentialsFn, Ctx};
use crate::error::{handle, quietly, s3pump_error};

/// A [`Client`] (thread-safe: shared by every thread of the process).
pub struct s3pump_client(pub(crate) Client);

/// `s3pump_client_options`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct s3pump_client_options {
    struct_size: usize,
    from_env: c_int,
    endpoint: *const c_char,
    region: *const c_char,
    access_key_id: *const c_char,
    secret_access_key: *const c_char,
    session_token: *const c_char,
    credentials: Option<CredentialsFn>,
    credentials_ctx: *mut c_void,
    anonymous: c_int,
    profile: *const c_char,
    addressing: c_int,
    memory_limit: u64,
    max_connections: u32,
    connect_timeout_ms: u32,
    idle_timeout_ms: u32,
    ca_bundle: *const c_char,
    proxy: *const c_char,
    no_proxy: c_int,
}

// SAFETY: repr(C), starts with its size; integers, raw pointers and an
// optional function pointer: any bit pattern is valid.
unsafe impl CStruct for s3pump_client_options {
    const NAME: &'static str = "s3pump_client_options";
    const FIRST_SIZE: usize = size_of::<Self>();
    fn init() -> Self {
        s3pump_client_options {
            struct_size: size_of::<Self>(),
            from_env: 0,
            endpoint: ptr::null(),
            region: ptr::null(),
            access_key_id: ptr::null(),
            secret_access_key: ptr::null(),
            session_token: ptr::null(),
            credentials: None,
            credentials_ctx: ptr::null_mut(),
            anonymous: 0,
            profile: ptr::null(),
            addressing: 0,
            memory_limit: 0,
            max_connections: 0,
            connect_timeout_ms: 0,
            idle_timeout_ms: 0,
            ca_bundle: ptr::null(),
            proxy: ptr::null(),
            no_proxy: 0,
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_client_options_init(opts: *mut s3pump_client_options) {
    quietly(|| init_struct(opts))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_client_from_env(err: *mut *mut s3pump_error) -> *mut s3pump_client {
    handle(err, || Client::from_env().map(s3pump_client))
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_client_new(
    opts: *const s3pump_client_options,
    err: *mut *mut s3pump_error,
) -> *mut s3pump_client {
    handle(err, || {
        let o = options(opts)?;
        builder(&o)?.build().map(s3pump_client)
    })
}

fn builder(o: &s3pump_client_options) -> Result<ClientBuilder, Error> {
    let mut b = if o.from_env != 0 {
        ClientBuilder::from_env()
    } else {
        Client::builder()
    };
    if let Some(endpoint) = opt_str(o.endpoint, "endpoint")? {
        b = b.endpoint(endpoint);
    }
    if let Some(region) = opt_str(o.region, "region")? {
        b = b.region(region);
    }
    let key = opt_str(o.access_key_id, "access_key_id")?;
    let secret = opt_str(o.secret_access_key, "secret_access_key")?;
    let token = opt_str(o.session_token, "session_token")?;
    match (key, secret) {
        (Some(key), Some(secret)) => b = b.credentials(Credentials::new(key, secret, token)),
        (None, None) if token.is_none() => {}
        _ => {
            return Err(Error::InvalidArgument(
                "access_key_id and secret_access_key go together (session_token needs both)"
                    .to_string(),
            ));
        }
    }
    if let Some(f) = o.credentials {
        let ctx = Ctx(o.credentials_ctx);
        b = b.credentials_provider(CCredentialsProvider { f, ctx });
    }
    if o.anonymous != 0 {
        b = b.anonymous();
    }
    if let Some(profile) = opt_str(o.profile, "profile")? {
        b = b.profile(profile);
    }
    match o.addressing {
        0 => {}
        1 => b = b.addressing(Addressing::PathStyle),
        2 => b = b.addressing(Addressing::VirtualHost),
        n => {
            return Err(Error::InvalidArgument(format!(
                "addressing is {n}: not an s3pump_addressing"
            )));
        }
    }
    if o.memory_limit != 0 {
        b = b.memory_limit(o.memory_limit);
    }
    if o.max_connections != 0 {
        b = b.max_connections(o.max_connections as usize);
    }
    if o.connect_timeout_ms != 0 {
        b = b.connect_timeout(Duration::from_millis(o.connect_timeout_ms.into()));
    }
    if o.idle_timeout_ms != 0 {
        b = b.idle_timeout(Duration::from_millis(o.idle_timeout_ms.into()));
    }
    if let Some(path) = opt_str(o.ca_bundle, "ca_bundle")? {
        b = b.ca_bundle(path);
    }
    if let Some(proxy) = opt_str(o.proxy, "proxy")? {
        b = b.proxy(proxy);
    }
    if o.no_proxy != 0 {
        b = b.no_proxy();
    }
    Ok(b)
}

#[unsafe(no_mangle)]
pub extern "C" fn s3pump_client_free(client: *mut s3pump_client) {
    if !client.is_null() {
        // SAFETY: made by `handle` (`Box::into_raw`), freed once, with no
        // call on it running (header).
        quietly(|| drop(unsafe { Box::from_raw(client) }))
    }
}
