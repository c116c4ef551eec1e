//! The FFI RDMA provider against real shared libraries compiled from C during
//! the tests: the emulation (`tests/rdma_emu/s3pump_rdma_emu.c`) and a broken
//! one (`tests/rdma_emu/s3pump_rdma_broken.c`). No S3 server is involved.

use crate::support::rdma_emu;

use std::process::Command;
use std::sync::Arc;

use rdma_emu::{
    EmuCounters, broken_library, emu_counters, emu_library, emu_set_ready, emu_token, unique_name,
};
use s3pump::{Error, FfiRdmaProvider, RdmaOp, RdmaProvider, RdmaRegistration};

/// An emulation provider with counters of its own, and their name.
fn emu(options: &str) -> (FfiRdmaProvider, String) {
    let name = unique_name("rdma-ffi");
    let provider = FfiRdmaProvider::load(emu_library(), &format!("name={name} {options}"))
        .expect("loading the emulation library");
    (provider, name)
}

fn counters(name: &str) -> EmuCounters {
    emu_counters(name).expect("the provider was created under this name")
}

fn rdma_message(e: Error) -> String {
    match e {
        Error::Rdma(m) => m,
        other => panic!("expected Error::Rdma, got {other:?}"),
    }
}

/// Registers `buf` with `provider`.
fn register(provider: &dyn RdmaProvider, buf: &mut [u8]) -> Box<dyn RdmaRegistration> {
    // SAFETY: every test drops the registration before the buffer.
    unsafe { provider.register(buf.as_mut_ptr(), buf.len()) }.expect("register")
}

#[test]
fn provider_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<FfiRdmaProvider>();
    let (provider, _) = emu("");
    let _: Arc<dyn RdmaProvider> = Arc::new(provider);
}

#[test]
fn a_missing_library_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libno-such-rdma.so");
    let message = rdma_message(FfiRdmaProvider::load(&path, "").unwrap_err());
    let expected = format!("cannot load RDMA library {}: ", path.display());
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains("No such file"),
        "dlopen's reason: {message}"
    );

    let message = rdma_message(FfiRdmaProvider::load("", "").unwrap_err());
    assert_eq!(message, "cannot load RDMA library: the path is empty");
}

#[test]
fn a_missing_symbol_is_an_error_naming_the_path_and_the_symbol() {
    let path = broken_library(&["OMIT_GET_TOKEN"]);
    let message = rdma_message(FfiRdmaProvider::load(&path, "").unwrap_err());
    assert_eq!(
        message,
        format!(
            "RDMA library {} has no symbol s3pump_rdma_get_token",
            path.display()
        )
    );
    // And the Display of the error says it is about RDMA.
    let shown = FfiRdmaProvider::load(&path, "").unwrap_err().to_string();
    assert!(shown.starts_with("RDMA: RDMA library "), "{shown}");
}

#[test]
fn another_abi_version_is_refused() {
    let path = broken_library(&["ABI_VERSION=99"]);
    let message = rdma_message(FfiRdmaProvider::load(&path, "").unwrap_err());
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("ABI version 99"), "{message}");
    assert!(message.contains("needs version 1"), "{message}");
}

#[test]
fn a_failing_init_is_an_error_with_its_message() {
    let path = broken_library(&[]);
    let message = rdma_message(FfiRdmaProvider::load(&path, "").unwrap_err());
    assert_eq!(
        message,
        format!(
            "RDMA library {} failed to initialise: no reason given",
            path.display()
        )
    );

    let message = rdma_message(FfiRdmaProvider::load(emu_library(), "fail-init").unwrap_err());
    assert!(
        message.ends_with("failed to initialise: emulated init failure (config \"fail-init\")"),
        "{message}"
    );
    let message = rdma_message(FfiRdmaProvider::load(emu_library(), "bogus").unwrap_err());
    assert!(
        message.ends_with("unknown emulation option 'bogus'"),
        "{message}"
    );
    let message = rdma_message(FfiRdmaProvider::load(emu_library(), "a\0b").unwrap_err());
    assert!(message.contains("NUL"), "{message}");
}

