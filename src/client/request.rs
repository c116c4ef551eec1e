//! One S3 request: its description, the one place where it is signed and
//! sent, and the reply turned into a result (an S3 error document into
//! [`Error::S3`]).
//!
//! Over 600 lines only with its unit tests; the code is the one send path
//! (signing, region redirects, forced credential refresh, TLS errors).

use std::time::SystemTime;

use ureq::http;

use super::{Addressing, Client};
use crate::auth::credentials::Credentials;
use crate::auth::sigv4::{self, SigningRequest};
use crate::rdma::attempt::RDMA_TOKEN_HEADER;
use crate::s3::xml;
use crate::transport::direct::{RangeInto, Route};
use crate::transport::pool::Conn;
use crate::transport::stop::Stop;
use crate::transport::{direct, tls};
use crate::{Error, PayloadSigning, Result};

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
    pub payload: PayloadSigning,
    /// Where `body` also lies in a file (the file and the offset): the
    /// direct sender then sends it from there (with `sendfile(2)` over
    /// plain HTTP) when it can ([`direct::takes_file`]); `body` (a mapping
    /// of that range) is what is signed, and sent when it cannot.
    pub file: Option<(&'a std::fs::File, u64)>,
    /// The stop of the transfer this request belongs to: once it is set,
    /// the request is cut short (its socket shut down) and not retried.
    /// Such a request goes out on the direct path whenever it can (whose
    /// sockets a stop can reach).
    pub stop: Option<&'a Stop>,
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
            payload: PayloadSigning::Signed,
            file: None,
            stop: None,
        }
    }

    /// This request as part of a transfer that `stop` stops.
    pub fn stop(mut self, stop: Option<&'a Stop>) -> Self {
        self.stop = stop;
        self
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

    pub fn body(mut self, body: &'a [u8], payload: PayloadSigning) -> Self {
        self.body = body;
        self.payload = payload;
        self
    }

    /// This request carrying an RDMA token instead of a body: the server
    /// moves the bytes itself (docs/RDMA.md).
    pub fn with_rdma_token(&self, token: &str) -> Request<'a> {
        let rdma = Request {
            operation: self.operation,
            method: self.method.clone(),
            bucket: self.bucket,
            key: self.key,
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: &[],
            payload: self.payload,
            file: None,
            stop: self.stop,
        };
        let rdma = if self.method == http::Method::PUT {
            rdma.body(&[], PayloadSigning::Unsigned)
        } else {
            rdma
        };
        rdma.header(RDMA_TOKEN_HEADER, token)
    }
}

/// A transport error of a request sent through a proxy: says which (its
/// URL without credentials), keeps the error underneath as its source.
#[derive(Debug)]
struct ViaProxy {
    proxy: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for ViaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (through the proxy {})", self.source, self.proxy)
    }
}

impl std::error::Error for ViaProxy {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A successful reply: status and headers, with the body still unread.
pub(crate) type Response = http::Response<ureq::Body>;

/// Largest error or XML reply body read into memory.
const MAX_XML_REPLY: u64 = 16 << 20;

impl Client {
    /// Whether a large request body that lies in a file
    /// ([`Request::file`]) goes out from the file ([`direct::takes_file`]):
    /// with `sendfile(2)` over plain HTTP, read as it is encrypted over
    /// HTTPS; directly or through a plain-HTTP proxy.
    pub(crate) fn sends_from_files(&self) -> bool {
        direct::takes_file(&self.inner.scheme, self.inner.proxy.as_ref())
    }

    /// Sends `req` once. A non-2xx reply becomes [`Error::S3`].
    ///
    /// A bodiless 404 on an object (HeadObject has no body to say why) is
    /// told apart with a HeadBucket of its bucket: `NoSuchBucket` when the
    /// bucket is missing too, else `NoSuchKey`, with a message naming them.
    pub(crate) fn send(&self, conn: &Conn, req: &Request<'_>) -> Result<Response> {
        let response = self.send_raw(conn, req)?;
        check_status(req, response).map_err(|e| self.explain_not_found(conn, req, e))
    }

