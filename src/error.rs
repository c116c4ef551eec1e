//! The one error type of s3pump.

use std::fmt;

/// Everything that can go wrong in s3pump.
///
/// Use [`Error::kind`] (or [`Error::is_not_found`], [`Error::is_retryable`])
/// to decide what to do about an error without matching S3 error codes,
/// [`Error::s3_code`] to look at the S3 error code whatever wrapping the
/// error went through, and [`Error::upload_id`] to learn which multipart upload
/// an upload failure belonged to.
///
/// ```
/// # fn demo(client: &s3pump::Client) -> s3pump::Result<()> {
/// match client.head_object("bucket", "key") {
///     Ok(info) => println!("{} bytes", info.size),
///     Err(e) if e.is_not_found() => println!("no such object"),
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
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
    /// The request never got a whole HTTP reply: DNS, connect, TLS, a reset
    /// connection, a body cut short, or a timeout.
    #[error("{operation}: transport error: {source}")]
    Transport {
        /// The S3 operation that was being sent.
        operation: &'static str,
        /// What went wrong: the HTTP stack's error (a [`ureq::Error`] or a
        /// [`std::io::Error`]; downcast to look inside).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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
    /// The object was replaced (or deleted) while it was being downloaded
    /// or copied: a ranged GET (or a copy request) was refused with 412
    /// `PreconditionFailed` because its `If-Match`
    /// (`x-amz-copy-source-if-match`) no longer held, or answered for
    /// another version of the object. A download into a file leaves no file
    /// behind; a copy leaves no copy and no upload open.
    #[error("the object changed during the download or copy: {0}")]
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
    /// An invariant of s3pump did not hold: this is a bug in s3pump (please
    /// report it), not something the caller or the server did.
    #[error("internal error (a bug in s3pump): {0}")]
    Internal(String),
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

/// Longest piece of a token, key or name quoted in an error message.
const QUOTE_MAX: usize = 80;

/// `s` in quotes as Rust's `{:?}` does, cut to [`QUOTE_MAX`] characters
/// (with `…` and its length in bytes when cut): error messages stay short
/// whatever a server or a user sends.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_MAX {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(QUOTE_MAX).collect();
    format!("{head:?}… ({} bytes)", s.len())
}

/// Longest server message kept in an error.
pub(crate) const MESSAGE_MAX: usize = 300;

/// `s` as it is when at most `max` characters, else its first `max` and
/// `… (N bytes)`: a server's message in an error stays short.
pub(crate) fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} bytes)", s.len())
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

    /// What kind of failure this is, whatever wrapping it went through.
    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            Error::S3 { status, code, .. } => s3_kind(*status, code),
            Error::Transport { timeout: true, .. } => ErrorKind::Timeout,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidArgument(_) | Error::SizeMismatch(_) => ErrorKind::InvalidArgument,
            Error::Credentials(_) => ErrorKind::Credentials,
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::ChecksumMismatch(_) => ErrorKind::Checksum,
            Error::ObjectChanged(_) => ErrorKind::ObjectChanged,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Rdma(_) => ErrorKind::Rdma,
            Error::Panic(_) | Error::Internal(_) => ErrorKind::Internal,
            // `root` never returns an `Upload`.
            Error::Upload { .. } => ErrorKind::Other,
        }
    }

    /// Whether the bucket, the object or the multipart upload does not exist
    /// (`NoSuchKey`, `NoSuchBucket`, `NoSuchUpload`, `NoSuchVersion`, or a
    /// bare 404 such as HeadObject's).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Whether sending the same (idempotent) request again may succeed:
    /// connect errors, resets and timeouts, 5xx, 429, `SlowDown`,
    /// `InternalError`, `RequestTimeout`, and a body damaged in transit
    /// (`BadDigest`, `XAmzContentSHA256Mismatch`). Every request s3pump
    /// sends is idempotent; its retry policy retries exactly these.
    pub fn is_retryable(&self) -> bool {
        self.retryable(true)
    }

    /// [`Error::is_retryable`] for a request that may (`idempotent`) or may
    /// not be sent twice: a transport error or a damaged body is retried
    /// only when it may.
    pub(crate) fn retryable(&self, idempotent: bool) -> bool {
        match self.root() {
            Error::S3 { status, code, .. } => {
                // A 5xx saying the thing does not exist (moto's NoSuchUpload
                // on an abort) will say so again.
                (*status >= 500 && s3_kind(*status, code) != ErrorKind::NotFound)
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "InternalError" | "RequestTimeout" | "ServiceUnavailable"
                    )
                    // The body was damaged on the way: the buffer it is resent
                    // from is intact.
                    || (idempotent
                        && matches!(code.as_str(), "BadDigest" | "XAmzContentSHA256Mismatch"))
            }
            Error::Transport { .. } => idempotent,
            _ => false,
        }
    }

    /// This error with its S3 message rewritten by `f`; any other error as
    /// it is.
    pub(crate) fn reword(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::S3 {
                status,
                code,
                message,
                request_id,
            } => Error::S3 {
                status,
                code,
                message: f(message),
                request_id,
            },
            e => e,
        }
    }

    pub(crate) fn invalid(msg: impl fmt::Display) -> Error {
        Error::InvalidArgument(msg.to_string())
    }
}

