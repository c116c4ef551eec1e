//! One S3 request: its description, the one place where it is signed and
//! sent, and the reply turned into a result (an S3 error document into
//! [`Error::S3`]).

use std::time::SystemTime;

use ureq::Agent;
use ureq::http;

use super::{Addressing, Client};
use crate::auth::sigv4::{self, SigningRequest};
use crate::s3::xml;
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

    pub fn body(mut self, body: &'a [u8], payload: PayloadSigning) -> Self {
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
        let payload_hash = match resolve_signing(req.payload, &i.scheme, req) {
            PayloadSigning::Unsigned => sigv4::UNSIGNED_PAYLOAD.to_string(),
            _ if req.body.is_empty() => sigv4::EMPTY_SHA256.to_string(),
            _ => sigv4::hex_sha256(req.body),
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
            let proxy = i.proxy.as_ref();
            if direct::takes(&i.scheme, req.operation, req.body.len(), proxy) {
                // A part over plain HTTP: straight from the slab (see direct.rs).
                direct::send(&request, i.connect_timeout, i.idle_timeout, proxy)
            } else {
                agent.run(request)
            }
        } else {
            let request = builder.body(()).map_err(|e| bad_request(req, e))?;
            agent.run(request)
        };
        let response = result.map_err(|e| {
            if let Some(e) = tls::certificate_error(req.operation, &authority, &e) {
                return e;
            }
            let mut e = transport_error(req.operation, e);
            if let (Error::Transport { message, .. }, Some(p)) = (&mut e, &i.proxy) {
                message.push_str(&format!(" (through the proxy {})", p.shown));
            }
            e
        })?;
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
        self.retrying(req, None, idempotent, |_| self.send(agent, req))
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
