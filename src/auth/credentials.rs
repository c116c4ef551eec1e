//! Credentials, the public provider trait, and the per-client cache that
//! refreshes temporary credentials before they expire.
//!
//! Secrets never leave this module in a printable form: [`Credentials`]'s
//! `Debug` redacts them, and errors name files, line numbers and variables,
//! never their values.
//!
//! Over 600 lines only with its unit tests (the cache's refresh schedule,
//! one refresh at a time, failed refreshes), which need its private parts.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::auth::ini::{
    Env, FileKind, Ini, process_env, profile_name, read_ini, shared_files, var,
};
use crate::error::Error;

/// AWS access keys: an access key id, its secret, for temporary credentials
/// a session token, and when they stop being valid.
///
/// `Debug` shows the access key id and the expiry only; the secret and the
/// session token are printed as `"<redacted>"`.
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
    expiry: Option<SystemTime>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credentials");
        d.field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            );
        if let Some(e) = self.expiry {
            d.field("expiry", &format_args!("{}", crate::auth::time::rfc3339(e)));
        }
        d.finish()
    }
}

const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The older name of `AWS_SESSION_TOKEN`, still read by the AWS CLI.
const ENV_SECURITY_TOKEN: &str = "AWS_SECURITY_TOKEN";

pub(crate) const KEY_ACCESS_KEY: &str = "aws_access_key_id";
pub(crate) const KEY_SECRET_KEY: &str = "aws_secret_access_key";
pub(crate) const KEY_SESSION_TOKEN: &str = "aws_session_token";

impl Credentials {
    /// Credentials from explicit values, with no expiry. `session_token` is
    /// for temporary credentials (STS); it is sent as `x-amz-security-token`.
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
            expiry: None,
        }
    }

    /// The same credentials, valid until `expiry`. A client refreshes them
    /// from their [`ProvideCredentials`] before then.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use s3pump::Credentials;
    ///
    /// let until = SystemTime::now() + Duration::from_secs(3600);
    /// let creds = Credentials::new("ASIAEXAMPLE", "secret", Some("token".into())).with_expiry(until);
    /// assert_eq!(creds.expiry(), Some(until));
    /// ```
    pub fn with_expiry(mut self, expiry: SystemTime) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// When these credentials stop being valid; `None` for long-term keys.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
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

    /// Whether both are the same key pair and token (the expiry aside).
    fn same_keys(&self, other: &Credentials) -> bool {
        self.access_key_id == other.access_key_id
            && self.secret_access_key == other.secret_access_key
            && self.session_token == other.session_token
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

    /// Static keys from the shared files, as the AWS CLI reads them.
    ///
    /// The profile is `profile`, else `AWS_PROFILE`, else `default`. The
    /// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`, sections `[NAME]`) is looked at first, then the
    /// config file (`AWS_CONFIG_FILE`, else `~/.aws/config`, sections
    /// `[profile NAME]`, and `[default]` for the default profile). The keys
    /// read are `aws_access_key_id`, `aws_secret_access_key` and
    /// `aws_session_token`; profiles that get credentials some other way
    /// (`role_arn`, `credential_process`, SSO) are resolved by
    /// [`ClientBuilder::from_env`](crate::ClientBuilder::from_env).
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

    /// The first credentials of the AWS SDKs' default chain (see the
    /// README's "Credentials" section), resolved from the process
    /// environment: a snapshot, not refreshed. A client built with
    /// [`ClientBuilder::from_env`](crate::ClientBuilder::from_env) uses the
    /// same chain and refreshes what it finds.
    ///
    /// When nothing is found the [`Error::Credentials`] lists every source
    /// tried and why it was skipped or failed.
    ///
    /// ```no_run
    /// use s3pump::Credentials;
    ///
    /// let creds = Credentials::from_default_chain()?;
    /// # let _ = creds;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn from_default_chain() -> Result<Credentials, Error> {
        let region = crate::auth::ini::region_with(&process_env, None);
        crate::auth::chain::resolve(&process_env, None, region.as_deref()).map(|(_, creds)| creds)
    }
}