/// What kind of failure an [`Error`] is: see [`Error::kind`].
///
/// New kinds may be added; match with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bucket, object, version or multipart upload does not exist.
    NotFound,
    /// The server refused the credentials or the signature, or the caller
    /// lacks the permission (403, `AccessDenied`, `SignatureDoesNotMatch`,
    /// `InvalidAccessKeyId`, an expired token…).
    AccessDenied,
    /// The server asks the client to slow down (429, 503, `SlowDown`).
    Throttled,
    /// The server failed (a 5xx other than 503, `InternalError`).
    ServerError,
    /// A connect or inactivity timeout, or the server's `RequestTimeout`.
    Timeout,
    /// The connection failed: DNS, connect, reset, a body cut short.
    Transport,
    /// The server's certificate failed verification ([`Error::Tls`]): not
    /// retried; trust its CA (`AWS_CA_BUNDLE`) or fix the endpoint's name.
    Tls,
    /// A condition of the request did not hold (409 conflicts, 416
    /// `InvalidRange`).
    Precondition,
    /// The server refused a request's precondition (412
    /// `PreconditionFailed`): a conditional write
    /// ([`PutObjectArgs::if_none_match`](crate::PutObjectArgs::if_none_match),
    /// [`if_match`](crate::PutObjectArgs::if_match)) found an object where
    /// it wanted none, or another ETag. The message names the key and the
    /// condition; nothing was written and no upload is left open. Not
    /// retried.
    PreconditionFailed,
    /// A conditional write raced another write to the same key (409
    /// `ConditionalRequestConflict`, when a CompleteMultipartUpload
    /// conflicts with a concurrent one). Retrying the request cannot help
    /// (the multipart upload is gone): the whole upload may be started
    /// again, after looking at what the key now holds.
    ConditionalConflict,
    /// The object changed during a download or a copy ([`Error::ObjectChanged`]).
    ObjectChanged,
    /// An argument was invalid, locally ([`Error::InvalidArgument`],
    /// [`Error::SizeMismatch`]) or for the server (400 `InvalidArgument`,
    /// `InvalidRequest`, `EntityTooSmall`, `InvalidPart`…).
    InvalidArgument,
    /// The server's reply could not be understood.
    InvalidResponse,
    /// A checksum or digest did not match (`BadDigest`,
    /// [`Error::ChecksumMismatch`]).
    Checksum,
    /// The transfer was cancelled.
    Cancelled,
    /// No usable credentials.
    Credentials,
    /// Reading the source or writing the destination failed.
    Io,
    /// The RDMA provider failed.
    Rdma,
    /// A bug in s3pump ([`Error::Internal`], [`Error::Panic`]).
    Internal,
    /// Anything else (look at [`Error::s3_code`]).
    Other,
}

/// The kind of an S3 error reply, from its code first and its status second.
fn s3_kind(status: u16, code: &str) -> ErrorKind {
    match code {
        "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NoSuchVersion" | "NotFound" => {
            return ErrorKind::NotFound;
        }
        "AccessDenied"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "RequestTimeTooSkewed"
        | "AllAccessDisabled"
        | "AccountProblem"
        | "InvalidSecurity"
        | "Forbidden" => {
            return ErrorKind::AccessDenied;
        }
        "SlowDown"
        | "TooManyRequests"
        | "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "ServiceUnavailable" => return ErrorKind::Throttled,
        "RequestTimeout" => return ErrorKind::Timeout,
        "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch" => {
            return ErrorKind::Checksum;
        }
        "InternalError" => return ErrorKind::ServerError,
        "PreconditionFailed" => return ErrorKind::PreconditionFailed,
        "ConditionalRequestConflict" => return ErrorKind::ConditionalConflict,
        "InvalidRange" | "Conflict" | "OperationAborted" => {
            return ErrorKind::Precondition;
        }
        _ => {}
    }
    match status {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::AccessDenied,
        429 | 503 => ErrorKind::Throttled,
        412 => ErrorKind::PreconditionFailed,
        409 | 416 => ErrorKind::Precondition,
        400 | 405 | 411 | 413 | 414 => ErrorKind::InvalidArgument,
        500.. => ErrorKind::ServerError,
        _ => ErrorKind::Other,
    }
}

