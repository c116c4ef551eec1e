//! The arguments of a server-side copy and what it returns.

use crate::pipeline::CancelHandle;
use crate::upload::args::WriteCondition;

/// The default of [`CopyObjectArgs::multipart_threshold`]: 64 MiB.
pub const DEFAULT_COPY_THRESHOLD: u64 = 64 << 20;

/// The arguments of [`Client::copy_object`](crate::Client::copy_object) and
/// [`Client::move_object`](crate::Client::move_object), set with chained
/// methods.
///
/// ```
/// let args = s3pump::CopyObjectArgs::new()
///     .max_inflight_parts(16)
///     .header("x-amz-storage-class", "STANDARD_IA")
///     .if_none_match();
/// # drop(args);
/// ```
#[derive(Debug, Clone)]
pub struct CopyObjectArgs {
    pub(crate) source_version_id: Option<String>,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: Option<u64>,
    pub(crate) max_inflight_parts: usize,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: Option<Vec<(String, String)>>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) condition: Option<WriteCondition>,
    pub(crate) cancel: Option<CancelHandle>,
}

impl Default for CopyObjectArgs {
    fn default() -> Self {
        CopyObjectArgs {
            source_version_id: None,
            multipart_threshold: DEFAULT_COPY_THRESHOLD,
            part_size: None,
            max_inflight_parts: 8,
            content_type: None,
            metadata: None,
            headers: Vec::new(),
            condition: None,
            cancel: None,
        }
    }
}

impl CopyObjectArgs {
    /// Arguments with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies this version of the source (`versionId`) instead of the
    /// current one.
    pub fn source_version_id(mut self, version_id: impl Into<String>) -> Self {
        self.source_version_id = Some(version_id.into());
        self
    }

    /// Sources larger than this are copied in parts (parallel
    /// UploadPartCopy); smaller ones with one CopyObject. A source over
    /// 5 GiB, which CopyObject cannot copy, is always copied in parts.
    ///
    /// Defaults to [`DEFAULT_COPY_THRESHOLD`] (64 MiB): below it one request
    /// does the copy with no multipart bookkeeping; above it, parts copied
    /// in parallel finish sooner than the server copying alone.
    pub fn multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// The part size of a multipart copy, 5 MiB to 5 GiB.
    ///
    /// Defaults to the plan of an upload of the same size (8 MiB, grown to
    /// fit 10,000 parts, evened out over the parts in flight).
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = Some(bytes);
        self
    }

    /// Parts copied at once by a multipart copy, 1 to 100, on the client's
    /// workers and connections (no part's bytes pass through the client).
    /// Each part's reply must start within the client's
    /// [`idle_timeout`](crate::ClientBuilder::idle_timeout): S3 keeps a
    /// long copy's connection alive, a server that sends nothing until the
    /// part is copied needs a timeout longer than its slowest part.
    ///
    /// Defaults to 8.
    pub fn max_inflight_parts(mut self, n: usize) -> Self {
        self.max_inflight_parts = n;
        self
    }

    /// The copy's `Content-Type`, instead of the source's. Setting it (or
    /// [`metadata`](Self::metadata)) replaces the source's content type,
    /// user metadata and cache and encoding headers by what these arguments
    /// give (S3's `x-amz-metadata-directive: REPLACE`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds user metadata (`x-amz-meta-<name>`) to the copy, instead of the
    /// source's (see [`content_type`](Self::content_type)).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .get_or_insert_with(Vec::new)
            .push((name.into(), value.into()));
        self
    }

    /// Adds a header to the request that creates the copy (CopyObject, or
    /// CreateMultipartUpload): server-side encryption, storage class,
    /// `x-amz-tagging`… `x-amz-checksum-algorithm` applies to a single
    /// CopyObject only: a multipart copy lists no part checksums, which S3
    /// requires of an upload created with an algorithm (raise
    /// [`multipart_threshold`](Self::multipart_threshold) up to 5 GiB for it).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Writes the copy only if no object has the destination key (see
    /// [`PutObjectArgs::if_none_match`](crate::PutObjectArgs::if_none_match)):
    /// sent on CopyObject, or on CompleteMultipartUpload of a multipart
    /// copy.
    pub fn if_none_match(mut self) -> Self {
        self.condition = Some(WriteCondition::Absent);
        self
    }

    /// Writes the copy only if the object at the destination has this ETag
    /// (see [`PutObjectArgs::if_match`](crate::PutObjectArgs::if_match)).
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.condition = Some(WriteCondition::etag(etag.into()));
        self
    }

    /// Lets another thread cancel a multipart copy (it is then aborted).
    pub fn cancel_handle(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        self
    }

    /// Whether the caller replaces the source's metadata.
    pub(crate) fn replaces_metadata(&self) -> bool {
        self.content_type.is_some() || self.metadata.is_some()
    }
}

/// What a finished copy returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyObjectOutput {
    /// The copy's ETag, exactly as the server sent it.
    pub etag: String,
    /// The copy's version id, when the destination bucket is versioned.
    pub version_id: Option<String>,
    /// The ETag of the source that was copied (the copy was bound to it).
    pub source_etag: String,
    /// Bytes copied (on the server).
    pub bytes: u64,
    /// 1 for a single CopyObject, else the number of parts.
    pub parts: u32,
}
