//! Credentials and region resolution, in the AWS CLI's order: the environment,
//! then the shared credentials and config files.
//!
//! Secrets never leave this module in a printable form: [`Credentials`]'s
//! `Debug` redacts them, and errors name files, line numbers and variables,
//! never their values.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// AWS access keys: an access key id, its secret, and for temporary
/// credentials a session token.
///
/// `Debug` shows the access key id only; the secret and the session token are
/// printed as `"<redacted>"`.
///
/// ```
/// use s3pump::Credentials;
///
/// let creds = Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None);
/// assert_eq!(creds.access_key_id(), "AKIAIOSFODNN7EXAMPLE");
/// assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
/// ```
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The older name of `AWS_SESSION_TOKEN`, still read by the AWS CLI.
const ENV_SECURITY_TOKEN: &str = "AWS_SECURITY_TOKEN";

const KEY_ACCESS_KEY: &str = "aws_access_key_id";
const KEY_SECRET_KEY: &str = "aws_secret_access_key";
const KEY_SESSION_TOKEN: &str = "aws_session_token";

/// Keys of profiles that get credentials some other way, which s3pump does
/// not implement; named in the "nothing found" error to save a user a search.
const UNSUPPORTED_KEYS: &[&str] = &[
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
];

impl Credentials {
    /// Credentials from explicit values. `session_token` is for temporary
    /// credentials (STS); it is sent as `x-amz-security-token`.
    ///
    /// ```
    /// use s3pump::Credentials;
    ///
    /// let temporary = Credentials::new("ASIAEXAMPLE", "secret", Some("token".to_owned()));
    /// # let _ = temporary;
    /// ```
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    /// The access key id (not a secret: it appears in every signed request).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Credentials from the environment: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, with `AWS_SESSION_TOKEN` (or the older
    /// `AWS_SECURITY_TOKEN`) when set. An empty variable counts as unset.
    ///
    /// Returns `Ok(None)` when neither key variable is set, and
    /// [`Error::Credentials`] when only one of the pair is.
    ///
    /// ```no_run
    /// use s3pump::Credentials;
    ///
    /// match Credentials::from_env()? {
    ///     Some(creds) => println!("using {}", creds.access_key_id()),
    ///     None => println!("AWS_ACCESS_KEY_ID is not set"),
    /// }
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn from_env() -> Result<Option<Credentials>, Error> {
        from_env_with(&process_env)
    }

    /// Credentials from the shared files, as the AWS CLI reads them.
    ///
    /// The profile is `profile`, else `AWS_PROFILE`, else `default`. The
    /// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`, sections `[NAME]`) is looked at first, then the
    /// config file (`AWS_CONFIG_FILE`, else `~/.aws/config`, sections
    /// `[profile NAME]`, and `[default]` for the default profile). The keys
    /// read are `aws_access_key_id`, `aws_secret_access_key` and
    /// `aws_session_token`.
    ///
    /// Returns `Ok(None)` when no file has the profile with an access key (a
    /// missing file is not an error). Errors are [`Error::Credentials`]: a
    /// file that exists but cannot be read, a malformed line (the error names
    /// the file and line number), or a profile with only one of the key pair.
    ///
    /// ```no_run
    /// use s3pump::Credentials;
    ///
    /// let creds = Credentials::from_profile(Some("backup"))?.expect("profile `backup` has keys");
    /// # let _ = creds;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn from_profile(profile: Option<&str>) -> Result<Option<Credentials>, Error> {
        from_profile_with(&process_env, profile)
    }

    /// The AWS CLI's chain: [`from_env`](Self::from_env), then
    /// [`from_profile`](Self::from_profile) with the profile of `AWS_PROFILE`
    /// (or `default`).
    ///
    /// When nothing is found the [`Error::Credentials`] says where it looked.
    /// Profiles that get credentials some other way (`role_arn`,
    /// `credential_process`, SSO) are not supported.
    ///
    /// ```no_run
    /// use s3pump::Credentials;
    ///
    /// let creds = Credentials::from_default_chain()?;
    /// # let _ = creds;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn from_default_chain() -> Result<Credentials, Error> {
        default_chain_with(&process_env)
    }
}

