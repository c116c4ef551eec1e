//! The production RDMA provider: a C library loaded at run time that
//! implements `docs/s3pump_rdma.h` (usually a small shim around the site's
//! RDMA client, such as NVIDIA cuObject; see `docs/RDMA.md`).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;
use parking_lot::Mutex;

use crate::pipeline::plan::MAX_RDMA_BUFFER;
use crate::rdma::{RdmaOp, RdmaProvider, RdmaRegistration};
use crate::{Error, Result};

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type InitFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_void;
type ReadyFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type RegisterFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> c_int;
type DeregisterFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type GetTokenFn =
    unsafe extern "C" fn(*mut c_void, *mut c_void, usize, usize, c_int) -> *mut c_char;
type FreeTokenFn = unsafe extern "C" fn(*mut c_void, *mut c_char);
type LastErrorFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FiniFn = unsafe extern "C" fn(*mut c_void);

/// `S3PUMP_RDMA_OP_PUT` and `S3PUMP_RDMA_OP_GET` of the header.
const OP_PUT: c_int = 0;
const OP_GET: c_int = 1;

/// Size of the buffer `s3pump_rdma_init` may write its error message into.
const INIT_ERROR_LEN: usize = 512;

/// The functions of the header, resolved when the library is loaded.
struct Api {
    init: InitFn,
    ready: ReadyFn,
    register_buffer: RegisterFn,
    deregister_buffer: DeregisterFn,
    get_token: GetTokenFn,
    free_token: FreeTokenFn,
    last_error: LastErrorFn,
    fini: FiniFn,
}

/// A loaded library and the handle its `init` returned. Dropping it calls
/// `fini` and then unloads the library; every registration holds it through
/// an `Arc`, so that happens only once nothing uses it any more.
struct Loaded {
    handle: *mut c_void,
    api: Api,
    path: PathBuf,
    // Declared last: the function pointers in `api` point into it, so it is
    // unloaded after `fini` has run (in `Drop`) and never before.
    _library: Library,
}

// SAFETY: `handle` is an opaque pointer owned by the C library, and the
// header's contract (docs/s3pump_rdma.h, "Threads") is that every function
// but init and fini may be called concurrently from any thread on one
// handle; `fini` runs only in `Drop`, when no other reference is left. The
// function pointers are plain code addresses, valid while `_library` lives.
unsafe impl Send for Loaded {}
// SAFETY: as for `Send`: shared use only calls the thread-safe functions.
unsafe impl Sync for Loaded {}

impl Loaded {
    /// The library's description of the last failure on this thread, or a
    /// stand-in when it gives none.
    fn last_error(&self) -> String {
        // SAFETY: `last_error` has the header's signature and takes the live
        // handle; it returns NULL or a NUL-terminated string that stays valid
        // until the next call on this thread, and it is copied right away.
        unsafe {
            let text = (self.api.last_error)(self.handle);
            if text.is_null() {
                "no reason given".to_owned()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: this is the last reference to the handle (registrations
        // hold an `Arc<Loaded>`), so every buffer has been deregistered and
        // every token freed, and no other thread uses it: the header's
        // precondition for `fini`, which is called exactly once, here.
        unsafe { (self.api.fini)(self.handle) }
    }
}

/// An [`RdmaProvider`] backed by a C library loaded at run time, which
/// implements the functions of `docs/s3pump_rdma.h` (usually a small shim
/// around the site's RDMA client, such as NVIDIA cuObject; see
/// `docs/RDMA.md`).
///
/// Loading resolves every function of the header and checks the library's
/// ABI version, so a wrong library fails at once with an error that names the
/// path and the missing symbol. Cloning is cheap and shares the library.
/// The library stays loaded, and its client alive, until the provider and
/// every registration made through it have been dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use s3pump::{FfiRdmaProvider, PutObjectArgs};
///
/// let mut args = PutObjectArgs::new();
/// if let Some(rdma) = FfiRdmaProvider::from_env()? {
///     args = args.rdma(Arc::new(rdma));
/// }
/// # Ok::<(), s3pump::Error>(())
/// ```
#[derive(Clone)]
pub struct FfiRdmaProvider {
    loaded: Arc<Loaded>,
}

impl fmt::Debug for FfiRdmaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FfiRdmaProvider")
            .field("path", &self.loaded.path)
            .finish_non_exhaustive()
    }
}

impl FfiRdmaProvider {
    /// The environment variable naming the library for [`from_env`](Self::from_env).
    pub const LIBRARY_ENV: &'static str = "S3PUMP_RDMA_LIBRARY";

