//! Trust: which root certificates verify a server, and what a certificate
//! that fails verification is reported as.
//!
//! The roots, in order of precedence:
//! 1. A CA bundle, when one is named: [`ClientBuilder::ca_bundle`], else
//!    `AWS_CA_BUNDLE`, else the profile's `ca_bundle` in the AWS config file.
//!    It *replaces* the default roots, as it does for the AWS CLI and SDKs.
//! 2. Otherwise the default: the system's store **and** the Mozilla roots
//!    bundled in s3pump (webpki-root-certs), together. The system store is
//!    `SSL_CERT_FILE` and/or `SSL_CERT_DIR` when either is set (the OpenSSL
//!    conventions), else the first distribution bundle found
//!    ([`SYSTEM_BUNDLES`]). So a company laptop, whose system store holds the
//!    company CA, works; so does a distroless or `scratch` container, which
//!    has no system store at all and falls back on the bundled roots.
//!
//! Certificates added from PEM bytes ([`ClientBuilder::add_root_certificates_pem`])
//! are trusted on top of whichever of the two applies.
//!
//! Verification is always on: s3pump has no switch to turn it off.
//!
//! [`ClientBuilder::ca_bundle`]: crate::ClientBuilder::ca_bundle
//! [`ClientBuilder::add_root_certificates_pem`]: crate::ClientBuilder::add_root_certificates_pem

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::CertificateError;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::{Error, Result};

/// An environment to read variables from: the process's, or a test's map.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where distributions keep their CA bundle (the list Go and
/// openssl-probe search), tried in order; the first that exists is used.
pub(crate) const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/pki/tls/cacert.pem",            // OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
    "/etc/ssl/cert.pem",                  // Alpine, macOS, BSDs
];

/// What the builder was told about trust.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustSettings {
    /// [`ClientBuilder::ca_bundle`](crate::ClientBuilder::ca_bundle).
    pub ca_bundle: Option<PathBuf>,
    /// Certificates from [`ClientBuilder::add_root_certificates_pem`](crate::ClientBuilder::add_root_certificates_pem).
    pub extra: Vec<Certificate<'static>>,
    /// The profile whose `ca_bundle` counts ([`ClientBuilder::profile`](crate::ClientBuilder::profile);
    /// `None`: `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
}

/// Parses the certificates of a PEM text (other items, such as keys, are
/// skipped). `what` names the source in errors.
pub(crate) fn parse_pem_certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::invalid(format!("{what}: not a PEM file: {e}"))),
        }
    }
    Ok(certs)
}

/// The CA bundle named by the settings, the environment or the profile.
fn named_bundle(settings: &TrustSettings, env: Env) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = &settings.ca_bundle {
        return Some((p.clone(), "ca_bundle"));
    }
    if let Some(p) = env("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(p), "AWS_CA_BUNDLE"));
    }
    crate::auth::ini::profile_setting(env, settings.profile.as_deref(), "ca_bundle")
        .map(|p| (PathBuf::from(p), "the profile's ca_bundle"))
}

/// Reads a named bundle; an unreadable or empty one is an error (a typo in
/// `AWS_CA_BUNDLE` must not silently fall back on other roots).
fn read_bundle(path: &Path, source: &str) -> Result<Vec<Certificate<'static>>> {
    let what = format!("CA bundle {} (from {source})", path.display());
    let pem = std::fs::read(path).map_err(|e| Error::Io {
        context: format!("cannot read {what}"),
        source: e,
    })?;
    let certs = parse_pem_certs(&pem, &what)?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

/// The certificates of the system store (see the module docs); files that
/// cannot be read are skipped.
pub(crate) fn system_certs(env: Env) -> Vec<Certificate<'static>> {
    let mut certs = Vec::new();
    let mut add_file = |path: &Path| {
        if let Ok(pem) = std::fs::read(path) {
            match parse_pem_certs(&pem, &path.display().to_string()) {
                Ok(c) => certs.extend(c),
                Err(e) => log::debug!("system store: {e}"),
            }
        }
    };
    let file = env("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let dirs = env("SSL_CERT_DIR").filter(|v| !v.is_empty());
    if file.is_none() && dirs.is_none() {
        if let Some(path) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            add_file(path);
        }
        return certs;
    }
    if let Some(file) = file {
        add_file(Path::new(&file));
    }
    for dir in dirs
        .iter()
        .flat_map(|d| d.split(':'))
        .filter(|d| !d.is_empty())
    {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.is_file()) {
            add_file(path);
        }
    }
    certs
}

