//! IAM Identity Center (SSO): the access token that `aws sso login` cached,
//! exchanged for role credentials at the SSO portal.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sha1::{Digest, Sha1};
use ureq::Agent;

use crate::auth::credentials::{Credentials, ProvideCredentials};
use crate::auth::http;
use crate::auth::ini::{Env, home_dir, var};
use crate::auth::sigv4;
use crate::auth::time::{parse_rfc3339, rfc3339};
use crate::error::Error;

pub(crate) const ENV_ENDPOINT_SSO: &str = "AWS_ENDPOINT_URL_SSO";

/// Role credentials through the SSO portal.
pub(crate) struct Sso {
    pub cache_file: PathBuf,
    pub account_id: String,
    pub role_name: String,
    pub portal: String,
    pub profile: String,
    agent: Agent,
}

/// `~/.aws/sso/cache/<sha1 hex of key>.json`.
fn cache_file(env: Env, key: &str) -> Option<PathBuf> {
    let digest = Sha1::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    home_dir(env).map(|h| {
        h.join(".aws")
            .join("sso")
            .join("cache")
            .join(format!("{hex}.json"))
    })
}

impl Sso {
    /// `cache_key` is the `sso_session` name, or the start URL for the
    /// legacy form.
    pub(crate) fn new(
        env: Env,
        profile: &str,
        cache_key: &str,
        region: &str,
        account_id: String,
        role_name: String,
    ) -> crate::Result<Sso> {
        let cache_file = cache_file(env, cache_key).ok_or_else(|| {
            Error::Credentials(format!(
                "profile `{profile}`: SSO needs ~/.aws/sso/cache, and HOME is not set"
            ))
        })?;
        let portal = var(env, ENV_ENDPOINT_SSO)
            .or_else(|| var(env, crate::auth::sts::ENV_ENDPOINT))
            .map(|u| http::trim_url(&u))
            .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com"));
        Ok(Sso {
            cache_file,
            account_id,
            role_name,
            portal,
            profile: profile.to_owned(),
            agent: http::agent(Duration::from_secs(5), Duration::from_secs(30)),
        })
    }

    fn token(&self) -> Result<String, String> {
        let text = crate::auth::file::read_bounded(&self.cache_file).map_err(|e| {
            format!(
                "cannot read the SSO token cache {} ({e}): run `aws sso login`",
                self.cache_file.display()
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON ({e})", self.cache_file.display()))?;
        let token = http::json_str(&v, "accessToken")
            .ok_or_else(|| format!("{} has no accessToken", self.cache_file.display()))?;
        if let Some(at) = http::json_str(&v, "expiresAt") {
            let at = parse_rfc3339(&at).ok_or_else(|| {
                format!(
                    "{}: expiresAt is not an RFC 3339 time",
                    self.cache_file.display()
                )
            })?;
            if at <= SystemTime::now() {
                return Err(format!(
                    "the SSO token in {} expired at {}: run `aws sso login`",
                    self.cache_file.display(),
                    rfc3339(at)
                ));
            }
        }
        Ok(token)
    }

    fn fetch(&self) -> Result<Credentials, String> {
        let token = self.token()?;
        let url = format!(
            "{}/federation/credentials?account_id={}&role_name={}",
            self.portal,
            sigv4::uri_encode(&self.account_id, false),
            sigv4::uri_encode(&self.role_name, false)
        );
        let reply = http::call(
            &self.agent,
            "GET",
            &url,
            &[("x-amz-sso_bearer_token", token.as_str())],
            None,
        )?;
        if reply.status != 200 {
            return Err(format!("GET {url}: HTTP {}", reply.status));
        }
        let v: serde_json::Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("GET {url}: the reply is not JSON ({e})"))?;
        let rc = v
            .get("roleCredentials")
            .ok_or_else(|| format!("GET {url}: no roleCredentials in the reply"))?;
        let field = |k: &str| {
            http::json_str(rc, k)
                .ok_or_else(|| format!("GET {url}: no roleCredentials.{k} in the reply"))
        };
        let expiration = rc
            .get("expiration")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| {
                format!("GET {url}: no roleCredentials.expiration (epoch ms) in the reply")
            })?;
        Ok(Credentials::new(
            field("accessKeyId")?,
            field("secretAccessKey")?,
            Some(field("sessionToken")?),
        )
        .with_expiry(http::from_epoch_millis(expiration)))
    }
}

impl ProvideCredentials for Sso {
    fn provide(&self) -> crate::Result<Credentials> {
        self.fetch()
            .map_err(|e| Error::Credentials(format!("{}: {e}", self.describe())))
    }

    fn describe(&self) -> String {
        format!(
            "profile `{}`: SSO account {} role {}",
            self.profile, self.account_id, self.role_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_file_is_sha1_of_the_key() {
        let env = |n: &str| (n == "HOME").then(|| "/h".to_owned());
        // sha1("my-sso") as the AWS CLI names it.
        assert_eq!(
            cache_file(&env, "my-sso").unwrap(),
            PathBuf::from("/h/.aws/sso/cache/0ad374308c5a4e22f723adf10145eafad7c4031c.json")
        );
    }
}
