//! Through a real HTTP proxy on loopback: https in a CONNECT tunnel, plain
//! http parts sent by the direct sender in absolute form, proxy
//! credentials, `HTTPS_PROXY` and `NO_PROXY` from the environment, and a
//! proxy that refuses.

use crate::support;
use crate::tls::{front, round_trip, run_child};

use s3pump::{Error, RetryPolicy};
use support::harness::Harness;
use support::proxy::{ProxyMode, TestProxy};
use support::tls_front::{TestCa, Validity};

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn https_goes_through_a_connect_tunnel() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump proxy CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let proxy = TestProxy::start(ProxyMode::Open);
    let client = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .proxy(proxy.url())
        .build()
        .unwrap();
    round_trip(&client, &h.bucket, &h.key("tunnelled"), 12 << 20);
    assert!(proxy.tunnels() >= 1);
    assert_eq!(proxy.tunnels() as usize, proxy.targets().len());
    let target = format!("CONNECT 127.0.0.1:{} HTTP/1.1", front.addr().port());
    assert!(
        proxy.targets().iter().all(|t| *t == target),
        "{:?}",
        proxy.targets()
    );
    assert_eq!(
        proxy.tunnels(),
        front.handshakes(),
        "every TLS connection was tunnelled"
    );
    assert_eq!(server.stats().upload_part_calls, 3);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn plain_http_parts_go_in_absolute_form_and_the_rest_through_connect() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let proxy = TestProxy::start(ProxyMode::Open);
    let client = h.builder().proxy(proxy.url()).build().unwrap();
    round_trip(&client, &h.bucket, &h.key("plain"), 12 << 20);
    // The upload and the download went through the direct sender in
    // absolute form (a transfer's requests go where a cancel can cut them):
    // Create, the three parts, Complete, the HeadObject and the ranged GETs.
    let targets = proxy.targets();
    let absolute = |method: &str| -> Vec<String> {
        let prefix = format!("{method} http://{}/{}/", server.addr(), h.bucket);
        targets
            .iter()
            .filter(|t| t.starts_with(&prefix))
            .cloned()
            .collect()
    };
    let puts = absolute("PUT");
    assert_eq!(puts.len(), 3, "{targets:?}");
    assert!(puts.iter().all(|t| t.contains("partNumber=")), "{puts:?}");
    assert_eq!(absolute("POST").len(), 2, "Create, Complete: {targets:?}");
    assert_eq!(absolute("HEAD").len(), 1, "{targets:?}");
    let gets = absolute("GET").len() as u64;
    assert!(gets >= 2, "the ranged GETs in absolute form: {targets:?}");
    assert_eq!(proxy.forwarded(), 3 + 2 + 1 + gets, "{targets:?}");
    // The single GetObject went through ureq's CONNECT tunnel.
    assert!(proxy.tunnels() >= 1);
    assert_eq!(server.stats().upload_part_calls, 3);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn proxy_credentials_are_sent_on_both_paths() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let mode = ProxyMode::RequireAuth {
        user: "alice".into(),
        password: "pr0xy-pa55".into(),
    };
    let proxy = TestProxy::start(mode);
    let client = h
        .builder()
        .proxy(proxy.url_with_credentials("alice", "pr0xy-pa55"))
        .build()
        .unwrap();
    round_trip(&client, &h.bucket, &h.key("auth"), 6 << 20);
    assert_eq!(proxy.refused(), 0);
    assert!(proxy.forwarded() >= 1 && proxy.tunnels() >= 1);

    // Without them: 407, named, and the proxy shown without credentials.
    let client = h
        .builder()
        .proxy(proxy.url_with_credentials("alice", "wrong-pa55"))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.head_object(&h.bucket, &h.key("auth")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("407"), "{text}");
    assert!(text.contains(&proxy.url()), "{text}");
    assert!(!text.contains("wrong-pa55") && !format!("{err:?}").contains("wrong-pa55"));
    assert!(!format!("{client:?}").contains("wrong-pa55"));
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_proxy_that_refuses_connect_is_a_clear_error() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump refused CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let proxy = TestProxy::start(ProxyMode::Refuse(403));
    let client = h
        .builder()
        .endpoint(front.endpoint("127.0.0.1"))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .proxy(proxy.url_with_credentials("bob", "s3cr3t-proxy"))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let errors = [
        client.head_object(&h.bucket, "k").unwrap_err(),
        client
            .put_object_bytes(&h.bucket, "k", b"x", &Default::default())
            .unwrap_err(),
    ];
    for err in &errors {
        let text = err.to_string();
        assert!(matches!(err.root(), Error::Transport { .. }), "{err:?}");
        assert!(text.contains("CONNECT") && text.contains("403"), "{text}");
        assert!(
            text.contains(&format!("through the proxy {}", proxy.url())),
            "{text}"
        );
        assert!(!text.contains("s3cr3t-proxy") && !format!("{err:?}").contains("s3cr3t-proxy"));
    }
    assert_eq!(proxy.refused(), 2);
    assert_eq!(front.connections(), 0);
    assert_eq!(server.stats().put_object_calls, 0);
}

/// `HTTPS_PROXY` alone is enough; `NO_PROXY` (any of its forms that match)
/// bypasses it; `http_proxy` is not used for an https endpoint.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn https_proxy_and_no_proxy_from_the_environment() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let ca = TestCa::new("s3pump env proxy CA");
    let front = front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let endpoint = front.endpoint("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let bundle = bundle.to_str().unwrap();
    let nowhere = dir.path().join("no-config");
    let nowhere = nowhere.to_str().unwrap();
    let proxy = TestProxy::start(ProxyMode::Open);
    let url = proxy.url();
    let base = [("AWS_CA_BUNDLE", bundle), ("AWS_CONFIG_FILE", nowhere)];
    fn join<'a>(
        base: &[(&'a str, &'a str)],
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        base.iter().chain(extra).copied().collect()
    }
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        join(&base, extra)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    run_child("ok", &endpoint, &h.bucket, &with(&[("HTTPS_PROXY", &url)]));
    let after_upper = proxy.tunnels();
    assert!(after_upper >= 1, "HTTPS_PROXY was used");
    run_child("ok", &endpoint, &h.bucket, &with(&[("https_proxy", &url)]));
    let after_lower = proxy.tunnels();
    assert!(after_lower > after_upper, "https_proxy was used");
    run_child("ok", &endpoint, &h.bucket, &with(&[("ALL_PROXY", &url)]));
    let after_all = proxy.tunnels();
    assert!(after_all > after_lower, "ALL_PROXY was used");

    let port = front.addr().port().to_string();
    for no_proxy in [
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{port}"),
        "127.0.0.0/8".to_string(),
        "*".to_string(),
        "example.com, 127.0.0.1".to_string(),
    ] {
        for name in ["NO_PROXY", "no_proxy"] {
            run_child(
                "ok",
                &endpoint,
                &h.bucket,
                &with(&[("HTTPS_PROXY", &url), (name, &no_proxy)]),
            );
        }
    }
    // http_proxy is for http endpoints only.
    run_child("ok", &endpoint, &h.bucket, &with(&[("http_proxy", &url)]));
    assert_eq!(proxy.tunnels(), after_all, "the proxy was bypassed");
    // A NO_PROXY entry for another port does not bypass it.
    run_child(
        "ok",
        &endpoint,
        &h.bucket,
        &with(&[("HTTPS_PROXY", &url), ("NO_PROXY", "127.0.0.1:1")]),
    );
    assert!(proxy.tunnels() > after_all);
}
