//! Parallel ranged downloads: sizes, both destinations, parallelism, faults
//! in the middle, an object replaced mid-download, checksums, RDMA.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use s3pump::{CancelHandle, DownloadArgs, DownloadOutput, Error, FfiRdmaProvider, PutObjectArgs};
use support::harness::{Harness, data, md5_hex};
use support::rdma_emu::{EmuCounters, emu_counters, emu_library, unique_name};
use support::server::{Fault, FaultKind, Op, RdmaMode};

const MIB: usize = 1 << 20;
const PART: usize = MIB;

fn args(n: usize) -> DownloadArgs {
    DownloadArgs::new()
        .part_size(PART as u64)
        .max_inflight_parts(n)
}

/// A fresh directory for download destinations.
fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("s3pump-download-")
        .tempdir()
        .unwrap()
}

/// The entries of `dir` (to see that no temporary file was left).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Stores `body` under `name` and returns its key.
fn put(h: &Harness, name: &str, body: &[u8]) -> String {
    let key = h.key(name);
    match h.local() {
        Some(s) => s.put_object_bytes(&h.bucket, &key, body),
        None => {
            h.client()
                .put_object_bytes(&h.bucket, &key, body, &PutObjectArgs::new())
                .unwrap();
        }
    }
    key
}

fn check_output(out: &DownloadOutput, body: &[u8], name: &str) {
    assert_eq!(out.size, body.len() as u64, "{name}");
    assert_eq!(out.parts as usize, body.len().div_ceil(PART), "{name}");
    assert_eq!(out.etag, format!("\"{}\"", md5_hex(body)), "{name}");
}

#[test]
fn edge_sizes_into_a_file_and_into_a_writer() {
    let h = Harness::new();
    let dir = out_dir();
    let body = data(3 * PART + 7, 42);
    for len in [0, 1, PART - 1, PART, PART + 1, 3 * PART + 7] {
        let key = put(&h, &format!("size-{len}"), &body[..len]);
        for n in [1, 8] {
            let name = format!("{len} bytes, N = {n}");
            if let Some(s) = h.local() {
                s.reset_stats();
            }
            let path = dir.path().join(format!("f-{len}-{n}"));
            let out = h
                .client()
                .download_to_file(&h.bucket, &key, &path, args(n))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_output(&out, &body[..len], &name);
            assert!(std::fs::read(&path).unwrap() == body[..len], "{name}");

            let mut sink = Vec::new();
            let out = h
                .client()
                .download(&h.bucket, &key, &mut sink, args(n))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_output(&out, &body[..len], &name);
            assert!(sink == body[..len], "{name}: bytes differ");
            if let Some(s) = h.local() {
                let st = s.stats();
                assert_eq!(st.head_object_calls, 2, "{name}");
                // One ranged GET per part, none at all for an empty object.
                assert_eq!(
                    st.get_object_calls as usize,
                    2 * len.div_ceil(PART),
                    "{name}"
                );
            }
            assert!(out.slabs <= n + 1, "{name}: {} slabs", out.slabs);
        }
    }
    // Nothing but the downloaded files: no temporary file left over.
    assert_eq!(entries(dir.path()).len(), 12);
}