    /// See [`Client::send`]: names what a bare 404 on an object means.
    fn explain_not_found(&self, conn: &Conn, req: &Request<'_>, e: Error) -> Error {
        let (
            Some(key),
            Error::S3 {
                status: 404,
                code,
                request_id,
                ..
            },
        ) = (req.key, &e)
        else {
            return e;
        };
        // Only a reply without an error document ("NotFound" comes from the status).
        if code != "NotFound" {
            return e;
        }
        let bucket = req.bucket;
        let head = Request::new("HeadBucket", http::Method::HEAD, bucket, None);
        let bucket_status = self.send_raw(conn, &head).ok().map(|r| r.status().as_u16());
        let (code, message) = match bucket_status {
            Some(404) => (
                "NoSuchBucket",
                format!("{}: the bucket {bucket:?} does not exist", req.operation),
            ),
            Some(200..300) => (
                "NoSuchKey",
                format!(
                    "{}: no object {key:?} in the bucket {bucket:?}",
                    req.operation
                ),
            ),
            // HeadBucket refused or failed: the object or its bucket is missing.
            _ => (
                "NotFound",
                format!(
                    "{}: the object {key:?} or its bucket {bucket:?} does not exist",
                    req.operation
                ),
            ),
        };
        Error::S3 {
            status: 404,
            code: code.to_string(),
            message,
            request_id: request_id.clone(),
        }
    }

    /// Sends `req` once and returns whatever reply came back; only a failure
    /// to get a reply at all is an error.
    ///
    /// "Once" as the caller sees it: a reply saying the bucket lives in
    /// another region makes it learn that region and send again (once), and
    /// credentials refused as expired or invalid are refreshed and the
    /// request sent again (once). Every send is signed with the credentials
    /// current at that moment.
    pub(crate) fn send_raw(&self, conn: &Conn, req: &Request<'_>) -> Result<Response> {
        self.send_raw_into(conn, req, None).map(|(r, _)| r)
    }

    /// [`Client::send`] of a ranged GET whose body is read straight into
    /// `into.buf` (the range's length), and written through to `into.file`,
    /// when the direct sender takes it (`transport/direct.rs`): then the
    /// reply comes back with an empty body and `true`. Otherwise (another
    /// scheme, a proxy it does not speak to, a reply it does not read into
    /// the buffer) the reply comes back as from [`Client::send`], with its
    /// body, and `false`.
    pub(crate) fn send_into(
        &self,
        conn: &Conn,
        req: &Request<'_>,
        into: &mut RangeInto<'_>,
    ) -> Result<(Response, bool)> {
        let (response, filled) = self.send_raw_into(conn, req, Some(into))?;
        let response =
            check_status(req, response).map_err(|e| self.explain_not_found(conn, req, e))?;
        Ok((response, filled))
    }

    /// [`Client::send_raw`], reading a ranged GET's body into `into` when
    /// given (see [`Client::send_into`]).
    fn send_raw_into(
        &self,
        conn: &Conn,
        req: &Request<'_>,
        mut into: Option<&mut RangeInto<'_>>,
    ) -> Result<(Response, bool)> {
        let mut redirected = false;
        let mut refreshed = false;
        loop {
            let region = self.bucket_region(req.bucket);
            let creds = match &self.inner.credentials {
                Some(cache) => Some(cache.get()?),
                None => None,
            };
            let (response, filled) =
                self.send_signed(conn, req, &region, creds.as_deref(), into.as_deref_mut())?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 400 | 403) {
                return Ok((response, filled));
            }
            // Look at the error: a region to learn, or credentials to refresh?
            let header_region = header(response.headers(), "x-amz-bucket-region");
            let (parts, body) = response.into_parts();
            let mut response = http::Response::from_parts(parts, body);
            let text = if req.method == http::Method::HEAD {
                String::new()
            } else {
                read_text(req.operation, &mut response).unwrap_or_default()
            };
            let code = xml::text(&text, "Code").unwrap_or_default();
            let wrong_region = status == 301
                || code == "AuthorizationHeaderMalformed"
                || code == "PermanentRedirect"
                || (text.is_empty() && header_region.as_deref().is_some_and(|r| r != region));
            if wrong_region {
                // The server's word goes into a host name: only what a
                // region name can be.
                let expected = xml::text(&text, "Region")
                    .filter(|r| !r.is_empty())
                    .or(header_region)
                    .filter(|r| {
                        r.len() <= 32
                            && r.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    });
                match expected {
                    Some(expected) if expected != region && !redirected => {
                        self.learn_region(req.bucket, &expected, &region);
                        redirected = true;
                        continue;
                    }
                    _ => {
                        let e = s3_error(status, response.headers(), &text);
                        return Err(region_error(
                            req,
                            e,
                            &self.inner.region,
                            expected.as_deref(),
                        ));
                    }
                }
            }
            if !refreshed
                && matches!(
                    code.as_str(),
                    "ExpiredToken" | "TokenRefreshRequired" | "RequestExpired" | "InvalidToken"
                )
                && let (Some(cache), Some(used)) = (&self.inner.credentials, &creds)
                && cache.refreshable()
            {
                log::info!(
                    "{} {}: the server refused the credentials from {} ({code}); refreshing them",
                    req.operation,
                    req.bucket,
                    cache.describe()
                );
                cache.force_refresh(used)?;
                refreshed = true;
                continue;
            }
            // Hand the reply on with its body, as if untouched.
            let (parts, _) = response.into_parts();
            let body = ureq::Body::builder().data(text.into_bytes());
            return Ok((http::Response::from_parts(parts, body), false));
        }
    }

