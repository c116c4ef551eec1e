//! A shared-config profile turned into a credentials provider: static keys,
//! `role_arn` with `source_profile` or `credential_source` (chains of them,
//! cycles refused), `web_identity_token_file`, `credential_process` and SSO.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::auth::container::Container;
use crate::auth::credentials::{Credentials, ProvideCredentials, from_env_with};
use crate::auth::credentials::{KEY_ACCESS_KEY, KEY_SECRET_KEY, KEY_SESSION_TOKEN};
use crate::auth::http;
use crate::auth::imds::Imds;
use crate::auth::ini::{Env, FileKind, Ini, config_file, read_ini, shared_files};
use crate::auth::sso::Sso;
use crate::auth::sts::{AssumeRole, Sts, WebIdentity};
use crate::error::Error;

/// Both shared files, parsed (a missing file is an empty one).
pub(crate) struct Profiles {
    files: Vec<(FileKind, PathBuf, Ini)>,
    /// The paths looked at, for messages.
    pub looked: Vec<String>,
}

impl Profiles {
    pub(crate) fn load(env: Env) -> crate::Result<Profiles> {
        let mut files = Vec::new();
        let mut looked = Vec::new();
        for (kind, path) in shared_files(env) {
            match path {
                Some(path) => {
                    looked.push(path.display().to_string());
                    if let Some(ini) = read_ini(&path)? {
                        files.push((kind, path, ini));
                    }
                }
                None => looked.push(match kind {
                    FileKind::Credentials => "~/.aws/credentials (HOME is not set)".to_owned(),
                    FileKind::Config => "~/.aws/config (HOME is not set)".to_owned(),
                }),
            }
        }
        Ok(Profiles { files, looked })
    }

    /// The merged values of profile `name` (the credentials file wins over
    /// the config file, as in the AWS CLI); None when neither has it.
    pub(crate) fn get(&self, name: &str) -> Option<HashMap<String, String>> {
        let mut out: Option<HashMap<String, String>> = None;
        // Config first, so that the credentials file overrides it.
        for (kind, _, ini) in self.files.iter().rev() {
            if let Some(values) = ini.profile(*kind, name) {
                let map = out.get_or_insert_with(HashMap::new);
                for (k, v) in values {
                    map.insert(k.to_owned(), v.trim().to_owned());
                }
            }
        }
        out
    }

    /// `[sso-session NAME]` of the config file.
    fn sso_session(&self, name: &str) -> Option<HashMap<String, String>> {
        self.files
            .iter()
            .find(|(kind, _, _)| *kind == FileKind::Config)
            .and_then(|(_, _, ini)| ini.section(&format!("sso-session {name}")))
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                    .collect()
            })
    }
}

/// A resolved profile: the provider, and whether it can give other
/// credentials when asked again.
pub(crate) struct Resolved {
    pub provider: Box<dyn ProvideCredentials>,
    pub refreshable: bool,
}

fn get<'a>(values: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    values
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Static keys of a profile, as a non-refreshable provider.
fn static_keys(name: &str, values: &HashMap<String, String>) -> crate::Result<Option<Credentials>> {
    match (get(values, KEY_ACCESS_KEY), get(values, KEY_SECRET_KEY)) {
        (Some(k), Some(s)) => Ok(Some(Credentials::new(
            k,
            s,
            get(values, KEY_SESSION_TOKEN).map(str::to_owned),
        ))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Credentials(format!(
            "profile `{name}` has {KEY_ACCESS_KEY} but no {KEY_SECRET_KEY}"
        ))),
        (None, Some(_)) => Err(Error::Credentials(format!(
            "profile `{name}` has {KEY_SECRET_KEY} but no {KEY_ACCESS_KEY}"
        ))),
    }
}

/// Static keys wrapped with where they came from.
struct ProfileKeys {
    creds: Credentials,
    profile: String,
}

impl ProvideCredentials for ProfileKeys {
    fn provide(&self) -> crate::Result<Credentials> {
        Ok(self.creds.clone())
    }
    fn describe(&self) -> String {
        format!("profile `{}`: static keys", self.profile)
    }
}

/// The most profiles a `source_profile` chain may hold.
pub(crate) const MAX_CHAIN: usize = 32;