#[test]
fn a_download_replaces_an_existing_file() {
    let h = Harness::new();
    let dir = out_dir();
    let body = data(2 * PART + 5, 7);
    let key = put(&h, "replace", &body);
    let path = dir.path().join("existing");
    std::fs::write(&path, vec![9u8; 5 * PART]).unwrap();
    h.client()
        .download_to_file(&h.bucket, &key, &path, args(4))
        .unwrap();
    assert!(std::fs::read(&path).unwrap() == body);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn exactly_max_inflight_parts_are_in_flight() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    for n in [1usize, 4, 8] {
        let body = data(2 * n * PART, n as u64);
        let key = put(&h, &format!("inflight-{n}"), &body);
        for into_file in [true, false] {
            server.reset_stats();
            // Hold the first 2N GETs long enough to overlap.
            for _ in 0..2 * n {
                server.inject(Fault::new(
                    Op::GetObject,
                    FaultKind::Delay(Duration::from_millis(200)),
                ));
            }
            if into_file {
                let path = dir.path().join(format!("inflight-{n}"));
                h.client()
                    .download_to_file(&h.bucket, &key, &path, args(n))
                    .unwrap();
                assert!(std::fs::read(&path).unwrap() == body);
            } else {
                let mut sink = Vec::new();
                h.client()
                    .download(&h.bucket, &key, &mut sink, args(n))
                    .unwrap();
                assert!(sink == body);
            }
            let st = server.stats();
            assert_eq!(
                st.peak_get_objects_in_flight, n as u64,
                "N = {n}, file: {into_file}"
            );
            assert_eq!(st.get_object_calls as usize, 2 * n);
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn into_a_writer_memory_stays_within_n_plus_one_slabs() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let body = data(20 * PART + 3, 3);
    let key = put(&h, "window", &body);
    // Part 2 arrives late: the others wait in their buffers, no more than N + 1 in all.
    server
        .inject(Fault::new(Op::GetObject, FaultKind::Delay(Duration::from_millis(400))).attempt(2));
    let mut sink = Vec::new();
    let mut seen = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = h
        .client()
        .download(
            &h.bucket,
            &key,
            &mut sink,
            args(3).on_progress(move |p| {
                tx.send(p.bytes_sent).unwrap();
                true
            }),
        )
        .unwrap();
    seen.extend(rx.try_iter());
    assert!(sink == body);
    assert_eq!(out.slabs, 4);
    assert_eq!(out.slab_bytes, 4 * PART as u64);
    assert_eq!(seen.last(), Some(&(body.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_500_and_a_dropped_connection_mid_download_are_retried() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    let body = data(6 * PART + 11, 5);
    let key = put(&h, "faults", &body);
    for (label, fault) in [
        ("500", FaultKind::status(500, "InternalError")),
        ("503", FaultKind::status(503, "SlowDown")),
        ("drop", FaultKind::DropConnection),
        ("cut body", FaultKind::CutBody(1000)),
    ] {
        for (n, into_file) in [(1, true), (4, true), (4, false)] {
            let name = format!("{label}, N = {n}, file: {into_file}");
            server.reset_stats();
            server.inject(Fault::new(Op::GetObject, fault.clone()).attempt(4));
            if into_file {
                let path = dir.path().join("faults");
                h.client()
                    .download_to_file(&h.bucket, &key, &path, args(n))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(std::fs::read(&path).unwrap() == body, "{name}");
            } else {
                let mut sink = Vec::new();
                h.client()
                    .download(&h.bucket, &key, &mut sink, args(n))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(sink == body, "{name}");
            }
            assert_eq!(server.pending_faults(), 0, "{name}");
            // Seven ranges, one of them twice.
            assert_eq!(server.stats().get_object_calls, 8, "{name}");
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_403_mid_download_fails_and_leaves_no_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    let body = data(6 * PART, 6);
    let key = put(&h, "forbidden", &body);
    for n in [1, 4] {
        server.inject(Fault::new(Op::GetObject, FaultKind::status(403, "AccessDenied")).attempt(3));
        let path = dir.path().join("forbidden");
        let err = h
            .client()
            .download_to_file(&h.bucket, &key, &path, args(n))
            .unwrap_err();
        assert_eq!(err.s3_code(), Some("AccessDenied"), "{err}");
        assert!(entries(dir.path()).is_empty(), "N = {n}");

        server.inject(Fault::new(Op::GetObject, FaultKind::status(403, "AccessDenied")).attempt(3));
        let mut sink = Vec::new();
        let err = h
            .client()
            .download(&h.bucket, &key, &mut sink, args(n))
            .unwrap_err();
        assert_eq!(err.s3_code(), Some("AccessDenied"), "{err}");
        // A writer may have got a prefix of the object, never more.
        assert!(sink.len() < body.len() && sink == body[..sink.len()]);
    }
    // An existing file at the destination is left as it was.
    let path = dir.path().join("kept");
    std::fs::write(&path, b"old contents").unwrap();
    server.inject(Fault::new(Op::GetObject, FaultKind::status(403, "AccessDenied")).attempt(2));
    h.client()
        .download_to_file(&h.bucket, &key, &path, args(2))
        .unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    assert_eq!(entries(dir.path()), vec![path]);
}

#[test]
fn a_missing_object_is_a_404_and_no_file() {
    let h = Harness::new();
    let dir = out_dir();
    let path = dir.path().join("missing");
    let err = h
        .client()
        .download_to_file(&h.bucket, &h.key("no-such-key"), &path, args(2))
        .unwrap_err();
    assert!(matches!(err, Error::S3 { status: 404, .. }), "{err}");
    assert!(entries(dir.path()).is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn an_object_replaced_mid_download_is_an_error_never_a_mixed_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    for (n, into_file) in [(1, true), (4, true), (1, false), (4, false)] {
        let name = format!("N = {n}, file: {into_file}");
        let old = data(8 * PART, 1);
        let new = data(8 * PART, 2);
        let key = put(&h, &format!("replaced-{n}-{into_file}"), &old);
        server.clear_faults();
        // GET number 2 waits; meanwhile the object is replaced.
        server.inject(
            Fault::new(Op::GetObject, FaultKind::Delay(Duration::from_millis(500))).attempt(2),
        );
        let err = std::thread::scope(|s| {
            let replacer = s.spawn(|| {
                while server.pending_faults() > 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                server.put_object_bytes(&h.bucket, &key, &new);
            });
            let path = dir.path().join("replaced");
            let result = if into_file {
                h.client()
                    .download_to_file(&h.bucket, &key, &path, args(n))
                    .map(|_| ())
            } else {
                let mut sink = Vec::new();
                let r = h.client().download(&h.bucket, &key, &mut sink, args(n));
                assert!(
                    sink.len() <= 8 * PART && sink == old[..sink.len()],
                    "{name}"
                );
                r.map(|_| ())
            };
            replacer.join().unwrap();
            result.unwrap_err()
        });
        assert!(matches!(err, Error::ObjectChanged(_)), "{name}: {err:?}");
        assert!(
            err.to_string().contains("changed during the download"),
            "{err}"
        );
        assert!(entries(dir.path()).is_empty(), "{name}");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_full_object_checksum_is_verified() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    let body = data(3 * PART + 7, 77);
    let key = h.key("checksummed");
    // A PutObject with CRC64NVME: s3s-fs keeps the checksum and HeadObject returns it.
    h.client()
        .put_object_bytes(&h.bucket, &key, &body, &PutObjectArgs::new())
        .unwrap();
    let path = dir.path().join("checksummed");
    let out = h
        .client()
        .download_to_file(&h.bucket, &key, &path, args(3))
        .unwrap();
    let crc = out
        .checksum
        .clone()
        .expect("s3s-fs returns x-amz-checksum-crc64nvme");
    assert!(std::fs::read(&path).unwrap() == body);
    let mut sink = Vec::new();
    let out = h
        .client()
        .download(&h.bucket, &key, &mut sink, args(3))
        .unwrap();
    assert_eq!(out.checksum.as_ref(), Some(&crc));
    let out = h
        .client()
        .download(
            &h.bucket,
            &key,
            &mut Vec::new(),
            args(3).verify_checksum(false),
        )
        .unwrap();
    assert_eq!(out.checksum, None);

    // The stored bytes change behind s3s-fs's back: it still reports the old
    // ETag and checksum, so every range passes If-Match but the bytes do not
    // add up to the checksum.
    let mut corrupt = body.clone();
    corrupt[2 * PART + 100] ^= 0x40;
    server.put_object_bytes(&h.bucket, &key, &corrupt);
    std::fs::remove_file(&path).unwrap();
    let err = h
        .client()
        .download_to_file(&h.bucket, &key, &path, args(3))
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch(_)), "{err:?}");
    assert!(entries(dir.path()).is_empty());
    let err = h
        .client()
        .download(&h.bucket, &key, &mut Vec::new(), args(1))
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch(_)), "{err:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cancelling_stops_the_download_and_leaves_no_file() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let dir = out_dir();
    let key = put(&h, "cancel", &data(10 * PART, 10));
    let path = dir.path().join("cancel");
    let err = h
        .client()
        .download_to_file(
            &h.bucket,
            &key,
            &path,
            args(2).on_progress(|p| p.bytes_sent < 3 * PART as u64),
        )
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(entries(dir.path()).is_empty());
    assert!(server.stats().get_object_calls < 10);

    let cancel = CancelHandle::new();
    server.inject(Fault::new(
        Op::GetObject,
        FaultKind::Delay(Duration::from_millis(300)),
    ));
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel();
        });
        h.client()
            .download(
                &h.bucket,
                &key,
                &mut Vec::new(),
                args(1).cancel_handle(&cancel),
            )
            .unwrap_err()
    });
    assert!(err.is_cancelled(), "{err}");
}

#[test]
fn bad_arguments_fail_before_any_request() {
    let h = Harness::new();
    let dir = out_dir();
    for a in [
        DownloadArgs::new().max_inflight_parts(0),
        DownloadArgs::new().part_size(1000),
    ] {
        let err = h
            .client()
            .download_to_file(&h.bucket, &h.key("x"), dir.path().join("x"), a)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    let err = h
        .client()
        .download_to_file(&h.bucket, &h.key("x"), dir.path(), DownloadArgs::new())
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    if let Some(s) = h.local() {
        assert_eq!(s.stats().head_object_calls, 0);
    }
    assert!(entries(dir.path()).is_empty());
}

// ---------------------------------------------------------------- RDMA

fn provider(options: &str) -> (Arc<FfiRdmaProvider>, String) {
    let name = unique_name("rdma-get");
    let p = FfiRdmaProvider::load(emu_library(), &format!("name={name} {options}"))
        .expect("loading the emulation library");
    (Arc::new(p), name)
}

/// Every registration was undone and every token freed.
fn assert_balanced(c: &EmuCounters) {
    assert_eq!(c.register_calls, c.deregister_calls, "{c:?}");
    assert_eq!(c.registered, 0, "{c:?}");
    assert_eq!(c.get_token_calls, c.free_token_calls, "{c:?}");
    assert_eq!(c.outstanding_tokens, 0, "{c:?}");
    assert_eq!((c.bad_frees, c.busy_deregisters), (0, 0), "{c:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn rdma_downloads_move_no_body_bytes_over_http() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let dir = out_dir();
    for len in [1, PART, 5 * PART + 3] {
        let body = data(len, len as u64);
        let key = put(&h, &format!("rdma-{len}"), &body);
        for (n, into_file) in [(1, true), (4, true), (4, false)] {
            let name = format!("{len} bytes, N = {n}, file: {into_file}");
            server.reset_stats();
            let (rdma, pname) = provider("");
            let a = args(n).rdma(rdma);
            let out = if into_file {
                let path = dir.path().join("rdma");
                let out = h
                    .client()
                    .download_to_file(&h.bucket, &key, &path, a)
                    .unwrap();
                assert!(std::fs::read(&path).unwrap() == body, "{name}");
                out
            } else {
                let mut sink = Vec::new();
                let out = h.client().download(&h.bucket, &key, &mut sink, a).unwrap();
                assert!(sink == body, "{name}");
                out
            };
            check_output(&out, &body, &name);
            let st = server.stats();
            let parts = len.div_ceil(PART) as u64;
            assert_eq!(st.get_body_bytes, 0, "{name}: no body byte may cross HTTP");
            assert_eq!(
                (st.get_object_calls, st.rdma_requests, st.rdma_bytes),
                (parts, parts, len as u64),
                "{name}"
            );
            let c = emu_counters(&pname).unwrap();
            assert_eq!(c.register_calls as usize, out.slabs, "{name}");
            assert_eq!(c.get_token_calls, parts, "{name}");
            assert_balanced(&c);
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_server_without_rdma_gets_the_ranges_over_http_with_one_log_line() {
    support::logger::capture();
    for (mode, label) in [(RdmaMode::Off, "ignored"), (RdmaMode::Refuse501, "refused")] {
        let h = Harness::new();
        let Some(server) = h.local() else { return };
        server.set_rdma_mode(mode);
        let (rdma, name) = provider("");
        let body = data(6 * PART + 99, 5);
        let key = put(&h, &format!("fallback-{label}"), &body);
        let mut sink = Vec::new();
        h.client()
            .download(&h.bucket, &key, &mut sink, args(2).rdma(rdma))
            .unwrap();
        assert!(sink == body, "{label}");
        let st = server.stats();
        assert_eq!(st.rdma_requests, 0, "{label}");
        assert_eq!(st.get_body_bytes, body.len() as u64, "{label}");
        // A server that ignores the token already sent the range in its body;
        // one that refuses it with 501 is asked again over HTTP. The other
        // worker may have sent its first range with a token at the same time.
        let tries = st.get_object_calls - 7;
        match mode {
            RdmaMode::Off => assert_eq!(tries, 0, "{label}"),
            _ => assert!((1..=2).contains(&tries), "{label}: {st:?}"),
        }
        let lines = support::logger::lines_containing(&format!(
            "{}/{key}: the server does not take RDMA",
            h.bucket
        ));
        assert_eq!(lines.len(), 1, "{label}: {lines:?}");
        let c = emu_counters(&name).unwrap();
        assert!(c.get_token_calls <= 2, "{label}: {c:?}");
        assert_balanced(&c);
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_failed_rdma_attempt_is_retried_once_with_a_fresh_token() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let dir = out_dir();
    let body = data(4 * PART, 4);
    let key = put(&h, "rdma-retry", &body);
    let (rdma, name) = provider("");
    server.inject(Fault::new(Op::GetObject, FaultKind::DropConnection).attempt(2));
    let path = dir.path().join("rdma-retry");
    h.client()
        .download_to_file(&h.bucket, &key, &path, args(2).rdma(rdma.clone()))
        .unwrap();
    assert!(std::fs::read(&path).unwrap() == body);
    let st = server.stats();
    assert_eq!(
        (st.get_object_calls, st.rdma_requests, st.get_body_bytes),
        (5, 4, 0)
    );
    let c = emu_counters(&name).unwrap();
    assert_eq!(c.get_token_calls, 5);
    assert_balanced(&c);

    // Two failures in a row fail the download; still every token is freed.
    let (rdma, name) = provider("");
    server.inject(Fault::new(Op::GetObject, FaultKind::DropConnection).attempt(2));
    server.inject(Fault::new(Op::GetObject, FaultKind::DropConnection).attempt(1));
    let err = h
        .client()
        .download_to_file(&h.bucket, &key, &path, args(1).rdma(rdma))
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        std::fs::read(&path).unwrap() == body,
        "the old file is untouched"
    );
    assert_eq!(entries(dir.path()), vec![path]);
    assert_balanced(&emu_counters(&name).unwrap());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn an_object_replaced_mid_rdma_download_is_an_error() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let dir = out_dir();
    let key = put(&h, "rdma-replaced", &data(4 * PART, 1));
    let (rdma, name) = provider("");
    server
        .inject(Fault::new(Op::GetObject, FaultKind::Delay(Duration::from_millis(400))).attempt(2));
    let path = dir.path().join("rdma-replaced");
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            while server.pending_faults() > 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            server.put_object_bytes(&h.bucket, &key, &data(4 * PART, 2));
        });
        h.client()
            .download_to_file(&h.bucket, &key, &path, args(1).rdma(rdma))
            .unwrap_err()
    });
    assert!(matches!(err, Error::ObjectChanged(_)), "{err:?}");
    assert!(entries(dir.path()).is_empty());
    assert_balanced(&emu_counters(&name).unwrap());
}

// ---------------------------------------------------------------- CLI

#[cfg(feature = "cli")]
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_cli_get_downloads_into_a_file_and_to_stdout() {
    use support::server::{ACCESS_KEY, REGION, SECRET_KEY};
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let body = data(3 * PART + 7, 12);
    let key = put(&h, "cli", &body);
    let dir = out_dir();
    let path = dir.path().join("cli.bin");
    let run = |dest: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_s3pump"))
            .args(["get", &format!("s3://{}/{key}", h.bucket), dest])
            .args(["--endpoint", h.endpoint(), "--part-size", "1MiB"])
            .args(["--max-inflight-parts", "3"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("S3PUMP_RDMA_LIBRARY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let expect = format!(
        "\"etag\":\"\\\"{}\\\"\",\"parts\":4,\"bytes\":{},",
        md5_hex(&body),
        body.len()
    );
    let out = run(path.to_str().unwrap());
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains(&expect), "{report}");
    assert!(std::fs::read(&path).unwrap() == body);

    let out = run("-");
    assert!(
        out.stdout == body,
        "stdout carries the object and nothing else"
    );
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(report.contains(&expect), "{report}");
}

// ------------------------------------------ targets that are not regular files --

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Makes a character device like /dev/null (1, 3) at `path`; `false` when
/// not allowed (not root, or a file system mounted `nodev`).
fn mknod_null(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    made == 0 && std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

#[test]
fn a_fifo_is_written_through_in_order_and_stays_a_fifo() {
    let h = Harness::new();
    let body = data(3 * PART + 11, 7);
    let key = put(&h, "fifo", &body);
    let dir = out_dir();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = h
        .client()
        .download_to_file(&h.bucket, &key, &fifo, args(4))
        .unwrap();
    check_output(&out, &body, "fifo");
    assert!(reader.join().unwrap() == body, "the reader got the object");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(entries(dir.path()), vec![fifo.clone()], "no temporary file");

    // Through a symbolic link to it: the same, and the link stays.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    h.client()
        .download_to_file(&h.bucket, &key, &link, args(4))
        .unwrap();
    assert!(reader.join().unwrap() == body);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_unix_socket_is_written_through() {
    let h = Harness::new();
    let body = data(2 * PART + 3, 8);
    let key = put(&h, "socket", &body);
    let dir = out_dir();
    let sock = dir.path().join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut got).unwrap();
        got
    });
    h.client()
        .download_to_file(&h.bucket, &key, &sock, args(3))
        .unwrap();
    assert!(reader.join().unwrap() == body);
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn a_character_device_is_written_through_never_replaced() {
    let h = Harness::new();
    let body = data(2 * PART + 5, 9);
    let key = put(&h, "chardev", &body);
    let dir = out_dir();
    // First a private copy of /dev/null (as root): a regression replaces
    // that one, never the system's.
    let node = dir.path().join("null");
    let private = mknod_null(&node);
    if private {
        h.client()
            .download_to_file(&h.bucket, &key, &node, args(3))
            .unwrap();
        let kind = std::fs::symlink_metadata(&node).unwrap().file_type();
        assert!(
            kind.is_char_device(),
            "{node:?} is still a character device"
        );
        assert_eq!(entries(dir.path()), vec![node.clone()]);
    }
    // Then /dev/null itself: not as root unless the private copy passed;
    // without root nothing in /dev can be created or renamed anyway.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let null = Path::new("/dev/null");
    let writable = std::fs::OpenOptions::new().write(true).open(null).is_ok();
    if writable && (private || !root) {
        let out = h
            .client()
            .download_to_file(&h.bucket, &key, null, args(3))
            .unwrap();
        check_output(&out, &body, "/dev/null");
        let kind = std::fs::symlink_metadata(null).unwrap().file_type();
        assert!(
            kind.is_char_device(),
            "/dev/null is still a character device"
        );
    }
}

#[test]
fn a_replaced_file_keeps_its_mode_and_a_symlink_is_followed() {
    let h = Harness::new();
    let body = data(PART + 9, 10);
    let key = put(&h, "modes", &body);
    let dir = out_dir();
    for mode in [0o600, 0o640, 0o755] {
        let path = dir.path().join(format!("f{mode:o}"));
        std::fs::write(&path, b"old contents").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        h.client()
            .download_to_file(&h.bucket, &key, &path, args(2))
            .unwrap();
        assert!(std::fs::read(&path).unwrap() == body);
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, mode, "{path:?} keeps mode {mode:o}, has {got:o}");
    }

    // A symbolic link: the file it points to is replaced (keeping its
    // mode), the link stays a link to it.
    let real = dir.path().join("real");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("real", &link).unwrap();
    h.client()
        .download_to_file(&h.bucket, &key, &link, args(2))
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real"));
    assert!(std::fs::read(&real).unwrap() == body);
    let got = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
    assert_eq!(got, 0o600);

    // A link to nothing: an error naming it, nothing created.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink("nowhere/x", &dangling).unwrap();
    let before = entries(dir.path());
    let err = h
        .client()
        .download_to_file(&h.bucket, &key, &dangling, args(2))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("dangling") && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(entries(dir.path()), before);
    // A new file is made as before.
    let fresh = dir.path().join("fresh");
    h.client()
        .download_to_file(&h.bucket, &key, &fresh, args(2))
        .unwrap();
    assert!(std::fs::read(&fresh).unwrap() == body);
}