/// `Result` with s3pump's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with("… (10000 bytes)"), "{q}");
        assert_eq!(cut("short".into(), 10), "short");
        assert_eq!(cut("x".repeat(500), 3), "xxx… (500 bytes)");
    }

    fn s3(status: u16, code: &str) -> Error {
        Error::S3 {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        }
    }

    #[test]
    fn kinds_of_s3_errors() {
        for (status, code, kind) in [
            (404, "NoSuchKey", ErrorKind::NotFound),
            (404, "NoSuchBucket", ErrorKind::NotFound),
            (404, "NoSuchUpload", ErrorKind::NotFound),
            (404, "NotFound", ErrorKind::NotFound),
            (403, "SignatureDoesNotMatch", ErrorKind::AccessDenied),
            (403, "AccessDenied", ErrorKind::AccessDenied),
            (403, "InvalidAccessKeyId", ErrorKind::AccessDenied),
            (503, "SlowDown", ErrorKind::Throttled),
            (429, "Whatever", ErrorKind::Throttled),
            (500, "InternalError", ErrorKind::ServerError),
            (502, "BadGateway", ErrorKind::ServerError),
            (400, "RequestTimeout", ErrorKind::Timeout),
            (400, "BadDigest", ErrorKind::Checksum),
            (412, "PreconditionFailed", ErrorKind::PreconditionFailed),
            (412, "Whatever", ErrorKind::PreconditionFailed),
            (
                409,
                "ConditionalRequestConflict",
                ErrorKind::ConditionalConflict,
            ),
            (409, "BucketNotEmpty", ErrorKind::Precondition),
            (416, "InvalidRange", ErrorKind::Precondition),
            (400, "EntityTooSmall", ErrorKind::InvalidArgument),
            (301, "PermanentRedirect", ErrorKind::Other),
        ] {
            assert_eq!(s3(status, code).kind(), kind, "{status} {code}");
        }
        assert!(s3(404, "NoSuchKey").is_not_found());
        assert!(!s3(403, "AccessDenied").is_not_found());
        // Through the upload wrapping too.
        let wrapped = Error::Upload {
            upload_id: "u".into(),
            part_number: Some(2),
            source: Box::new(s3(404, "NoSuchUpload")),
        };
        assert!(wrapped.is_not_found());
    }

    #[test]
    fn kinds_of_local_errors() {
        let transport = |timeout| Error::Transport {
            operation: "UploadPart",
            source: "reset".into(),
            timeout,
        };
        assert_eq!(transport(false).kind(), ErrorKind::Transport);
        assert_eq!(transport(true).kind(), ErrorKind::Timeout);
        assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
        assert_eq!(Error::invalid("x").kind(), ErrorKind::InvalidArgument);
        assert_eq!(Error::Internal("x".into()).kind(), ErrorKind::Internal);
        assert_eq!(
            Error::ChecksumMismatch("x".into()).kind(),
            ErrorKind::Checksum
        );
    }

    #[test]
    fn transport_error_keeps_its_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer reset");
        let e = Error::Transport {
            operation: "GetObject",
            source: Box::new(io),
            timeout: false,
        };
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(e.to_string(), "GetObject: transport error: peer reset");
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }

    #[test]
    fn retry_classification() {
        assert!(s3(503, "SlowDown").retryable(false));
        assert!(s3(500, "InternalError").retryable(false));
        assert!(s3(429, "TooManyRequests").retryable(false));
        assert!(s3(400, "RequestTimeout").retryable(false));
        assert!(!s3(403, "SignatureDoesNotMatch").is_retryable());
        assert!(s3(400, "BadDigest").is_retryable());
        assert!(!s3(400, "BadDigest").retryable(false));
        assert!(!s3(400, "InvalidArgument").is_retryable());
        assert!(!s3(404, "NoSuchKey").is_retryable());
        // moto: NoSuchUpload with a 500 says the same thing again if asked.
        assert!(!s3(500, "NoSuchUpload").is_retryable());
        let t = Error::Transport {
            operation: "UploadPart",
            source: "reset".into(),
            timeout: false,
        };
        assert!(t.is_retryable());
        assert!(!t.retryable(false));
        assert!(!Error::Cancelled.is_retryable());
    }
}