/// Region: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's `region`
/// in the config file; None if none.
#[allow(dead_code)] // for the client builder, not written yet
pub(crate) fn default_region() -> Option<String> {
    region_with(&process_env)
}

/// An environment to read variables from: the process's, or a test's map.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable of the process environment; empty counts as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name)
        .and_then(|v| v.into_string().ok())
        .filter(|v| !v.is_empty())
}

/// `env(name)`, with empty values treated as unset whatever `env` does.
fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

fn from_env_with(env: Env) -> Result<Option<Credentials>, Error> {
    let key = var(env, ENV_ACCESS_KEY);
    let secret = var(env, ENV_SECRET_KEY);
    match (key, secret) {
        (Some(key), Some(secret)) => {
            let token = var(env, ENV_SESSION_TOKEN).or_else(|| var(env, ENV_SECURITY_TOKEN));
            Ok(Some(Credentials::new(key, secret, token)))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Credentials(format!(
            "{ENV_ACCESS_KEY} is set but {ENV_SECRET_KEY} is not"
        ))),
        (None, Some(_)) => Err(Error::Credentials(format!(
            "{ENV_SECRET_KEY} is set but {ENV_ACCESS_KEY} is not"
        ))),
    }
}

/// The profile to use: the explicit one, else `AWS_PROFILE`, else the older
/// `AWS_DEFAULT_PROFILE`, else `default`.
fn profile_name(env: Env, explicit: Option<&str>) -> Result<String, Error> {
    match explicit {
        Some(p) if p.trim().is_empty() => Err(Error::invalid("empty profile name")),
        Some(p) => Ok(p.trim().to_owned()),
        None => Ok(var(env, "AWS_PROFILE")
            .or_else(|| var(env, "AWS_DEFAULT_PROFILE"))
            .map(|p| p.trim().to_owned())
            .unwrap_or_else(|| "default".to_owned())),
    }
}

fn home_dir(env: Env) -> Option<PathBuf> {
    var(env, "HOME")
        .or_else(|| var(env, "USERPROFILE"))
        .map(PathBuf::from)
}

/// The path from variable `var_name` (with `~/` expanded), else
/// `~/.aws/<default_name>`; None when neither can be made.
fn shared_file(env: Env, var_name: &str, default_name: &str) -> Option<PathBuf> {
    match var(env, var_name) {
        Some(p) => {
            if let Some(rest) = p.strip_prefix("~/").or_else(|| p.strip_prefix("~\\"))
                && let Some(home) = home_dir(env)
            {
                Some(home.join(rest))
            } else if p == "~" {
                home_dir(env)
            } else {
                Some(PathBuf::from(p))
            }
        }
        None => home_dir(env).map(|h| h.join(".aws").join(default_name)),
    }
}

fn credentials_file(env: Env) -> Option<PathBuf> {
    shared_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
}

fn config_file(env: Env) -> Option<PathBuf> {
    shared_file(env, "AWS_CONFIG_FILE", "config")
}

/// Which file a profile is looked up in: the two name their sections
/// differently.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FileKind {
    /// `[NAME]`.
    Credentials,
    /// `[profile NAME]`, and `[default]` for the default profile.
    Config,
}

