//! EC2 instance metadata, IMDSv2 only: a session token (`PUT
//! /latest/api/token`), then the role and its credentials.

use std::time::Duration;

use parking_lot::Mutex;
use ureq::Agent;

use crate::auth::credentials::{Credentials, ProvideCredentials};
use crate::auth::http;
use crate::auth::ini::{Env, var};
use crate::error::Error;

pub(crate) const ENV_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
pub(crate) const ENV_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
pub(crate) const ENV_ENDPOINT_MODE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE";
const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const DEFAULT_ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// Attempts of each call (off EC2 every one fails fast).
const ATTEMPTS: u32 = 2;

/// The instance metadata service.
pub(crate) struct Imds {
    endpoint: String,
    agent: Agent,
    /// The role of the last fetch, for messages.
    role: Mutex<Option<String>>,
}

/// Whether `AWS_EC2_METADATA_DISABLED` says `true`.
pub(crate) fn disabled(env: Env) -> bool {
    var(env, ENV_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl Imds {
    /// The service at `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the default
    /// (IPv6 when `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`), with about
    /// 1 s connect and read timeouts.
    pub(crate) fn from_env(env: Env) -> Imds {
        let endpoint = var(env, ENV_ENDPOINT)
            .map(|u| http::trim_url(&u))
            .unwrap_or_else(|| {
                if var(env, ENV_ENDPOINT_MODE).is_some_and(|m| m.eq_ignore_ascii_case("ipv6")) {
                    DEFAULT_ENDPOINT_V6.to_owned()
                } else {
                    DEFAULT_ENDPOINT.to_owned()
                }
            });
        Imds {
            endpoint,
            agent: http::agent(Duration::from_secs(1), Duration::from_secs(2)),
            role: Mutex::new(None),
        }
    }

    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<String, String> {
        let url = format!("{}{path}", self.endpoint);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let body = (method == "PUT").then_some(&b""[..]);
            match http::call(&self.agent, method, &url, headers, body) {
                Ok(r) if r.status == 200 => return Ok(r.body),
                Ok(r) if r.status >= 500 && attempt < ATTEMPTS => {
                    last = format!("{method} {url}: HTTP {}", r.status)
                }
                Ok(r) => return Err(format!("{method} {url}: HTTP {}", r.status)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn fetch(&self) -> Result<Credentials, String> {
        let token = self.call("PUT", "/latest/api/token", &[(TOKEN_TTL_HEADER, "21600")])?;
        let token = token.trim();
        let auth = [(TOKEN_HEADER, token)];
        let roles = self.call("GET", CREDENTIALS_PATH, &auth)?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or("the instance has no IAM role (the role listing is empty)")?
            .to_owned();
        if role.contains(['/', '?', '#']) {
            return Err(format!("the role name {role:?} is not a valid role name"));
        }
        *self.role.lock() = Some(role.clone());
        let json = self.call("GET", &format!("{CREDENTIALS_PATH}{role}"), &auth)?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json)
            && let Some(code) = http::json_str(&v, "Code")
            && code != "Success"
        {
            return Err(format!("role {role}: Code is {code:?}, not \"Success\""));
        }
        http::credentials_from_json(&json, &format!("role {role}"))
    }
}

impl ProvideCredentials for Imds {
    fn provide(&self) -> crate::Result<Credentials> {
        self.fetch()
            .map_err(|e| Error::Credentials(format!("instance metadata at {}: {e}", self.endpoint)))
    }

    fn describe(&self) -> String {
        match &*self.role.lock() {
            Some(role) => format!("IMDS role {role}"),
            None => format!("instance metadata at {}", self.endpoint),
        }
    }
}
