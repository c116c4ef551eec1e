//! The arguments of an object upload and what it returns.

use std::fmt;
use std::sync::Arc;

use crate::pipeline::{CancelHandle, Progress, ProgressFn};
use crate::rdma::RdmaProvider;
use crate::{ChecksumAlgorithm, Error};

/// How the body of each part is vouched for in the request signature.
///
/// The default is [`PayloadSigning::Auto`], botocore's and the AWS SDKs'
/// rule: over HTTPS, `UNSIGNED-PAYLOAD` plus the part's checksum header; over
/// plain HTTP, the signed SHA-256 of the part. Over HTTPS, TLS already
/// protects the bytes on the wire (its AEAD rejects any change) and the
/// per-part CRC (`x-amz-checksum-*`) lets the server reject a body that was
/// damaged before encryption or after decryption; the SHA-256 would add
/// nothing but about half a CPU second per GiB. Over plain HTTP nothing else
/// protects the bytes, so the signature covers them.
///
/// With checksums off ([`ChecksumAlgorithm::None`](crate::ChecksumAlgorithm::None))
/// over HTTPS, `Auto` signs the SHA-256 after all (botocore would still send
/// `UNSIGNED-PAYLOAD`): then nothing but TLS would vouch for the body end to
/// end, and checksums are usually off for an older server that does not
/// take them, not to save CPU. Ask for [`PayloadSigning::Unsigned`] to skip
/// it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadSigning {
    /// `UNSIGNED-PAYLOAD` over HTTPS when the request carries a checksum
    /// header (or has no body), the signed SHA-256 otherwise. The default.
    #[default]
    Auto,
    /// `x-amz-content-sha256` is the SHA-256 of the part, computed on the
    /// worker thread that sends it, on every scheme.
    Signed,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`: no SHA-256 of the data at
    /// all, on every scheme (over plain HTTP the body is then protected by
    /// its checksum alone).
    Unsigned,
}

/// The arguments of [`Client::put_object`](crate::Client::put_object) and
/// friends, set with chained methods.
///
/// ```
/// use s3pump::{ChecksumAlgorithm, PutObjectArgs};
/// let args = PutObjectArgs::new()
///     .size(10 << 30)
///     .max_inflight_parts(16)
///     .content_type("application/octet-stream")
///     .metadata("origin", "nightly-backup")
///     .checksum(ChecksumAlgorithm::Crc32c)
///     .on_progress(|p| {
///         eprintln!("{} bytes sent", p.bytes_sent);
///         true // return false to cancel
///     });
/// # drop(args);
/// ```
///
/// `Clone`: a clone shares the progress callback, the cancel handle and the
/// RDMA provider with the original.
#[derive(Clone)]
pub struct PutObjectArgs {
    pub(crate) size: Option<u64>,
    pub(crate) part_size: Option<u64>,
    pub(crate) max_inflight_parts: usize,
    pub(crate) memory_limit: u64,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) checksum: ChecksumAlgorithm,
    pub(crate) payload_signing: PayloadSigning,
    pub(crate) progress: Option<Arc<parking_lot::Mutex<ProgressFn>>>,
    pub(crate) cancel: Option<CancelHandle>,
    pub(crate) rdma: Option<Arc<dyn RdmaProvider>>,
    pub(crate) keep_failed_upload: bool,
    pub(crate) condition: Option<WriteCondition>,
    pub(crate) strict_checksums: bool,
}

/// A condition on what a write may replace: S3's conditional writes, sent on
/// PutObject and on CompleteMultipartUpload (never on Create or the parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteCondition {
    /// `If-None-Match: *`: only if no object has the key.
    Absent,
    /// `If-Match: ETAG`: only if the object in place has this ETag (quoted).
    ETag(String),
}

impl WriteCondition {
    /// `If-Match: etag`, quoted when it is not.
    pub(crate) fn etag(etag: String) -> WriteCondition {
        if etag.starts_with('"') || etag.starts_with("W/") {
            WriteCondition::ETag(etag)
        } else {
            WriteCondition::ETag(format!("\"{etag}\""))
        }
    }

    /// The request header that carries the condition.
    pub(crate) fn header(&self) -> (String, String) {
        match self {
            WriteCondition::Absent => ("if-none-match".into(), "*".into()),
            WriteCondition::ETag(etag) => ("if-match".into(), etag.clone()),
        }
    }

