//! Getting bytes to the server: the HTTP agent, and the direct part sender
//! that writes a part straight from its slab.

pub(crate) mod direct;

use std::time::Duration;

use ureq::Agent;

/// An HTTP agent (a connection pool) with s3pump's settings: statuses are
/// results, not errors; no redirects; connect and inactivity timeouts.
pub(crate) fn new_agent(connect_timeout: Duration, idle_timeout: Duration) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect_timeout))
        .timeout_per_read(Some(idle_timeout))
        .timeout_per_write(Some(idle_timeout))
        .max_idle_connections_per_host(128)
        .user_agent(concat!("s3pump/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent::new_with_config(config)
}