/// The parsed file, or None when it does not exist.
fn read_ini(path: &Path) -> Result<Option<Ini>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_ini(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Credentials(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Looks `profile` up in one parsed file.
///
/// `Ok(None)` when the file has no such profile or the profile has neither
/// key; an error when it has only one of the pair.
fn creds_in(
    ini: &Ini,
    kind: FileKind,
    profile: &str,
    path: &Path,
) -> Result<Option<Credentials>, Error> {
    let Some(values) = ini.profile(kind, profile) else {
        return Ok(None);
    };
    let get = |k: &str| values.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (get(KEY_ACCESS_KEY), get(KEY_SECRET_KEY)) {
        (Some(key), Some(secret)) => Ok(Some(Credentials::new(
            key,
            secret,
            get(KEY_SESSION_TOKEN).map(str::to_owned),
        ))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Credentials(format!(
            "profile `{profile}` in {} has {KEY_ACCESS_KEY} but no {KEY_SECRET_KEY}",
            path.display()
        ))),
        (None, Some(_)) => Err(Error::Credentials(format!(
            "profile `{profile}` in {} has {KEY_SECRET_KEY} but no {KEY_ACCESS_KEY}",
            path.display()
        ))),
    }
}

/// The two shared files of `env`, in the order they are searched.
fn shared_files(env: Env) -> [(FileKind, Option<PathBuf>); 2] {
    [
        (FileKind::Credentials, credentials_file(env)),
        (FileKind::Config, config_file(env)),
    ]
}

fn from_profile_with(env: Env, profile: Option<&str>) -> Result<Option<Credentials>, Error> {
    let profile = profile_name(env, profile)?;
    for (kind, path) in shared_files(env) {
        let Some(path) = path else { continue };
        let Some(ini) = read_ini(&path)? else {
            continue;
        };
        if let Some(creds) = creds_in(&ini, kind, &profile, &path)? {
            log::debug!("credentials: profile `{profile}` from {}", path.display());
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

fn default_chain_with(env: Env) -> Result<Credentials, Error> {
    if let Some(creds) = from_env_with(env)? {
        log::debug!("credentials: from {ENV_ACCESS_KEY}");
        return Ok(creds);
    }
    if let Some(creds) = from_profile_with(env, None)? {
        return Ok(creds);
    }
    // Nothing: say where we looked, and why a profile that exists did not do.
    let profile = profile_name(env, None)?;
    let mut looked = Vec::new();
    let mut unsupported = None;
    for (kind, path) in shared_files(env) {
        match path {
            Some(path) => {
                if unsupported.is_none()
                    && let Ok(Some(ini)) = read_ini(&path)
                    && let Some(values) = ini.profile(kind, &profile)
                {
                    unsupported = UNSUPPORTED_KEYS
                        .iter()
                        .find(|k| values.contains_key(**k))
                        .map(|k| (*k, path.clone()));
                }
                looked.push(path.display().to_string());
            }
            None => looked.push(match kind {
                FileKind::Credentials => "~/.aws/credentials (HOME is not set)".to_owned(),
                FileKind::Config => "~/.aws/config (HOME is not set)".to_owned(),
            }),
        }
    }
    let mut msg = format!(
        "no credentials found: {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} are not set, and profile \
         `{profile}` has no {KEY_ACCESS_KEY} in {}",
        looked.join(" or ")
    );
    if let Some((key, path)) = unsupported {
        msg.push_str(&format!(
            " (it uses `{key}` in {}, which s3pump does not support)",
            path.display()
        ));
    }
    Err(Error::Credentials(msg))
}

fn region_with(env: Env) -> Option<String> {
    if let Some(r) = var(env, "AWS_REGION").or_else(|| var(env, "AWS_DEFAULT_REGION")) {
        return Some(r.trim().to_owned());
    }
    let profile = profile_name(env, None).ok()?;
    let path = config_file(env)?;
    let ini = match read_ini(&path) {
        Ok(ini) => ini?,
        Err(e) => {
            log::warn!("region: {e}");
            return None;
        }
    };
    ini.profile(FileKind::Config, &profile)?
        .get("region")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

/// A setting of the current profile (`AWS_PROFILE`, else `default`) in the
/// AWS config file, such as `ca_bundle`; `None` when unset or unreadable.
pub(crate) fn profile_setting(env: Env, key: &str) -> Option<String> {
    let profile = profile_name(env, None).ok()?;
    let path = config_file(env)?;
    let ini = match read_ini(&path) {
        Ok(ini) => ini?,
        Err(e) => {
            log::warn!("{key}: {e}");
            return None;
        }
    };
    ini.profile(FileKind::Config, &profile)?
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// An INI file as the AWS tools read it: sections in file order, each with its
/// keys lower-cased.
#[derive(Debug, Default)]
struct Ini {
    sections: Vec<(String, HashMap<String, String>)>,
}

impl Ini {
    /// The values of `profile` in a file of `kind`; when several sections name
    /// it, they are merged and later values win.
    fn profile(&self, kind: FileKind, profile: &str) -> Option<HashMap<&str, &str>> {
        let mut found: Option<HashMap<&str, &str>> = None;
        for (header, values) in &self.sections {
            if section_names_profile(header, kind, profile) {
                let map = found.get_or_insert_with(HashMap::new);
                map.extend(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
        }
        found
    }
}

/// Whether section `[header]` of a file of `kind` is profile `profile`.
fn section_names_profile(header: &str, kind: FileKind, profile: &str) -> bool {
    let prefixed = header
        .strip_prefix("profile")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map(str::trim);
    match kind {
        FileKind::Credentials => header == profile,
        FileKind::Config => {
            prefixed == Some(profile) || (profile == "default" && header == "default")
        }
    }
}

/// Strips a `#` or `;` comment that follows whitespace.
fn strip_inline_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for i in 1..b.len() {
        if matches!(b[i], b'#' | b';') && matches!(b[i - 1], b' ' | b'\t') {
            return &s[..i];
        }
    }
    s
}

/// Parses the text of a shared credentials or config file.
///
/// Lenient like the AWS CLI: blank lines and `#`/`;` comment lines are
/// skipped, as are comments after whitespace at the end of a line; keys are
/// case-insensitive with any whitespace around `=`; lines indented deeper than
/// the key before them are that key's nested values (`s3 =` blocks) and are
/// ignored; keys before the first section are ignored. Anything else is
/// malformed: the error names `path` and the line number, never the line's
/// text (it may hold a secret).
fn parse_ini(text: &str, path: &Path) -> Result<Ini, Error> {
    let mut ini = Ini::default();
    // Indentation of the last key line, while nested lines may follow it.
    let mut key_indent: Option<usize> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let malformed =
            |what: &str| Error::Credentials(format!("{}:{}: {what}", path.display(), index + 1));
        let content = raw.trim_start();
        let indent = raw.len() - content.len();
        let content = content.trim_end();
        if content.is_empty() || content.starts_with(['#', ';']) {
            continue;
        }
        if let Some(ki) = key_indent
            && indent > ki
        {
            continue; // a nested value of the key above
        }
        if let Some(rest) = content.strip_prefix('[') {
            let rest = strip_inline_comment(rest).trim_end();
            let Some(name) = rest.strip_suffix(']') else {
                return Err(malformed("malformed section header (no closing `]`)"));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(malformed("empty section name"));
            }
            ini.sections.push((name.to_owned(), HashMap::new()));
            key_indent = None;
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(malformed("malformed line: expected `key = value`"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(malformed("malformed line: no key before `=`"));
        }
        key_indent = Some(indent);
        let value = strip_inline_comment(value).trim();
        match ini.sections.last_mut() {
            Some((_, values)) => {
                values.insert(key.to_ascii_lowercase(), value.to_owned());
            }
            None => log::debug!(
                "{}:{}: key outside any section ignored",
                path.display(),
                index + 1
            ),
        }
    }
    Ok(ini)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// A directory holding a credentials and a config file with the given texts.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new(credentials: Option<&str>, config: Option<&str>) -> Files {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in [("credentials", credentials), ("config", config)] {
                if let Some(text) = text {
                    let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
                    f.write_all(text.as_bytes()).unwrap();
                }
            }
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        /// An environment pointing at the files, plus `extra`.
        fn env(&self, extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
            let creds = self.path("credentials");
            let config = self.path("config");
            let mut vars: Vec<(&str, &str)> = vec![
                ("AWS_SHARED_CREDENTIALS_FILE", &creds),
                ("AWS_CONFIG_FILE", &config),
                ("HOME", "/nonexistent-home"),
            ];
            vars.extend_from_slice(extra);
            env_of(&vars)
        }
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn env_pair() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ]);
        let c = from_env_with(&env).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(c.secret_access_key(), SECRET);
        assert_eq!(c.session_token(), None);

        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "ASIA"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let c = from_env_with(&env).unwrap().unwrap();
        assert_eq!(c.session_token(), Some("tok"));
    }

    #[test]
    fn env_unset_or_empty_is_none() {
        assert!(from_env_with(&env_of(&[])).unwrap().is_none());
        let env = env_of(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]);
        assert!(from_env_with(&env).unwrap().is_none());
    }

    #[test]
    fn env_half_pair_is_an_error() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")]);
        let err = from_env_with(&env).unwrap_err();
        assert!(matches!(err, Error::Credentials(_)), "{err:?}");
        assert!(
            err.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{err}"
        );

        let env = env_of(&[("AWS_SECRET_ACCESS_KEY", SECRET)]);
        let err = from_env_with(&env).unwrap_err();
        assert!(
            err.to_string().contains("AWS_ACCESS_KEY_ID is not"),
            "{err}"
        );
        assert!(!err.to_string().contains(SECRET));
    }

    #[test]
    fn profile_from_credentials_file() {
        let files = Files::new(
            Some(
                "# comment\n\
                 [default]\n\
                 aws_access_key_id = AKIADEFAULT\n\
                 aws_secret_access_key = defaultsecret\n\
                 \n\
                 ; another comment\n\
                 [work]\n\
                 \tAWS_Access_Key_ID=AKIAWORK   # inline comment\n\
                 \taws_secret_access_key   =   worksecret\n\
                 \taws_session_token = worktoken\n",
            ),
            None,
        );
        let env = files.env(&[]);
        let c = from_profile_with(&env, None).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIADEFAULT");
        assert_eq!(c.secret_access_key(), "defaultsecret");

        let c = from_profile_with(&env, Some("work")).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIAWORK");
        assert_eq!(c.secret_access_key(), "worksecret");
        assert_eq!(c.session_token(), Some("worktoken"));

        // AWS_PROFILE picks the profile when none is given.
        let env = files.env(&[("AWS_PROFILE", "work")]);
        let c = from_profile_with(&env, None).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIAWORK");

        // No such profile anywhere.
        assert!(from_profile_with(&env, Some("nope")).unwrap().is_none());
    }

    #[test]
    fn profile_from_config_file() {
        let files = Files::new(
            None,
            Some(
                "[default]\n\
                 region = eu-west-3\n\
                 aws_access_key_id = AKIACONFIGDEFAULT\n\
                 aws_secret_access_key = s0\n\
                 [profile x]\n\
                 region = us-west-2\n\
                 s3 =\n  \
                   max_concurrent_requests = 20\n  \
                   aws_access_key_id = NESTED-NOT-A-KEY\n\
                 aws_access_key_id = AKIAX\n\
                 aws_secret_access_key = sx\n\
                 [x]\n\
                 aws_access_key_id = AKIA-NOT-A-CONFIG-PROFILE\n\
                 aws_secret_access_key = no\n",
            ),
        );
        let env = files.env(&[]);
        let c = from_profile_with(&env, Some("x")).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIAX");
        assert_eq!(c.secret_access_key(), "sx");
        let c = from_profile_with(&env, None).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "AKIACONFIGDEFAULT");

        // Region from the config file, unless the environment sets one.
        assert_eq!(region_with(&env).as_deref(), Some("eu-west-3"));
        let env = files.env(&[("AWS_PROFILE", "x")]);
        assert_eq!(region_with(&env).as_deref(), Some("us-west-2"));
        let env = files.env(&[("AWS_PROFILE", "x"), ("AWS_DEFAULT_REGION", "ap-south-1")]);
        assert_eq!(region_with(&env).as_deref(), Some("ap-south-1"));
        let env = files.env(&[
            ("AWS_REGION", "ca-central-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ]);
        assert_eq!(region_with(&env).as_deref(), Some("ca-central-1"));
        let env = files.env(&[("AWS_PROFILE", "nope")]);
        assert_eq!(region_with(&env), None);
    }

    #[test]
    fn credentials_file_wins_over_config() {
        let files = Files::new(
            Some("[p]\naws_access_key_id = FROM-CREDENTIALS\naws_secret_access_key = a\n"),
            Some(
                "[profile p]\nregion = us-east-2\naws_access_key_id = FROM-CONFIG\naws_secret_access_key = b\n\
                 [profile q]\naws_access_key_id = Q-FROM-CONFIG\naws_secret_access_key = c\n",
            ),
        );
        let env = files.env(&[]);
        let c = from_profile_with(&env, Some("p")).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "FROM-CREDENTIALS");
        // A profile only in the config file is still found.
        let c = from_profile_with(&env, Some("q")).unwrap().unwrap();
        assert_eq!(c.access_key_id(), "Q-FROM-CONFIG");
    }

    #[test]
    fn credentials_file_profile_without_keys_falls_through_to_config() {
        let files = Files::new(
            Some("[p]\n# keys elsewhere\n"),
            Some("[profile p]\naws_access_key_id = CFG\naws_secret_access_key = s\n"),
        );
        let c = from_profile_with(&files.env(&[]), Some("p"))
            .unwrap()
            .unwrap();
        assert_eq!(c.access_key_id(), "CFG");
    }

    #[test]
    fn env_wins_in_the_default_chain() {
        let files = Files::new(
            Some("[default]\naws_access_key_id = FILE\naws_secret_access_key = s\n"),
            None,
        );
        let env = files.env(&[("AWS_ACCESS_KEY_ID", "ENV"), ("AWS_SECRET_ACCESS_KEY", "e")]);
        assert_eq!(default_chain_with(&env).unwrap().access_key_id(), "ENV");
        let env = files.env(&[]);
        assert_eq!(default_chain_with(&env).unwrap().access_key_id(), "FILE");
    }

    #[test]
    fn default_chain_error_names_where_it_looked() {
        let files = Files::new(
            None,
            Some("[profile sso]\nsso_session = corp\nregion = us-east-1\n"),
        );
        let err = default_chain_with(&files.env(&[])).unwrap_err();
        assert!(matches!(err, Error::Credentials(_)));
        let msg = err.to_string();
        assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
        assert!(msg.contains("`default`"), "{msg}");
        assert!(msg.contains(&files.path("credentials")), "{msg}");
        assert!(msg.contains(&files.path("config")), "{msg}");

        let err = default_chain_with(&files.env(&[("AWS_PROFILE", "sso")])).unwrap_err();
        assert!(err.to_string().contains("`sso_session`"), "{err}");
    }

    #[test]
    fn default_files_live_under_home() {
        let env = env_of(&[("HOME", "/home/u")]);
        assert_eq!(
            credentials_file(&env),
            Some(PathBuf::from("/home/u/.aws/credentials"))
        );
        assert_eq!(
            config_file(&env),
            Some(PathBuf::from("/home/u/.aws/config"))
        );
        let env = env_of(&[("HOME", "/home/u"), ("AWS_CONFIG_FILE", "~/cfg")]);
        assert_eq!(config_file(&env), Some(PathBuf::from("/home/u/cfg")));
        assert_eq!(credentials_file(&env_of(&[])), None);
    }

    #[test]
    fn half_pair_in_a_file_is_an_error_without_the_secret() {
        let files = Files::new(
            Some("[default]\naws_secret_access_key = TOPSECRETVALUE\n"),
            None,
        );
        let err = from_profile_with(&files.env(&[]), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no aws_access_key_id"), "{msg}");
        assert!(msg.contains(&files.path("credentials")), "{msg}");
        assert!(!msg.contains("TOPSECRETVALUE"), "{msg}");
    }

    #[test]
    fn malformed_file_names_file_and_line_not_content() {
        let text = "[default]\naws_access_key_id = AKIA\nTOPSECRETVALUE\n";
        let err = parse_ini(text, Path::new("/x/credentials")).unwrap_err();
        assert!(matches!(err, Error::Credentials(_)));
        let msg = err.to_string();
        assert!(msg.contains("/x/credentials:3:"), "{msg}");
        assert!(!msg.contains("TOPSECRETVALUE"), "{msg}");

        let err = parse_ini("[default\n", Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("f:1:"), "{err}");

        // And through the file reader.
        let files = Files::new(Some("[a]\n= nokey\n"), None);
        let err = from_profile_with(&files.env(&[]), Some("a")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{}:2:", files.path("credentials"))),
            "{err}"
        );
    }

    #[test]
    fn ini_is_lenient() {
        let text = "\u{feff}key = before any section\n\
                    [ spaced ] ; comment\n\
                    KEY=v1\n\
                    other =   with spaces inside  \n\
                    empty =\n\
                    url = http://h/#frag\n\
                    [profile   many]\n\
                    a = 1\n\
                    [spaced]\n\
                    key = v2\n";
        let ini = parse_ini(text, Path::new("t")).unwrap();
        let spaced = ini.profile(FileKind::Credentials, "spaced").unwrap();
        assert_eq!(spaced["key"], "v2", "later sections win");
        assert_eq!(spaced["other"], "with spaces inside");
        assert_eq!(spaced["empty"], "");
        assert_eq!(spaced["url"], "http://h/#frag");
        assert!(ini.profile(FileKind::Config, "many").is_some());
        assert!(ini.profile(FileKind::Credentials, "many").is_none());
        assert!(ini.profile(FileKind::Config, "spaced").is_none());
        // Windows line ends.
        let ini = parse_ini("[default]\r\nregion = r\r\n", Path::new("t")).unwrap();
        assert_eq!(
            ini.profile(FileKind::Config, "default").unwrap()["region"],
            "r"
        );
    }

    #[test]
    fn line_indented_under_a_key_is_its_continuation() {
        // As in the AWS CLI (configparser): the indented line belongs to the
        // key above, so this profile has no secret key.
        let text = "[a]\naws_access_key_id = K\n  aws_secret_access_key = S\n";
        let ini = parse_ini(text, Path::new("t")).unwrap();
        let err = creds_in(&ini, FileKind::Credentials, "a", Path::new("t")).unwrap_err();
        assert!(
            err.to_string().contains("no aws_secret_access_key"),
            "{err}"
        );
    }

    #[test]
    fn empty_profile_name_is_invalid() {
        let err = from_profile_with(&env_of(&[]), Some(" ")).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::new("AKIAIOSFODNN7EXAMPLE", SECRET, Some("TOKENVALUE".into()));
        let dbg = format!("{c:?}");
        assert_eq!(
            dbg,
            "Credentials { access_key_id: \"AKIAIOSFODNN7EXAMPLE\", \
             secret_access_key: \"<redacted>\", session_token: Some(\"<redacted>\") }"
        );
        let pretty = format!("{c:#?}");
        assert!(!pretty.contains(SECRET) && !pretty.contains("TOKENVALUE"));
        let c = Credentials::new("AKIA", SECRET, None);
        assert!(format!("{c:?}").contains("session_token: None"));
    }
}
