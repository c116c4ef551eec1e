//! Download benchmark rows: `cargo run --release --example download_bench`.
//!
//! Starts the in-process S3 server (s3s-fs), stores a generated object in it
//! (uploaded through s3pump, so that s3s-fs keeps its ETag and CRC64NVME and
//! does not recompute an MD5 of the whole object for every ranged GET), then
//! downloads it through a throttling loopback relay (each connection capped
//! at `S3PUMP_BENCH_RATE_MBPS` MB/s, default 20, with `S3PUMP_BENCH_DELAY_MS`
//! ms of latency each way, default 20; rate 0 = unthrottled) with each of
//! `S3PUMP_BENCH_N` (default `1,8`) ranges in flight, into a file and into a
//! `Write` (`std::io::sink`). Every file download is checked byte for byte.
//! `S3PUMP_BENCH_MIB` sets the object's size (default 256),
//! `S3PUMP_BENCH_PART_MIB` the range size (default 8).
//!
//! Prints a table, then one JSON line per row:
//! `{"op":"download","dest":"file"|"write","n":N,"bytes":B,"part_size":P,"seconds":S,"mbps":M}`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use s3pump::{Client, Credentials, DownloadArgs, PayloadSigning, PutObjectArgs};
use support::harness::data;
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};
use support::{Relay, RelayConfig};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// One benchmark row: downloads `bucket/key` with `n` ranges in flight into
/// `path` (a file) or, without a path, into `std::io::sink()`. Returns the
/// seconds it took and the bytes downloaded.
fn download_row(
    client: &Client,
    bucket: &str,
    key: &str,
    n: usize,
    part_size: u64,
    path: Option<&std::path::Path>,
) -> Result<(f64, u64), s3pump::Error> {
    let args = DownloadArgs::new()
        .part_size(part_size)
        .max_inflight_parts(n);
    let started = Instant::now();
    let out = match path {
        Some(p) => client.download_to_file(bucket, key, p, args)?,
        None => client.download(bucket, key, &mut std::io::sink(), args)?,
    };
    Ok((started.elapsed().as_secs_f64(), out.size))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = env_or("S3PUMP_BENCH_MIB", 256);
    let part_mib: u64 = env_or("S3PUMP_BENCH_PART_MIB", 8);
    let rate_mbps: u64 = env_or("S3PUMP_BENCH_RATE_MBPS", 20);
    let delay_ms: u64 = env_or("S3PUMP_BENCH_DELAY_MS", 20);
    let ns: Vec<usize> = std::env::var("S3PUMP_BENCH_N")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let part_size = part_mib << 20;

    let server = TestServer::start();
    server.create_bucket("bench");
    let relay = Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: (rate_mbps > 0).then_some(rate_mbps * 1_000_000),
            delay: Duration::from_millis(delay_ms),
        },
    );
    let client_for = |endpoint: String| {
        Client::builder()
            .endpoint(endpoint)
            .region(REGION)
            .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
            .build()
    };
    let through_relay = client_for(relay.endpoint())?;
    let direct = client_for(server.endpoint())?;

    let body = data(mib << 20, 2026);
    direct.put_object(
        "bench",
        "object",
        &body[..],
        PutObjectArgs::new()
            .size(body.len() as u64)
            .payload_signing(PayloadSigning::Unsigned),
    )?;
    let dir = tempfile::Builder::new()
        .prefix("s3pump-download-bench-")
        .tempdir()?;
    let path = dir.path().join("object");

    println!(
        "s3pump download: a {mib} MiB object in {part_mib} MiB ranges from an in-process S3 \
         server (s3s-fs), through a loopback relay capping each connection at {} with {delay_ms} \
         ms latency each way.\n",
        if rate_mbps > 0 {
            format!("{rate_mbps} MB/s")
        } else {
            "no rate".to_string()
        }
    );
    println!("max_inflight_parts  dest    seconds      MB/s   check");
    let mut rows = Vec::new();
    for &n in &ns {
        for dest in ["file", "write"] {
            let (secs, bytes) = download_row(
                &through_relay,
                "bench",
                "object",
                n,
                part_size,
                (dest == "file").then_some(path.as_path()),
            )?;
            let check = if dest == "file" {
                if std::fs::read(&path)? == body {
                    "identical"
                } else {
                    return Err("the downloaded file differs from the object".into());
                }
            } else {
                "-"
            };
            let mbps = bytes as f64 / secs / 1e6;
            println!("{n:>18}  {dest:<5} {secs:>9.2} {mbps:>9.1}   {check}");
            rows.push(format!(
                "{{\"op\":\"download\",\"dest\":\"{dest}\",\"n\":{n},\"bytes\":{bytes},\
                 \"part_size\":{part_size},\"seconds\":{secs:.3},\"mbps\":{mbps:.1}}}"
            ));
        }
    }
    println!();
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