/// A source of credentials that a client asks again whenever its cached
/// credentials come close to their [`expiry`](Credentials::expiry): plug in
/// your own (a vault, a configuration service) with
/// [`ClientBuilder::credentials_provider`](crate::ClientBuilder::credentials_provider).
///
/// `provide` is called from whichever thread needs credentials, one call at a
/// time per client; it may block (network calls are fine). Credentials with
/// an expiry are asked for again when less than 5 minutes of validity remain
/// (half their lifetime when they were issued for less than 10 minutes);
/// credentials without one are kept until the server refuses them as expired
/// (`ExpiredToken`, `TokenRefreshRequired`, `RequestExpired`, `InvalidToken`).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use s3pump::{Credentials, ProvideCredentials};
///
/// struct Vault;
/// impl ProvideCredentials for Vault {
///     fn provide(&self) -> s3pump::Result<Credentials> {
///         Ok(Credentials::new("ASIAVAULT", "secret", Some("token".into()))
///             .with_expiry(SystemTime::now() + Duration::from_secs(900)))
///     }
///     fn describe(&self) -> String {
///         "the vault".into()
///     }
/// }
/// let client = s3pump::Client::builder()
///     .endpoint("http://127.0.0.1:9000")
///     .credentials_provider(Vault)
///     .build()?;
/// # let _ = client;
/// # Ok::<(), s3pump::Error>(())
/// ```
pub trait ProvideCredentials: Send + Sync {
    /// Fresh credentials, or why there are none ([`Error::Credentials`]
    /// preferably; never put a secret in the error).
    fn provide(&self) -> crate::Result<Credentials>;

    /// Where the credentials come from, for logs and errors (never a secret).
    ///
    /// Defaults to `"a custom credentials provider"`.
    fn describe(&self) -> String {
        "a custom credentials provider".to_owned()
    }
}

impl ProvideCredentials for Credentials {
    fn provide(&self) -> crate::Result<Credentials> {
        Ok(self.clone())
    }

    fn describe(&self) -> String {
        "static credentials".to_owned()
    }
}

impl<P: ProvideCredentials + ?Sized> ProvideCredentials for Arc<P> {
    fn provide(&self) -> crate::Result<Credentials> {
        (**self).provide()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<P: ProvideCredentials + ?Sized> ProvideCredentials for Box<P> {
    fn provide(&self) -> crate::Result<Credentials> {
        (**self).provide()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Credentials are refreshed when less than this much validity remains.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// At most this much is added at random to [`REFRESH_BEFORE`], so that many
/// clients started together do not all refresh at the same moment.
const REFRESH_JITTER: Duration = Duration::from_secs(30);
/// Credentials this close to their expiry are not used to sign any more.
const EXPIRY_MARGIN: Duration = Duration::from_millis(500);
/// After a failed refresh (the cached credentials still valid), the next try
/// waits this long at most.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);

/// The credentials a client signs with, refreshed from their provider when
/// less than 5 minutes of validity remain (or less than half their lifetime,
/// for credentials issued for less than 10 minutes), plus a little jitter.
pub(crate) struct CredentialsCache {
    provider: Box<dyn ProvideCredentials>,
    /// Whether asking the provider again may give other credentials.
    refreshable: bool,
    state: RwLock<Cached>,
    /// Held by the one thread refreshing.
    refreshing: Mutex<()>,
}

#[derive(Default)]
struct Cached {
    creds: Option<Arc<Credentials>>,
    /// When to refresh (None: never, the credentials do not expire).
    refresh_at: Option<SystemTime>,
    /// After a failed refresh: not before this.
    retry_at: Option<Instant>,
}

impl Cached {
    fn due(&self, now: SystemTime) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
            && self.retry_at.is_none_or(|t| Instant::now() >= t)
    }
}

/// Whether `c` may still sign a request at `now`.
fn usable(c: &Credentials, now: SystemTime) -> bool {
    c.expiry.is_none_or(|e| now + EXPIRY_MARGIN < e)
}

/// A number uniformly distributed in `[0, 1)`.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl fmt::Debug for CredentialsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read();
        f.debug_struct("CredentialsCache")
            .field("source", &self.provider.describe())
            .field("current", &state.creds)
            .finish()
    }
}

impl CredentialsCache {
    /// A cache over `provider`; `first`, when given, is what it already
    /// provided. `refreshable` is false for static keys.
    pub(crate) fn new(
        provider: Box<dyn ProvideCredentials>,
        refreshable: bool,
        first: Option<Credentials>,
    ) -> CredentialsCache {
        let cache = CredentialsCache {
            provider,
            refreshable,
            state: RwLock::new(Cached::default()),
            refreshing: Mutex::new(()),
        };
        if let Some(c) = first {
            cache.store(c);
        }
        cache
    }