    /// The environment variable holding the library's configuration string
    /// for [`from_env`](Self::from_env) (empty when unset).
    pub const CONFIG_ENV: &'static str = "S3PUMP_RDMA_CONFIG";

    /// The version of `docs/s3pump_rdma.h` this provider speaks; a library
    /// whose `s3pump_rdma_abi_version()` returns another is refused.
    pub const ABI_VERSION: u32 = 1;

    /// Loads the library at `path`, checks it, and creates its client with
    /// `s3pump_rdma_init(config)`. A `path` without a `/` is looked up the
    /// way `dlopen` looks up names (`LD_LIBRARY_PATH`, the linker cache).
    ///
    /// Fails with [`Error::Rdma`] when the library cannot be loaded, lacks a
    /// function of the header, reports another ABI version, or its `init`
    /// fails (with the message it gave).
    pub fn load(path: impl AsRef<Path>, config: &str) -> Result<Self> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return Err(Error::Rdma(
                "cannot load RDMA library: the path is empty".into(),
            ));
        }
        let shown = path.display();
        let config = CString::new(config).map_err(|_| {
            Error::Rdma(format!(
                "the configuration for RDMA library {shown} contains a NUL byte"
            ))
        })?;

        // SAFETY: loading runs the library's initialisers. The caller named
        // this file as an s3pump RDMA library, whose contract
        // (docs/s3pump_rdma.h) is to be a plain shared library that is safe
        // to load into any process.
        let library = unsafe { Library::new(path) }
            .map_err(|e| Error::Rdma(format!("cannot load RDMA library {shown}: {e}")))?;

        macro_rules! symbol {
            ($ty:ty, $name:literal) => {{
                // SAFETY: `$ty` is the signature the header declares for this
                // symbol; the copied function pointer is only called while
                // `library` is loaded (it is stored in the same `Loaded`).
                let sym = unsafe { library.get::<$ty>(concat!($name, "\0").as_bytes()) };
                *sym.map_err(|_| {
                    Error::Rdma(format!("RDMA library {shown} has no symbol {}", $name))
                })?
            }};
        }
        let abi_version = symbol!(AbiVersionFn, "s3pump_rdma_abi_version");
        let api = Api {
            init: symbol!(InitFn, "s3pump_rdma_init"),
            ready: symbol!(ReadyFn, "s3pump_rdma_ready"),
            register_buffer: symbol!(RegisterFn, "s3pump_rdma_register_buffer"),
            deregister_buffer: symbol!(DeregisterFn, "s3pump_rdma_deregister_buffer"),
            get_token: symbol!(GetTokenFn, "s3pump_rdma_get_token"),
            free_token: symbol!(FreeTokenFn, "s3pump_rdma_free_token"),
            last_error: symbol!(LastErrorFn, "s3pump_rdma_last_error"),
            fini: symbol!(FiniFn, "s3pump_rdma_fini"),
        };

        // SAFETY: takes no arguments and, per the header, cannot fail.
        let version = unsafe { abi_version() };
        if version != Self::ABI_VERSION {
            return Err(Error::Rdma(format!(
                "RDMA library {shown} implements ABI version {version} of s3pump_rdma.h; \
                 this s3pump needs version {}",
                Self::ABI_VERSION
            )));
        }

