//! The shared credentials and config files (`~/.aws/credentials`, `~/.aws/config`)
//! as the AWS CLI reads them, and the environment they are found from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// An environment to read variables from: the process's, or a test's map.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable of the process environment; empty counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name)
        .and_then(|v| v.into_string().ok())
        .filter(|v| !v.is_empty())
}

/// `env(name)`, with empty values treated as unset whatever `env` does.
pub(crate) fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The profile to use: the explicit one, else `AWS_PROFILE`, else the older
/// `AWS_DEFAULT_PROFILE`, else `default`.
pub(crate) fn profile_name(env: Env, explicit: Option<&str>) -> Result<String, Error> {
    match explicit {
        Some(p) if p.trim().is_empty() => Err(Error::invalid("empty profile name")),
        Some(p) => Ok(p.trim().to_owned()),
        None => Ok(var(env, "AWS_PROFILE")
            .or_else(|| var(env, "AWS_DEFAULT_PROFILE"))
            .map(|p| p.trim().to_owned())
            .unwrap_or_else(|| "default".to_owned())),
    }
}

pub(crate) fn home_dir(env: Env) -> Option<PathBuf> {
    var(env, "HOME")
        .or_else(|| var(env, "USERPROFILE"))
        .map(PathBuf::from)
}

/// The path from variable `var_name` (with `~/` expanded), else
/// `~/.aws/<default_name>`; None when neither can be made.
pub(crate) fn shared_file(env: Env, var_name: &str, default_name: &str) -> Option<PathBuf> {
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

pub(crate) fn credentials_file(env: Env) -> Option<PathBuf> {
    shared_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
}

pub(crate) fn config_file(env: Env) -> Option<PathBuf> {
    shared_file(env, "AWS_CONFIG_FILE", "config")
}

/// Which file a profile is looked up in: the two name their sections
/// differently.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FileKind {
    /// `[NAME]`.
    Credentials,
    /// `[profile NAME]`, and `[default]` for the default profile.
    Config,
}

/// The parsed file, or None when it does not exist. Only a regular file of
/// at most [`MAX_LOCAL_FILE`](crate::auth::file::MAX_LOCAL_FILE) bytes is read.
pub(crate) fn read_ini(path: &Path) -> Result<Option<Ini>, Error> {
    match crate::auth::file::read_bounded(path) {
        Ok(text) => parse_ini(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Credentials(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The two shared files of `env`, in the order they are searched.
pub(crate) fn shared_files(env: Env) -> [(FileKind, Option<PathBuf>); 2] {
    [
        (FileKind::Credentials, credentials_file(env)),
        (FileKind::Config, config_file(env)),
    ]
}

/// Region: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's `region`
/// in the config file; None if none.
pub(crate) fn region_with(env: Env, profile: Option<&str>) -> Option<String> {
    if let Some(r) = var(env, "AWS_REGION").or_else(|| var(env, "AWS_DEFAULT_REGION")) {
        return Some(r.trim().to_owned());
    }
    profile_setting(env, profile, "region")
}

/// A setting of the profile (the explicit one, else `AWS_PROFILE`, else
/// `default`) in the AWS config file, such as `region` or `ca_bundle`;
/// `None` when unset or unreadable.
pub(crate) fn profile_setting(env: Env, profile: Option<&str>, key: &str) -> Option<String> {
    let profile = profile_name(env, profile).ok()?;
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
pub(crate) struct Ini {
    sections: Vec<(String, HashMap<String, String>)>,
}

impl Ini {
    /// The values of `profile` in a file of `kind`; when several sections name
    /// it, they are merged and later values win.
    pub(crate) fn profile(&self, kind: FileKind, profile: &str) -> Option<HashMap<&str, &str>> {
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
pub(crate) fn parse_ini(text: &str, path: &Path) -> Result<Ini, Error> {
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

impl Ini {
    /// The values of section `[name]` exactly (such as `sso-session corp`),
    /// merged when it appears several times.
    pub(crate) fn section(&self, name: &str) -> Option<HashMap<&str, &str>> {
        let mut found: Option<HashMap<&str, &str>> = None;
        for (header, values) in &self.sections {
            let normalized: String = header.split_whitespace().collect::<Vec<_>>().join(" ");
            if normalized == name {
                let map = found.get_or_insert_with(HashMap::new);
                map.extend(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
        }
        found
    }
}