/// The Mozilla roots bundled in s3pump.
fn bundled_certs() -> impl Iterator<Item = Certificate<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()))
}

/// The roots a client trusts (see the module docs).
pub(crate) fn root_certs(settings: &TrustSettings, env: Env) -> Result<Vec<Certificate<'static>>> {
    let mut certs = match named_bundle(settings, env) {
        Some((path, source)) => read_bundle(&path, source)?,
        None => {
            let mut certs = system_certs(env);
            certs.extend(bundled_certs());
            certs
        }
    };
    certs.extend(settings.extra.iter().cloned());
    // A store often holds the same certificate twice (a bundle file and
    // the hashed links of SSL_CERT_DIR, or a system root that is also bundled).
    let mut seen = std::collections::HashSet::new();
    certs.retain(|c| seen.insert(c.der().to_vec()));
    Ok(certs)
}

/// The TLS configurations of a client, from the same roots: the one of
/// every ureq agent, and the one of the direct sender's TLS connections
/// (one per client, so rustls's in-memory session cache, its default, lets
/// a client's connections resume each other's sessions).
pub(crate) fn tls_config(
    settings: &TrustSettings,
    env: Env,
) -> Result<(TlsConfig, Arc<rustls::ClientConfig>)> {
    let certs = root_certs(settings, env)?;
    let agents = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .build();
    Ok((agents, rustls_config(&certs)?))
}

