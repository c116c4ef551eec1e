//! The AWS SDKs' default credentials chain: environment, web identity, the
//! shared profile, container credentials, instance metadata. Each source is
//! tried only when its configuration is present (instance metadata always,
//! unless disabled); a source that is configured but fails stops the chain.
//! The error lists every source tried and why it was skipped or failed.

use std::path::PathBuf;

use crate::auth::container::{self, Container};
use crate::auth::credentials::{Credentials, ProvideCredentials, from_env_with};
use crate::auth::imds::{self, Imds};
use crate::auth::ini::{Env, profile_name, var};
use crate::auth::profile::{self, Profiles};
use crate::auth::sts::{Sts, WebIdentity};
use crate::error::Error;

pub(crate) const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
pub(crate) const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
pub(crate) const ENV_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";

/// What the chain found.
pub(crate) struct Found {
    pub provider: Box<dyn ProvideCredentials>,
    pub refreshable: bool,
    pub first: Credentials,
}

/// Runs the chain with the variables of `env`. `profile` is an explicit
/// profile (`--profile`): then only that profile is used. `region` is for
/// STS (default `us-east-1`).
pub(crate) fn resolve(
    env: Env,
    profile: Option<&str>,
    region: Option<&str>,
) -> crate::Result<(Found, Credentials)> {
    let found = find(env, profile, region)?;
    let first = found.first.clone();
    Ok((found, first))
}

fn fetch(provider: Box<dyn ProvideCredentials>, refreshable: bool) -> crate::Result<Found> {
    let first = provider.provide()?;
    Ok(Found {
        provider,
        refreshable,
        first,
    })
}

fn find(env: Env, explicit_profile: Option<&str>, region: Option<&str>) -> crate::Result<Found> {
    let region = region.unwrap_or("us-east-1");
    let mut tried: Vec<String> = Vec::new();
    let fail = |tried: &[String], e: Error| -> Error {
        let msg = match e {
            Error::Credentials(m) => m,
            other => other.to_string(),
        };
        if tried.is_empty() {
            Error::Credentials(msg)
        } else {
            Error::Credentials(format!(
                "{msg} (sources skipped before it: {})",
                tried.join("; ")
            ))
        }
    };
    let profile_name = profile_name(env, explicit_profile)?;

    if explicit_profile.is_none() {
        // 1. Environment.
        match from_env_with(env) {
            Ok(Some(c)) => return fetch(Box::new(EnvKeys(c)), false),
            Ok(None) => tried.push(
                "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into(),
            ),
            Err(e) => return Err(fail(&tried, e)),
        }
        // 2. Web identity.
        match (
            var(env, ENV_WEB_IDENTITY_TOKEN_FILE),
            var(env, ENV_ROLE_ARN),
        ) {
            (Some(file), Some(role)) => {
                let p = WebIdentity {
                    token_file: PathBuf::from(file),
                    role_arn: role,
                    session_name: var(env, ENV_ROLE_SESSION_NAME),
                    sts: Sts::from_env(env, region),
                    origin: "environment".into(),
                };
                return fetch(Box::new(p), true).map_err(|e| fail(&tried, e));
            }
            (Some(_), None) => tried.push(format!(
                "web identity: {ENV_WEB_IDENTITY_TOKEN_FILE} is set but {ENV_ROLE_ARN} is not"
            )),
            (None, _) => tried.push(format!(
                "web identity: {ENV_WEB_IDENTITY_TOKEN_FILE} is not set"
            )),
        }
    }
    // 3. The shared profile.
    let profiles = Profiles::load(env).map_err(|e| fail(&tried, e))?;
    match profile::resolve(env, &profiles, &profile_name, region) {
        Ok(Some(r)) => return fetch(r.provider, r.refreshable).map_err(|e| fail(&tried, e)),
        Ok(None) if explicit_profile.is_some() => {
            return Err(Error::Credentials(format!(
                "profile `{profile_name}` is not in {}",
                profiles.looked.join(" or ")
            )));
        }
        Ok(None) => tried.push(format!(
            "profile `{profile_name}`: not in {}",
            profiles.looked.join(" or ")
        )),
        Err(e) => return Err(fail(&tried, e)),
    }
    if explicit_profile.is_some() {
        unreachable!("an explicit profile resolves or fails above");
    }
    // 4. Container credentials.
    match Container::from_env(env) {
        Ok(Some(c)) => return fetch(Box::new(c), true).map_err(|e| fail(&tried, e)),
        Ok(None) => tried.push(format!(
            "container: {} and {} are not set",
            container::ENV_RELATIVE,
            container::ENV_FULL
        )),
        Err(e) => return Err(fail(&tried, e)),
    }
    // 5. Instance metadata.
    if imds::disabled(env) {
        tried.push(format!(
            "instance metadata: disabled by {}=true",
            imds::ENV_DISABLED
        ));
    } else {
        let imds = Imds::from_env(env);
        match imds.provide() {
            Ok(first) => {
                return Ok(Found {
                    provider: Box::new(imds),
                    refreshable: true,
                    first,
                });
            }
            Err(e) => tried.push(e.to_string().trim_start_matches("credentials: ").to_owned()),
        }
    }
    Err(Error::Credentials(format!(
        "no credentials found; sources tried, in order: {}",
        tried.join("; ")
    )))
}

/// Keys from the environment.
struct EnvKeys(Credentials);

impl ProvideCredentials for EnvKeys {
    fn provide(&self) -> crate::Result<Credentials> {
        Ok(self.0.clone())
    }
    fn describe(&self) -> String {
        "environment (AWS_ACCESS_KEY_ID)".to_owned()
    }
}
