//! The small HTTP calls of the credential services (instance metadata, the
//! container endpoint, STS, the SSO portal), with short timeouts, and the JSON
//! credentials they answer with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ureq::Agent;
use ureq::http;

use crate::auth::credentials::Credentials;
use crate::auth::time::parse_rfc3339;
use crate::error::quote;

/// Largest reply read from a credential service.
const MAX_REPLY: u64 = 1 << 20;

/// An agent for credential services: statuses are results, no redirects,
/// `connect` to connect and `total` for the whole call.
pub(crate) fn agent(connect: Duration, total: Duration) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_global(Some(total))
        .user_agent(concat!("s3pump/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent::new_with_config(config)
}

/// A reply: status and body.
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
}

/// One call. The error says what could not be reached and why (never a
/// header value: they carry tokens).
pub(crate) fn call(
    agent: &Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let result = match body {
        Some(b) => builder
            .body(b)
            .map_err(|e| format!("bad request to {url}: {e}"))
            .and_then(|r| agent.run(r).map_err(|e| format!("{method} {url}: {e}"))),
        None => builder
            .body(())
            .map_err(|e| format!("bad request to {url}: {e}"))
            .and_then(|r| agent.run(r).map_err(|e| format!("{method} {url}: {e}"))),
    };
    let mut response = result?;
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading the reply: {e}"))?;
    let body =
        String::from_utf8(bytes).map_err(|_| format!("{method} {url}: reply is not UTF-8"))?;
    Ok(Reply { status, body })
}

/// A string field of a JSON object.
pub(crate) fn json_str(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Credentials from the JSON that instance metadata, the container endpoint
/// and `credential_process` answer (`AccessKeyId`, `SecretAccessKey`,
/// `Token` or `SessionToken`, `Expiration` in RFC 3339). `what` names the
/// source in errors, which never quote the JSON.
pub(crate) fn credentials_from_json(text: &str, what: &str) -> Result<Credentials, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{what}: the reply is not JSON ({e})"))?;
    if !v.is_object() {
        return Err(format!("{what}: the reply is not a JSON object"));
    }
    let key = json_str(&v, "AccessKeyId")
        .ok_or_else(|| format!("{what}: no AccessKeyId in the reply"))?;
    let secret = json_str(&v, "SecretAccessKey")
        .ok_or_else(|| format!("{what}: no SecretAccessKey in the reply"))?;
    let token = json_str(&v, "Token").or_else(|| json_str(&v, "SessionToken"));
    let mut creds = Credentials::new(key, secret, token);
    if let Some(exp) = json_str(&v, "Expiration") {
        let at = parse_rfc3339(&exp)
            .ok_or_else(|| format!("{what}: Expiration {} is not an RFC 3339 time", quote(&exp)))?;
        creds = creds.with_expiry(at);
    }
    Ok(creds)
}

/// `UNIX_EPOCH + ms`.
pub(crate) fn from_epoch_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A base URL without its trailing slash.
pub(crate) fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The first `<name>` element's text of an XML reply.
pub(crate) fn xml_text(xml: &str, name: &str) -> Option<String> {
    crate::s3::xml::text(xml, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_credentials() {
        let c = credentials_from_json(
            r#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-01T16:00:00Z"}"#,
            "imds",
        )
        .unwrap();
        assert_eq!(c.access_key_id(), "ASIA1");
        assert_eq!(c.session_token(), Some("t"));
        assert!(c.expiry().is_some());
        let e = credentials_from_json(
            r#"{"AccessKeyId":"A","SecretAccessKey":"TOPSECRET","Expiration":"soon"}"#,
            "x",
        )
        .unwrap_err();
        assert!(e.contains("Expiration") && !e.contains("TOPSECRET"), "{e}");
        assert!(
            credentials_from_json("<html>", "x")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            credentials_from_json(r#"{"SecretAccessKey":"s"}"#, "x")
                .unwrap_err()
                .contains("AccessKeyId")
        );
    }
}
