//! STS: `AssumeRole` (SigV4-signed, service `sts`, by the source credentials)
//! and `AssumeRoleWithWebIdentity` (not signed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ureq::Agent;

use crate::auth::credentials::{Credentials, ProvideCredentials};
use crate::auth::http::{self, xml_text};
use crate::auth::ini::{Env, var};
use crate::auth::sigv4::{self, SigningRequest};
use crate::auth::time::parse_rfc3339;
use crate::error::Error;
use crate::error::quote;

/// The STS endpoint of a region: `AWS_ENDPOINT_URL_STS`, else
/// `AWS_ENDPOINT_URL`, else `https://sts.<region>.amazonaws.com`.
#[derive(Clone)]
pub(crate) struct Sts {
    url: String,
    region: String,
    agent: Agent,
}

/// Variables that name STS's endpoint.
pub(crate) const ENV_ENDPOINT_STS: &str = "AWS_ENDPOINT_URL_STS";
pub(crate) const ENV_ENDPOINT: &str = "AWS_ENDPOINT_URL";

impl Sts {
    pub(crate) fn from_env(env: Env, region: &str) -> Sts {
        let url = var(env, ENV_ENDPOINT_STS)
            .or_else(|| var(env, ENV_ENDPOINT))
            .map(|u| http::trim_url(&u))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        Sts {
            url,
            region: region.to_owned(),
            agent: http::agent(Duration::from_secs(5), Duration::from_secs(30)),
        }
    }

    fn form(params: &[(&str, &str)]) -> String {
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", sigv4::uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Posts `body` (signed by `signer` when given) and parses
    /// `<Credentials>` out of the reply.
    fn post(
        &self,
        action: &str,
        body: &str,
        signer: Option<&Credentials>,
    ) -> Result<Credentials, String> {
        let url = format!("{}/", self.url);
        let authority = url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
            .unwrap_or_default()
            .to_owned();
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), authority),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
        ];
        if let Some(creds) = signer {
            let hash = sigv4::hex_sha256(body.as_bytes());
            let signed = sigv4::sign_service(
                creds,
                "sts",
                &self.region,
                SystemTime::now(),
                &SigningRequest {
                    method: "POST",
                    canonical_uri: "/",
                    query: &[],
                    headers: &headers,
                    payload_hash: &hash,
                },
            );
            headers.extend(signed);
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| n != "host")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = http::call(&self.agent, "POST", &url, &refs, Some(body.as_bytes()))?;
        if reply.status != 200 {
            let code =
                xml_text(&reply.body, "Code").unwrap_or_else(|| format!("HTTP {}", reply.status));
            let message = xml_text(&reply.body, "Message").unwrap_or_default();
            return Err(format!(
                "STS {action} at {url}: {} {code}: {message}",
                reply.status
            ));
        }
        let what = format!("STS {action} at {url}");
        // The fields appear only inside `<Credentials>`.
        let field = |name: &str| {
            xml_text(&reply.body, name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{what}: no <{name}> in the reply"))
        };
        let expiration = field("Expiration")?;
        let expiry = parse_rfc3339(&expiration).ok_or_else(|| {
            format!(
                "{what}: Expiration {} is not an RFC 3339 time",
                quote(&expiration)
            )
        })?;
        Ok(Credentials::new(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            Some(field("SessionToken")?),
        )
        .with_expiry(expiry))
    }
}

/// A session name when none is configured.
fn default_session_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("s3pump-{secs}")
}

/// `AssumeRole` with the credentials of `source`.
pub(crate) struct AssumeRole {
    pub source: Box<dyn ProvideCredentials>,
    pub role_arn: String,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u32>,
    pub sts: Sts,
    /// The profile it was configured in, for messages.
    pub profile: String,
}

impl ProvideCredentials for AssumeRole {
    fn provide(&self) -> crate::Result<Credentials> {
        let source = self.source.provide().map_err(|e| {
            Error::Credentials(format!(
                "{}: the source credentials ({}) failed: {e}",
                self.describe(),
                self.source.describe()
            ))
        })?;
        let session = self
            .session_name
            .clone()
            .unwrap_or_else(default_session_name);
        let duration = self.duration_seconds.map(|d| d.to_string());
        let mut params = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", session.as_str()),
        ];
        if let Some(id) = &self.external_id {
            params.push(("ExternalId", id));
        }
        if let Some(d) = &duration {
            params.push(("DurationSeconds", d));
        }
        self.sts
            .post("AssumeRole", &Sts::form(&params), Some(&source))
            .map_err(|e| Error::Credentials(format!("{}: {e}", self.describe())))
    }

    fn describe(&self) -> String {
        format!("profile `{}`: assumed role {}", self.profile, self.role_arn)
    }
}

/// `AssumeRoleWithWebIdentity` with the token read from `token_file` on every
/// call (the file is rotated by whoever writes it).
pub(crate) struct WebIdentity {
    pub token_file: std::path::PathBuf,
    pub role_arn: String,
    pub session_name: Option<String>,
    pub sts: Sts,
    /// Where it was configured: "environment" or "profile `x`".
    pub origin: String,
}

impl ProvideCredentials for WebIdentity {
    fn provide(&self) -> crate::Result<Credentials> {
        let token = crate::auth::file::read_bounded(&self.token_file).map_err(|e| {
            Error::Credentials(format!(
                "{}: cannot read the web identity token file {}: {e}",
                self.describe(),
                self.token_file.display()
            ))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::Credentials(format!(
                "{}: the web identity token file {} is empty",
                self.describe(),
                self.token_file.display()
            )));
        }
        let session = self
            .session_name
            .clone()
            .unwrap_or_else(default_session_name);
        let params = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", session.as_str()),
            ("WebIdentityToken", token),
        ];
        self.sts
            .post("AssumeRoleWithWebIdentity", &Sts::form(&params), None)
            .map_err(|e| Error::Credentials(format!("{}: {e}", self.describe())))
    }

    fn describe(&self) -> String {
        format!("web identity ({}): role {}", self.origin, self.role_arn)
    }
}
