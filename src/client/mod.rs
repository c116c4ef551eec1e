//! The client and its builder. Requests are in `request`, the retry policy
//! and the one retry driver in `retry`.

mod request;
pub(crate) mod retry;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ureq::Agent;
use ureq::http::Uri;

use crate::auth::credentials::{self, Credentials};
use crate::client::retry::RetryPolicy;
use crate::pipeline::slab::{SlabPool, SlabStats};
use crate::transport::new_agent;
use crate::{Error, Result};

pub(crate) use request::{Request, Response, check_status, header, read_text, s3_error};

/// How the bucket appears in request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://host/bucket/key`: what custom endpoints (MinIO, Ceph, s3s…) expect.
    PathStyle,
    /// `https://bucket.host/key`: what AWS expects.
    VirtualHost,
}

/// A blocking S3 client. Cheap to clone (an `Arc` inside), `Send + Sync`.
///
/// ```no_run
/// let client = s3pump::Client::builder()
///     .endpoint("http://127.0.0.1:9000")
///     .region("us-east-1")
///     .credentials(s3pump::Credentials::new("access", "secret", None))
///     .build()?;
/// client.put_object_bytes("bucket", "hello.txt", b"hello", &s3pump::PutObjectArgs::new())?;
/// # Ok::<(), s3pump::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: String,
    /// Host and explicit port, exactly as sent in the `Host` header.
    authority: String,
    region: String,
    credentials: Credentials,
    addressing: Addressing,
    connect_timeout: Duration,
    idle_timeout: Duration,
    retry: RetryPolicy,
    agent: Agent,
    /// The part buffers of every transfer on this client and its clones.
    slabs: Arc<SlabPool>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Client")
            .field("endpoint", &format_args!("{}://{}", i.scheme, i.authority))
            .field("region", &i.region)
            .field("addressing", &i.addressing)
            .field("credentials", &i.credentials)
            .field("connect_timeout", &i.connect_timeout)
            .field("idle_timeout", &i.idle_timeout)
            .field("retry", &i.retry)
            .finish()
    }
}

/// Builds a [`Client`]. Anything not set comes from the environment the way
/// the AWS CLI finds it.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<Credentials>,
    addressing: Option<Addressing>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    retry: RetryPolicy,
    memory_limit: u64,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoint: None,
            region: None,
            credentials: None,
            addressing: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// The default of [`ClientBuilder::memory_limit`]: 2 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;

impl ClientBuilder {
    /// The S3 endpoint URL, such as `http://127.0.0.1:9000`.
    ///
    /// Defaults to `AWS_ENDPOINT_URL`, else `https://s3.<region>.amazonaws.com`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region requests are signed for.
    ///
    /// Defaults to `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region
    /// in `~/.aws/config`, else `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The credentials to sign with.
    ///
    /// Defaults to [`Credentials::from_default_chain`] (environment, then the
    /// shared AWS files).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Path-style or virtual-host addressing.
    ///
    /// Defaults to path style when an endpoint is given (by code or
    /// `AWS_ENDPOINT_URL`), virtual host for AWS's own endpoint.
    pub fn addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = Some(addressing);
        self
    }

    /// How long establishing a connection (DNS, TCP, TLS) may take.
    ///
    /// Defaults to 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may go without the connection moving a single byte
    /// (an inactivity timeout: a large part that keeps flowing never hits it,
    /// a server that stops answering does).
    ///
    /// Defaults to 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The most memory the part buffers (slabs) of all transfers on this
    /// client and its clones may map together. A transfer reserves its
    /// buffers before it starts and waits, holding nothing, until they fit
    /// (while the others go on); one that cannot fit two buffers even alone
    /// fails before anything is sent. Buffers are reused from transfer to
    /// transfer and unmapped after 30 s unused. A transfer's own
    /// `memory_limit` ([`PutObjectArgs::memory_limit`](crate::PutObjectArgs::memory_limit),
    /// [`DownloadArgs::memory_limit`](crate::DownloadArgs::memory_limit))
    /// can only lower it for that transfer.
    ///
    /// Defaults to 2 GiB: aws-c-s3's default for its client-wide buffer pool
    /// is of the same order, it keeps 8 parts in flight at the default part
    /// sizes for a dozen transfers at once, and it is what one transfer could
    /// map before buffers were shared.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// How failed requests are retried.
    ///
    /// Defaults to [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Builds the client. Fails when the endpoint is not a valid `http(s)` URL
    /// or no credentials can be found.
    pub fn build(self) -> Result<Client> {
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|s| !s.is_empty());
        let region = self
            .region
            .or_else(credentials::default_region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let custom_endpoint = self.endpoint.or(env_endpoint);
        let addressing = self.addressing.unwrap_or(if custom_endpoint.is_some() {
            Addressing::PathStyle
        } else {
            Addressing::VirtualHost
        });
        let endpoint =
            custom_endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| Error::invalid(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => {
                return Err(Error::invalid(format!(
                    "endpoint {endpoint:?} must start with http:// or https://"
                )));
            }
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .filter(|a| !a.is_empty() && !a.contains('@'))
            .ok_or_else(|| Error::invalid(format!("endpoint {endpoint:?} has no host")))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(Error::invalid(format!(
                "endpoint {endpoint:?} must not have a path or query"
            )));
        }
        let credentials = match self.credentials {
            Some(c) => c,
            None => Credentials::from_default_chain()?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                scheme,
                authority,
                region,
                credentials,
                addressing,
                connect_timeout: self.connect_timeout,
                idle_timeout: self.idle_timeout,
                retry: self.retry,
                agent: new_agent(self.connect_timeout, self.idle_timeout),
                slabs: SlabPool::new(self.memory_limit),
            }),
        })
    }
}

impl Client {
    /// A builder with every setting at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured entirely from the environment (see [`ClientBuilder`]).
    pub fn from_env() -> Result<Client> {
        ClientBuilder::default().build()
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The part buffers shared by this client's transfers.
    pub(crate) fn slabs(&self) -> &Arc<SlabPool> {
        &self.inner.slabs
    }

    /// How much memory the client's part buffers take now, and took at most.
    pub fn slab_stats(&self) -> SlabStats {
        self.inner.slabs.stats()
    }

    /// Unmaps every idle part buffer now. Idle buffers are otherwise kept for
    /// the next transfer and unmapped after 30 s unused; all of them go when
    /// the last clone of the client is dropped.
    pub fn release_idle_buffers(&self) {
        self.inner.slabs.trim();
    }

    /// The agent shared by single requests made on this client.
    pub(crate) fn agent(&self) -> &Agent {
        &self.inner.agent
    }

    /// A fresh agent (its own connection pool) for a pipeline worker.
    pub(crate) fn new_agent(&self) -> Agent {
        new_agent(self.inner.connect_timeout, self.inner.idle_timeout)
    }
}
