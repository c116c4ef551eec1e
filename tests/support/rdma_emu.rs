//! The RDMA emulation library (`tests/rdma_emu/s3pump_rdma_emu.c`), built
//! from source with the system C compiler, and safe access to its counters.
//!
//! [`emu_library`] compiles it once per process and returns the path of the
//! shared object, to be loaded by s3pump like a real RDMA library
//! (`FfiRdmaProvider::load(emu_library(), "name=...")`). Its tokens are
//! `emu:<address, 16 lowercase hex digits>:<length, decimal>`, the format
//! the test server's RDMA emulation reads. Give each provider a name of its
//! own ([`unique_name`]) in its configuration: [`emu_counters`] then reports
//! the calls made under that name only, even with tests running in parallel.
//! Configuration words: `name=NAME`, `not-ready`, `fail-init`,
//! `fail-register`, `fail-token` (see the C source).
//!
//! It does not depend on the s3pump library.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::ffi::{CString, c_char, c_int};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use libloading::Library;

/// The repository's root.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The calls an emulated RDMA library has seen under one name, as reported by
/// `s3pump_rdma_emu_counters` (same layout as its C struct).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmuCounters {
    /// Successful `init`s.
    pub init: u64,
    /// `fini` calls.
    pub fini: u64,
    /// `register_buffer` calls, failed ones included.
    pub register_calls: u64,
    /// `deregister_buffer` calls, failed ones included.
    pub deregister_calls: u64,
    /// `get_token` calls, failed ones included.
    pub get_token_calls: u64,
    /// `free_token` calls, bad ones included.
    pub free_token_calls: u64,
    /// `register_buffer`, `deregister_buffer` and `get_token` calls that failed.
    pub failed_calls: u64,
    /// `free_token` calls with a pointer that was not an outstanding token.
    pub bad_frees: u64,
    /// `deregister_buffer` calls on a buffer that still had tokens out.
    pub busy_deregisters: u64,
    /// Buffers registered now.
    pub registered: i64,
    /// Tokens minted and not yet freed.
    pub outstanding_tokens: i64,
}

/// The emulation library, compiled on first use; later calls return the
/// same path. The library is also kept loaded from then on, so that the
/// counters (statics in it) survive the last provider that used it.
pub fn emu_library() -> &'static Path {
    let path = emu_library_path();
    hooks();
    path
}

fn emu_library_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_c_library("s3pump_rdma_emu", "tests/rdma_emu/s3pump_rdma_emu.c", &[]))
}

/// A broken RDMA library (`tests/rdma_emu/s3pump_rdma_broken.c`): its `init`
/// always fails with an empty message; `defines` (such as `OMIT_GET_TOKEN`
/// or `ABI_VERSION=99`) break it further. Compiled once per set of defines.
pub fn broken_library(defines: &[&str]) -> PathBuf {
    build_c_library(
        "s3pump_rdma_broken",
        "tests/rdma_emu/s3pump_rdma_broken.c",
        defines,
    )
}

/// Compiles `source` (relative to the repository's root) into a shared
/// object with `$CC` (default `cc`), with `docs/` on the include path and
/// `-D` for each of `defines`, and returns its path. The object is named
/// after a hash of the inputs and reused while they do not change; it is
/// built under a temporary name and renamed, so parallel test binaries never
/// see half a file. Panics with the compiler's output when it fails.
pub fn build_c_library(stem: &str, source: &str, defines: &[&str]) -> PathBuf {
    let root = Path::new(ROOT);
    let source = root.join(source);
    let header = root.join("docs/s3pump_rdma.h");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let flags = [
        "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread",
    ];

    let mut hasher = DefaultHasher::new();
    for file in [&source, &header] {
        std::fs::read(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
            .hash(&mut hasher);
    }
    (&compiler, &flags, defines).hash(&mut hasher);
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("s3pump-rdma-emu");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let out = dir.join(format!("lib{stem}-{:016x}.so", hasher.finish()));
    if out.exists() {
        return out;
    }

    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let tmp = out.with_extension(format!(
        "{}.{}.tmp",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new(&compiler);
    cmd.args(flags)
        .arg("-I")
        .arg(root.join("docs"))
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg("-o")
        .arg(&tmp)
        .arg(&source);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler {compiler:?} ({cmd:?}): {e}"));
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "compiling {} failed ({cmd:?}, {}):\n{}{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), out.display()));
    out
}

/// A name no other call in this process returns, for `name=` in an
/// emulation provider's configuration.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The emulation library as loaded for its test hooks: the same path as the
/// providers load, so the same instance of it (dlopen counts references).
fn hooks() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| {
        let path = emu_library_path();
        // SAFETY: the emulation library is built from this repository's
        // source and has no initialisers beyond the C runtime's.
        let lib = unsafe { Library::new(path) }
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        // SAFETY: the signature is that of s3pump_rdma_emu_counters_size in
        // the C source; the pointer is used while `lib` is loaded.
        let size = unsafe {
            let f = lib
                .get::<unsafe extern "C" fn() -> usize>(b"s3pump_rdma_emu_counters_size\0")
                .expect("s3pump_rdma_emu_counters_size");
            f()
        };
        assert_eq!(
            size,
            size_of::<EmuCounters>(),
            "EmuCounters does not match the C struct"
        );
        lib
    })
}

/// The counters of the providers configured with `name=<name>`, or `None`
/// when none was ever created under that name. They outlive the providers.
pub fn emu_counters(name: &str) -> Option<EmuCounters> {
    let name = CString::new(name).expect("no NUL in the name");
    let mut out = EmuCounters::default();
    // SAFETY: the signature is that of s3pump_rdma_emu_counters in the C
    // source (which checked the struct's size in `hooks`); `name` is
    // NUL-terminated and `out` is a writable `EmuCounters`; the library
    // stays loaded (a `static`).
    let rc = unsafe {
        let f = hooks()
            .get::<unsafe extern "C" fn(*const c_char, *mut EmuCounters) -> c_int>(
                b"s3pump_rdma_emu_counters\0",
            )
            .expect("s3pump_rdma_emu_counters");
        f(name.as_ptr(), &mut out)
    };
    (rc == 0).then_some(out)
}

/// Makes the live providers configured with `name=<name>` report `ready`
/// from now on; returns how many there are.
pub fn emu_set_ready(name: &str, ready: bool) -> usize {
    let name = CString::new(name).expect("no NUL in the name");
    // SAFETY: the signature is that of s3pump_rdma_emu_set_ready in the C
    // source; `name` is NUL-terminated; the library stays loaded.
    let n = unsafe {
        let f = hooks()
            .get::<unsafe extern "C" fn(*const c_char, c_int) -> c_int>(
                b"s3pump_rdma_emu_set_ready\0",
            )
            .expect("s3pump_rdma_emu_set_ready");
        f(name.as_ptr(), c_int::from(ready))
    };
    usize::try_from(n).unwrap_or(0)
}

/// The emulation token for `len` bytes at `addr`, as the library mints it.
pub fn emu_token(addr: usize, len: usize) -> String {
    format!("emu:{addr:016x}:{len}")
}