        let mut err: [c_char; INIT_ERROR_LEN] = [0; INIT_ERROR_LEN];
        // SAFETY: `config` is NUL-terminated and outlives the call; `err` is
        // a zeroed, writable buffer of `err.len()` bytes, as the header asks.
        let handle = unsafe { (api.init)(config.as_ptr(), err.as_mut_ptr(), err.len()) };
        if handle.is_null() {
            // Never trust the library to terminate the message.
            err[INIT_ERROR_LEN - 1] = 0;
            // SAFETY: `err` is NUL-terminated (just above) and lives on.
            let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
            let message = if message.is_empty() {
                "no reason given".into()
            } else {
                message
            };
            return Err(Error::Rdma(format!(
                "RDMA library {shown} failed to initialise: {message}"
            )));
        }

        Ok(FfiRdmaProvider {
            loaded: Arc::new(Loaded {
                handle,
                api,
                path: path.to_owned(),
                _library: library,
            }),
        })
    }

    /// Loads the library named by `S3PUMP_RDMA_LIBRARY` with the configuration
    /// in `S3PUMP_RDMA_CONFIG` (empty when unset). `Ok(None)` when
    /// `S3PUMP_RDMA_LIBRARY` is unset or empty: uploads then go over HTTP.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_path_or_env(None)
    }

    /// Loads `path` when given (a command line's `--rdma-library PATH`),
    /// else behaves like [`from_env`](Self::from_env). Either way the
    /// configuration comes from `S3PUMP_RDMA_CONFIG`.
    pub fn from_path_or_env(path: Option<&Path>) -> Result<Option<Self>> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => match std::env::var_os(Self::LIBRARY_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => return Ok(None),
            },
        };
        let config = match std::env::var(Self::CONFIG_ENV) {
            Ok(c) => c,
            Err(std::env::VarError::NotPresent) => String::new(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::Rdma(format!(
                    "{} is not valid UTF-8",
                    Self::CONFIG_ENV
                )));
            }
        };
        Self::load(path, &config).map(Some)
    }

    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }
}

impl RdmaProvider for FfiRdmaProvider {
    fn is_connected(&self) -> bool {
        // SAFETY: `ready` has the header's signature, takes the live handle
        // and may be called from any thread.
        unsafe { (self.loaded.api.ready)(self.loaded.handle) != 0 }
    }

    unsafe fn register(&self, ptr: *mut u8, len: usize) -> Result<Box<dyn RdmaRegistration>> {
        let loaded = &self.loaded;
        if ptr.is_null() || len == 0 || len as u64 > MAX_RDMA_BUFFER {
            return Err(Error::Rdma(format!(
                "cannot register {len} bytes at {ptr:p}: a buffer must be 1 byte to 4 GiB - 1"
            )));
        }
        // SAFETY: `register_buffer` has the header's signature, takes the
        // live handle and may be called from any thread; the caller of this
        // `unsafe fn` guarantees that the memory stays mapped until the
        // returned registration (which deregisters it) has been dropped.
        let rc = unsafe { (loaded.api.register_buffer)(loaded.handle, ptr.cast(), len) };
        if rc != 0 {
            return Err(Error::Rdma(format!(
                "RDMA library {} cannot register {len} bytes at {ptr:p} (error {rc}): {}",
                loaded.path.display(),
                loaded.last_error()
            )));
        }
        Ok(Box::new(FfiRegistration {
            loaded: Arc::clone(loaded),
            ptr,
            len,
            tokens: Mutex::new(HashMap::new()),
        }))
    }
}

/// A token as the library returned it, kept to be handed back to
/// `free_token`.
struct TokenPtr(*mut c_char);

// SAFETY: the pointer is only passed back to `free_token`, which the header
// allows from any thread; s3pump never reads or writes through it after the
// text has been copied.
unsafe impl Send for TokenPtr {}

/// Memory registered through an [`FfiRdmaProvider`].
struct FfiRegistration {
    loaded: Arc<Loaded>,
    ptr: *mut u8,
    len: usize,
    /// Outstanding tokens by their text. Token texts are normally unique; if
    /// a library returns equal texts for two live tokens, they are
    /// interchangeable and releasing either frees one of them.
    tokens: Mutex<HashMap<String, Vec<TokenPtr>>>,
}

