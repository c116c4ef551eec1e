//! Which HTTP proxy a client goes through, if any.
//!
//! The proxy is, in order: the one given to
//! [`ClientBuilder::proxy`](crate::ClientBuilder::proxy); none after
//! [`ClientBuilder::no_proxy`](crate::ClientBuilder::no_proxy); else the
//! environment, as curl reads it: for an `https://` endpoint `https_proxy`,
//! `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY`; for an `http://` endpoint
//! `http_proxy`, `HTTP_PROXY`, then `all_proxy`, `ALL_PROXY` (the first that
//! is set and not empty). A proxy from the environment is skipped when the
//! endpoint's host matches `no_proxy` / `NO_PROXY` (see [`no_proxy_matches`]).
//!
//! The proxy URL is `http://[user:password@]host[:port]` (`https://` for a
//! proxy spoken to over TLS; no scheme means `http://`; the port defaults to
//! 80, or 443 for `https://`). The user and password are sent as
//! `Proxy-Authorization: Basic`, and never appear in `Debug`, logs or errors:
//! a proxy is shown as `http://host:port`.
//!
//! On the wire: every request to an `https://` endpoint, and every request
//! through ureq to an `http://` one, goes through an HTTP `CONNECT` tunnel
//! (ureq 3 speaks only `CONNECT` to a proxy). Large UploadParts to an
//! `http://` endpoint, which s3pump sends itself (`direct.rs`), use the
//! absolute-form request target (`PUT http://host/bucket/key?... HTTP/1.1`)
//! through an `http://` proxy instead.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;

use super::tls::Env;
use crate::{Error, Result};

/// What the builder was told about proxies.
#[derive(Clone, Default)]
pub(crate) enum ProxySetting {
    /// Read the environment.
    #[default]
    FromEnv,
    /// Never use a proxy.
    Direct,
    /// This proxy URL, whatever the environment says.
    Url(String),
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::FromEnv => f.write_str("FromEnv"),
            ProxySetting::Direct => f.write_str("Direct"),
            ProxySetting::Url(url) => write!(f, "Url({})", redact(url)),
        }
    }
}

/// A proxy in use.
#[derive(Clone)]
pub(crate) struct Proxy {
    /// For ureq's agents (`CONNECT`).
    pub ureq: ureq::Proxy,
    /// `http://host:port`, without credentials: what logs and errors show.
    pub shown: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// Whether the proxy is spoken to in plain HTTP (the direct sender can
    /// use it; it does not speak TLS to a proxy).
    pub plain: bool,
    /// The `Proxy-Authorization` header value, when the URL has credentials.
    pub authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// A proxy URL with any `user:password@` replaced by `***@`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = match rest.rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

impl Proxy {
    /// Parses a proxy URL; `source` names where it came from in errors.
    pub fn parse(url: &str, source: &str) -> Result<Proxy> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "proxy {} (from {source}) {why}",
                redact(url.trim())
            ))
        };
        let url = url.trim();
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let scheme = with_scheme.split("://").next().unwrap_or("");
        let plain = match scheme.to_ascii_lowercase().as_str() {
            "http" => true,
            "https" => false,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let proxy = ureq::Proxy::new(&with_scheme).map_err(|_| bad("is not a valid URL"))?;
        if proxy.host().is_empty() {
            return Err(bad("has no host"));
        }
        let authority = format!("{}:{}", proxy.host(), proxy.port());
        let authorization = match (proxy.username(), proxy.password()) {
            (None, None) => None,
            (user, pass) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.unwrap_or_default(),
                    pass.unwrap_or_default()
                ))
            )),
        };
        Ok(Proxy {
            shown: format!("{}://{authority}", if plain { "http" } else { "https" }),
            ureq: proxy,
            authority,
            plain,
            authorization,
        })
    }
}

/// The first of `names` set (and not empty) in `env`, with its name.
fn first_var(env: Env, names: &[&'static str]) -> Option<(String, &'static str)> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (v, *n)))
}

/// The proxy for an endpoint (see the module docs); `host` without brackets.
pub(crate) fn resolve(
    setting: &ProxySetting,
    scheme: &str,
    host: &str,
    port: u16,
    env: Env,
) -> Result<Option<Proxy>> {
    match setting {
        ProxySetting::Direct => Ok(None),
        ProxySetting::Url(url) => Proxy::parse(url, "ClientBuilder::proxy").map(Some),
        ProxySetting::FromEnv => {
            let names: &[&'static str] = if scheme == "https" {
                &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
            } else {
                &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            };
            let Some((url, name)) = first_var(env, names) else {
                return Ok(None);
            };
            if let Some((list, _)) = first_var(env, &["no_proxy", "NO_PROXY"])
                && no_proxy_matches(&list, host, port)
            {
                log::debug!("{host}:{port} is in NO_PROXY: not using the proxy of {name}");
                return Ok(None);
            }
            Proxy::parse(&url, name).map(Some)
        }
    }
}

/// Whether `host` (a name or an IP address, without brackets) and `port`
/// match a `NO_PROXY` list: comma- or space-separated entries, each one of
/// - `*`: every host;
/// - a domain, `example.com`, `.example.com` or `*.example.com`: that
///   domain and every name under it (case-insensitive);
/// - an IP address, `10.1.2.3` or `::1` (also `[::1]`): that address;
/// - a CIDR block, `10.0.0.0/8` or `fd00::/8`: the addresses in it;
/// - any of the above but `*` with `:port` (`[::1]:9000` for IPv6): only
///   that port.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, &host, host_ip, port))
}

