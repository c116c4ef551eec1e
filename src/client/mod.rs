//! The client and its builder. Requests are in `request`, the retry policy
//! and the one retry driver in `retry`.

mod request;
pub(crate) mod retry;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ureq::http::Uri;

use crate::auth::chain;
use crate::auth::credentials::{Credentials, CredentialsCache, ProvideCredentials};
use crate::auth::ini;
use crate::client::retry::RetryPolicy;
use crate::pipeline::engine::Engine;
use crate::pipeline::slab::{SlabPool, SlabStats};
use crate::transport::new_agent;
use crate::transport::pace::Limits;
use crate::transport::pool::{Conn, ConnectionStats, Connections};
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
    /// Whether the endpoint is AWS's own `s3.<region>.amazonaws.com`, derived
    /// from the region (a learnt region then changes the host too).
    aws_endpoint: bool,
    region: String,
    /// `None`: requests are not signed.
    credentials: Option<CredentialsCache>,
    /// Regions learnt from the server, per bucket.
    bucket_regions: RwLock<HashMap<String, String>>,
    addressing: Addressing,
    limits: Limits,
    retry: RetryPolicy,
    proxy: Option<Proxy>,
    /// The TLS configuration of the direct sender's connections (one per
    /// client: its session cache is shared by them).
    direct_tls: Arc<rustls::ClientConfig>,
    /// The connection of single requests, used from any thread.
    conn: Conn,
    /// The part connections of every transfer on this client and its clones.
    connections: Connections,
    /// The part buffers of every transfer on this client and its clones.
    slabs: Arc<SlabPool>,
    /// The part workers of every transfer on this client and its clones.
    engine: Engine,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Client")
            .field("endpoint", &format_args!("{}://{}", i.scheme, i.authority))
            .field("region", &i.region)
            .field("addressing", &i.addressing)
            .field("credentials", &i.credentials)
            .field("limits", &i.limits)
            .field("retry", &i.retry)
            .field("proxy", &i.proxy)
            .finish()
    }
}

/// Where the builder's credentials come from.
#[derive(Clone)]
enum CredentialsSetting {
    Static(Credentials),
    Provider(Arc<dyn ProvideCredentials>),
    Anonymous,
}

impl fmt::Debug for CredentialsSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsSetting::Static(c) => c.fmt(f),
            CredentialsSetting::Provider(p) => write!(f, "Provider({:?})", p.describe()),
            CredentialsSetting::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// The variables a builder resolves unset settings from.
#[derive(Clone)]
enum EnvSource {
    /// Nothing is read: fixed defaults.
    None,
    /// The process environment.
    Process,
    /// A given set of variables.
    Vars(Arc<HashMap<String, String>>),
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they may hold secrets.
        match self {
            EnvSource::None => f.write_str("None"),
            EnvSource::Process => f.write_str("Process"),
            EnvSource::Vars(v) => write!(f, "Vars({} variables)", v.len()),
        }
    }
}

/// Builds a [`Client`].
///
/// [`Client::builder`] reads nothing from the environment: every setting is
/// what the code gives or its fixed default. [`ClientBuilder::from_env`]
/// (and [`Client::from_env`]) resolve whatever the code does not set the way
/// the AWS CLI and SDKs do (see the README's "Credentials" and "Regions").
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<CredentialsSetting>,
    profile: Option<String>,
    env: EnvSource,
    addressing: Option<Addressing>,
    limits: Limits,
    retry: RetryPolicy,
    memory_limit: u64,
    max_connections: usize,
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
            profile: None,
            env: EnvSource::None,
            addressing: None,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            trust: TrustSettings::default(),
            proxy: ProxySetting::default(),
            bad_pem: None,
        }
    }
}

/// The default of [`ClientBuilder::memory_limit`]: 2 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;

/// The default of [`ClientBuilder::max_connections`]: 64.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Variables naming the S3 endpoint, first found wins.
const ENV_ENDPOINT_S3: &str = "AWS_ENDPOINT_URL_S3";
const ENV_ENDPOINT: &str = "AWS_ENDPOINT_URL";

impl ClientBuilder {
    /// A builder that resolves every setting the code leaves unset the way
    /// the AWS CLI does, from the process environment and the shared files:
    /// the endpoint from `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`; the
    /// region from `AWS_REGION`, `AWS_DEFAULT_REGION`, else the profile's
    /// `region`; the credentials from the AWS SDKs' default chain (see the
    /// README's "Credentials"), refreshed before they expire.
    pub fn from_env() -> ClientBuilder {
        ClientBuilder {
            env: EnvSource::Process,
            ..ClientBuilder::default()
        }
    }