#[test]
fn readiness_comes_from_the_library() {
    let (ready, _) = emu("");
    assert!(ready.is_connected());

    let (not_ready, name) = emu("not-ready");
    assert!(!not_ready.is_connected());
    assert_eq!(emu_set_ready(&name, true), 1);
    assert!(not_ready.is_connected());
    assert_eq!(emu_set_ready(&name, false), 1);
    assert!(!not_ready.is_connected());
    assert_eq!(not_ready.path(), emu_library());
}

#[test]
fn registrations_are_counted_and_deregistered_on_drop() {
    let (provider, name) = emu("");
    let mut bufs = [vec![0u8; 4096], vec![0u8; 8192], vec![0u8; 1]];
    let regs: Vec<_> = bufs.iter_mut().map(|b| register(&provider, b)).collect();
    let c = counters(&name);
    assert_eq!((c.init, c.register_calls, c.registered), (1, 3, 3));
    assert_eq!(c.deregister_calls, 0);

    let mut regs = regs.into_iter();
    drop(regs.next());
    let c = counters(&name);
    assert_eq!((c.deregister_calls, c.registered), (1, 2));

    drop(regs);
    drop(provider);
    let c = counters(&name);
    assert_eq!(
        (c.register_calls, c.deregister_calls, c.registered, c.fini),
        (3, 3, 0, 1)
    );
    assert_eq!((c.failed_calls, c.busy_deregisters), (0, 0));
}

#[test]
fn a_refused_registration_carries_the_library_message() {
    let (provider, name) = emu("fail-register");
    let mut buf = vec![0u8; 4096];
    // SAFETY: the registration fails; nothing keeps the pointer.
    let err = unsafe { provider.register(buf.as_mut_ptr(), buf.len()) }.err();
    let message = rdma_message(err.expect("the emulation refuses"));
    assert!(
        message.contains("emulated registration failure for 4096 bytes"),
        "{message}"
    );
    assert!(message.contains("(error 1)"), "{message}");
    let c = counters(&name);
    assert_eq!((c.register_calls, c.failed_calls, c.registered), (1, 1, 0));
}

#[test]
fn sizes_outside_one_byte_to_4_gib_are_refused_before_the_library() {
    let (provider, name) = emu("");
    let mut buf = [0u8; 16];
    for len in [0, 1 << 32, usize::MAX] {
        // SAFETY: the provider refuses these lengths without passing the
        // range anywhere, so no memory beyond `buf` is ever touched.
        let err = unsafe { provider.register(buf.as_mut_ptr(), len) }.err();
        let message = rdma_message(err.expect("refused"));
        assert!(message.contains("4 GiB - 1"), "{message}");
    }
    assert_eq!(counters(&name).register_calls, 0);
}

#[test]
fn tokens_encode_the_address_and_length_and_every_release_is_counted() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 64 * 1024];
    let base = buf.as_ptr() as usize;
    let reg = register(&provider, &mut buf);

    let put = reg.token(100, 200, RdmaOp::Put).unwrap();
    assert_eq!(put, emu_token(base + 100, 200));
    assert_eq!(put, format!("emu:{:016x}:200", base + 100));
    let get = reg.token(0, 64 * 1024, RdmaOp::Get).unwrap();
    assert_eq!(get, emu_token(base, 65536));
    let empty = reg.token(64 * 1024, 0, RdmaOp::Put).unwrap();
    assert_eq!(empty, emu_token(base + 65536, 0));
    let c = counters(&name);
    assert_eq!((c.get_token_calls, c.outstanding_tokens), (3, 3));

    reg.release_token(put);
    assert_eq!(counters(&name).free_token_calls, 1);
    reg.release_token(get);
    reg.release_token(empty);
    let c = counters(&name);
    assert_eq!((c.free_token_calls, c.outstanding_tokens), (3, 0));
    assert_eq!((c.bad_frees, c.failed_calls), (0, 0));

    drop(reg);
    let c = counters(&name);
    assert_eq!(
        (c.deregister_calls, c.registered, c.busy_deregisters),
        (1, 0, 0)
    );
}

