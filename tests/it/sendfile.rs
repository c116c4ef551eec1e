//! `upload_file` sends each part from the file, no slab
//! (src/upload/sendfile.rs): over plain http with sendfile(2), over https
//! read piece by piece as it is encrypted. Byte-identical objects, retries
//! sent from the file again, and a file that changes or shrinks during the
//! upload is a clear error with nothing left on the server, on both
//! schemes. Also: a single PutObject of at least 1 MiB goes through the
//! direct sender (http and https), not ureq.

use crate::support;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3pump::{ChecksumAlgorithm, Client, Error, PayloadSigning, PutObjectArgs};
use support::harness::{Harness, data, fast_retries, md5_hex, multipart_etag};
use support::tls_front::{TestCa, TlsFront, Validity};
use support::{Fault, FaultKind, Op, Relay, RelayConfig, RelayFault};

const MIB: usize = 1 << 20;
const PART: usize = 5 * MIB;

fn client_for(h: &Harness, endpoint: &str) -> Client {
    h.builder()
        .endpoint(endpoint)
        .retry_policy(fast_retries())
        .build()
        .expect("client")
}

fn file_with(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// The direct sender's TRACE lines about requests to `scheme` and `port`
/// sent from a file.
fn file_lines(scheme: &str, port: u16) -> usize {
    support::logger::lines_containing(&format!("{scheme}://127.0.0.1:{port}, "))
        .into_iter()
        .filter(|l| l.contains("direct sender") && l.contains("from the file"))
        .count()
}

/// A client of `endpoint` trusting `ca`, with fast retries.
fn tls_client(h: &Harness, ca: &TestCa, endpoint: &str) -> Client {
    h.builder()
        .endpoint(endpoint)
        .add_root_certificates_pem(ca.pem().as_bytes())
        .retry_policy(fast_retries())
        .build()
        .expect("client")
}

/// A client of `scheme://127.0.0.1:port` (trusting `ca` for https), with
/// fast retries.
fn scheme_client(h: &Harness, scheme: &str, ca: &TestCa, port: u16) -> Client {
    let endpoint = format!("{scheme}://127.0.0.1:{port}");
    match scheme {
        "https" => tls_client(h, ca, &endpoint),
        _ => client_for(h, &endpoint),
    }
}

/// Multipart uploads the server still lists in the harness's bucket.
fn listed_uploads(h: &Harness) -> usize {
    h.client()
        .list_multipart_uploads(&h.bucket)
        .expect("ListMultipartUploads")
        .len()
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn files_over_http_and_https_are_sent_from_the_file_and_arrive_identical() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let ca = TestCa::new("s3pump file parts CA");
    let front = tls_front(&h, &ca);
    let dir = tempfile::tempdir().unwrap();
    let body = data(3 * PART + 2 * MIB + 5, 91);
    let cases = [
        // Not a multiple of the part size, the last part of 2 MiB + 5.
        (
            3 * PART + 2 * MIB + 5,
            4,
            PayloadSigning::Auto,
            ChecksumAlgorithm::Crc64Nvme,
        ),
        // The last part of 7 bytes is under the direct sender's 1 MiB: it
        // goes from the file too (a transfer's requests go where a cancel
        // can cut them).
        (
            2 * PART + 7,
            3,
            PayloadSigning::Unsigned,
            ChecksumAlgorithm::Crc32c,
        ),
        // One part: a single PutObject from the file.
        (
            3 * MIB + 1,
            1,
            PayloadSigning::Signed,
            ChecksumAlgorithm::None,
        ),
    ];
    let https = tls_client(&h, &ca, &front.endpoint("127.0.0.1"));
    // (length, parts sent from the file, payload signing, checksum)
    for (scheme, c, port) in [
        ("http", h.client(), server.addr().port()),
        ("https", https, front.addr().port()),
    ] {
        for (len, from_file, signing, checksum) in cases {
            let path = file_with(&dir, &format!("f-{len}"), &body[..len]);
            let key = format!("from-file-{scheme}-{len}");
            let before = file_lines(scheme, port);
            let out = c
                .upload_file(
                    &h.bucket,
                    &key,
                    &path,
                    PutObjectArgs::new()
                        .part_size(PART as u64)
                        .max_inflight_parts(3)
                        .payload_signing(signing)
                        .checksum(checksum),
                )
                .unwrap_or_else(|e| panic!("{scheme} {len}: {e}"));
            let parts = len.div_ceil(PART);
            let etag = if parts == 1 {
                format!("\"{}\"", md5_hex(&body[..len]))
            } else {
                multipart_etag(&body[..len], PART)
            };
            assert_eq!((out.parts as usize, out.etag.as_str()), (parts, &*etag));
            assert!(
                server.object_bytes(&h.bucket, &key).unwrap() == body[..len],
                "{scheme} {len}: bytes differ"
            );
            assert_eq!(
                file_lines(scheme, port) - before,
                from_file,
                "{scheme} {len}: parts sent from the file"
            );
            // No part went through a buffer.
            assert_eq!((out.slabs, out.slab_bytes), (0, 0), "{scheme} {len}");
        }
    }
    assert!(h.open_uploads().is_empty());
    assert_eq!(listed_uploads(&h), 0);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_retry_after_a_503_or_a_cut_is_sent_from_the_file_again() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let ca = TestCa::new("s3pump file retry CA");
    let front = tls_front(&h, &ca);
    let dir = tempfile::tempdir().unwrap();
    let body = data(3 * PART + MIB, 17);
    let path = file_with(&dir, "retried", &body);
    for (scheme, behind) in [("http", server.addr()), ("https", front.addr())] {
        // The relay carries the bytes (for https, the TLS records) between
        // the client and the server (for https, its TLS front).
        let relay = Relay::start(behind, RelayConfig::default());
        let port = relay.addr().port();
        let c = scheme_client(&h, scheme, &ca, port);
        for (what, fault) in [("slowdown", true), ("cut", false)] {
            let key = &format!("{what}-{scheme}");
            server.reset_stats();
            if fault {
                server
                    .inject(Fault::new(Op::UploadPart, FaultKind::status(503, "SlowDown")).part(2));
            } else {
                // Mid-body of the second part (the first one's body, its
                // head and the Create's precede it on the wire).
                relay.arm(RelayFault::CutAfter((PART + 2 * MIB) as u64));
            }
            let before = file_lines(scheme, port);
            let out = c
                .upload_file(
                    &h.bucket,
                    key,
                    &path,
                    PutObjectArgs::new()
                        .part_size(PART as u64)
                        .max_inflight_parts(1),
                )
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(out.etag, multipart_etag(&body, PART), "{key}");
            assert!(
                server.object_bytes(&h.bucket, key).unwrap() == body,
                "{key}: bytes differ"
            );
            assert!(!relay.fault_pending(), "{key}");
            // Four parts and the retry, each sent from the file.
            assert_eq!(file_lines(scheme, port) - before, 5, "{key}");
            if fault {
                assert_eq!(server.stats().upload_part_calls, 5, "{key}");
            }
        }
    }
    assert!(h.open_uploads().is_empty());
}

/// The error of an upload that failed because its file changed, checked:
/// an Io error naming the file and saying `what` happened; the upload was
/// aborted and no object was made.
fn assert_changed(h: &Harness, err: &Error, path: &std::path::Path, key: &str, what: &str) {
    assert!(err.upload_id().is_some(), "{err}");
    let text = err.to_string();
    assert!(matches!(err.root(), Error::Io { .. }), "{err:?}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains(what),
        "{text}"
    );
    let server = h.local().unwrap();
    assert!(server.object_bytes(&h.bucket, key).is_none(), "no object");
    assert!(h.open_uploads().is_empty(), "upload left open");
    assert_eq!(listed_uploads(h), 0, "upload listed");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_file_written_to_during_the_upload_is_an_error_and_aborted() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let c = h.client();
    let dir = tempfile::tempdir().unwrap();
    let body = data(4 * PART, 23);
    let path = file_with(&dir, "changing", &body);
    // After the first part is in, another writer changes bytes of a part
    // that is not sent yet (same size): the object would mix two versions.
    let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let wrote = Arc::new(AtomicBool::new(false));
    let w = Arc::clone(&wrote);
    let err = c
        .upload_file(
            &h.bucket,
            "changing",
            &path,
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(1)
                .on_progress(move |p| {
                    if p.bytes_sent > 0 && !w.swap(true, Ordering::SeqCst) {
                        writer
                            .write_all_at(b"changed", (3 * PART + 10) as u64)
                            .unwrap();
                    }
                    true
                }),
        )
        .expect_err("a file changed during the upload must fail");
    assert!(wrote.load(Ordering::SeqCst), "the writer ran");
    assert_changed(&h, &err, &path, "changing", "changed during the upload");
}

/// What happens to the file while its second part is on the wire.
#[derive(Clone, Copy, Debug)]
enum Mid {
    /// Truncated to 1.5 parts.
    Truncate,
    /// Bytes of the second part not yet sent are overwritten (same size).
    Overwrite,
}

/// Uploads 3 parts over `scheme` through a 4 MB/s relay (the second part
/// is on the wire for over a second) and does `mid` to the file mid-way
/// through the second part's body, sent from the file (by sendfile, or read
/// as it is encrypted), its CRC long computed. Returns the upload's error,
/// checked by `assert_changed` for `what`.
fn change_mid_part(scheme: &str, mid: Mid, args: PutObjectArgs, what: &str) -> Error {
    let h = Harness::new();
    let server = h.local().unwrap();
    let ca = TestCa::new("s3pump changing file CA");
    let front = tls_front(&h, &ca);
    let behind = if scheme == "https" {
        front.addr()
    } else {
        server.addr()
    };
    let relay = Relay::start(
        behind,
        RelayConfig {
            rate_bytes_per_sec: Some(4_000_000),
            delay: Duration::ZERO,
        },
    );
    let c = scheme_client(&h, scheme, &ca, relay.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "changing", &data(3 * PART, 29));
    let changed_at = Mutex::new(None);
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            while relay.bytes_up() < (PART + 2 * MIB) as u64 {
                if started.elapsed() > Duration::from_secs(30) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            match mid {
                Mid::Truncate => f.set_len((PART + 3 * MIB) as u64).unwrap(),
                Mid::Overwrite => f
                    .write_all_at(&[0xAA; 4096], (PART + 4 * MIB) as u64)
                    .unwrap(),
            }
            *changed_at.lock().unwrap() = Some(relay.bytes_up());
        });
        c.upload_file(
            &h.bucket,
            "changing",
            &path,
            args.part_size(PART as u64).max_inflight_parts(1),
        )
        .expect_err("a file changed during the upload must fail")
    });
    let at = changed_at.lock().unwrap().expect("the file was changed");
    assert!(
        at < (2 * PART) as u64,
        "{scheme} {mid:?} too late, at byte {at}"
    );
    assert_changed(&h, &err, &path, "changing", what);
    // Found while the second part was on the wire or at its reply, not
    // before a part.
    assert!(
        err.to_string().contains("part 2 was sent"),
        "{scheme} {mid:?}: {err}"
    );
    err
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_file_truncated_while_a_part_is_sent_is_an_error_not_a_signal() {
    // sendfile (http) or the read (https) meets the end of the file: an
    // error, no SIGBUS, no hang.
    for scheme in ["http", "https"] {
        change_mid_part(
            scheme,
            Mid::Truncate,
            PutObjectArgs::new(),
            "truncated during the upload",
        );
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_part_overwritten_while_it_is_sent_is_an_error_with_or_without_checksums() {
    // With a CRC and a signed payload the server refuses the body too; with
    // neither, it would store it: only the check after the reply sees it.
    for scheme in ["http", "https"] {
        for args in [
            PutObjectArgs::new(),
            PutObjectArgs::new()
                .checksum(ChecksumAlgorithm::None)
                .payload_signing(PayloadSigning::Unsigned),
        ] {
            change_mid_part(scheme, Mid::Overwrite, args, "changed during the upload");
        }
    }
}

/// A TLS front for the harness's server, its certificate for 127.0.0.1.
fn tls_front(h: &Harness, ca: &TestCa) -> TlsFront {
    let cert = ca.issue(&["127.0.0.1"], Validity::Current);
    TlsFront::start(h.local().expect("in-process server").addr(), &cert)
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_large_single_put_object_goes_through_the_direct_sender() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let ca = TestCa::new("s3pump single put CA");
    let front = tls_front(&h, &ca);
    let https = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    // A length no other test sends, to find its TRACE line.
    let len = 2 * MIB + 4321;
    let body = data(len, 31);
    for (client, scheme, port) in [
        (h.client(), "http", server.addr().port()),
        (https, "https", front.addr().port()),
    ] {
        let key = format!("single-{scheme}");
        let out = client
            .put_object(
                &h.bucket,
                &key,
                &body[..],
                PutObjectArgs::new().part_size(PART as u64),
            )
            .unwrap();
        assert_eq!(out.parts, 1);
        assert_eq!(out.etag, format!("\"{}\"", md5_hex(&body)), "{scheme}");
        assert!(server.object_bytes(&h.bucket, &key).unwrap() == body);
        let direct: Vec<String> = support::logger::lines_containing(&format!(
            "PUT {scheme}://127.0.0.1:{port}, {len} bytes from memory"
        ))
        .into_iter()
        .filter(|l| l.contains("direct sender"))
        .collect();
        assert_eq!(direct.len(), 1, "{scheme}: {direct:#?}");
    }
    assert_eq!(server.stats().upload_part_calls, 0);
}