/// A chain of profiles for a message, short whatever its length and names:
/// the first three and the last two, each name cut to 40 characters.
fn chain_text(chain: &[String]) -> String {
    let name = |p: &String| {
        if p.chars().count() > 40 {
            format!("`{}…`", p.chars().take(40).collect::<String>())
        } else {
            format!("`{p}`")
        }
    };
    let mut parts: Vec<String> = Vec::new();
    if chain.len() > 5 {
        parts.extend(chain[..3].iter().map(name));
        parts.push(format!("… ({} more)", chain.len() - 5));
        parts.extend(chain[chain.len() - 2..].iter().map(name));
    } else {
        parts.extend(chain.iter().map(name));
    }
    parts.join(" -> ")
}

/// Resolves profile `name`: `Ok(None)` when no file has it.
pub(crate) fn resolve(
    env: Env,
    profiles: &Profiles,
    name: &str,
    region: &str,
) -> crate::Result<Option<Resolved>> {
    let mut chain = Vec::new();
    resolve_in(env, profiles, name, region, &mut chain)
}

fn resolve_in(
    env: Env,
    profiles: &Profiles,
    name: &str,
    region: &str,
    chain: &mut Vec<String>,
) -> crate::Result<Option<Resolved>> {
    if chain.iter().any(|p| p == name) {
        chain.push(name.to_owned());
        return Err(Error::Credentials(format!(
            "the profiles form a cycle: {} (source_profile)",
            chain_text(chain)
        )));
    }
    chain.push(name.to_owned());
    if chain.len() > MAX_CHAIN {
        return Err(Error::Credentials(format!(
            "the source_profile chain is longer than {MAX_CHAIN} profiles: {}",
            chain_text(chain)
        )));
    }
    let Some(values) = profiles.get(name) else {
        return Ok(None);
    };
    let region = get(&values, "region").unwrap_or(region).to_owned();
    if get(&values, "mfa_serial").is_some() && get(&values, "role_arn").is_some() {
        return Err(Error::Credentials(format!(
            "profile `{name}` uses mfa_serial, which needs an MFA code that s3pump cannot ask for"
        )));
    }
    if let Some(role_arn) = get(&values, "role_arn") {
        let self_source = get(&values, "source_profile") == Some(name);
        let source: Box<dyn ProvideCredentials> = if let Some(src) = get(&values, "source_profile")
        {
            if self_source {
                let creds = static_keys(name, &values)?.ok_or_else(|| {
                    Error::Credentials(format!(
                        "profile `{name}` is its own source_profile but has no static keys"
                    ))
                })?;
                Box::new(ProfileKeys {
                    creds,
                    profile: name.to_owned(),
                })
            } else {
                match resolve_in(env, profiles, src, &region, chain)? {
                    Some(r) => r.provider,
                    None => {
                        return Err(Error::Credentials(format!(
                            "profile `{name}`: source_profile `{src}` is not in {}",
                            profiles.looked.join(" or ")
                        )));
                    }
                }
            }
        } else if let Some(cs) = get(&values, "credential_source") {
            credential_source(env, name, cs)?
        } else if let Some(file) = get(&values, "web_identity_token_file") {
            return Ok(Some(Resolved {
                provider: Box::new(WebIdentity {
                    token_file: PathBuf::from(file),
                    role_arn: role_arn.to_owned(),
                    session_name: get(&values, "role_session_name").map(str::to_owned),
                    sts: Sts::from_env(env, &region),
                    origin: format!("profile `{name}`"),
                }),
                refreshable: true,
            }));
        } else {
            return Err(Error::Credentials(format!(
                "profile `{name}` has role_arn but neither source_profile, credential_source nor \
                 web_identity_token_file"
            )));
        };
        let duration_seconds = match get(&values, "duration_seconds") {
            Some(d) => Some(d.parse::<u32>().map_err(|_| {
                Error::Credentials(format!(
                    "profile `{name}`: duration_seconds {d:?} is not a number of seconds"
                ))
            })?),
            None => None,
        };
        return Ok(Some(Resolved {
            provider: Box::new(AssumeRole {
                source,
                role_arn: role_arn.to_owned(),
                session_name: get(&values, "role_session_name").map(str::to_owned),
                external_id: get(&values, "external_id").map(str::to_owned),
                duration_seconds,
                sts: Sts::from_env(env, &region),
                profile: name.to_owned(),
            }),
            refreshable: true,
        }));
    }
    if let Some(creds) = static_keys(name, &values)? {
        return Ok(Some(Resolved {
            provider: Box::new(ProfileKeys {
                creds,
                profile: name.to_owned(),
            }),
            refreshable: false,
        }));
    }
    if get(&values, "web_identity_token_file").is_some() {
        return Err(Error::Credentials(format!(
            "profile `{name}` has web_identity_token_file but no role_arn"
        )));
    }
    if get(&values, "sso_session").is_some() || get(&values, "sso_start_url").is_some() {
        return sso(env, profiles, name, &values).map(|p| {
            Some(Resolved {
                provider: Box::new(p),
                refreshable: true,
            })
        });
    }
    if let Some(command) = get(&values, "credential_process") {
        return Ok(Some(Resolved {
            provider: Box::new(Process {
                command: command.to_owned(),
                profile: name.to_owned(),
                time_limit: PROCESS_TIME_LIMIT,
            }),
            refreshable: true,
        }));
    }
    if let Some(key) = ["credential_source", "login_session"]
        .iter()
        .find(|k| get(&values, k).is_some())
    {
        return Err(Error::Credentials(format!(
            "profile `{name}` gets credentials with `{key}`, which s3pump does not support"
        )));
    }
    Err(Error::Credentials(format!(
        "profile `{name}` (in {}) has no credentials: no {KEY_ACCESS_KEY}, role_arn, \
         credential_process or sso_session",
        profiles.looked.join(" or ")
    )))
}

