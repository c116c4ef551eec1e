//! Container credentials: ECS task roles and EKS Pod Identity.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ureq::Agent;

use crate::auth::credentials::{Credentials, ProvideCredentials};
use crate::auth::http;
use crate::auth::ini::{Env, var};
use crate::error::Error;

pub(crate) const ENV_RELATIVE: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
pub(crate) const ENV_FULL: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub(crate) const ENV_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
pub(crate) const ENV_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
const ECS_HOST: &str = "http://169.254.170.2";

/// The container credentials endpoint.
pub(crate) struct Container {
    url: String,
    token_file: Option<PathBuf>,
    token: Option<String>,
    agent: Agent,
}

/// Whether an `http` URL may be used: loopback, or the ECS and EKS hosts.
fn allowed_http_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => true,
        Ok(ip) => ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
            .iter()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|a| a == ip)),
        Err(_) => false,
    }
}

impl Container {
    /// The endpoint the environment names, `Ok(None)` when none.
    pub(crate) fn from_env(env: Env) -> crate::Result<Option<Container>> {
        let url = if let Some(rel) = var(env, ENV_RELATIVE) {
            let rel = rel.trim();
            if !rel.starts_with('/') {
                return Err(Error::Credentials(format!(
                    "{ENV_RELATIVE} must start with `/`"
                )));
            }
            format!("{ECS_HOST}{rel}")
        } else if let Some(full) = var(env, ENV_FULL) {
            let full = full.trim().to_owned();
            let uri: ureq::http::Uri = full
                .parse()
                .map_err(|_| Error::Credentials(format!("{ENV_FULL} is not a URL")))?;
            let host = uri.host().unwrap_or_default();
            match uri.scheme_str() {
                Some("https") => {}
                Some("http") if allowed_http_host(host) => {}
                Some("http") => {
                    return Err(Error::Credentials(format!(
                        "{ENV_FULL}: http is allowed only to loopback, 169.254.170.2, \
                         169.254.170.23 or fd00:ec2::23, not to {host} (use https)"
                    )));
                }
                _ => {
                    return Err(Error::Credentials(format!(
                        "{ENV_FULL} must be an http:// or https:// URL"
                    )));
                }
            }
            full
        } else {
            return Ok(None);
        };
        Ok(Some(Container {
            url,
            token_file: var(env, ENV_TOKEN_FILE).map(PathBuf::from),
            token: var(env, ENV_TOKEN),
            agent: http::agent(Duration::from_secs(2), Duration::from_secs(5)),
        }))
    }

    fn authorization(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.token_file {
            let t = crate::auth::file::read_bounded(path)
                .map_err(|e| format!("cannot read {ENV_TOKEN_FILE} {}: {e}", path.display()))?;
            return Ok(Some(t.trim().to_owned()));
        }
        Ok(self.token.as_ref().map(|t| t.trim().to_owned()))
    }

    fn fetch(&self) -> Result<Credentials, String> {
        let auth = self.authorization()?;
        if auth.as_deref().is_some_and(|a| a.contains(['\r', '\n'])) {
            return Err("the authorization token contains a line break".to_owned());
        }
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let mut last = String::new();
        for attempt in 1..=2 {
            match http::call(&self.agent, "GET", &self.url, &headers, None) {
                Ok(r) if r.status == 200 => {
                    return http::credentials_from_json(&r.body, "the reply");
                }
                Ok(r) if r.status >= 500 && attempt < 2 => last = format!("HTTP {}", r.status),
                Ok(r) => return Err(format!("HTTP {}", r.status)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl ProvideCredentials for Container {
    fn provide(&self) -> crate::Result<Credentials> {
        self.fetch()
            .map_err(|e| Error::Credentials(format!("{}: {e}", self.describe())))
    }

    fn describe(&self) -> String {
        format!("container credentials at {}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_hosts() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "localhost",
            "169.254.170.2",
            "169.254.170.23",
            "[fd00:ec2::23]",
        ] {
            assert!(allowed_http_host(ok), "{ok}");
        }
        for no in [
            "169.254.169.254",
            "example.com",
            "10.0.0.1",
            "[fd00:ec2::254]",
        ] {
            assert!(!allowed_http_host(no), "{no}");
        }
    }
}