/// A rustls client configuration trusting `certs`, with the `ring` crypto
/// provider (ureq's; docs/PERFORMANCE.md "TLS" says why) and rustls's
/// defaults otherwise: TLS 1.3 (and 1.2 when built in), SNI, an in-memory
/// cache of 256 sessions for resumption.
pub(crate) fn rustls_config(certs: &[Certificate<'static>]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    // Like ureq, skip what webpki cannot parse (a system store may hold
    // certificates it does not support) rather than fail.
    roots.add_parsable_certificates(
        certs
            .iter()
            .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec())),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A certificate that failed verification, as [`Error::Tls`], or `None`
/// when `e` is anything else. Such an error is final: the same certificate
/// fails the same way on every attempt.
pub(crate) fn certificate_error(
    operation: &'static str,
    host: &str,
    e: &ureq::Error,
) -> Option<Error> {
    let cert = match e {
        ureq::Error::Rustls(rustls::Error::InvalidCertificate(c)) => c,
        ureq::Error::Io(io) => match io.get_ref()?.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(c) => c,
            _ => return None,
        },
        _ => return None,
    };
    let name = host_name(host);
    const CA_HINT: &str = "if the server uses a private CA, point AWS_CA_BUNDLE (or the \
        profile's ca_bundle, or ClientBuilder::ca_bundle) at a PEM file holding that CA";
    let (reason, hint) = match cert {
        CertificateError::UnknownIssuer => (
            "unknown issuer: it is not signed by a trusted root certificate".to_string(),
            CA_HINT,
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match cert {
                CertificateError::NotValidForNameContext { presented, .. } => format!(
                    " (it names {})",
                    presented
                        .iter()
                        .map(|n| clean_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            };
            (
                format!("name mismatch: it is not valid for {name}{names}"),
                "use an endpoint host name the certificate names",
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            "expired".to_string(),
            "the server needs a new certificate (or this machine's clock is wrong)",
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "not yet valid".to_string(),
            "check this machine's clock (or the server's certificate)",
        ),
        other => (format!("{other:?}"), CA_HINT),
    };
    Some(Error::Tls {
        operation,
        host: host.to_string(),
        message: format!("the server's certificate failed verification: {reason}; {hint}"),
    })
}

/// The host of `host[:port]` (brackets of an IPv6 address kept).
pub(crate) fn host_name(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') && authority[..i].matches(':').count() == 0 => {
            &authority[..i]
        }
        Some(i) if authority.starts_with('[') && authority[..i].ends_with(']') => &authority[..i],
        _ => authority,
    }
}

/// `DnsName("a.example")` (how rustls shows a presented name) as `a.example`.
fn clean_name(name: &str) -> &str {
    match name.split_once("(\"") {
        Some((_, rest)) => rest.trim_end_matches("\")").trim_end_matches('"'),
        None => name,
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

    /// A self-signed certificate, in PEM.
    fn pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .unwrap()
            .cert
            .pem()
    }

    /// [`pem`], callable where a local `pem` shadows it.
    fn pem_of_another() -> String {
        pem()
    }

    #[test]
    fn a_named_bundle_replaces_the_defaults_and_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("s3pump-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("ca.pem");
        std::fs::write(&bundle, pem()).unwrap();
        let env = env_of(&[("AWS_CA_BUNDLE", bundle.to_str().unwrap())]);
        let certs = root_certs(&TrustSettings::default(), &env).unwrap();
        assert_eq!(
            certs.len(),
            1,
            "the bundle replaces system and bundled roots"
        );

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let env = env_of(&[("AWS_CA_BUNDLE", empty.to_str().unwrap())]);
        let err = root_certs(&TrustSettings::default(), &env).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(err.to_string().contains("AWS_CA_BUNDLE"), "{err}");

        let env = env_of(&[("AWS_CA_BUNDLE", "/nonexistent/ca.pem")]);
        let err = root_certs(&TrustSettings::default(), &env).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        // The builder's path wins over the environment.
        let settings = TrustSettings {
            ca_bundle: Some(bundle.clone()),
            ..TrustSettings::default()
        };
        let env = env_of(&[("AWS_CA_BUNDLE", "/nonexistent/ca.pem")]);
        assert_eq!(root_certs(&settings, &env).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_is_the_system_store_and_the_bundled_roots() {
        let pem = pem();
        let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(bundled > 100);
        let dir = std::env::temp_dir().join(format!("s3pump-tls-sys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("file.pem"), &pem).unwrap();
        std::fs::write(dir.join("d/a.pem"), &pem).unwrap();
        let other = pem_of_another();
        std::fs::write(dir.join("d/b.pem"), format!("{other}{pem}{other}")).unwrap();
        let file = dir.join("file.pem");
        let d = dir.join("d");
        let env = env_of(&[("SSL_CERT_FILE", file.to_str().unwrap())]);
        assert_eq!(
            root_certs(&TrustSettings::default(), &env).unwrap().len(),
            bundled + 1
        );
        let env = env_of(&[("SSL_CERT_DIR", &format!("/nonexistent:{}", d.display()))]);
        assert_eq!(
            root_certs(&TrustSettings::default(), &env).unwrap().len(),
            bundled + 2,
            "the same certificate counts once"
        );
        // A system store that is not there: the bundled roots alone.
        let env = env_of(&[("SSL_CERT_FILE", "/nonexistent/ca.pem")]);
        assert_eq!(
            root_certs(&TrustSettings::default(), &env).unwrap().len(),
            bundled
        );
        // Added certificates come on top.
        let settings = TrustSettings {
            extra: parse_pem_certs(pem.as_bytes(), "test").unwrap(),
            ..TrustSettings::default()
        };
        assert_eq!(root_certs(&settings, &env).unwrap().len(), bundled + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_chosen_profiles_ca_bundle_counts() {
        let dir = std::env::temp_dir().join(format!("s3pump-tls-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config");
        std::fs::write(
            &config,
            "[default]\nca_bundle = /default/ca.pem\n[profile p]\nca_bundle = /p/ca.pem\n",
        )
        .unwrap();
        let env = env_of(&[("AWS_CONFIG_FILE", config.to_str().unwrap())]);
        let named = |profile: Option<&str>| {
            let settings = TrustSettings {
                profile: profile.map(str::to_string),
                ..TrustSettings::default()
            };
            named_bundle(&settings, &env).map(|(p, _)| p)
        };
        assert_eq!(named(Some("p")), Some(PathBuf::from("/p/ca.pem")));
        assert_eq!(named(None), Some(PathBuf::from("/default/ca.pem")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
