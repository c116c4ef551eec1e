//! A seeded soak: many uploads of random sizes, parts in flight and part
//! sizes, with about 5% of requests faulted. Every upload must end with the
//! identical object or a clean failure, and nothing may be left open.
//!
//! `S3PUMP_SOAK_UPLOADS` sets the number of uploads (CI runs 40; the full
//! soak is 200) and `S3PUMP_SOAK_SEED` replays a run.

use crate::support;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use s3pump::{PutObjectArgs, RetryPolicy};
use support::harness::{Harness, data, md5_hex, multipart_etag};
use support::server::{Fault, FaultKind, Op};

const MIB: usize = 1 << 20;
const IDLE_TIMEOUT: Duration = Duration::from_millis(600);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn seeded_soak_ends_with_no_corruption_and_nothing_open() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let seed = env_u64("S3PUMP_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let uploads = env_u64("S3PUMP_SOAK_UPLOADS").unwrap_or(40);
    // Printed up front so that a failing run can be replayed.
    println!("soak seed {seed} (S3PUMP_SOAK_SEED={seed}), {uploads} uploads");
    let mut rng = StdRng::seed_from_u64(seed);
    let client = h
        .builder()
        .idle_timeout(IDLE_TIMEOUT)
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(4)
                .base_backoff(Duration::from_millis(5))
                .max_backoff(Duration::from_millis(40)),
        )
        .build()
        .unwrap();

    let (mut ok, mut failed, mut faults) = (0, 0, 0);
    for i in 0..uploads {
        let size = if rng.random_bool(0.3) {
            rng.random_range(0..=6 * MIB)
        } else {
            rng.random_range(0..=40 * MIB)
        };
        let part = rng.random_range(5..=9) * MIB;
        let n = rng.random_range(1..=8);
        let declared = rng.random_bool(0.5);
        let parts = size.div_ceil(part).max(1);
        // The requests of this upload, in order; each is faulted with p = 5%.
        let ops: Vec<Fault> = if parts == 1 {
            vec![Fault::new(Op::PutObject, FaultKind::DropConnection)]
        } else {
            std::iter::once(Fault::new(
                Op::CreateMultipartUpload,
                FaultKind::DropConnection,
            ))
            .chain(
                (1..=parts as u32)
                    .map(|p| Fault::new(Op::UploadPart, FaultKind::DropConnection).part(p)),
            )
            .chain(std::iter::once(Fault::new(
                Op::CompleteMultipartUpload,
                FaultKind::DropConnection,
            )))
            .collect()
        };
        for mut fault in ops {
            if rng.random_bool(0.05) {
                fault.kind = match rng.random_range(0..10) {
                    0..=2 => FaultKind::status(503, "SlowDown"),
                    3..=4 => FaultKind::status(500, "InternalError"),
                    5..=6 => FaultKind::DropConnection,
                    7..=8 => FaultKind::Delay(IDLE_TIMEOUT + Duration::from_millis(200)),
                    _ => FaultKind::status(403, "AccessDenied"),
                };
                server.inject(fault);
                faults += 1;
            }
        }

        let key = format!("soak-{i}");
        let body = data(size, seed ^ i);
        let mut args = PutObjectArgs::new()
            .part_size(part as u64)
            .max_inflight_parts(n);
        if declared {
            args = args.size(size as u64);
        }
        let what = format!(
            "upload {i}: {size} bytes, part {part}, N {n}, declared {declared}, seed {seed}"
        );
        match client.put_object(&h.bucket, &key, &body[..], args) {
            Ok(out) => {
                let etag = if parts == 1 {
                    format!("\"{}\"", md5_hex(&body))
                } else {
                    multipart_etag(&body, part)
                };
                assert_eq!(out.etag, etag, "{what}");
                assert!(
                    server.object_bytes(&h.bucket, &key).unwrap() == body,
                    "{what}: corrupted"
                );
                ok += 1;
            }
            Err(e) => {
                assert!(
                    server.object_bytes(&h.bucket, &key).is_none(),
                    "{what}: {e}: object left"
                );
                failed += 1;
            }
        }
        assert!(server.open_uploads().is_empty(), "{what}: upload left open");
        server.clear_faults();
    }
    println!("soak seed {seed}: {ok} identical, {failed} failed cleanly, {faults} faults injected");
    assert_eq!(ok + failed, uploads);
}
