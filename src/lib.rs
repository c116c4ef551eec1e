//! s3pump: a synchronous S3 client built to upload large objects fast.
//!
//! [`Client::put_object`] uploads any [`std::io::Read`] with up to
//! [`max_inflight_parts`](PutObjectArgs::max_inflight_parts) parts in flight:
//! one producer thread reads the source into page-aligned buffers, the
//! client's worker threads (shared by all its transfers, each part on a
//! kept-alive connection of the client's pool) checksum and send them, and the
//! caller's thread completes the upload, or aborts it on the first error so
//! that nothing is left behind. Memory stays at
//! `(max_inflight_parts + 1) × part_size` whatever the object's size.
//! [`Client::download_to_file`] and [`Client::download`] run the other way:
//! N ranged GETs in parallel into the same kind of buffers, then into a file
//! (in any order) or a [`std::io::Write`] (strictly in order).
//! [`Client::upload_dir`] and [`Client::download_prefix`] move whole trees,
//! many objects at once, with one progress callback and a [`TreeSummary`].
//! [`Client::copy_object`] copies on the server (in parallel parts when
//! large), [`Client::move_object`] moves; [`Client::presign`] signs a request into a URL that works without
//! credentials until it expires; [`PutObjectArgs::if_none_match`] and
//! [`PutObjectArgs::if_match`] make any upload a conditional write.
//!
//! ```no_run
//! use s3pump::{Client, PutObjectArgs};
//!
//! // Endpoint, region and credentials as the AWS CLI finds them.
//! let client = Client::from_env()?;
//! let out = client.put_object(
//!     "bucket",
//!     "big.bin",
//!     std::io::stdin(),
//!     PutObjectArgs::new().max_inflight_parts(8),
//! )?;
//! println!("{} bytes in {} parts", out.bytes, out.parts);
//! # Ok::<(), s3pump::Error>(())
//! ```
#![deny(missing_docs)]
#[cfg(not(unix))]
compile_error!(
    "s3pump supports Unix only: it relies on positional file I/O (pread, pwrite) and mmap."
);

mod auth;
#[doc(hidden)]
pub mod bench;
mod client;
mod copy;
mod download;
mod error;
mod pipeline;
mod rdma;
mod s3;
mod transport;
mod tree;
mod upload;

pub use auth::credentials::{Credentials, ProvideCredentials};
pub use client::retry::RetryPolicy;
pub use client::{Addressing, Client, ClientBuilder};
pub use copy::args::{CopyObjectArgs, CopyObjectOutput, DEFAULT_COPY_THRESHOLD};
pub use download::{DownloadArgs, DownloadOutput};
pub use error::{Error, ErrorKind, Result};
pub use pipeline::slab::SlabStats;
pub use pipeline::{CancelHandle, Progress};
pub use rdma::ffi::FfiRdmaProvider;
pub use rdma::{RdmaOp, RdmaProvider, RdmaRegistration};
pub use s3::bucket::BucketInfo;
pub use s3::checksum::ChecksumAlgorithm;
pub use s3::list::{
    DeleteError, DeleteObjectsOutput, ListEntries, ListEntry, ListObjects, ObjectSummary,
};
pub use s3::multipart::{CompletedUpload, MultipartUpload, UploadedPart};
pub use s3::object::{GetObjectArgs, ObjectInfo};
pub use s3::presign::{MAX_PRESIGN_EXPIRY, PresignArgs, PresignOperation, PresignedRequest};
pub use transport::pool::ConnectionStats;
pub use tree::args::{
    DEFAULT_TREE_CONCURRENCY, RefusedKey, TreeArgs, TreeFailure, TreeProgress, TreeSummary,
};
pub use upload::args::{PayloadSigning, PutObjectArgs, PutObjectOutput};

/// README.md, whose Rust examples `cargo test --doc` compiles (they are
/// `no_run`: they need a server) so that they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
