//! Parts over plain HTTP go out straight from the slab (src/direct.rs), not
//! through ureq: the same failures must be retried the same way.

use crate::support;

use std::time::Duration;

use s3pump::{Client, Credentials, PutObjectArgs, RetryPolicy};
use support::harness::{data, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY};
use support::{Fault, FaultKind, Op, Relay, RelayConfig, RelayFault, TestServer};

const MIB: usize = 1 << 20;
const PART: usize = 5 * MIB;

fn client(endpoint: String, idle_timeout: Duration) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .idle_timeout(idle_timeout)
        .retry_policy(
            RetryPolicy::default()
                .base_backoff(Duration::from_millis(10))
                .max_backoff(Duration::from_millis(50)),
        )
        .build()
        .expect("client")
}

fn server() -> TestServer {
    let server = TestServer::start();
    server.create_bucket("direct");
    server
}

/// Uploads 4 parts with `n` in flight and checks the stored object.
fn upload(client: &Client, server: &TestServer, key: &str, n: usize) {
    let body = data(4 * PART, 7);
    let out = client
        .put_object(
            "direct",
            key,
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(n),
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(out.etag, multipart_etag(&body, PART));
    assert!(server.object_bytes("direct", key).unwrap() == body);
    assert!(server.open_uploads().is_empty());
}

#[test]
fn a_dropped_connection_or_a_503_is_retried() {
    let server = server();
    let c = client(server.endpoint(), Duration::from_secs(30));
    server.inject(Fault::new(Op::UploadPart, FaultKind::DropConnection).part(2));
    upload(&c, &server, "dropped", 2);
    assert_eq!(server.stats().upload_part_calls, 5);
    server.reset_stats();
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(503, "SlowDown")).part(1));
    upload(&c, &server, "slowdown", 1);
    assert_eq!(server.stats().upload_part_calls, 5);
}

#[test]
fn a_connection_cut_mid_body_is_retried() {
    let server = server();
    let relay = Relay::start(server.addr(), RelayConfig::default());
    let c = client(relay.endpoint(), Duration::from_secs(30));
    relay.arm(RelayFault::CutAfter((PART + 2 * MIB) as u64));
    upload(&c, &server, "cut", 1);
    assert!(!relay.fault_pending());
    assert_eq!(server.stats().upload_part_calls, 5);
}

#[test]
fn a_stalled_connection_times_out_and_is_retried() {
    let server = server();
    let relay = Relay::start(server.addr(), RelayConfig::default());
    let c = client(relay.endpoint(), Duration::from_millis(500));
    relay.arm(RelayFault::StallAfter((PART + MIB) as u64));
    upload(&c, &server, "stalled", 1);
    assert!(!relay.fault_pending());
}

#[test]
fn one_connection_per_worker_is_kept_alive() {
    let server = server();
    let relay = Relay::start(server.addr(), RelayConfig::default());
    let c = client(relay.endpoint(), Duration::from_secs(30));
    upload(&c, &server, "sequential", 1);
    // The caller's connection (Create, Complete) and the worker's.
    assert_eq!(relay.connections(), 2);
}