#[test]
fn equal_tokens_outstanding_together_are_each_freed_once() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    let a = reg.token(8, 16, RdmaOp::Put).unwrap();
    let b = reg.token(8, 16, RdmaOp::Put).unwrap();
    assert_eq!(a, b);
    reg.release_token(a);
    reg.release_token(b);
    let c = counters(&name);
    assert_eq!(
        (c.free_token_calls, c.outstanding_tokens, c.bad_frees),
        (2, 0, 0)
    );
}

#[test]
fn ranges_outside_the_registration_get_no_token() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    for (offset, len) in [(4000, 200), (4097, 0), (usize::MAX, 2), (1, usize::MAX)] {
        let message = rdma_message(reg.token(offset, len, RdmaOp::Put).unwrap_err());
        assert!(message.contains("4096 bytes"), "{message}");
    }
    assert_eq!(
        counters(&name).get_token_calls,
        0,
        "refused before the library"
    );
}

#[test]
fn a_refused_token_carries_the_library_message() {
    let (provider, name) = emu("fail-token");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    let message = rdma_message(reg.token(0, 10, RdmaOp::Put).unwrap_err());
    assert!(message.ends_with(": emulated token failure"), "{message}");
    let c = counters(&name);
    assert_eq!(
        (c.get_token_calls, c.failed_calls, c.outstanding_tokens),
        (1, 1, 0)
    );
}

#[test]
fn unreleased_tokens_are_freed_before_deregistration() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    let _kept = reg.token(0, 10, RdmaOp::Put).unwrap();
    let _kept_too = reg.token(10, 10, RdmaOp::Get).unwrap();
    assert_eq!(counters(&name).outstanding_tokens, 2);
    drop(reg);
    let c = counters(&name);
    assert_eq!(
        (c.free_token_calls, c.outstanding_tokens, c.bad_frees),
        (2, 0, 0)
    );
    assert_eq!((c.deregister_calls, c.busy_deregisters), (1, 0));
}

#[test]
fn releasing_a_foreign_token_does_not_reach_the_library() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    reg.release_token("emu:0000000000001000:10".to_owned());
    let token = reg.token(0, 10, RdmaOp::Put).unwrap();
    reg.release_token(token.clone());
    reg.release_token(token); // a second release of the same token
    let c = counters(&name);
    assert_eq!(
        (c.free_token_calls, c.bad_frees, c.outstanding_tokens),
        (1, 0, 0)
    );
}

#[test]
fn the_library_lives_as_long_as_a_registration() {
    let (provider, name) = emu("");
    let mut buf = vec![0u8; 4096];
    let reg = register(&provider, &mut buf);
    let clone = provider.clone();
    drop(provider);
    drop(clone);
    assert_eq!(
        counters(&name).fini,
        0,
        "a registration still holds the client"
    );

    let token = reg.token(1, 2, RdmaOp::Put).unwrap();
    assert_eq!(token, emu_token(buf.as_ptr() as usize + 1, 2));
    reg.release_token(token);
    drop(reg);
    let c = counters(&name);
    assert_eq!((c.deregister_calls, c.free_token_calls, c.fini), (1, 1, 1));
}

