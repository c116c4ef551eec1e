//! The client and its builder. Requests are in `request`, the retry policy
//! and the one retry driver in `retry`.

mod request;
pub(crate) mod retry;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::Agent;
use ureq::http::Uri;
use ureq::tls::TlsConfig;

use crate::auth::credentials::{self, Credentials};
use crate::client::retry::RetryPolicy;
use crate::transport::new_agent;
use crate::transport::proxy::{self, Proxy, ProxySetting};
use crate::transport::tls::{self, TrustSettings};
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
    tls: TlsConfig,
    proxy: Option<Proxy>,
    agent: Agent,
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
            .field("proxy", &i.proxy)
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
    trust: TrustSettings,
    proxy: ProxySetting,
    /// A PEM text given to `add_root_certificates_pem` that did not parse.
    bad_pem: Option<String>,
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
            trust: TrustSettings::default(),
            proxy: ProxySetting::default(),
            bad_pem: None,
        }
    }
}

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

    /// How failed requests are retried.
    ///
    /// Defaults to [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A PEM bundle of root certificates to trust instead of the default
    /// ones (what the AWS CLI's `--ca-bundle` does).
    ///
    /// Defaults to `AWS_CA_BUNDLE`, else the profile's `ca_bundle` in
    /// `~/.aws/config`, else the system's store together with the Mozilla
    /// roots bundled in s3pump. [`build`](Self::build) fails when the file
    /// cannot be read or holds no certificate.
    pub fn ca_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.ca_bundle = Some(path.into());
        self
    }

    /// Also trusts the certificates of this PEM text (any keys in it are
    /// ignored), on top of the bundle or the default roots. May be called
    /// several times.
    ///
    /// Defaults to none. [`build`](Self::build) fails when the text is not
    /// PEM or holds no certificate.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        match tls::parse_pem_certs(pem, "add_root_certificates_pem") {
            Ok(certs) if certs.is_empty() => {
                self.bad_pem =
                    Some("add_root_certificates_pem: no certificate in the PEM text".into())
            }
            Ok(certs) => self.trust.extra.extend(certs),
            Err(e) => self.bad_pem = Some(e.to_string()),
        }
        self
    }

    /// Sends every request through this HTTP proxy,
    /// `http://[user:password@]host[:port]`, whatever the environment says.
    /// The credentials are secrets: they never appear in `Debug`, logs or errors.
    ///
    /// Defaults to `https_proxy`/`HTTPS_PROXY` (for an `https://` endpoint)
    /// or `http_proxy`/`HTTP_PROXY` (for `http://`), else
    /// `all_proxy`/`ALL_PROXY`, unless `no_proxy`/`NO_PROXY` matches the
    /// endpoint's host (host, domain suffix, IP, CIDR and `:port` forms, `*`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Url(url.into());
        self
    }

    /// Connects directly, ignoring the proxy variables of the environment.
    ///
    /// Defaults to reading them (see [`proxy`](Self::proxy)).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Builds the client. Fails when the endpoint is not a valid `http(s)` URL,
    /// no credentials can be found, a CA bundle cannot be read or a proxy URL
    /// is not valid.
    pub fn build(self) -> Result<Client> {
        self.build_with_env(&|name| {
            std::env::var_os(name)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.is_empty())
        })
    }

    /// [`build`](Self::build), with the trust and proxy variables read from
    /// `env` rather than the process's environment.
    fn build_with_env(self, env: tls::Env) -> Result<Client> {
        if let Some(e) = self.bad_pem {
            return Err(Error::invalid(e));
        }
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
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let proxy = proxy::resolve(&self.proxy, &scheme, host, port, env)?;
        let tls = tls::tls_config(&self.trust, env)?;
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
                agent: new_agent(
                    self.connect_timeout,
                    self.idle_timeout,
                    &tls,
                    proxy.as_ref(),
                ),
                tls,
                proxy,
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

    /// The agent shared by single requests made on this client.
    pub(crate) fn agent(&self) -> &Agent {
        &self.inner.agent
    }

    /// A fresh agent (its own connection pool) for a pipeline worker.
    pub(crate) fn new_agent(&self) -> Agent {
        let i = &self.inner;
        new_agent(i.connect_timeout, i.idle_timeout, &i.tls, i.proxy.as_ref())
    }
}