    /// The region to sign requests on `bucket` for: learnt, else configured.
    pub(crate) fn bucket_region(&self, bucket: &str) -> String {
        self.inner
            .bucket_regions
            .read()
            .get(bucket)
            .cloned()
            .unwrap_or_else(|| self.inner.region.clone())
    }

    /// Remembers that `bucket` lives in `region` (logged once at INFO).
    fn learn_region(&self, bucket: &str, region: &str, was: &str) {
        let mut map = self.inner.bucket_regions.write();
        if map.get(bucket).map(String::as_str) != Some(region) {
            log::info!(
                "bucket {bucket} is in region {region}, not {was}: signing its requests for {region}"
            );
            map.insert(bucket.to_owned(), region.to_owned());
        }
    }

    /// The `Host` and the path prefix of requests on `bucket` signed for
    /// `region`: AWS's own endpoint follows the bucket's region, and a bucket
    /// name with dots goes path style over https (the wildcard certificate
    /// of `*.s3.<region>.amazonaws.com` does not cover it).
    fn address(&self, bucket: &str, region: &str) -> (String, String) {
        let i = &self.inner;
        let base = if i.aws_endpoint && region != i.region {
            format!("s3.{region}.amazonaws.com")
        } else {
            i.authority.clone()
        };
        if bucket.is_empty() {
            // The service itself (ListBuckets): `GET /` on the endpoint.
            return (base, String::new());
        }
        let path_style =
            i.addressing == Addressing::PathStyle || (i.scheme == "https" && bucket.contains('.'));
        if path_style {
            (base, format!("/{bucket}"))
        } else {
            (format!("{bucket}.{base}"), String::new())
        }
    }

