//! Parts over https go out through the direct sender (src/transport/direct.rs):
//! rustls encrypting straight from the slab on the pooled part connections,
//! not ureq. They must be byte-identical, reuse their connections across
//! transfers (no new handshake), and be retried the same way after the
//! faults of the matrix (a cut, a stall, a dropped connection, a 503).

use crate::support;

use std::time::Duration;

use s3pump::{Client, PutObjectArgs};
use support::harness::{Harness, data, fast_retries, multipart_etag};
use support::proxy::{ProxyMode, TestProxy};
use support::tls_front::{TestCa, TlsFront, Validity};
use support::{Fault, FaultKind, Op, Relay, RelayConfig, RelayFault};

const MIB: usize = 1 << 20;
const PART: usize = 5 * MIB;
/// Four full parts and a short one.
const SIZE: usize = 4 * PART + MIB;

/// An https front for the harness's server, a certificate for 127.0.0.1.
fn tls_front(h: &Harness, ca: &TestCa) -> TlsFront {
    let cert = ca.issue(&["127.0.0.1"], Validity::Current);
    TlsFront::start(h.local().expect("in-process server").addr(), &cert)
}

fn client(h: &Harness, ca: &TestCa, endpoint: &str, idle: Duration) -> Client {
    h.builder()
        .endpoint(endpoint)
        .add_root_certificates_pem(ca.pem().as_bytes())
        .idle_timeout(idle)
        .retry_policy(fast_retries())
        .build()
        .expect("client")
}

/// Uploads SIZE bytes in PART parts, `n` in flight; checks ETag and bytes.
fn upload(h: &Harness, client: &Client, key: &str, n: usize) {
    let body = data(SIZE, key.len() as u64);
    let out = client
        .put_object(
            &h.bucket,
            key,
            &body[..],
            PutObjectArgs::new()
                .part_size(PART as u64)
                .max_inflight_parts(n),
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(out.etag, multipart_etag(&body, PART), "{key}");
    let server = h.local().unwrap();
    assert!(
        server.object_bytes(&h.bucket, key).unwrap() == body,
        "{key}: bytes differ"
    );
    assert!(server.open_uploads().is_empty(), "{key}: upload left open");
}

/// The direct sender's TRACE lines about `port` containing `what`.
fn direct_lines(port: u16, what: &str) -> Vec<String> {
    support::logger::lines_containing(&format!("127.0.0.1:{port}"))
        .into_iter()
        .filter(|l| l.contains("direct sender") && l.contains(what))
        .collect()
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn parts_over_https_go_through_the_direct_sender_on_pooled_connections() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let ca = TestCa::new("s3pump https parts CA");
    let front = tls_front(&h, &ca);
    let port = front.addr().port();
    let c = client(
        &h,
        &ca,
        &front.endpoint("127.0.0.1"),
        Duration::from_secs(30),
    );
    upload(&h, &c, "pooled-1", 2);
    // Five parts, each sent by the direct sender over TLS, on the pool's
    // connections: one TLS connection (one handshake) per pooled one.
    let puts = direct_lines(port, "PUT https://");
    assert_eq!(puts.len(), 5, "{puts:#?}");
    assert_eq!(server.stats().upload_part_calls, 5);
    let pooled = c.connection_stats().opened;
    assert!((1..=2).contains(&pooled), "{pooled}");
    // The client's shared connection (Create, Complete, on the direct path
    // too) is the only other handshake.
    let tls_connections = direct_lines(port, "TLS connection to");
    assert_eq!(
        tls_connections.len() as u64,
        pooled + 1,
        "{tls_connections:#?}"
    );
    assert_eq!(
        direct_lines(port, "a new connection").len() as u64,
        pooled + 1,
        "the other parts reused a kept-alive connection"
    );
    assert_eq!(front.handshakes(), pooled + 1);

    // A second upload on the same client: no new connection, no handshake.
    let handshakes = front.handshakes();
    upload(&h, &c, "pooled-2", 2);
    assert_eq!(direct_lines(port, "PUT https://").len(), 10);
    assert_eq!(front.handshakes(), handshakes, "no new handshake");
    assert_eq!(
        direct_lines(port, "TLS connection to").len() as u64,
        pooled + 1
    );
    assert_eq!(front.failed_handshakes(), 0);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn server_faults_over_https_are_retried_from_the_slab() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump https faults CA");
    let front = tls_front(&h, &ca);
    let c = client(
        &h,
        &ca,
        &front.endpoint("127.0.0.1"),
        Duration::from_secs(30),
    );
    for (i, kind) in [
        FaultKind::status(503, "SlowDown"),
        FaultKind::DropConnection,
    ]
    .into_iter()
    .enumerate()
    {
        server.reset_stats();
        server.inject(Fault::new(Op::UploadPart, kind.clone()).part(2));
        upload(&h, &c, &format!("server-fault-{i}"), 2);
        assert_eq!(server.pending_faults(), 0, "{kind:?} never fired");
        assert_eq!(server.stats().upload_part_calls, 6, "{kind:?}: one retry");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_tls_connection_cut_stalled_or_flipped_mid_body_is_retried_from_the_slab() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump https relay CA");
    let front = tls_front(&h, &ca);
    for (i, fault) in [
        RelayFault::CutAfter((PART + 2 * MIB) as u64),
        RelayFault::StallAfter((2 * PART + MIB) as u64),
        // A flipped bit: the TLS record fails authentication at the front.
        RelayFault::FlipAfter((3 * PART + MIB) as u64),
    ]
    .into_iter()
    .enumerate()
    {
        // The relay carries the TLS bytes between the client and the front.
        let relay = Relay::start(front.addr(), RelayConfig::default());
        let endpoint = format!("https://127.0.0.1:{}", relay.addr().port());
        let c = client(&h, &ca, &endpoint, Duration::from_millis(800));
        server.reset_stats();
        relay.arm(fault);
        upload(&h, &c, &format!("relay-fault-{i}"), 1);
        assert!(!relay.fault_pending(), "{fault:?} never fired");
        assert_eq!(server.stats().upload_part_calls, 6, "{fault:?}: one retry");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn parts_over_https_through_a_proxy_go_in_a_connect_tunnel_with_its_credentials() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    support::logger::capture();
    let ca = TestCa::new("s3pump https proxy CA");
    let front = tls_front(&h, &ca);
    let proxy = TestProxy::start(ProxyMode::RequireAuth {
        user: "carol".into(),
        password: "tunn3l-pa55".into(),
    });
    let c = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .proxy(proxy.url_with_credentials("carol", "tunn3l-pa55"))
        .build()
        .unwrap();
    upload(&h, &c, "tunnelled-parts", 2);
    assert_eq!(direct_lines(front.addr().port(), "PUT https://").len(), 5);
    assert_eq!(proxy.refused(), 0, "every tunnel carried the credentials");
    assert_eq!(
        proxy.tunnels(),
        front.handshakes(),
        "every TLS connection was tunnelled"
    );
    assert_eq!(server.stats().upload_part_calls, 5);
    let leaked: Vec<String> = support::logger::all_lines()
        .into_iter()
        .filter(|l| l.contains("tunn3l-pa55"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}
