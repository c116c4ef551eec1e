//! Who is signing: credentials (and where they come from) and the SigV4 signer.
//!
//! `credentials` has the public types and the refreshing cache; `chain` the
//! AWS SDKs' default chain over the sources in `profile` (shared files),
//! `sts`, `sso`, `container` and `imds`; `ini` reads the shared files, `file`
//! reads every local file bounded; `sigv4` signs requests in headers,
//! `presign` in the query string.

pub(crate) mod chain;
pub(crate) mod container;
pub(crate) mod credentials;
pub(crate) mod file;
pub(crate) mod http;
pub(crate) mod imds;
pub(crate) mod ini;
pub(crate) mod presign;
pub(crate) mod profile;
pub(crate) mod sigv4;
pub(crate) mod sso;
pub(crate) mod sts;
pub(crate) mod time;
