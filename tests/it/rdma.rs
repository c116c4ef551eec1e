//! Uploads through the real FFI RDMA path: the emulation C library compiled
//! from source, and the in-process server reading the client's registered
//! memory when it honours `x-amz-rdma-token`.

use crate::support;

use std::sync::Arc;

use s3pump::{FfiRdmaProvider, PutObjectArgs};
use support::harness::{Harness, data, md5_hex, multipart_etag};
use support::rdma_emu::{EmuCounters, emu_counters, emu_library, unique_name};
use support::server::{Fault, FaultKind, Op, RdmaMode};

const PART: usize = 5 << 20;

/// An emulation provider with counters of its own, and their name.
fn provider(options: &str) -> (Arc<FfiRdmaProvider>, String) {
    let name = unique_name("rdma-e2e");
    let p = FfiRdmaProvider::load(emu_library(), &format!("name={name} {options}"))
        .expect("loading the emulation library");
    (Arc::new(p), name)
}

fn counters(name: &str) -> EmuCounters {
    emu_counters(name).expect("counters")
}

/// Every registration was undone and every token freed.
fn assert_balanced(c: &EmuCounters, slabs: u64) {
    assert_eq!(c.register_calls, slabs, "{c:?}");
    assert_eq!(c.deregister_calls, slabs, "{c:?}");
    assert_eq!(c.registered, 0, "{c:?}");
    assert_eq!(c.get_token_calls, c.free_token_calls, "{c:?}");
    assert_eq!(c.outstanding_tokens, 0, "{c:?}");
    assert_eq!(c.bad_frees, 0, "{c:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn eight_parts_by_rdma_move_no_body_bytes_over_http() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let (rdma, name) = provider("");
    let body = data(8 * PART, 81);
    let key = h.key("rdma-8");
    let out = h
        .client()
        .put_object(
            &h.bucket,
            &key,
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(4)
                .rdma(rdma.clone()),
        )
        .unwrap();
    assert_eq!(out.parts, 8);
    assert_eq!(out.etag, multipart_etag(&body, PART));
    assert_eq!(server.object_bytes(&h.bucket, &key).unwrap(), body);
    let st = server.stats();
    assert_eq!(st.http_body_bytes, 0, "no part body may cross HTTP");
    assert_eq!(st.rdma_requests, 8);
    assert_eq!(st.rdma_bytes, body.len() as u64);
    assert_eq!(out.slabs, 5);
    assert_balanced(&counters(&name), 5);
    assert!(server.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_one_part_object_goes_as_one_rdma_put() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let (rdma, name) = provider("");
    let body = data(12345, 3);
    let key = h.key("rdma-1");
    let out = h
        .client()
        .put_object(&h.bucket, &key, &body[..], PutObjectArgs::new().rdma(rdma))
        .unwrap();
    assert_eq!(out.etag, format!("\"{}\"", md5_hex(&body)));
    let st = server.stats();
    assert_eq!(
        (st.put_object_calls, st.rdma_requests, st.http_body_bytes),
        (1, 1, 0)
    );
    assert_eq!(server.object_bytes(&h.bucket, &key).unwrap(), body);
    assert_balanced(&counters(&name), 1);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_server_without_rdma_gets_the_parts_over_http_with_one_log_line() {
    support::logger::capture();
    for (mode, label) in [(RdmaMode::Off, "ignored"), (RdmaMode::Refuse501, "refused")] {
        let h = Harness::new();
        let Some(server) = h.local() else { return };
        server.set_rdma_mode(mode);
        let (rdma, name) = provider("");
        let body = data(6 * PART + 99, 5);
        let key = h.key(&format!("fallback-{label}"));
        let out = h
            .client()
            .put_object(
                &h.bucket,
                &key,
                &body[..],
                PutObjectArgs::new()
                    .part_size(PART as u64)
                    .max_inflight_parts(1)
                    .rdma(rdma),
            )
            .unwrap();
        assert_eq!(out.etag, multipart_etag(&body, PART), "{label}");
        assert_eq!(
            server.object_bytes(&h.bucket, &key).unwrap(),
            body,
            "{label}"
        );
        let st = server.stats();
        assert_eq!(st.rdma_requests, 0, "{label}");
        // Only the first part was tried by RDMA; it and all later parts went over HTTP.
        assert_eq!(st.upload_part_calls, 7 + 1, "{label}");
        let lines = support::logger::lines_containing(&format!(
            "{}/{key}: the server does not take RDMA",
            h.bucket
        ));
        assert_eq!(lines.len(), 1, "{label}: {lines:?}");
        assert_balanced(&counters(&name), 2);
        assert!(server.open_uploads().is_empty());
    }
}

/// Yields `ok` bytes, then fails.
struct FailAfter {
    body: Vec<u8>,
    pos: usize,
    ok: usize,
}

impl std::io::Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.ok {
            return Err(std::io::Error::other("source failed"));
        }
        let n = buf.len().min(self.ok - self.pos);
        buf[..n].copy_from_slice(&self.body[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_failure_mid_upload_aborts_and_releases_everything() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let (rdma, name) = provider("");
    let reader = FailAfter {
        body: data(8 * PART, 8),
        pos: 0,
        ok: 5 * PART + 10,
    };
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("rdma-fail"),
            reader,
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(3)
                .rdma(rdma),
        )
        .unwrap_err();
    assert!(err.to_string().contains("source failed"), "{err}");
    assert!(err.upload_id().is_some());
    assert!(server.open_uploads().is_empty());
    let st = server.stats();
    assert!(st.rdma_requests >= 1 && st.http_body_bytes == 0, "{st:?}");
    assert_eq!(st.abort_calls, 1);
    assert_balanced(&counters(&name), 4);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_part_refused_over_rdma_and_http_fails_the_upload_cleanly() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    // The RDMA attempt of part 4 is refused (no reply header: HTTP fallback),
    // then its HTTP attempt too.
    for _ in 0..2 {
        server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(4));
    }
    let (rdma, name) = provider("");
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("rdma-refused"),
            &data(8 * PART, 8)[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(3)
                .rdma(rdma),
        )
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("AccessDenied"), "{err}");
    assert!(server.open_uploads().is_empty());
    let c = counters(&name);
    assert_balanced(&c, c.register_calls);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_provider_that_is_not_connected_changes_nothing() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.set_rdma_mode(RdmaMode::Honour);
    let (rdma, name) = provider("not-ready");
    let body = data(3 * PART, 4);
    let key = h.key("not-ready");
    h.client()
        .put_object(
            &h.bucket,
            &key,
            &body[..],
            PutObjectArgs::new().part_size(PART as u64).rdma(rdma),
        )
        .unwrap();
    assert_eq!(server.object_bytes(&h.bucket, &key).unwrap(), body);
    let st = server.stats();
    assert_eq!(
        (st.rdma_requests, st.http_body_bytes),
        (0, body.len() as u64)
    );
    assert_balanced(&counters(&name), 0);
}

#[test]
fn rdma_with_parts_over_4_gib_is_refused_at_the_start() {
    let h = Harness::new();
    let (rdma, name) = provider("");
    let err = h
        .client()
        .put_object(
            &h.bucket,
            &h.key("huge-parts"),
            &b"x"[..],
            PutObjectArgs::new().part_size(4 << 30).rdma(rdma),
        )
        .unwrap_err();
    assert!(err.to_string().contains("4 GiB - 1"), "{err}");
    assert_eq!(counters(&name).register_calls, 0);
}
