//! Who is signing: credentials (and where they come from) and the SigV4 signer.

pub(crate) mod credentials;
pub(crate) mod sigv4;