    /// Whether a refresh may change the credentials.
    pub(crate) fn refreshable(&self) -> bool {
        self.refreshable
    }

    /// Where the credentials come from.
    pub(crate) fn describe(&self) -> String {
        self.provider.describe()
    }

    fn store(&self, c: Credentials) -> Arc<Credentials> {
        let now = SystemTime::now();
        let refresh_at = match (self.refreshable, c.expiry) {
            (true, Some(expiry)) => {
                let lifetime = expiry.duration_since(now).unwrap_or_default();
                let before = REFRESH_BEFORE.min(lifetime / 2);
                let jitter = REFRESH_JITTER.min(before / 10).mul_f64(random_unit());
                Some(expiry - before - jitter)
            }
            _ => None,
        };
        let c = Arc::new(c);
        *self.state.write() = Cached {
            creds: Some(Arc::clone(&c)),
            refresh_at,
            retry_at: None,
        };
        c
    }

    /// Asks the provider; the error names the source.
    fn fetch(&self) -> crate::Result<Credentials> {
        let c = self.provider.provide().map_err(|e| match e {
            Error::Credentials(m) => Error::Credentials(m),
            other => Error::Credentials(format!("{}: {other}", self.provider.describe())),
        })?;
        log::debug!(
            "credentials from: {} (access key {}{})",
            self.provider.describe(),
            c.access_key_id,
            match c.expiry {
                Some(e) => format!(", valid until {}", crate::auth::time::rfc3339(e)),
                None => String::new(),
            }
        );
        Ok(c)
    }

    /// The credentials to sign a request with now, refreshed first when they
    /// are due (by this thread if no other is refreshing; the others keep
    /// signing with the still-valid ones).
    pub(crate) fn get(&self) -> crate::Result<Arc<Credentials>> {
        let now = SystemTime::now();
        {
            let state = self.state.read();
            if let Some(c) = &state.creds {
                if !state.due(now) && usable(c, now) {
                    return Ok(Arc::clone(c));
                }
                if usable(c, now) {
                    let current = Arc::clone(c);
                    drop(state);
                    // Due but valid: one thread refreshes, the others go on.
                    return Ok(match self.refreshing.try_lock() {
                        Some(_guard) => self.refresh_while_valid(current),
                        None => current,
                    });
                }
            }
        }
        // None yet, or expired: wait for a refresh.
        let _guard = self.refreshing.lock();
        let previous = {
            let state = self.state.read();
            match &state.creds {
                Some(c) if usable(c, SystemTime::now()) && !state.due(SystemTime::now()) => {
                    return Ok(Arc::clone(c));
                }
                other => other.clone(),
            }
        };
        match self.fetch() {
            Ok(c) if usable(&c, SystemTime::now()) => Ok(self.store(c)),
            Ok(c) => Err(Error::Credentials(format!(
                "{} gave credentials that are already expired (at {})",
                self.provider.describe(),
                c.expiry.map(crate::auth::time::rfc3339).unwrap_or_default()
            ))),
            Err(e) => match previous.and_then(|p| p.expiry) {
                Some(expired) => Err(Error::Credentials(format!(
                    "the credentials from {} expired at {} and refreshing them failed: {e}",
                    self.provider.describe(),
                    crate::auth::time::rfc3339(expired)
                ))),
                None => Err(e),
            },
        }
    }