// SAFETY: `ptr` is only an address handed back to the library (which takes
// calls from any thread); it is never dereferenced here. `tokens` is behind a
// mutex and `loaded` is `Send + Sync`.
unsafe impl Send for FfiRegistration {}
// SAFETY: as for `Send`.
unsafe impl Sync for FfiRegistration {}

impl FfiRegistration {
    fn free(&self, token: TokenPtr) {
        // SAFETY: `token.0` came from `get_token` on this handle and is
        // passed back exactly once (it was removed from `tokens`, or is being
        // drained from it); `free_token` may be called from any thread.
        unsafe { (self.loaded.api.free_token)(self.loaded.handle, token.0) }
    }
}

impl RdmaRegistration for FfiRegistration {
    fn token(&self, offset: usize, len: usize, op: RdmaOp) -> Result<String> {
        let loaded = &self.loaded;
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::Rdma(format!(
                "cannot mint a token for [{offset}, {offset} + {len}): the registered buffer is {} bytes",
                self.len
            )));
        }
        let op_code = match op {
            RdmaOp::Put => OP_PUT,
            RdmaOp::Get => OP_GET,
        };
        // SAFETY: `get_token` has the header's signature, takes the live
        // handle and may be called from any thread; `self.ptr` is the start
        // of a buffer registered on it (deregistered only when `self` drops)
        // and `[offset, offset + len)` lies inside it (checked above).
        let raw =
            unsafe { (loaded.api.get_token)(loaded.handle, self.ptr.cast(), len, offset, op_code) };
        if raw.is_null() {
            return Err(Error::Rdma(format!(
                "RDMA library {} gave no token for {len} bytes at offset {offset}: {}",
                loaded.path.display(),
                loaded.last_error()
            )));
        }
        // SAFETY: a non-NULL token is a NUL-terminated string that stays
        // valid until `free_token`; it is copied before anything else.
        let bytes = unsafe { CStr::from_ptr(raw) }.to_bytes();
        let text = match std::str::from_utf8(bytes) {
            Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => s.to_owned(),
            _ => {
                let shown = String::from_utf8_lossy(bytes).into_owned();
                self.free(TokenPtr(raw));
                return Err(Error::Rdma(format!(
                    "RDMA library {} returned a token that is not visible ASCII: {shown:?}",
                    loaded.path.display()
                )));
            }
        };
        self.tokens
            .lock()
            .entry(text.clone())
            .or_default()
            .push(TokenPtr(raw));
        Ok(text)
    }

    fn release_token(&self, token: String) {
        let raw = {
            let mut tokens = self.tokens.lock();
            let raw = tokens.get_mut(&token).and_then(Vec::pop);
            if tokens.get(&token).is_some_and(Vec::is_empty) {
                tokens.remove(&token);
            }
            raw
        };
        match raw {
            Some(raw) => self.free(raw),
            None => log::warn!(
                "ignoring the release of an RDMA token this registration did not mint: {token:?}"
            ),
        }
    }
}

impl Drop for FfiRegistration {
    fn drop(&mut self) {
        let leaked: Vec<TokenPtr> = self.tokens.get_mut().drain().flat_map(|(_, v)| v).collect();
        if !leaked.is_empty() {
            log::warn!(
                "{} RDMA token(s) were never released; freeing them before deregistering",
                leaked.len()
            );
            for token in leaked {
                self.free(token);
            }
        }
        let loaded = &self.loaded;
        // SAFETY: `self.ptr` was registered on this handle by `register` and
        // is deregistered exactly once, here, with its tokens freed above;
        // the memory is still mapped (the contract of `register`).
        let rc = unsafe { (loaded.api.deregister_buffer)(loaded.handle, self.ptr.cast()) };
        if rc != 0 {
            log::warn!(
                "RDMA library {} failed to deregister {} bytes at {:p} (error {rc}): {}",
                loaded.path.display(),
                self.len,
                self.ptr,
                loaded.last_error()
            );
        }
    }
}
