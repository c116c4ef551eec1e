//! Getting bytes to the server: the HTTP agent, the direct part sender that
//! writes a part straight from its slab, the client's pool of part
//! connections, trust (TLS roots) and proxies.

pub(crate) mod direct;
mod http1;
pub(crate) mod pace;
pub(crate) mod pool;
pub(crate) mod proxy;
mod sendfile;
mod socket;
pub(crate) mod stop;
pub(crate) mod tls;

use ureq::Agent;
use ureq::tls::TlsConfig;

/// An HTTP agent (a connection pool) with s3pump's settings: statuses are
/// results, not errors; no redirects; connect, inactivity and reply head
/// timeouts (the body's, which depend on the request, are set on each); the
/// client's root certificates and proxy (never ureq's own reading of the
/// environment).
pub(crate) fn new_agent(
    limits: &pace::Limits,
    tls: &TlsConfig,
    proxy: Option<&proxy::Proxy>,
) -> Agent {
    let config = Agent::config_builder()
        .tls_config(tls.clone())
        .proxy(proxy.map(|p| p.ureq.clone()))
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(limits.connect))
        .timeout_per_read(Some(limits.idle))
        .timeout_per_write(Some(limits.idle))
        .timeout_recv_response(Some(limits.reply))
        .max_idle_connections_per_host(128)
        .user_agent(concat!("s3pump/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent::new_with_config(config)
}