    /// The condition, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            WriteCondition::Absent => "If-None-Match: * (create only if absent)".into(),
            WriteCondition::ETag(etag) => {
                format!("If-Match: {etag} (replace only the object with that ETag)")
            }
        }
    }

    /// `e` with a message naming `bucket`/`key` and the condition when it is
    /// the server's refusal of the condition (412) or a conflict with a
    /// concurrent conditional write (409 `ConditionalRequestConflict`);
    /// any other error as it is.
    pub(crate) fn explain(&self, bucket: &str, key: &str, e: Error) -> Error {
        let conflict = e.s3_code() == Some("ConditionalRequestConflict");
        if !matches!(e, Error::S3 { status: 412, .. }) && !conflict {
            return e;
        }
        let condition = self.describe();
        e.reword(|message| {
            if conflict {
                format!(
                    "conditional write conflict: {condition} on {bucket}/{key} raced a \
                     concurrent write; nothing was written, upload it again ({message})"
                )
            } else {
                format!(
                    "precondition failed: {condition} does not hold for {bucket}/{key}, \
                     which was not written ({message})"
                )
            }
        })
    }
}

impl Default for PutObjectArgs {
    fn default() -> Self {
        PutObjectArgs {
            size: None,
            part_size: None,
            max_inflight_parts: 8,
            memory_limit: u64::MAX,
            content_type: None,
            metadata: Vec::new(),
            headers: Vec::new(),
            checksum: ChecksumAlgorithm::default(),
            payload_signing: PayloadSigning::default(),
            progress: None,
            cancel: None,
            rdma: None,
            keep_failed_upload: false,
            condition: None,
            strict_checksums: false,
        }
    }
}

impl fmt::Debug for PutObjectArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutObjectArgs")
            .field("size", &self.size)
            .field("part_size", &self.part_size)
            .field("max_inflight_parts", &self.max_inflight_parts)
            .field("memory_limit", &self.memory_limit)
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("checksum", &self.checksum)
            .field("payload_signing", &self.payload_signing)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .field("rdma", &self.rdma.is_some())
            .field("keep_failed_upload", &self.keep_failed_upload)
            .field("condition", &self.condition)
            .field("strict_checksums", &self.strict_checksums)
            .finish()
    }
}