    /// The `Host` and the encoded path (as sent and signed) of a request on
    /// `bucket` (and `key`) signed for `region`.
    pub(crate) fn host_and_path(
        &self,
        bucket: &str,
        key: Option<&str>,
        region: &str,
    ) -> (String, String) {
        let (authority, mut path) = self.address(bucket, region);
        match key {
            Some(key) => {
                path.push('/');
                path.push_str(&sigv4::uri_encode(key, true));
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        (authority, path)
    }

    /// One signed (or anonymous) send; a ranged GET's body into `into` when
    /// the direct sender takes it (then with `true`).
    fn send_signed(
        &self,
        conn: &Conn,
        req: &Request<'_>,
        region: &str,
        creds: Option<&Credentials>,
        into: Option<&mut RangeInto<'_>>,
    ) -> Result<(Response, bool)> {
        let i = &self.inner;
        let (authority, path) = self.host_and_path(req.bucket, req.key, region);
        let payload_hash = match resolve_signing(req.payload, &i.scheme, req) {
            PayloadSigning::Unsigned => sigv4::UNSIGNED_PAYLOAD.to_string(),
            _ if req.body.is_empty() => sigv4::EMPTY_SHA256.to_string(),
            _ => sigv4::hex_sha256(req.body),
        };
        let mut headers = req.headers.clone();
        headers.push(("host".to_string(), authority.clone()));
        if let Some(creds) = creds {
            let signed = sigv4::sign(
                creds,
                region,
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
        }
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
        let proxy = i.proxy.as_ref();
        let route = Route {
            limits: &i.limits,
            small_body: i.limits.small_body(req.operation),
            proxy,
            tls: &i.direct_tls,
            slot: &conn.direct,
            stop: req.stop,
        };
        // A request of a transfer goes out where a stop can cut it.
        let stoppable = req.stop.is_some() && direct::takes_any(&i.scheme, proxy);
        let result = if req.method == http::Method::PUT || req.method == http::Method::POST {
            if stoppable || direct::takes(&i.scheme, req.operation, req.body.len(), proxy) {
                // A large body: straight from the slab, or from the file
                // (see direct.rs).
                let body = match req.file {
                    Some((file, offset)) if direct::takes_file(&i.scheme, proxy) => {
                        direct::Body::File {
                            file,
                            offset,
                            len: req.body.len(),
                        }
                    }
                    _ => direct::Body::Memory(req.body),
                };
                let request = builder.body(body).map_err(|e| bad_request(req, e))?;
                direct::send(&request, &route).map(|r| (r, false))
            } else {
                let request = builder.body(req.body).map_err(|e| bad_request(req, e))?;
                let request = self.with_body_timeouts(conn, req, request);
                conn.agent.run(request).map(|r| (r, false))
            }
        } else {
            match into {
                Some(into) if stoppable || direct::takes_get(&i.scheme, into.buf.len(), proxy) => {
                    // A large range: straight into its slab (see direct.rs).
                    let request = builder.body(()).map_err(|e| bad_request(req, e))?;
                    direct::get_into(&request, &route, into)
                }
                _ if stoppable => {
                    let request = builder
                        .body(direct::Body::Memory(&[]))
                        .map_err(|e| bad_request(req, e))?;
                    direct::send(&request, &route).map(|r| (r, false))
                }
                _ => {
                    let request = builder.body(()).map_err(|e| bad_request(req, e))?;
                    let request = self.with_body_timeouts(conn, req, request);
                    conn.agent.run(request).map(|r| (r, false))
                }
            }
        };
        let response = result.map_err(|e| {
            if let Some(e) = tls::certificate_error(req.operation, &authority, &e) {
                return e;
            }
            let mut e = transport_error(req.operation, e);
            if let (Error::Transport { source, .. }, Some(p)) = (&mut e, &i.proxy) {
                let inner = std::mem::replace(source, "".into());
                *source = Box::new(ViaProxy {
                    proxy: p.shown.clone(),
                    source: inner,
                });
            }
            e
        })?;
        log::trace!(
            "{} {} -> {}",
            req.operation,
            req.method,
            response.0.status()
        );
        Ok(response)
    }

    /// `request` (to go through ureq) with the body timeouts of `req`: a
    /// small reply body (anything but an object's data) must arrive whole
    /// within [`Limits::small_body`](crate::transport::pace::Limits); a
    /// request body within the time the minimum throughput allows it.
    fn with_body_timeouts<B: ureq::AsSendBody>(
        &self,
        conn: &Conn,
        req: &Request<'_>,
        request: http::Request<B>,
    ) -> http::Request<B> {
        let limits = &self.inner.limits;
        let recv_body = (req.operation != "GetObject").then(|| limits.small_body(req.operation));
        let send_body = (limits.min_rate > 0 && !req.body.is_empty()).then(|| {
            limits.window + std::time::Duration::from_secs(req.body.len() as u64 / limits.min_rate)
        });
        conn.agent
            .configure_request(request)
            .timeout_recv_body(recv_body)
            .timeout_send_body(send_body)
            .build()
    }

    /// Sends `req`, retrying per the client's policy.
    pub(crate) fn send_retrying(
        &self,
        conn: &Conn,
        req: &Request<'_>,
        idempotent: bool,
    ) -> Result<Response> {
        self.retrying(req, None, idempotent, |_| self.send(conn, req))
    }
}

/// What [`PayloadSigning::Auto`] means for this request: unsigned over
/// https when a checksum header vouches for the body (or there is none),
/// signed otherwise.
fn resolve_signing(signing: PayloadSigning, scheme: &str, req: &Request<'_>) -> PayloadSigning {
    match signing {
        PayloadSigning::Auto
            if scheme == "https"
                && (req.body.is_empty()
                    || req.headers.iter().any(|(n, _)| {
                        n.starts_with("x-amz-checksum-")
                            && !matches!(
                                n.as_str(),
                                "x-amz-checksum-algorithm" | "x-amz-checksum-type"
                            )
                    })) =>
        {
            PayloadSigning::Unsigned
        }
        PayloadSigning::Auto => PayloadSigning::Signed,
        other => other,
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

/// The error of a request sent to the wrong region that could not be
/// redirected: it names the configured region and the one the server
/// expects, when it said so.
fn region_error(req: &Request<'_>, e: Error, configured: &str, expected: Option<&str>) -> Error {
    match e {
        Error::S3 {
            status,
            code,
            message,
            request_id,
        } => {
            let hint = match expected {
                Some(r) => format!(
                    "bucket {} is in region {r}; the client is configured for {configured}",
                    req.bucket
                ),
                None => format!(
                    "bucket {} is not in region {configured} (the client's), and the server did not say where it is",
                    req.bucket
                ),
            };
            Error::S3 {
                status,
                code,
                message: format!("{message} ({hint})"),
                request_id,
            }
        }
        other => other,
    }
}

fn bad_request(req: &Request<'_>, e: http::Error) -> Error {
    Error::invalid(format!("{}: cannot build the request: {e}", req.operation))
}

/// A failure to get (all of) a reply, keeping ureq's error as the source.
pub(crate) fn transport_error(operation: &'static str, e: ureq::Error) -> Error {
    let timeout = matches!(e, ureq::Error::Timeout(_))
        || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut);
    Error::Transport {
        operation,
        source: Box::new(e),
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
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => Error::InvalidResponse {
                operation,
                message: format!("reply body is larger than {limit} bytes"),
            },
            e => transport_error(operation, e),
        })?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidResponse {
        operation,
        message: "reply body is not UTF-8".into(),
    })
}

/// Builds [`Error::S3`] from a reply's status, headers and (possibly empty) body.
///
/// The body is read leniently: a body that is not an S3 error document (an
/// HTML page from a proxy, nothing at all) leaves the code to the status.
pub(crate) fn s3_error(status: u16, headers: &http::HeaderMap, body: &str) -> Error {
    let doc = if body.trim().is_empty() {
        None
    } else {
        xml::parse("error reply", body).ok()
    };
    let field = |name: &str| {
        doc.as_ref()
            .and_then(|d| d.opt(name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let code = field("Code").unwrap_or_else(|| {
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
    let message = field("Message").map_or_else(
        || format!("HTTP status {status}"),
        |m| crate::error::cut(m, crate::error::MESSAGE_MAX),
    );
    let request_id = header(headers, "x-amz-request-id").or_else(|| field("RequestId"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: Vec<u8>) -> Response {
        http::Response::builder()
            .status(200)
            .body(ureq::Body::builder().data(body))
            .unwrap()
    }

    #[test]
    fn read_text_names_its_operation() {
        let mut ok = reply(b"<R/>".to_vec());
        assert_eq!(read_text("ListParts", &mut ok).unwrap(), "<R/>");
        let mut bad = reply(vec![b'<', 0xff, 0xfe, b'>']);
        match read_text("ListParts", &mut bad).unwrap_err() {
            Error::InvalidResponse { operation, message } => {
                assert_eq!(operation, "ListParts");
                assert!(message.contains("UTF-8"), "{message}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn s3_error_reads_the_document_and_falls_back_to_the_status() {
        let headers = http::HeaderMap::new();
        let doc = r#"<?xml version="1.0"?><!-- <Code>Fake</Code> --><Error><Code>NoSuchKey</Code><Message>The key &lt;k&gt; is missing</Message><RequestId>r1</RequestId></Error>"#;
        match s3_error(404, &headers, doc) {
            Error::S3 {
                status,
                code,
                message,
                request_id,
            } => {
                assert_eq!((status, code.as_str()), (404, "NoSuchKey"));
                assert_eq!(message, "The key <k> is missing");
                assert_eq!(request_id.as_deref(), Some("r1"));
            }
            e => panic!("{e:?}"),
        }
        // Not XML (a proxy's HTML page): the status decides.
        let e = s3_error(503, &headers, "<html><body>busy</p></html>");
        assert_eq!(e.s3_code(), Some("ServiceUnavailable"));
        assert_eq!(e.kind(), crate::ErrorKind::Throttled);
        assert!(s3_error(404, &headers, "").is_not_found());
    }

    #[test]
    fn addressing_on_aws_and_elsewhere() {
        let aws = Client::builder()
            .region("eu-west-1")
            .anonymous()
            .build()
            .unwrap();
        assert_eq!(
            aws.address("logs", "eu-west-1"),
            ("logs.s3.eu-west-1.amazonaws.com".into(), String::new())
        );
        // Dots over https: path style.
        assert_eq!(
            aws.address("my.logs", "eu-west-1"),
            ("s3.eu-west-1.amazonaws.com".into(), "/my.logs".into())
        );
        // A learnt region moves AWS's host too.
        assert_eq!(
            aws.address("logs", "ap-south-1"),
            ("logs.s3.ap-south-1.amazonaws.com".into(), String::new())
        );
        let custom = Client::builder()
            .endpoint("http://127.0.0.1:9000")
            .anonymous()
            .build()
            .unwrap();
        assert_eq!(
            custom.address("my.logs", "ap-south-1"),
            ("127.0.0.1:9000".into(), "/my.logs".into())
        );
    }
}