/// The source of `credential_source = NAME`.
fn credential_source(
    env: Env,
    profile: &str,
    source: &str,
) -> crate::Result<Box<dyn ProvideCredentials>> {
    match source {
        "Environment" => match from_env_with(env)? {
            Some(c) => Ok(Box::new(c)),
            None => Err(Error::Credentials(format!(
                "profile `{profile}`: credential_source = Environment, but AWS_ACCESS_KEY_ID is not set"
            ))),
        },
        "Ec2InstanceMetadata" => Ok(Box::new(Imds::from_env(env))),
        "EcsContainer" => match Container::from_env(env)? {
            Some(c) => Ok(Box::new(c)),
            None => Err(Error::Credentials(format!(
                "profile `{profile}`: credential_source = EcsContainer, but neither \
                 AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set"
            ))),
        },
        other => Err(Error::Credentials(format!(
            "profile `{profile}`: credential_source {other:?} is not supported (use Environment, \
             Ec2InstanceMetadata or EcsContainer)"
        ))),
    }
}

fn sso(
    env: Env,
    profiles: &Profiles,
    name: &str,
    values: &HashMap<String, String>,
) -> crate::Result<Sso> {
    let need = |k: &str| {
        get(values, k)
            .map(str::to_owned)
            .ok_or_else(|| Error::Credentials(format!("profile `{name}` uses SSO but has no {k}")))
    };
    let account = need("sso_account_id")?;
    let role = need("sso_role_name")?;
    if let Some(session) = get(values, "sso_session") {
        let s = profiles.sso_session(session).ok_or_else(|| {
            Error::Credentials(format!(
                "profile `{name}`: sso_session `{session}` has no [sso-session {session}] section in {}",
                config_file(env).map(|p| p.display().to_string()).unwrap_or_else(|| "~/.aws/config".into())
            ))
        })?;
        let region = get(&s, "sso_region").ok_or_else(|| {
            Error::Credentials(format!("[sso-session {session}] has no sso_region"))
        })?;
        Sso::new(env, name, session, region, account, role)
    } else {
        let url = need("sso_start_url")?;
        let region = need("sso_region")?;
        Sso::new(env, name, &url, &region, account, role)
    }
}