impl PutObjectArgs {
    /// Arguments with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the object's size. The source must then hold exactly this
    /// many bytes (fewer or more is an error), and the part size grows in
    /// 1 MiB steps until the object fits in 10,000 parts.
    ///
    /// Defaults to unknown: the source is read until it ends.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// The size of every part but the last, 5 MiB to 5 GiB.
    ///
    /// Defaults to 8 MiB when the size is declared (grown as needed to fit
    /// 10,000 parts, and shrunk down to 5 MiB at most so that the parts
    /// divide evenly among the parts in flight: 13 parts with 8 in flight
    /// would leave the last wave with 5, 16 smaller parts run two full
    /// waves) and to 16 MiB when it is not; with an unknown size the
    /// part size sets the largest object: `part_size × 10,000` (16 MiB parts
    /// allow 156 GiB). A longer stream is an error, never a truncated object.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = Some(bytes);
        self
    }

    /// How many parts are uploaded at the same time, 1 to 100; each takes
    /// a worker thread and a connection of the client's, shared by all its
    /// transfers ([`ClientBuilder::max_connections`](crate::ClientBuilder::max_connections)),
    /// while it is on the wire. `1` is a strictly sequential upload.
    ///
    /// Memory used is `(max_inflight_parts + 1) × part_size`, bounded by
    /// [`memory_limit`](Self::memory_limit).
    ///
    /// Defaults to 8. One stream's bandwidth is the cap of a sequential
    /// upload; minio-cpp measured its own upload going from 167.7 to
    /// 318.6 MiB/s when it moved its default from 1 to 4 parts in flight, and
    /// 8 leaves room for higher-latency links while costing 72 MiB at the
    /// default part size.
    pub fn max_inflight_parts(mut self, n: usize) -> Self {
        self.max_inflight_parts = n;
        self
    }

    /// The most memory the buffers (slabs) of this upload may take, within
    /// the client's [`memory_limit`](crate::ClientBuilder::memory_limit),
    /// which this can only lower. When `(max_inflight_parts + 1) × part_size`
    /// exceeds it, fewer parts are put in flight (logged at INFO); when not
    /// even two slabs fit, the upload fails before anything is sent.
    ///
    /// Defaults to the client's limit.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The object's `Content-Type`.
    ///
    /// Defaults to none (the server picks, usually `binary/octet-stream`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds user metadata, sent as `x-amz-meta-<name>`.
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((name.into(), value.into()));
        self
    }

    /// Adds a header to the object-creating request (SSE, tagging, storage
    /// class, ACL…). SSE-C headers (`x-amz-server-side-encryption-customer-*`)
    /// are repeated on every part, as S3 requires.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// The checksum sent with every part.
    ///
    /// Defaults to [`ChecksumAlgorithm::Crc64Nvme`].
    pub fn checksum(mut self, algorithm: ChecksumAlgorithm) -> Self {
        self.checksum = algorithm;
        self
    }

    /// Whether a full-object checksum the server returns on Complete that
    /// cannot be a value of the algorithm (the wrong length) fails the
    /// upload (which is then aborted). Without this it is "unverifiable": a
    /// warning in the log, and the upload succeeds. A well-formed checksum
    /// that differs from the data read fails either way.
    ///
    /// Defaults to `false`.
    pub fn strict_checksums(mut self, strict: bool) -> Self {
        self.strict_checksums = strict;
        self
    }

    /// Whether each part's SHA-256 is part of the signature.
    ///
    /// Defaults to [`PayloadSigning::Auto`] (see there for why).
    pub fn payload_signing(mut self, signing: PayloadSigning) -> Self {
        self.payload_signing = signing;
        self
    }

    /// Called on the caller's thread each time a part is acknowledged; return
    /// `false` to cancel the upload (it is aborted and the result is
    /// [`Error::Cancelled`](crate::Error::Cancelled)).
    pub fn on_progress(mut self, f: impl FnMut(Progress) -> bool + Send + 'static) -> Self {
        self.progress = Some(Arc::new(parking_lot::Mutex::new(Box::new(f))));
        self
    }

    /// Lets another thread cancel the upload.
    pub fn cancel_handle(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        self
    }

    /// Sends parts by RDMA through this provider, falling back to HTTP when
    /// the server or the provider cannot.
    ///
    /// Defaults to none: parts go over HTTP.
    pub fn rdma(mut self, provider: Arc<dyn RdmaProvider>) -> Self {
        self.rdma = Some(provider);
        self
    }

    /// Keeps a failed multipart upload on the server instead of aborting it,
    /// so that it can be resumed; the error then carries its upload id.
    ///
    /// Defaults to `false`: a failed upload is aborted.
    pub fn keep_failed_upload(mut self, keep: bool) -> Self {
        self.keep_failed_upload = keep;
        self
    }

    /// Writes the object only if no object has its key (`If-None-Match: *`,
    /// S3's conditional write): when one does, or appears before the upload
    /// completes, the upload fails with
    /// [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed)
    /// (412), nothing is written and no multipart upload is left open.
    ///
    /// The condition is checked by the server when the object is written: on
    /// the PutObject of a one-part upload, on CompleteMultipartUpload of a
    /// multipart one (after every part was sent). Two such writes racing
    /// may make S3 answer 409 `ConditionalRequestConflict`
    /// ([`ErrorKind::ConditionalConflict`](crate::ErrorKind::ConditionalConflict)):
    /// then start the whole upload again. Replaces [`if_match`](Self::if_match).
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// use s3pump::{ErrorKind, PutObjectArgs};
    /// let args = PutObjectArgs::new().if_none_match();
    /// match client.put_object_bytes("bucket", "lock", b"mine", &args) {
    ///     Ok(_) => println!("created"),
    ///     Err(e) if e.kind() == ErrorKind::PreconditionFailed => println!("taken: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    ///
    /// Defaults to off: the write replaces whatever is there.
    pub fn if_none_match(mut self) -> Self {
        self.condition = Some(WriteCondition::Absent);
        self
    }

    /// Writes the object only if the object in place has this ETag
    /// (`If-Match`, as [`head_object`](crate::Client::head_object) returned
    /// it; quotes are added when missing): a read-modify-write that never
    /// overwrites someone else's newer version. A missing object or another
    /// ETag fails the upload as [`if_none_match`](Self::if_none_match)
    /// does, with [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed).
    /// Replaces [`if_none_match`](Self::if_none_match).
    ///
    /// Defaults to off.
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.condition = Some(WriteCondition::etag(etag.into()));
        self
    }

    /// The headers of the request that creates the object (PutObject or
    /// CreateMultipartUpload).
    pub(crate) fn object_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if let Some(ct) = &self.content_type {
            h.push(("content-type".into(), ct.clone()));
        }
        for (k, v) in &self.metadata {
            h.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone()));
        }
        h
    }

    /// The headers repeated on every UploadPart (SSE-C).
    pub(crate) fn part_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-amz-server-side-encryption-customer-"))
            .cloned()
            .collect()
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled)
    }
}

/// What a finished upload returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutObjectOutput {
    /// The object's ETag, exactly as the server sent it (quotes included).
    pub etag: String,
    /// The version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// Number of parts; 1 for an object sent with a single PutObject.
    pub parts: u32,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The full-object checksum (base64), when a checksum was configured.
    pub checksum: Option<String>,
    /// Number of part buffers (slabs) this upload mapped.
    pub slabs: usize,
    /// Bytes of part buffers this upload mapped.
    pub slab_bytes: u64,
}
