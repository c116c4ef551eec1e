//! The fault matrix: every injected fault, at Create, the first, a middle and
//! the last part, and Complete, ends either in the complete object with
//! identical bytes and the right ETag, or in an error that names the cause —
//! and never with a multipart upload left open.

use crate::support;

use std::time::Duration;

use s3pump::{Client, Error, PutObjectArgs};
use support::harness::{Harness, data, fast_retries, multipart_etag};
use support::server::{Fault, FaultKind, Op, TestServer};
use support::{Relay, RelayConfig, RelayFault};

const PART: usize = 5 << 20;
/// The short last part.
const LAST: usize = 100_000;
/// Three parts: two full ones and a short last one.
const SIZE: usize = 2 * PART + LAST;
const IDLE_TIMEOUT: Duration = Duration::from_millis(800);

/// A client that gives up on a silent connection quickly and retries fast.
fn client(h: &Harness, endpoint: &str) -> Client {
    h.builder()
        .endpoint(endpoint)
        .idle_timeout(IDLE_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pos {
    Create,
    First,
    Middle,
    Last,
    Complete,
}

const POSITIONS: [Pos; 5] = [
    Pos::Create,
    Pos::First,
    Pos::Middle,
    Pos::Last,
    Pos::Complete,
];

fn fault_at(pos: Pos, kind: FaultKind) -> Fault {
    match pos {
        Pos::Create => Fault::new(Op::CreateMultipartUpload, kind),
        Pos::First => Fault::new(Op::UploadPart, kind).part(1),
        Pos::Middle => Fault::new(Op::UploadPart, kind).part(2),
        Pos::Last => Fault::new(Op::UploadPart, kind).part(3),
        Pos::Complete => Fault::new(Op::CompleteMultipartUpload, kind),
    }
}

/// Uploads the test object through `endpoint`; checks the invariant and
/// returns the outcome.
fn upload(h: &Harness, endpoint: &str, key: &str, n: usize) -> Result<(), Error> {
    let body = data(SIZE, key.len() as u64);
    let result = client(h, endpoint).put_object(
        &h.bucket,
        key,
        &body[..],
        PutObjectArgs::new()
            .part_size(PART as u64)
            .max_inflight_parts(n),
    );
    let server = h.local().unwrap();
    match &result {
        Ok(out) => {
            assert_eq!(out.etag, multipart_etag(&body, PART), "{key}");
            assert!(
                server.object_bytes(&h.bucket, key).unwrap() == body,
                "{key}: bytes differ"
            );
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                server.object_bytes(&h.bucket, key).is_none(),
                "{key}: failed upload left an object"
            );
        }
    }
    assert!(
        server.open_uploads().is_empty(),
        "{key}: upload left open: {:?}",
        server.open_uploads()
    );
    result.map(drop)
}

fn local_harness() -> Option<Harness> {
    let h = Harness::new();
    h.local().is_some().then_some(h)
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn retryable_server_faults_anywhere_still_give_the_identical_object() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    let kinds = [
        FaultKind::status(503, "SlowDown"),
        FaultKind::status(500, "InternalError"),
        FaultKind::DropConnection,
        FaultKind::Delay(IDLE_TIMEOUT + Duration::from_millis(400)),
    ];
    for kind in kinds {
        for pos in POSITIONS {
            server.inject(fault_at(pos, kind.clone()));
            let key = format!("retryable-{kind:?}-{pos:?}");
            upload(&h, &server.endpoint(), &key, 2).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(server.pending_faults(), 0, "{key}: the fault never fired");
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn final_server_errors_anywhere_fail_cleanly_and_name_the_cause() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    for pos in POSITIONS {
        server.inject(fault_at(pos, FaultKind::status(403, "AccessDenied")));
        let key = format!("final-{pos:?}");
        let err = upload(&h, &server.endpoint(), &key, 2).unwrap_err();
        assert_eq!(err.s3_code(), Some("AccessDenied"), "{key}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("AccessDenied"), "{msg}");
        match pos {
            Pos::Create => assert!(err.upload_id().is_none(), "{err:?}"),
            Pos::First => assert!(msg.contains("part 1"), "{msg}"),
            Pos::Middle => assert!(msg.contains("part 2"), "{msg}"),
            Pos::Last => assert!(msg.contains("part 3"), "{msg}"),
            Pos::Complete => assert!(err.upload_id().is_some(), "{err:?}"),
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn complete_answering_200_with_an_error() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    // A retryable error in a 200: retried.
    server.inject(fault_at(
        Pos::Complete,
        FaultKind::ErrorIn200 {
            code: "InternalError".into(),
        },
    ));
    upload(&h, &server.endpoint(), "complete-200-retryable", 2).unwrap();
    // The first Complete succeeded but its reply was an error: the retry
    // answers NoSuchUpload, and HeadObject shows the object is the right one.
    server.inject(fault_at(
        Pos::Complete,
        FaultKind::ErrorIn200AfterProcessing {
            code: "InternalError".into(),
        },
    ));
    upload(&h, &server.endpoint(), "complete-200-after-processing", 2).unwrap();
    assert_eq!(server.stats().head_object_calls, 1);
    // A final error in a 200: the upload fails and is aborted.
    server.inject(fault_at(
        Pos::Complete,
        FaultKind::ErrorIn200 {
            code: "InvalidPart".into(),
        },
    ));
    let err = upload(&h, &server.endpoint(), "complete-200-final", 2).unwrap_err();
    assert_eq!(err.s3_code(), Some("InvalidPart"), "{err}");
}

/// Where to aim relay faults: the total client→server bytes of a clean
/// upload and the size of the request headers (Create, three parts and
/// Complete share the overhead; Complete's body is about 160 bytes a part).
fn byte_plan(h: &Harness) -> (u64, u64) {
    let server = h.local().unwrap();
    let relay = Relay::start(server.addr(), RelayConfig::default());
    upload(h, &relay.endpoint(), "calibration", 1).unwrap();
    let total = relay.bytes_up();
    let complete_body = 3 * 160;
    let header = (total - SIZE as u64 - complete_body) / 5;
    (total, header)
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn relay_faults_anywhere_end_identical_or_cleanly_failed() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    let (total, header) = byte_plan(&h);
    let part_middle = |k: u64| header + (k - 1) * (PART as u64 + header) + header + PART as u64 / 2;
    for pos in POSITIONS {
        let at = match pos {
            Pos::Create => 20,
            Pos::First => part_middle(1),
            Pos::Middle => part_middle(2),
            Pos::Last => total - (header + 3 * 160) - (LAST as u64 / 2),
            Pos::Complete => total - 20,
        };
        for fault in [
            RelayFault::CutAfter(at),
            RelayFault::StallAfter(at),
            RelayFault::FlipAfter(at),
        ] {
            let relay = Relay::start(server.addr(), RelayConfig::default());
            relay.arm(fault);
            let key = format!("relay-{fault:?}-{pos:?}");
            let result = upload(&h, &relay.endpoint(), &key, 1);
            assert!(!relay.fault_pending(), "{key}: the fault never fired");
            // A damaged Create request may be refused for good (its signature
            // no longer matches); every other request is retried from memory.
            match (pos, &result) {
                (Pos::Create, Err(e)) => assert!(e.upload_id().is_none(), "{key}: {e}"),
                (_, r) => assert!(r.is_ok(), "{key}: {r:?}"),
            }
        }
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn retries_and_aborts_are_logged_with_part_and_attempt() {
    let Some(h) = local_harness() else { return };
    support::logger::capture();
    let server: &TestServer = h.local().unwrap();
    server.inject(fault_at(Pos::Middle, FaultKind::status(503, "SlowDown")));
    upload(&h, &server.endpoint(), "logged-retry", 1).unwrap();
    let retries = support::logger::lines_containing(&format!(
        "UploadPart {}/logged-retry part 2 attempt 1 failed, retrying",
        h.bucket
    ));
    assert_eq!(retries.len(), 1, "{:?}", support::logger::all_lines());
    assert!(retries[0].starts_with("DEBUG"), "{retries:?}");

    server.inject(fault_at(Pos::Last, FaultKind::status(403, "AccessDenied")));
    let err = upload(&h, &server.endpoint(), "logged-abort", 1).unwrap_err();
    let id = err.upload_id().unwrap().to_string();
    let aborts = support::logger::lines_containing(&format!("aborting upload {id}"));
    assert_eq!(aborts.len(), 1);
    assert!(aborts[0].starts_with("DEBUG"), "{aborts:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_server_that_stops_answering_cannot_hang_an_upload() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    // Every attempt of part 2 goes unanswered for longer than the timeout.
    for _ in 0..4 {
        server.inject(fault_at(
            Pos::Middle,
            FaultKind::Delay(Duration::from_secs(30)),
        ));
    }
    let started = std::time::Instant::now();
    let err = upload(&h, &server.endpoint(), "silent-server", 2).unwrap_err();
    assert!(
        matches!(err.root(), Error::Transport { timeout: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("part 2"), "{err}");
    // Four attempts, each ended by the idle timeout (an attempt may take a
    // few timeouts' worth while the body's writes fill the socket buffers),
    // instead of one 30 s wait for an answer.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_complete_applied_but_never_confirmed_is_found_not_aborted() {
    let Some(h) = local_harness() else { return };
    let server = h.local().unwrap();
    // The first Complete is applied but its reply lost; every retry then
    // fails with 503 until the attempts run out.
    server.inject(fault_at(
        Pos::Complete,
        FaultKind::ErrorIn200AfterProcessing {
            code: "InternalError".into(),
        },
    ));
    for _ in 0..3 {
        server.inject(fault_at(Pos::Complete, FaultKind::status(503, "SlowDown")));
    }
    upload(&h, &server.endpoint(), "applied-unconfirmed", 2).unwrap();
    assert_eq!(server.stats().abort_calls, 0);
}
