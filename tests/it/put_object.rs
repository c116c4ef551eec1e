//! The parallel upload pipeline: sizes, parallelism, memory bound, failures.

use crate::support;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use s3pump::{CancelHandle, Error, PutObjectArgs};
use support::harness::{Harness, Trickle, data, md5_hex, multipart_etag};
use support::server::{Fault, FaultKind, Op};

const MIB: usize = 1 << 20;
const PART: usize = 5 * MIB;

/// Uploads `body` (declared or streamed), checks bytes, ETag, part count and
/// that nothing is left open; returns the output.
fn round_trip(
    h: &Harness,
    name: &str,
    body: &[u8],
    declared: bool,
    n: usize,
) -> s3pump::PutObjectOutput {
    let key = h.key(name);
    let mut args = PutObjectArgs::new()
        .part_size(PART as u64)
        .max_inflight_parts(n);
    if declared {
        args = args.size(body.len() as u64);
    }
    let reader = Trickle {
        data: body,
        pos: 0,
        step: 100_000,
    };
    let out = h
        .client()
        .put_object(&h.bucket, &key, reader, args)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let parts = body.len().div_ceil(PART).max(1);
    assert_eq!(out.parts as usize, parts, "{name}");
    assert_eq!(out.bytes, body.len() as u64, "{name}");
    let etag = if parts == 1 {
        format!("\"{}\"", md5_hex(body))
    } else {
        multipart_etag(body, PART)
    };
    assert_eq!(out.etag, etag, "{name}");
    assert!(h.read_back(&key) == body, "{name}: bytes differ");
    assert!(h.open_uploads().is_empty(), "{name}: upload left open");
    out
}

#[test]
fn edge_sizes_streamed_and_declared() {
    let h = Harness::new();
    let body = data(3 * PART + 7, 42);
    for len in [0, 1, PART - 1, PART, PART + 1, 3 * PART + 7] {
        for declared in [false, true] {
            let name = format!("size-{len}-{declared}");
            if let Some(s) = h.local() {
                s.reset_stats();
            }
            round_trip(&h, &name, &body[..len], declared, 4);
            if let Some(s) = h.local() {
                let st = s.stats();
                if len <= PART {
                    // One part: a single PutObject, never a multipart upload.
                    assert_eq!(
                        (st.put_object_calls, st.create_multipart_calls),
                        (1, 0),
                        "{name}"
                    );
                } else {
                    assert_eq!(st.put_object_calls, 0, "{name}");
                    assert_eq!(st.create_multipart_calls, 1, "{name}");
                    assert_eq!(st.upload_part_calls as usize, len.div_ceil(PART), "{name}");
                }
            }
        }
    }
}

#[test]
fn more_workers_than_parts_and_strictly_sequential() {
    let h = Harness::new();
    let body = data(2 * PART + 3, 9);
    round_trip(&h, "n-16", &body, false, 16);
    // N = 1 is strictly sequential: while the server holds each part, no
    // other part arrives.
    if let Some(server) = h.local() {
        server.set_part_delay(Duration::from_millis(100));
        server.reset_stats();
    }
    round_trip(&h, "n-1", &body, true, 1);
    if let Some(server) = h.local() {
        let stats = server.stats();
        assert_eq!(stats.upload_part_calls, 3);
        assert_eq!(stats.peak_upload_parts_in_flight, 1, "{stats:?}");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn exactly_max_inflight_parts_are_in_flight() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_part_delay(Duration::from_millis(300));
    for n in [1usize, 4, 8] {
        server.reset_stats();
        let body = data((2 * n).max(2) * PART, n as u64);
        round_trip(&h, &format!("inflight-{n}"), &body, false, n);
        let peak = server.stats().peak_upload_parts_in_flight;
        assert_eq!(peak, n as u64, "N = {n}");
    }
}

#[test]
fn memory_is_bounded_by_inflight_plus_one_slabs() {
    let h = Harness::new();
    if let Some(s) = h.local() {
        // Parts held by the server: the producer surely gets ahead of the
        // workers and maps every buffer it may.
        s.set_part_delay(Duration::from_millis(50));
    }
    for (parts, n) in [(4usize, 2usize), (12, 2), (12, 5)] {
        let body = data(parts * PART, parts as u64);
        let out = round_trip(&h, &format!("mem-{parts}-{n}"), &body, false, n);
        if h.local().is_some() {
            assert_eq!(out.slabs, n + 1, "{parts} parts, N = {n}");
        }
        assert!(out.slabs <= n + 1, "{parts} parts, N = {n}");
        assert_eq!(out.slab_bytes, (out.slabs * PART) as u64);
    }
    // A one-part object needs one buffer only.
    let out = round_trip(&h, "mem-small", &data(1000, 1), false, 8);
    assert_eq!(out.slabs, 1);
}

#[test]
fn memory_limit_lowers_parts_in_flight_or_refuses() {
    let h = Harness::new();
    let body = data(6 * PART, 5);
    let out = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("limited"),
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(8)
                .memory_limit(3 * PART as u64),
        )
        .unwrap();
    assert_eq!(out.slabs, 3); // 2 in flight + 1
    assert_eq!(h.read_back(&h.key("limited")), body);

    if let Some(s) = h.local() {
        s.reset_stats();
    }
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("refused"),
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .memory_limit(PART as u64),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("memory_limit"), "{err}");
    if let Some(s) = h.local() {
        assert_eq!(s.stats(), Default::default(), "nothing may be sent");
    }
}

