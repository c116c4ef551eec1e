//! File upload (`upload_file`) and download (`download_to_file`) behind the
//! throttling relay, N = 1 and N = 8 in one run:
//! `cargo bench --bench files`.
//!
//! The in-process S3 server (s3s-fs) sits behind a loopback relay that caps
//! each connection at 20 MB/s with 20 ms of latency each way. A generated
//! file (1 GiB; `S3PUMP_BENCH_FILE_MIB` changes it) is uploaded and
//! downloaded with 1 and 8 parts in flight; every object's ETag and every
//! downloaded file's bytes are checked. `S3PUMP_BENCH_MARKDOWN=PATH` also
//! appends the table as Markdown; `S3PUMP_BENCH` without `files` skips it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use s3pump::{Client, Credentials, DownloadArgs, PayloadSigning, PutObjectArgs};
use support::harness::{data, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};
use support::{Relay, RelayConfig};

const PART: u64 = 8 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Runs unless `S3PUMP_BENCH` names other sections only.
    let wanted = std::env::var("S3PUMP_BENCH").map_or(true, |v| v.split(',').any(|s| s == "files"));
    if !wanted || std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let mib: usize = std::env::var("S3PUMP_BENCH_FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let server = TestServer::start();
    server.create_bucket("bench");
    let relay = Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: Some(20_000_000),
            delay: Duration::from_millis(20),
        },
    );
    let client = Client::builder()
        .endpoint(relay.endpoint())
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .build()?;

    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.bin");
    let body = data(mib << 20, 7);
    std::fs::write(&src, &body)?;
    let etag = multipart_etag(&body, PART as usize);

    let mut rows = Vec::new();
    let mut base = (0.0, 0.0);
    println!(
        "files: {mib} MiB, {} MiB parts, relay 20 MB/s + 20 ms per connection",
        PART >> 20
    );
    println!(
        "{:<10} {:>3} {:>9} {:>9} {:>9}  check",
        "op", "N", "seconds", "MB/s", "speed-up"
    );
    for n in [1usize, 8] {
        let key = format!("file-{n}");
        let started = Instant::now();
        let out = client.upload_file(
            "bench",
            &key,
            &src,
            PutObjectArgs::new()
                .part_size(PART)
                .max_inflight_parts(n)
                .payload_signing(PayloadSigning::Unsigned),
        )?;
        let up = started.elapsed().as_secs_f64();
        if out.etag != etag {
            return Err(format!("upload N={n}: ETag {} expected {etag}", out.etag).into());
        }

        let dest = dir.path().join(format!("copy-{n}.bin"));
        let started = Instant::now();
        client.download_to_file(
            "bench",
            &key,
            &dest,
            DownloadArgs::new().part_size(PART).max_inflight_parts(n),
        )?;
        let down = started.elapsed().as_secs_f64();
        if std::fs::read(&dest)? != body {
            return Err(format!("download N={n}: bytes differ").into());
        }
        std::fs::remove_file(&dest)?;
        if n == 1 {
            base = (up, down);
        }
        for (op, secs, base) in [("upload", up, base.0), ("download", down, base.1)] {
            let mbps = body.len() as f64 / secs / 1e6;
            println!(
                "{op:<10} {n:>3} {secs:>9.2} {mbps:>9.1} {:>8.2}×  identical",
                base / secs
            );
            rows.push(format!(
                "| {op} | {n} | {secs:.2} | {mbps:.1} | {:.2}× |",
                base / secs
            ));
        }
    }
    if let Ok(path) = std::env::var("S3PUMP_BENCH_MARKDOWN") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "| op | N | seconds | MB/s | speed-up over N = 1 |")?;
        writeln!(f, "|---|---|---|---|---|")?;
        for row in rows {
            writeln!(f, "{row}")?;
        }
    }
    Ok(())
}