#[test]
fn worker_threads_share_a_provider_and_its_registrations() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 200;
    let (provider, name) = emu("");
    let provider: Arc<dyn RdmaProvider> = Arc::new(provider);
    let mut shared_buf = vec![0u8; THREADS * 1024];
    let base = shared_buf.as_ptr() as usize;
    let shared = register(provider.as_ref(), &mut shared_buf);

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let provider = Arc::clone(&provider);
            let shared = &shared;
            s.spawn(move || {
                let mut own_buf = vec![0u8; 1024];
                let own = register(provider.as_ref(), &mut own_buf);
                for i in 0..ROUNDS {
                    let (offset, len) = (t * 1024 + i % 512, 512);
                    let token = shared.token(offset, len, RdmaOp::Put).unwrap();
                    assert_eq!(token, emu_token(base + offset, len));
                    shared.release_token(token);
                    let token = own.token(i % 1024, 1, RdmaOp::Get).unwrap();
                    own.release_token(token);
                }
                drop(own);
            });
        }
    });
    drop(shared);
    drop(provider);

    let c = counters(&name);
    let tokens = (THREADS * ROUNDS * 2) as u64;
    assert_eq!((c.get_token_calls, c.free_token_calls), (tokens, tokens));
    assert_eq!(
        (c.outstanding_tokens, c.bad_frees, c.failed_calls),
        (0, 0, 0)
    );
    let regs = THREADS as u64 + 1;
    assert_eq!(
        (c.register_calls, c.deregister_calls, c.registered),
        (regs, regs, 0)
    );
    assert_eq!(c.fini, 1);
}

/// Set in the child process of `from_env_reads_the_variables` to what
/// `from_env_child` should expect.
const CHILD_ENV: &str = "S3PUMP_RDMA_FFI_TEST_CHILD";

/// Runs only as a child of `from_env_reads_the_variables` (which sets the
/// environment for it and asks for it with `--ignored`), so ignored in
/// every mode otherwise; it needs no server, only the emulation library.
#[ignore = "run by from_env_reads_the_variables in a child process"]
#[test]
fn from_env_child() {
    let expect = std::env::var(CHILD_ENV)
        .expect("run by from_env_reads_the_variables, which sets S3PUMP_RDMA_FFI_TEST_CHILD");
    match expect.as_str() {
        "none" => assert!(FfiRdmaProvider::from_env().unwrap().is_none()),
        "loaded-not-ready" => {
            let provider = FfiRdmaProvider::from_env().unwrap().expect("a provider");
            assert_eq!(provider.path(), emu_library());
            assert!(!provider.is_connected(), "S3PUMP_RDMA_CONFIG was passed on");
        }
        "loaded-ready" => {
            let provider = FfiRdmaProvider::from_env().unwrap().expect("a provider");
            assert!(provider.is_connected());
        }
        "explicit-path" => {
            let provider = FfiRdmaProvider::from_path_or_env(Some(emu_library()))
                .unwrap()
                .expect("a provider");
            assert_eq!(provider.path(), emu_library());
        }
        "missing" => {
            let message = rdma_message(FfiRdmaProvider::from_env().unwrap_err());
            assert!(
                message.starts_with("cannot load RDMA library /nonexistent/librdma.so: "),
                "{message}"
            );
        }
        other => panic!("unknown child expectation {other}"),
    }
    println!("child checked {expect}");
}

#[test]
fn from_env_reads_the_variables() {
    let lib = emu_library().to_str().unwrap().to_owned();
    let cases: [(&str, Option<&str>, Option<&str>); 6] = [
        ("none", None, None),
        ("none", Some(""), Some("not-ready")),
        ("loaded-not-ready", Some(&lib), Some("not-ready")),
        ("loaded-ready", Some(&lib), None),
        ("explicit-path", None, Some("")),
        ("missing", Some("/nonexistent/librdma.so"), None),
    ];
    for (expect, library, config) in cases {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "rdma_ffi::from_env_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, expect);
        match library {
            Some(l) => cmd.env(FfiRdmaProvider::LIBRARY_ENV, l),
            None => cmd.env_remove(FfiRdmaProvider::LIBRARY_ENV),
        };
        match config {
            Some(c) => cmd.env(FfiRdmaProvider::CONFIG_ENV, c),
            None => cmd.env_remove(FfiRdmaProvider::CONFIG_ENV),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("child checked {expect}")),
            "child {expect} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