    /// Refreshes (the caller holds `refreshing`); on failure keeps `current`,
    /// logs at WARN and tries again later.
    fn refresh_while_valid(&self, current: Arc<Credentials>) -> Arc<Credentials> {
        {
            // Another thread may have refreshed in between.
            let state = self.state.read();
            if let Some(c) = &state.creds
                && !state.due(SystemTime::now())
            {
                return Arc::clone(c);
            }
        }
        match self.fetch() {
            Ok(c) if usable(&c, SystemTime::now()) => self.store(c),
            result => {
                let why = match result {
                    Ok(_) => "it gave credentials that are already expired".to_owned(),
                    Err(e) => e.to_string(),
                };
                let remaining = current
                    .expiry
                    .and_then(|e| e.duration_since(SystemTime::now()).ok())
                    .unwrap_or_default();
                let wait = RETRY_REFRESH_AFTER.min(remaining / 4);
                log::warn!(
                    "refreshing the credentials from {} failed (the current ones stay valid for {}s; \
                     trying again in {:?}): {why}",
                    self.provider.describe(),
                    remaining.as_secs(),
                    wait
                );
                self.state.write().retry_at = Some(Instant::now() + wait);
                current
            }
        }
    }

    /// After the server refused `used` as expired or invalid: refreshes once
    /// (unless another thread already replaced them) and returns the new
    /// credentials.
    pub(crate) fn force_refresh(&self, used: &Credentials) -> crate::Result<Arc<Credentials>> {
        let _guard = self.refreshing.lock();
        if let Some(c) = &self.state.read().creds
            && !c.same_keys(used)
            && usable(c, SystemTime::now())
        {
            return Ok(Arc::clone(c));
        }
        let c = self.fetch()?;
        Ok(self.store(c))
    }
}

pub(crate) fn from_env_with(env: Env) -> Result<Option<Credentials>, Error> {
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

/// Looks `profile` up in one parsed file.
///
/// `Ok(None)` when the file has no such profile or the profile has neither
/// key; an error when it has only one of the pair.
pub(crate) fn creds_in(
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

pub(crate) fn from_profile_with(
    env: Env,
    profile: Option<&str>,
) -> Result<Option<Credentials>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ini::{config_file, credentials_file, parse_ini, region_with};
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn default_chain_with(env: Env) -> Result<Credentials, Error> {
        crate::auth::chain::resolve(env, None, None).map(|(_, c)| c)
    }
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
                ("AWS_EC2_METADATA_DISABLED", "true"),
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
        assert_eq!(region_with(&env, None).as_deref(), Some("eu-west-3"));
        let env = files.env(&[("AWS_PROFILE", "x")]);
        assert_eq!(region_with(&env, None).as_deref(), Some("us-west-2"));
        let env = files.env(&[("AWS_PROFILE", "x"), ("AWS_DEFAULT_REGION", "ap-south-1")]);
        assert_eq!(region_with(&env, None).as_deref(), Some("ap-south-1"));
        let env = files.env(&[
            ("AWS_REGION", "ca-central-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ]);
        assert_eq!(region_with(&env, None).as_deref(), Some("ca-central-1"));
        let env = files.env(&[("AWS_PROFILE", "nope")]);
        assert_eq!(region_with(&env, None), None);
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

        assert!(msg.contains("AWS_EC2_METADATA_DISABLED"), "{msg}");

        // A profile that uses SSO without all its settings says which is missing.
        let err = default_chain_with(&files.env(&[("AWS_PROFILE", "sso")])).unwrap_err();
        assert!(err.to_string().contains("no sso_account_id"), "{err}");
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

    /// A provider that counts its calls and takes `delay` to answer.
    struct Slow {
        calls: std::sync::atomic::AtomicU32,
        delay: Duration,
        fail: bool,
    }

    impl ProvideCredentials for Slow {
        fn provide(&self) -> crate::Result<Credentials> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(Error::Credentials("slow provider is down".into()));
            }
            Ok(Credentials::new(format!("ASIA{n}"), "s", Some("t".into()))
                .with_expiry(SystemTime::now() + Duration::from_secs(3600)))
        }
        fn describe(&self) -> String {
            "the slow provider".into()
        }
    }

    fn slow(delay: Duration, fail: bool) -> Arc<Slow> {
        Arc::new(Slow {
            calls: Default::default(),
            delay,
            fail,
        })
    }

    #[test]
    fn one_refresh_at_a_time_while_others_sign_with_the_valid_ones() {
        let provider = slow(Duration::from_millis(400), false);
        let first = Credentials::new("ASIA0", "s", Some("t".into()))
            .with_expiry(SystemTime::now() + Duration::from_secs(60));
        let cache = Arc::new(CredentialsCache::new(
            Box::new(Arc::clone(&provider)),
            true,
            Some(first),
        ));
        // Due now (as if less than 5 minutes were left), still valid.
        cache.state.write().refresh_at = Some(SystemTime::now());
        assert!(cache.state.read().due(SystemTime::now()));
        let c = Arc::clone(&cache);
        let refresher = std::thread::spawn(move || c.get().unwrap().access_key_id().to_owned());
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(cache.get().unwrap().access_key_id(), "ASIA0");
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "others did not wait"
        );
        assert_eq!(refresher.join().unwrap(), "ASIA1");
        assert_eq!(cache.get().unwrap().access_key_id(), "ASIA1");
        assert_eq!(provider.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // An hour of validity: not due again.
        assert!(!cache.state.read().due(SystemTime::now()));
    }

    #[test]
    fn refresh_schedule() {
        let cache = CredentialsCache::new(Box::new(slow(Duration::ZERO, false)), true, None);
        let now = SystemTime::now();
        cache.store(Credentials::new("A", "s", None).with_expiry(now + Duration::from_secs(3600)));
        let at = cache.state.read().refresh_at.unwrap();
        let before = (now + Duration::from_secs(3600))
            .duration_since(at)
            .unwrap();
        assert!(
            before >= Duration::from_secs(300) && before <= Duration::from_secs(331),
            "{before:?}"
        );
        // Short-lived: half the lifetime.
        cache.store(Credentials::new("A", "s", None).with_expiry(now + Duration::from_secs(4)));
        let at = cache.state.read().refresh_at.unwrap();
        let before = (now + Duration::from_secs(4)).duration_since(at).unwrap();
        assert!(
            before >= Duration::from_millis(1990) && before <= Duration::from_millis(2300),
            "{before:?}"
        );
        // Static: never.
        let fixed = CredentialsCache::new(Box::new(Credentials::new("K", "s", None)), false, None);
        fixed.store(Credentials::new("K", "s", None));
        assert!(fixed.state.read().refresh_at.is_none());
    }

    #[test]
    fn a_failed_refresh_keeps_the_valid_credentials_and_waits() {
        let provider = slow(Duration::ZERO, true);
        let first = Credentials::new("ASIA0", "s", None)
            .with_expiry(SystemTime::now() + Duration::from_secs(60));
        let cache = CredentialsCache::new(Box::new(Arc::clone(&provider)), true, Some(first));
        cache.state.write().refresh_at = Some(SystemTime::now());
        assert_eq!(cache.get().unwrap().access_key_id(), "ASIA0");
        assert_eq!(cache.get().unwrap().access_key_id(), "ASIA0");
        // Tried once, then not again before the retry delay.
        assert_eq!(provider.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Expired: the error names the source and why.
        let expired = Credentials::new("ASIA0", "s", None)
            .with_expiry(SystemTime::now() - Duration::from_secs(1));
        cache.state.write().creds = Some(Arc::new(expired));
        let msg = cache.get().unwrap_err().to_string();
        assert!(
            msg.contains("the slow provider")
                && msg.contains("expired")
                && msg.contains("slow provider is down"),
            "{msg}"
        );
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