    /// [`from_env`](Self::from_env) with the given variables instead of the
    /// process environment (nothing else is read but the files they name):
    /// for tests, and for programs that keep their configuration elsewhere.
    ///
    /// ```no_run
    /// let client = s3pump::ClientBuilder::from_vars([
    ///     ("AWS_PROFILE", "backup"),
    ///     ("HOME", "/home/backup"),
    /// ])
    /// .build()?;
    /// # let _ = client;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> ClientBuilder {
        let map = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        ClientBuilder {
            env: EnvSource::Vars(Arc::new(map)),
            ..ClientBuilder::default()
        }
    }

    /// The S3 endpoint URL, such as `http://127.0.0.1:9000`.
    ///
    /// Defaults to `https://s3.<region>.amazonaws.com` (with
    /// [`from_env`](Self::from_env): `AWS_ENDPOINT_URL_S3`, else
    /// `AWS_ENDPOINT_URL`, else that).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region requests are signed for (until the server says a bucket
    /// lives elsewhere: see the README's "Regions").
    ///
    /// Defaults to `us-east-1` (with [`from_env`](Self::from_env):
    /// `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in
    /// `~/.aws/config`, else `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials to sign with (never refreshed).
    ///
    /// There is no default: without this, [`credentials_provider`](Self::credentials_provider)
    /// or [`anonymous`](Self::anonymous), `build` fails (with
    /// [`from_env`](Self::from_env): the default chain).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(CredentialsSetting::Static(credentials));
        self
    }

    /// A source of credentials, asked again before the ones it gave expire
    /// (less than 5 minutes of validity left) and when the server refuses
    /// them as expired. Its first call happens at the first request.
    ///
    /// There is no default (see [`credentials`](Self::credentials)).
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(CredentialsSetting::Provider(Arc::new(provider)));
        self
    }

    /// Sends requests unsigned (for public buckets; the CLI's
    /// `--no-sign-request`).
    ///
    /// Defaults to off.
    pub fn anonymous(mut self) -> Self {
        self.credentials = Some(CredentialsSetting::Anonymous);
        self
    }

    /// The shared-config profile to take credentials and region from, as the
    /// CLI's `--profile`: only that profile is used for credentials (the
    /// environment keys are not), and it must exist. Used by
    /// [`from_env`](Self::from_env) builders only.
    ///
    /// Defaults to `AWS_PROFILE`, else `default`.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Path-style or virtual-host addressing.
    ///
    /// Defaults to path style when an endpoint is given (by code or
    /// `AWS_ENDPOINT_URL`), virtual host for AWS's own endpoint (path style
    /// there too for a bucket name with dots over https, which the
    /// certificate's wildcard would not cover).
    pub fn addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = Some(addressing);
        self
    }

    /// How long establishing a connection (DNS, TCP, TLS) may take.
    ///
    /// Defaults to 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.limits.connect = timeout;
        self
    }

    /// How long a request may go without the connection moving a single byte
    /// (an inactivity timeout: a large part that keeps flowing never hits it,
    /// a server that stops answering does).
    ///
    /// Defaults to 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle = timeout;
        self
    }

    /// How long after a request is sent its reply head may take to arrive
    /// in full (interim `100 Continue` replies do not extend it), and how
    /// long the whole body of a small reply (an XML document, an error) may
    /// take after its head. A server that trickles its head a byte at a
    /// time, or sends `100 Continue` forever, fails the attempt with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) at this deadline;
    /// the attempt is then retried as any timeout is.
    ///
    /// Defaults to 30 s.
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.limits.reply = timeout;
        self
    }

    /// How long the whole reply body of a CompleteMultipartUpload (or a
    /// copy) may take. S3 answers such a request at once and then keeps the
    /// body open, sending whitespace, while it assembles the object (up to
    /// minutes for a large one).
    ///
    /// Defaults to 120 s.
    pub fn processing_timeout(mut self, timeout: Duration) -> Self {
        self.limits.processing = timeout;
        self
    }

    /// The least throughput a body of data (a part sent, a range or an
    /// object received) must keep: at least `bytes_per_second` on average
    /// over every `window` (as curl's `--speed-limit` and `--speed-time`).
    /// A server that reads or sends a body a byte every few seconds never
    /// trips the [`idle_timeout`](Self::idle_timeout); it trips this, as a
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) retried as any
    /// timeout. `bytes_per_second` 0 turns the check off.
    ///
    /// Defaults to 1 KiB/s over 30 s.
    pub fn min_throughput(mut self, bytes_per_second: u64, window: Duration) -> Self {
        self.limits.min_rate = bytes_per_second;
        self.limits.window = window.max(Duration::from_millis(1));
        self
    }

    /// The most memory the part buffers (slabs) of all transfers on this
    /// client and its clones may map together. A transfer reserves its
    /// buffers before it starts and waits, holding nothing, until they fit
    /// (while the others go on); one that cannot fit two buffers even alone
    /// fails before anything is sent. Buffers are reused from transfer to
    /// transfer, and unmapped once unused for 30 s (checked whenever a buffer
    /// is taken or given back; [`Client::release_idle_buffers`] frees them at
    /// once). A transfer's own
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

    /// The most part connections (parts and ranges on the wire) of all
    /// transfers on this client and its clones at once, so concurrent
    /// transfers share them; each transfer is still capped by its own
    /// `max_inflight_parts`. A connection kept alive by one transfer carries
    /// the next one's parts (no new TCP or TLS handshake); idle ones are
    /// closed after 15 s. Single requests (HeadObject, a one-part PutObject,
    /// Create/Complete…) do not count.
    ///
    /// The parts run on the client's worker threads, at most this many of
    /// them too (one per part on the wire), started as parts need them and
    /// ended after 15 s without work: a transfer starts no threads of its
    /// own besides a stream's producer (or a file's or a download's
    /// feeder). Of the parts waiting, a free worker takes one of the
    /// transfer with the fewest running.
    ///
    /// Defaults to 64: eight transfers at the default 8 parts in flight each.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
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
    /// Defaults to the system's store together with the Mozilla roots
    /// bundled in s3pump; with [`from_env`](Self::from_env), `AWS_CA_BUNDLE`,
    /// else the profile's `ca_bundle` in `~/.aws/config`, else those (the
    /// system store then also honours `SSL_CERT_FILE` and `SSL_CERT_DIR`). [`build`](Self::build) fails when the file
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
    /// Defaults to no proxy; with [`from_env`](Self::from_env), to
    /// `https_proxy`/`HTTPS_PROXY` (for an `https://` endpoint) or
    /// `http_proxy`/`HTTP_PROXY` (for `http://`), else `all_proxy`/`ALL_PROXY`,
    /// unless `no_proxy`/`NO_PROXY` matches the endpoint's host (host, domain
    /// suffix, IP, CIDR and `:port` forms, `*`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Url(url.into());
        self
    }

    /// Connects directly, ignoring the proxy variables of the environment
    /// (which only [`from_env`](Self::from_env) reads).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Builds the client. Fails when the endpoint is not a valid `http(s)` URL,
    /// no credentials are given (or, from the environment, found), a CA
    /// bundle cannot be read or a proxy URL is not valid.
    pub fn build(self) -> Result<Client> {
        let vars = self.env.clone();
        let lookup = move |name: &str| -> Option<String> {
            match &vars {
                EnvSource::None => None,
                EnvSource::Process => ini::process_env(name),
                EnvSource::Vars(m) => m.get(name).cloned().filter(|v| !v.is_empty()),
            }
        };
        let env: &dyn Fn(&str) -> Option<String> = &lookup;
        let from_env = !matches!(self.env, EnvSource::None);
        if let Some(e) = self.bad_pem {
            return Err(Error::invalid(e));
        }
        let region = self
            .region
            .or_else(|| {
                from_env
                    .then(|| ini::region_with(env, self.profile.as_deref()))
                    .flatten()
            })
            .unwrap_or_else(|| "us-east-1".to_string());
        validate_region(&region)?;
        let custom_endpoint = self
            .endpoint
            .or_else(|| env(ENV_ENDPOINT_S3))
            .or_else(|| env(ENV_ENDPOINT));
        let aws_endpoint = custom_endpoint.is_none();
        let addressing = self.addressing.unwrap_or(if aws_endpoint {
            Addressing::VirtualHost
        } else {
            Addressing::PathStyle
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
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Error::invalid(format!("endpoint {endpoint:?} has no host")))?;
        if let Some((_, host)) = authority.rsplit_once('@') {
            // Not echoed: what is before the `@` may be a password.
            return Err(Error::invalid(format!(
                "the endpoint has a user name or password before its host ({scheme}://…@{host}); \
                 userinfo is not supported: give credentials as AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, a profile or ClientBuilder::credentials"
            )));
        }
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
        let trust = TrustSettings {
            profile: self.profile.clone(),
            ..self.trust.clone()
        };
        let (tls, direct_tls) = tls::tls_config(&trust, env)?;
        let credentials = match self.credentials {
            Some(CredentialsSetting::Static(c)) => {
                Some(CredentialsCache::new(Box::new(c.clone()), false, Some(c)))
            }
            Some(CredentialsSetting::Provider(p)) => {
                Some(CredentialsCache::new(Box::new(p), true, None))
            }
            Some(CredentialsSetting::Anonymous) => None,
            None if from_env => {
                let (found, first) = chain::resolve(env, self.profile.as_deref(), Some(&region))?;
                log::debug!("credentials from: {}", found.provider.describe());
                Some(CredentialsCache::new(
                    found.provider,
                    found.refreshable,
                    Some(first),
                ))
            }
            None => {
                return Err(Error::Credentials(
                    "no credentials given: use ClientBuilder::credentials, credentials_provider or \
                     anonymous, or ClientBuilder::from_env to find them as the AWS CLI does"
                        .to_owned(),
                ));
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                scheme,
                authority,
                aws_endpoint,
                region,
                credentials,
                bucket_regions: RwLock::new(HashMap::new()),
                addressing,
                limits: self.limits,
                retry: self.retry,
                conn: Conn::shared(new_agent(&self.limits, &tls, proxy.as_ref())),
                engine: Engine::new(self.max_connections),
                connections: Connections::new(self.max_connections, {
                    let (limits, tls, proxy) = (self.limits, tls.clone(), proxy.clone());
                    Box::new(move || new_agent(&limits, &tls, proxy.as_ref()))
                }),
                proxy,
                direct_tls,
                slabs: SlabPool::new(self.memory_limit),
            }),
        })
    }
}

