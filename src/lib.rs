//! s3pump: a synchronous S3 client built to upload large objects fast.
#![warn(missing_docs)]

mod error;

pub use error::{Error, Result};