/// A reader that yields `ok` bytes of `data`, then fails.
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.fail_at - self.pos).min(MIB);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn reader_error_mid_upload_aborts() {
    let h = Harness::new();
    let reader = FailingReader {
        data: data(10 * PART, 3),
        pos: 0,
        fail_at: 3 * PART + 17,
    };
    let args = PutObjectArgs::new()
        .part_size(PART as u64)
        .max_inflight_parts(2);
    let err = h
        .client()
        .put_object(&h.bucket, &h.key("reader-error"), reader, args)
        .unwrap_err();
    assert!(err.upload_id().is_some(), "{err:?}");
    match err.root() {
        Error::Io { context, source } => {
            assert!(
                context.contains(&format!("byte {}", 3 * PART + 17)),
                "{context}"
            );
            assert_eq!(source.to_string(), "disk on fire");
        }
        other => panic!("not an I/O error: {other:?}"),
    }
    assert!(h.open_uploads().is_empty());
    // A reader failing inside the first part fails before anything exists.
    let reader = FailingReader {
        data: data(PART, 3),
        pos: 0,
        fail_at: 10,
    };
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("reader-error-2"),
            reader,
            PutObjectArgs::new(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn source_shorter_or_longer_than_declared_is_an_error() {
    let h = Harness::new();
    let body = data(3 * PART, 11);
    for (declared, actual, what) in [
        (3 * PART, 2 * PART + 5, "ended after"),
        (2 * PART, 3 * PART, "more than the declared"),
        (100, 3 * PART, "more than the declared"),
        (3 * PART, 100, "ended after"),
    ] {
        let args = PutObjectArgs::new()
            .part_size(PART as u64)
            .size(declared as u64);
        let err = h
            .client()
            .put_object(&h.bucket, &h.key("mismatch"), &body[..actual], args)
            .unwrap_err();
        assert!(matches!(err.root(), Error::SizeMismatch(_)), "{err:?}");
        assert!(err.to_string().contains(what), "{declared}/{actual}: {err}");
        assert!(h.open_uploads().is_empty());
    }
    // Nothing was stored under the key.
    let err = h
        .client()
        .head_object(&h.bucket, &h.key("mismatch"))
        .unwrap_err();
    assert!(matches!(err, Error::S3 { status: 404, .. }), "{err:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn server_rejecting_a_part_fails_the_upload_with_its_number() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(3));
    let body = data(6 * PART, 13);
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("rejected"),
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(3),
        )
        .unwrap_err();
    match &err {
        Error::Upload {
            upload_id,
            part_number,
            source,
        } => {
            assert!(!upload_id.is_empty());
            assert_eq!(*part_number, Some(3));
            assert_eq!(source.s3_code(), Some("AccessDenied"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("part 3"), "{err}");
    assert!(server.open_uploads().is_empty());
    assert!(server.stats().abort_calls >= 1);
}

/// A reader that panics after `after` bytes.
struct PanickingReader {
    pos: usize,
    after: usize,
}

impl Read for PanickingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.after {
            panic!("reader exploded");
        }
        let n = buf.len().min(self.after - self.pos);
        buf[..n].fill(7);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_panicking_thread_becomes_an_error_not_a_hang() {
    let h = Harness::new();
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("panic"),
            PanickingReader {
                pos: 0,
                after: 3 * PART,
            },
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(2),
        )
        .unwrap_err();
    assert!(matches!(err.root(), Error::Panic(_)), "{err:?}");
    assert!(err.upload_id().is_some());
    assert!(h.open_uploads().is_empty());
}

#[test]
fn progress_callback_reports_and_can_cancel() {
    let h = Harness::new();
    let body = data(4 * PART, 21);
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let out = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("progress"),
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .size(body.len() as u64)
                .on_progress(move |p| {
                    assert_eq!(p.total, Some(4 * PART as u64));
                    seen2.fetch_max(p.bytes_sent, Ordering::SeqCst);
                    true
                }),
        )
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), out.bytes);

    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("cancelled"),
            &data(10 * PART, 1)[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(2)
                .on_progress(|p| p.bytes_sent < 2 * PART as u64),
        )
        .unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(h.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cancel_handle_stops_an_upload_from_another_thread() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_part_delay(Duration::from_millis(200));
    let cancel = CancelHandle::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("cancel-handle"),
            &data(40 * PART, 2)[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(2)
                .cancel_handle(&cancel),
        )
        .unwrap_err();
    t.join().unwrap();
    assert!(err.is_cancelled(), "{err:?}");
    // Cancelled after about 300 ms of 200 ms parts two at a time: most of
    // the 40 parts were never sent.
    let sent = server.stats().upload_part_calls;
    assert!(sent < 20, "{sent} parts sent after the cancel");
    assert!(server.open_uploads().is_empty());
}

#[test]
fn bad_arguments_fail_before_anything_is_sent() {
    let h = Harness::new();
    for (args, what) in [
        (
            PutObjectArgs::new().max_inflight_parts(0),
            "max_inflight_parts",
        ),
        (
            PutObjectArgs::new().max_inflight_parts(101),
            "max_inflight_parts",
        ),
        (PutObjectArgs::new().part_size(MIB as u64), "part_size"),
        (PutObjectArgs::new().part_size(6 << 30), "part_size"),
    ] {
        let err = h
            .client()
            .put_object(&h.bucket, &h.key("bad"), &b"abc"[..], args)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains(what), "{err}");
    }
    let err = h
        .client()
        .put_object("Bad_Bucket", "k", &b"abc"[..], PutObjectArgs::new())
        .unwrap_err();
    assert!(err.to_string().contains("bucket name"), "{err}");
    let err = h
        .client()
        .put_object(&h.bucket, "", &b"abc"[..], PutObjectArgs::new())
        .unwrap_err();
    assert!(err.to_string().contains("key is empty"), "{err}");
    if let Some(s) = h.local() {
        assert_eq!(s.stats(), Default::default(), "nothing may be sent");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_cancel_ends_a_retry_backoff_at_once() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    // Part 2 keeps answering 503, and each retry waits up to 30 s.
    for _ in 0..4 {
        server.inject(Fault::new(Op::UploadPart, FaultKind::status(503, "SlowDown")).part(2));
    }
    let policy = s3pump::RetryPolicy::default()
        .base_backoff(Duration::from_secs(30))
        .max_backoff(Duration::from_secs(30))
        .max_elapsed(Duration::from_secs(300));
    let client = h.builder().retry_policy(policy).build().unwrap();
    let cancel = CancelHandle::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            cancel.cancel();
            std::time::Instant::now()
        })
    };
    let body = data(3 * PART, 31);
    let args = PutObjectArgs::new()
        .part_size(PART as u64)
        .max_inflight_parts(1)
        .cancel_handle(&cancel);
    let err = client
        .put_object(&h.bucket, &h.key("backoff"), &body[..], args)
        .unwrap_err();
    let cancelled_at = canceller.join().unwrap();
    assert!(err.is_cancelled(), "{err}");
    let late = cancelled_at.elapsed();
    assert!(
        late < Duration::from_secs(3),
        "returned {late:?} after the cancel"
    );
    assert!(server.open_uploads().is_empty());
}
