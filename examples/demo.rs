//! The README's first command: `cargo run --release --example demo`.
//!
//! Starts the in-process S3 server (s3s-fs) behind a throttling relay on
//! loopback (each connection capped at 20 MB/s and delayed 20 ms each way,
//! like a distant S3 endpoint), uploads a generated 256 MiB non-seekable
//! stream with 1, 2, 4 and 8 parts in flight, checks every object's bytes and
//! ETag, and prints MB/s and the speed-up over one part in flight.
//!
//! `S3PUMP_DEMO_MIB` changes the stream's size.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use s3pump::{Client, Credentials, PayloadSigning, PutObjectArgs};
use support::harness::{Trickle, data, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};
use support::{Relay, RelayConfig};

const PART_SIZE: usize = 8 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::var("S3PUMP_DEMO_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let server = TestServer::start();
    server.create_bucket("demo");
    let relay = Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: Some(20_000_000),
            delay: Duration::from_millis(20),
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
    let expected_etag = multipart_etag(&body, PART_SIZE);
    println!(
        "s3pump demo: a {mib} MiB non-seekable stream, {} MiB parts, to an in-process S3 server (s3s-fs)",
        PART_SIZE >> 20
    );
    println!(
        "through a loopback relay capping each connection at 20 MB/s with 20 ms latency each way.\n"
    );
    println!("max_inflight_parts   seconds      MB/s   speed-up   bytes and ETag");
    let mut base = None;
    for n in [1usize, 2, 4, 8] {
        let key = format!("demo-{n}");
        // A reader that only implements `Read`: no size, no seeking.
        let stream = Trickle {
            data: &body,
            pos: 0,
            step: 1 << 20,
        };
        let started = Instant::now();
        let out = through_relay.put_object(
            "demo",
            &key,
            stream,
            PutObjectArgs::new()
                .part_size(PART_SIZE as u64)
                .max_inflight_parts(n)
                .payload_signing(PayloadSigning::Unsigned),
        )?;
        let secs = started.elapsed().as_secs_f64();
        let mut stored = Vec::with_capacity(body.len());
        direct.get_object("demo", &key, &mut stored)?;
        let ok = stored == body && out.etag == expected_etag;
        let mbps = body.len() as f64 / secs / 1e6;
        let base_mbps = *base.get_or_insert(mbps);
        println!(
            "{n:>18} {secs:>9.2} {mbps:>9.1} {:>9.2}×   {}",
            mbps / base_mbps,
            if ok { "identical" } else { "MISMATCH" }
        );
        if !ok {
            return Err(format!("object {key} does not match what was sent").into());
        }
        direct.delete_object("demo", &key)?;
    }
    Ok(())
}
