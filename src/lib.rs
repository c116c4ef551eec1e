//! s3pump: a synchronous S3 client built to upload large objects fast.
#![warn(missing_docs)]

mod credentials;
mod error;
// The signer is only reached from the tests until the client sends requests;
// remove this allow when it does.
#[allow(dead_code)]
mod sigv4;

pub use credentials::Credentials;
pub use error::{Error, Result};