fn entry_matches(entry: &str, host: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    // Split off a port: `[v6]:p`, `name:p`, `v4:p`; a bare IPv6 has several colons.
    let (pattern, want_port) = if let Some(rest) = entry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':')),
            None => return false,
        }
    } else if entry.matches(':').count() == 1 && !entry.contains('/') {
        let (h, p) = entry.split_once(':').unwrap_or((entry, ""));
        (h, Some(p))
    } else {
        (entry, None)
    };
    if let Some(p) = want_port
        && p.parse::<u16>().ok() != Some(port)
    {
        return false;
    }
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits), Some(ip)) = (net.parse::<IpAddr>(), bits.parse::<u32>(), host_ip)
        else {
            return false;
        };
        return in_cidr(ip, net, bits);
    }
    if let Ok(ip) = pattern.parse::<IpAddr>() {
        return host_ip == Some(ip);
    }
    let domain = pattern
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    !domain.is_empty()
        && (host == domain
            || (host.ends_with(&domain) && host[..host.len() - domain.len()].ends_with('.')))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn no_proxy_forms() {
        let m = |list: &str, host: &str, port: u16| no_proxy_matches(list, host, port);
        assert!(m("*", "anything.example", 443));
        // Host, domain suffix with and without the dot, case, trailing dot.
        assert!(m("minio.internal", "minio.internal", 443));
        assert!(m("internal", "minio.internal", 443));
        assert!(m(".internal", "minio.internal", 443));
        assert!(m("*.internal", "a.b.internal", 443));
        assert!(m(".internal", "internal", 443));
        assert!(m("Example.COM", "s3.example.com.", 443));
        assert!(!m("example.com", "badexample.com", 443));
        assert!(!m("example.com", "example.com.evil", 443));
        // IP addresses and CIDR blocks.
        assert!(m("127.0.0.1", "127.0.0.1", 9000));
        assert!(!m("127.0.0.1", "127.0.0.2", 9000));
        assert!(m("10.0.0.0/8", "10.200.3.4", 80));
        assert!(!m("10.0.0.0/8", "11.0.0.1", 80));
        assert!(m("0.0.0.0/0", "1.2.3.4", 80));
        assert!(m("::1", "::1", 80));
        assert!(m("[::1]", "::1", 80));
        assert!(m("fd00::/8", "fd12::1", 80));
        assert!(!m("fd00::/8", "fe80::1", 80));
        assert!(!m("10.0.0.0/8", "ten.example", 80));
        // Ports.
        assert!(m("127.0.0.1:9000", "127.0.0.1", 9000));
        assert!(!m("127.0.0.1:9000", "127.0.0.1", 9001));
        assert!(m("minio.internal:9000", "minio.internal", 9000));
        assert!(!m("minio.internal:9000", "minio.internal", 443));
        assert!(m("[::1]:9000", "::1", 9000));
        assert!(!m("[::1]:9000", "::1", 80));
        // Lists, with spaces.
        assert!(m("localhost, .corp ,10.0.0.0/8", "s3.corp", 443));
        assert!(!m("localhost, .corp ,10.0.0.0/8", "s3.amazonaws.com", 443));
        assert!(!m("", "s3.amazonaws.com", 443));
    }

    #[test]
    fn environment_by_scheme_and_case() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("http_proxy", "plain:8080"),
            ("ALL_PROXY", "http://all:1"),
        ]);
        let r = |scheme, env: &dyn Fn(&str) -> Option<String>| {
            resolve(&ProxySetting::FromEnv, scheme, "s3.example", 443, env)
                .unwrap()
                .map(|p| p.shown)
        };
        assert_eq!(r("https", &env).as_deref(), Some("http://secure:3128"));
        assert_eq!(r("http", &env).as_deref(), Some("http://plain:8080"));
        let env = env_of(&[("all_proxy", "http://all:1")]);
        assert_eq!(r("https", &env).as_deref(), Some("http://all:1"));
        assert_eq!(r("http", &env).as_deref(), Some("http://all:1"));
        // Lower case wins over upper case, as in curl.
        let env = env_of(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
        ]);
        assert_eq!(r("https", &env).as_deref(), Some("http://lower:1"));
        assert_eq!(r("https", &env_of(&[])), None);
        // NO_PROXY (either case) skips it.
        let env = env_of(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", ".example")]);
        assert_eq!(r("https", &env), None);
        let env = env_of(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "s3.example:443"),
        ]);
        assert_eq!(r("https", &env), None);
        // The builder's settings win over the environment.
        let env = env_of(&[("HTTPS_PROXY", "http://p:1")]);
        assert!(
            resolve(&ProxySetting::Direct, "https", "h", 443, &env)
                .unwrap()
                .is_none()
        );
        let p = resolve(
            &ProxySetting::Url("http://q:2".into()),
            "https",
            "h",
            443,
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.shown, "http://q:2");
    }

    #[test]
    fn credentials_are_sent_but_never_shown() {
        let p = Proxy::parse("http://alice:s%3Acret@proxy.corp:3128", "test").unwrap();
        assert_eq!(p.shown, "http://proxy.corp:3128");
        assert_eq!(p.authority, "proxy.corp:3128");
        assert!(p.plain);
        // base64("alice:s:cret")
        assert_eq!(p.authorization.as_deref(), Some("Basic YWxpY2U6czpjcmV0"));
        assert!(!format!("{p:?}").contains("cret"));
        let setting = ProxySetting::Url("http://alice:s3cret@proxy.corp:3128".into());
        assert!(!format!("{setting:?}").contains("s3cret"));
        let err = Proxy::parse("socks5://alice:s3cret@proxy.corp:1080", "HTTPS_PROXY").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("HTTPS_PROXY"), "{err}");
        assert_eq!(
            Proxy::parse("proxy.corp", "t").unwrap().shown,
            "http://proxy.corp:80"
        );
    }
}