impl Client {
    /// A builder with every setting at its fixed default; it reads nothing
    /// from the environment (see [`ClientBuilder::from_env`] for that).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured entirely from the environment as the AWS CLI does
    /// ([`ClientBuilder::from_env`]).
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env().build()
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// Where the client's credentials come from, for messages (never a
    /// secret): `"environment (AWS_ACCESS_KEY_ID)"`, `"IMDS role X"`,
    /// `"profile `p`: static keys"`…; `None` when requests are not signed
    /// ([`ClientBuilder::anonymous`]).
    pub fn credentials_source(&self) -> Option<String> {
        self.inner.credentials.as_ref().map(|c| c.describe())
    }

    /// The credentials to sign with now (refreshed when about to expire);
    /// `None` when requests are not signed.
    pub(crate) fn current_credentials(&self) -> Result<Option<Arc<Credentials>>> {
        self.inner
            .credentials
            .as_ref()
            .map(CredentialsCache::get)
            .transpose()
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> &str {
        &self.inner.scheme
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
    /// the next transfer and unmapped once unused for 30 s (checked as buffers
    /// are taken and given back); all of them go when
    /// the last clone of the client is dropped.
    pub fn release_idle_buffers(&self) {
        self.inner.slabs.trim();
    }

    /// The connection of single requests made on this client.
    pub(crate) fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    /// The time limits of this client's requests.
    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The part connections shared by this client's transfers.
    pub(crate) fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// The part workers shared by this client's transfers.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// How many part connections the client's transfers use now, used at
    /// most at once, and made in all; and how many part worker threads run.
    pub fn connection_stats(&self) -> ConnectionStats {
        let mut stats = self.inner.connections.stats();
        (stats.workers, stats.peak_workers) = self.inner.engine.threads();
        stats
    }
}

/// A region is what S3 and SigV4 can carry: 1 to 64 characters of ASCII
/// letters, digits, `-`, `_` and `.` (AWS's are `us-east-1`; other servers
/// use names like `garage` or `my_region`). Anything else, such as a
/// newline from a badly written config file, is an error saying so.
fn validate_region(region: &str) -> Result<()> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "the region {} is invalid: a region is 1 to 64 letters, digits, '-', '_' or '.'",
            crate::error::quote(region)
        )))
    }
}
