//! The one error type of s3pump.

use std::fmt;

/// Everything that can go wrong in s3pump.
///
/// Use [`Error::s3_code`] to look at the S3 error code whatever wrapping the
/// error went through, and [`Error::upload_id`] to learn which multipart upload
/// an upload failure belonged to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an S3 error document (or a bare error status).
    ///
    /// Happens for every non-2xx reply, and for a `CompleteMultipartUpload`
    /// that answers 200 with an `<Error>` body.
    #[error("S3 error {status} {code}: {message}{}", request_id_suffix(.request_id))]
    S3 {
        /// HTTP status of the reply.
        status: u16,
        /// S3 error code such as `NoSuchKey` or `SignatureDoesNotMatch`.
        code: String,
        /// Human readable message from the server.
        message: String,
        /// The `x-amz-request-id` of the reply, when the server sent one.
        request_id: Option<String>,
    },
    /// The request never got an HTTP reply: DNS, connect, TLS, a reset
    /// connection or a timeout.
    #[error("{operation}: transport error: {message}")]
    Transport {
        /// The S3 operation that was being sent.
        operation: &'static str,
        /// What went wrong, as the HTTP stack described it.
        message: String,
        /// Whether it was a timeout (connect or inactivity).
        timeout: bool,
    },
    /// The server's TLS certificate failed verification: unknown issuer (a
    /// private CA that is not trusted: see `AWS_CA_BUNDLE`), a name that does
    /// not match the host, expired or not yet valid. Final: not retried.
    #[error("{operation}: TLS with {host}: {message}")]
    Tls {
        /// The S3 operation that was being sent.
        operation: &'static str,
        /// The host (and port) whose certificate it was.
        host: String,
        /// The reason, and how to fix it.
        message: String,
    },
    /// Reading the caller's source (or writing a download's destination) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written, with the byte offset when known.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An argument was invalid; nothing was sent for it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The source did not hold the number of bytes that was declared, or a
    /// stream of unknown size ran past the largest object its part size allows.
    #[error("{0}")]
    SizeMismatch(String),
    /// No usable credentials were found, or a credentials file could not be read.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server's reply could not be understood (malformed XML, a missing ETag…).
    #[error("{operation}: unexpected reply: {message}")]
    InvalidResponse {
        /// The S3 operation whose reply it was.
        operation: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// The checksum the server computed differs from the one computed locally.
    #[error("checksum mismatch: {0}")]
    ChecksumMismatch(String),
    /// The object was replaced (or deleted) while it was being downloaded: a
    /// ranged GET was refused with 412 `PreconditionFailed` because its
    /// `If-Match` no longer held, or answered for another version of the
    /// object. A download into a file leaves no file behind.
    #[error("the object changed during the download: {0}")]
    ObjectChanged(String),
    /// The upload was cancelled by the progress callback or a [`CancelHandle`](crate::CancelHandle).
    #[error("cancelled")]
    Cancelled,
    /// The RDMA provider failed: the library could not be loaded, lacks a
    /// symbol, or refused a registration or a token.
    #[error("RDMA: {0}")]
    Rdma(String),
    /// A thread of the upload pipeline panicked; the upload was aborted.
    #[error("internal error: a pipeline thread panicked: {0}")]
    Panic(String),
    /// A multipart upload failed; `source` is the first error that happened.
    /// The upload was aborted unless the caller asked to keep it.
    #[error("upload {upload_id}{}: {source}", part_suffix(.part_number))]
    Upload {
        /// The multipart upload id.
        upload_id: String,
        /// The part whose failure ended the upload, when one did.
        part_number: Option<u32>,
        /// The first error.
        #[source]
        source: Box<Error>,
    },
}

fn request_id_suffix(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(" (request id {id})"),
        None => String::new(),
    }
}

fn part_suffix(part: &Option<u32>) -> String {
    match part {
        Some(p) => format!(" part {p}"),
        None => String::new(),
    }
}

impl Error {
    /// The S3 error code (`NoSuchKey`, `SignatureDoesNotMatch`, …) if this
    /// error, or the error it wraps, is an S3 error reply.
    pub fn s3_code(&self) -> Option<&str> {
        match self.root() {
            Error::S3 { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The multipart upload id, if this is a failure of a multipart upload.
    pub fn upload_id(&self) -> Option<&str> {
        match self {
            Error::Upload { upload_id, .. } => Some(upload_id),
            _ => None,
        }
    }

    /// The error underneath any [`Error::Upload`] wrapping.
    pub fn root(&self) -> &Error {
        match self {
            Error::Upload { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether the upload was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.root(), Error::Cancelled)
    }

    pub(crate) fn invalid(msg: impl fmt::Display) -> Error {
        Error::InvalidArgument(msg.to_string())
    }
}

/// `Result` with s3pump's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
