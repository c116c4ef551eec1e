//! The client, its builder, and the one place where a request is signed,
//! sent and its reply turned into a result.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ureq::Agent;
use ureq::http::{self, Uri};

use crate::credentials::{self, Credentials};
use crate::retry::RetryPolicy;
use crate::sigv4::{self, SigningRequest};
use crate::{Error, Result, direct, xml};

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
            }),
        })
    }
}

/// An HTTP agent (a connection pool) with s3pump's settings: statuses are
/// results, not errors; no redirects; connect and inactivity timeouts.
fn new_agent(connect_timeout: Duration, idle_timeout: Duration) -> Agent {
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

/// How the body of a request is vouched for in the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// `x-amz-content-sha256` is the SHA-256 of the body, computed here.
    Signed,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
    Unsigned,
}

/// One S3 request, before signing.
pub(crate) struct Request<'a> {
    /// The operation's name, for errors and logs.
    pub operation: &'static str,
    pub method: http::Method,
    pub bucket: &'a str,
    /// `None` for requests on the bucket itself.
    pub key: Option<&'a str>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub payload: Payload,
}

impl<'a> Request<'a> {
    pub fn new(
        operation: &'static str,
        method: http::Method,
        bucket: &'a str,
        key: Option<&'a str>,
    ) -> Self {
        Request {
            operation,
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
            payload: Payload::Signed,
        }
    }

    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn headers(mut self, headers: impl IntoIterator<Item = (String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    pub fn body(mut self, body: &'a [u8], payload: Payload) -> Self {
        self.body = body;
        self.payload = payload;
        self
    }
}

/// A successful reply: status and headers, with the body still unread.
pub(crate) type Response = http::Response<ureq::Body>;

/// Largest error or XML reply body read into memory.
const MAX_XML_REPLY: u64 = 16 << 20;

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
        new_agent(self.inner.connect_timeout, self.inner.idle_timeout)
    }

    /// Sends `req` once. A non-2xx reply becomes [`Error::S3`].
    pub(crate) fn send(&self, agent: &Agent, req: &Request<'_>) -> Result<Response> {
        let response = self.send_raw(agent, req)?;
        check_status(req, response)
    }

    /// Sends `req` once and returns whatever reply came back; only a failure
    /// to get a reply at all is an error.
    pub(crate) fn send_raw(&self, agent: &Agent, req: &Request<'_>) -> Result<Response> {
        let i = &self.inner;
        let (authority, mut path) = match i.addressing {
            Addressing::PathStyle => (i.authority.clone(), format!("/{}", req.bucket)),
            Addressing::VirtualHost => (format!("{}.{}", req.bucket, i.authority), String::new()),
        };
        match req.key {
            Some(key) => {
                path.push('/');
                path.push_str(&sigv4::uri_encode(key, true));
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        let payload_hash = match req.payload {
            Payload::Signed if req.body.is_empty() => sigv4::EMPTY_SHA256.to_string(),
            Payload::Signed => sigv4::hex_sha256(req.body),
            Payload::Unsigned => sigv4::UNSIGNED_PAYLOAD.to_string(),
        };
        let mut headers = req.headers.clone();
        headers.push(("host".to_string(), authority.clone()));
        let signed = sigv4::sign(
            &i.credentials,
            &i.region,
            SystemTime::now(),
            &SigningRequest {
                method: req.method.as_str(),
                canonical_uri: &path,
                query: &req.query,
                headers: &headers,
                payload_hash: &payload_hash,
            },
        );
        headers.extend(signed);
        let query = sigv4::canonical_query(&req.query);
        let url = if query.is_empty() {
            format!("{}://{authority}{path}", i.scheme)
        } else {
            format!("{}://{authority}{path}?{query}", i.scheme)
        };
        log::trace!("{} {} {url}", req.operation, req.method);
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(&url);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let result = if req.method == http::Method::PUT || req.method == http::Method::POST {
            let request = builder.body(req.body).map_err(|e| bad_request(req, e))?;
            if direct::takes(&i.scheme, req.operation, req.body.len(), agent) {
                // A part over plain HTTP: straight from the slab (see direct.rs).
                direct::send(&request, i.connect_timeout, i.idle_timeout)
            } else {
                agent.run(request)
            }
        } else {
            let request = builder.body(()).map_err(|e| bad_request(req, e))?;
            agent.run(request)
        };
        let response = result.map_err(|e| transport_error(req.operation, e))?;
        log::trace!("{} {} -> {}", req.operation, req.method, response.status());
        Ok(response)
    }

    /// Sends `req`, retrying per the client's policy.
    pub(crate) fn send_retrying(
        &self,
        agent: &Agent,
        req: &Request<'_>,
        idempotent: bool,
    ) -> Result<Response> {
        self.retrying(req.operation, None, idempotent, |_| self.send(agent, req))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget
    /// is spent; logs every retry at DEBUG with the operation, part and attempt.
    pub(crate) fn retrying<T>(
        &self,
        operation: &str,
        part: Option<u32>,
        idempotent: bool,
        mut attempt: impl FnMut(u32) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.inner.retry.start();
        loop {
            let n = state.attempt();
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(e) => match state.next_backoff(&e, idempotent) {
                    Some(wait) => {
                        match part {
                            Some(p) => log::debug!(
                                "{operation} part {p} attempt {n} failed, retrying in {wait:?}: {e}"
                            ),
                            None => log::debug!(
                                "{operation} attempt {n} failed, retrying in {wait:?}: {e}"
                            ),
                        }
                        std::thread::sleep(wait);
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

/// A 2xx reply as is; anything else as [`Error::S3`].
pub(crate) fn check_status(req: &Request<'_>, mut response: Response) -> Result<Response> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let body = if req.method == http::Method::HEAD {
        String::new()
    } else {
        read_text(req.operation, &mut response).unwrap_or_default()
    };
    Err(s3_error(status, response.headers(), &body))
}

fn bad_request(req: &Request<'_>, e: http::Error) -> Error {
    Error::invalid(format!("{}: cannot build the request: {e}", req.operation))
}

pub(crate) fn transport_error(operation: &'static str, e: ureq::Error) -> Error {
    let timeout = matches!(e, ureq::Error::Timeout(_))
        || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut);
    Error::Transport {
        operation,
        message: e.to_string(),
        timeout,
    }
}

/// Reads a (small) reply body as text.
pub(crate) fn read_text(operation: &'static str, response: &mut Response) -> Result<String> {
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_XML_REPLY)
        .read_to_vec()
        .map_err(|e| transport_error(operation, e))?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidResponse {
        operation: "read reply",
        message: "reply body is not UTF-8".into(),
    })
}

/// Builds [`Error::S3`] from a reply's status, headers and (possibly empty) body.
pub(crate) fn s3_error(status: u16, headers: &http::HeaderMap, body: &str) -> Error {
    let code = xml::text(body, "Code").unwrap_or_else(|| {
        match status {
            301 => "PermanentRedirect",
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            412 => "PreconditionFailed",
            416 => "InvalidRange",
            429 => "TooManyRequests",
            500 => "InternalError",
            501 => "NotImplemented",
            503 => "ServiceUnavailable",
            _ => "Unknown",
        }
        .to_string()
    });
    let message = xml::text(body, "Message").unwrap_or_else(|| format!("HTTP status {status}"));
    let request_id = header(headers, "x-amz-request-id").or_else(|| xml::text(body, "RequestId"));
    Error::S3 {
        status,
        code,
        message,
        request_id,
    }
}

/// A header's value as a string, if present and valid.
pub(crate) fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