/// How long a `credential_process` may run before it is killed.
pub(crate) const PROCESS_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The most a `credential_process` may print (its JSON is a few hundred
/// bytes; 64 KiB leaves room for long session tokens).
pub(crate) const MAX_PROCESS_OUTPUT: u64 = 64 << 10;

/// `credential_process`: a command whose standard output is the credentials
/// JSON (`Version` 1). It runs with no standard input, its standard error
/// goes to ours; it is killed (and reaped) if it prints more than
/// [`MAX_PROCESS_OUTPUT`] bytes or has not exited within `time_limit`.
pub(crate) struct Process {
    pub command: String,
    pub profile: String,
    pub time_limit: Duration,
}

impl Process {
    fn run(&self) -> Result<Credentials, String> {
        let mut cmd = if cfg!(windows) {
            let mut c = Command::new("cmd");
            c.arg("/C").arg(&self.command);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c").arg(&self.command);
            c
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run it: {e}"))?;
        let deadline = Instant::now() + self.time_limit;
        let stdout = child.stdout.take().expect("stdout is piped");
        // The output is read on a thread so that the wait can time out.
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("credential-process".into())
            .spawn(move || {
                let mut out = Vec::new();
                let read = stdout.take(MAX_PROCESS_OUTPUT + 1).read_to_end(&mut out);
                let _ = tx.send(read.map(|_| out));
            })
            .map_err(|e| format!("cannot read its output: {e}"))?;
        let limit = self.time_limit.as_secs_f64();
        let out = match rx.recv_deadline(deadline) {
            Ok(Ok(out)) if out.len() as u64 > MAX_PROCESS_OUTPUT => {
                end(&mut child);
                return Err(format!(
                    "it printed more than {MAX_PROCESS_OUTPUT} bytes; it was stopped"
                ));
            }
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                end(&mut child);
                return Err(format!("cannot read its output: {e}"));
            }
            Err(_) => {
                end(&mut child);
                return Err(format!(
                    "it did not finish within {limit} s; it was stopped"
                ));
            }
        };
        // The output is closed: wait for the exit, within the same limit.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    end(&mut child);
                    return Err(format!("it did not exit within {limit} s; it was stopped"));
                }
                Err(e) => return Err(format!("cannot wait for it: {e}")),
            }
        };
        if !status.success() {
            return Err(format!("it failed ({status})"));
        }
        let text = String::from_utf8(out).map_err(|_| "its output is not UTF-8".to_owned())?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && v.get("Version").and_then(|x| x.as_u64()) != Some(1)
        {
            return Err("its output has no \"Version\": 1".to_owned());
        }
        http::credentials_from_json(&text, "its output")
    }
}

/// Kills a child and reaps it.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl ProvideCredentials for Process {
    fn provide(&self) -> crate::Result<Credentials> {
        self.run()
            .map_err(|e| Error::Credentials(format!("{}: {e}", self.describe())))
    }

    fn describe(&self) -> String {
        // The command line may hold arguments the user considers private;
        // the profile names it well enough.
        format!("profile `{}`: credential_process", self.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(command: &str, limit: Duration) -> Process {
        Process {
            command: command.to_owned(),
            profile: "p".to_owned(),
            time_limit: limit,
        }
    }

    /// Runs `command` with `limit`; its error, which must come within 10 s.
    fn fails_in_time(command: &str, limit: Duration) -> String {
        let started = Instant::now();
        let e = process(command, limit).run().unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{command}: {took:?}");
        e
    }

    /// Whether process `pid` is gone (exited and reaped: not even a zombie).
    fn gone(pid: &str) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_credential_process_that_never_ends_is_killed_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // Still printing nothing; then with its output closed but not exited.
        for (command, want) in [
            ("exec sleep 30", "did not finish within 1 s; it was stopped"),
            (
                "exec sleep 30 >&-",
                "did not exit within 1 s; it was stopped",
            ),
        ] {
            let command = format!("echo $$ > {}; {command}", pid_file.display());
            let e = fails_in_time(&command, Duration::from_secs(1));
            assert!(e.contains(want), "{e}");
            let pid = std::fs::read_to_string(&pid_file).unwrap();
            assert!(gone(pid.trim()), "pid {pid} still there");
        }
    }

    #[test]
    fn a_credential_process_that_prints_forever_is_stopped() {
        let e = fails_in_time("yes AAAAAAAAAAAAAAAA", Duration::from_secs(60));
        assert!(e.contains("printed more than 65536 bytes"), "{e}");
        assert!(e.len() < 100, "{e}");
        // Output just under the cap is read (and then judged as JSON).
        let e = fails_in_time(
            "head -c 60000 /dev/zero | tr '\\0' a",
            Duration::from_secs(60),
        );
        assert!(!e.contains("printed more"), "{e}");
    }

    #[test]
    fn chains_are_told_short() {
        let chain: Vec<String> = (0..3000).map(|i| format!("p{i}")).collect();
        let t = chain_text(&chain);
        assert_eq!(
            t,
            "`p0` -> `p1` -> `p2` -> … (2995 more) -> `p2998` -> `p2999`"
        );
        let long = vec!["x".repeat(10_000), "y".into()];
        let t = chain_text(&long);
        assert!(t.len() < 60, "{t}");
        assert_eq!(
            chain_text(&["a".into(), "b".into(), "a".into()]),
            "`a` -> `b` -> `a`"
        );
    }
}
