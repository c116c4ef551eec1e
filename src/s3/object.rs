//! Single-request S3 operations on objects and buckets.

use std::io::Write;

use ureq::http::{HeaderMap, Method};

use crate::client::{Request, header, read_text};
use crate::pipeline::plan::{MAX_PART_SIZE, MAX_PARTS};
use crate::s3::xml;
use crate::transport::pace::RateReader;
use crate::transport::stop::Stop;
use crate::upload::part::{Target, send_slab};
use crate::{Client, Error, PayloadSigning, PutObjectArgs, PutObjectOutput, Result};

/// The largest object S3 holds: 10,000 parts of 5 GiB (AWS documents it as
/// "50 TB"). A HEAD saying more is a server error, not an object to fetch.
pub(crate) const MAX_OBJECT_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;

/// What [`Client::head_object`] and [`Client::get_object`] learn about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// ETag, exactly as the server sent it (quotes included).
    pub etag: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), names without the prefix, sorted.
    pub metadata: Vec<(String, String)>,
    /// Version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// `Last-Modified`, as the server formatted it.
    pub last_modified: Option<String>,
}

impl ObjectInfo {
    fn from_headers(headers: &HeaderMap, size: u64) -> ObjectInfo {
        let mut metadata: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(name, value)| {
                let name = name.as_str().strip_prefix("x-amz-meta-")?;
                Some((name.to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        metadata.sort();
        ObjectInfo {
            size,
            etag: header(headers, "etag").unwrap_or_default(),
            content_type: header(headers, "content-type"),
            metadata,
            version_id: header(headers, "x-amz-version-id"),
            last_modified: header(headers, "last-modified"),
        }
    }
}

/// What [`Client::get_object_with`] and [`Client::get_object_bytes`] read:
/// the whole current object unless a range or a version is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetObjectArgs {
    range: Option<(u64, u64)>,
    version_id: Option<String>,
}

impl GetObjectArgs {
    /// The whole current object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the bytes `range.start` up to (not including) `range.end`.
    pub fn range(mut self, range: std::ops::Range<u64>) -> Self {
        self.range = Some((range.start, range.end));
        self
    }

    /// This version of the object (`versionId`) instead of the current one.
    pub fn version_id(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }
}

/// A reply's `Content-Length` (HeadObject's: the object's size).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<u64> {
    header(headers, "content-length")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::InvalidResponse {
            operation: "HeadObject",
            message: "no Content-Length".into(),
        })
}

/// Checks a bucket name against S3's rules (3–63 characters of lowercase
/// letters, digits, `.` and `-`, starting and ending with a letter or digit).
pub(crate) fn validate_bucket(bucket: &str) -> Result<()> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && ok_chars
        && ends_ok(bucket.bytes().next())
        && ends_ok(bucket.bytes().last())
        && !bucket.contains("..")
    {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "bucket name {bucket:?} is not valid: 3-63 characters of a-z, 0-9, '.' and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

/// Checks an object key: 1 to 1024 bytes.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("object key is empty"));
    }
    if key.len() > 1024 {
        return Err(Error::invalid(format!(
            "object key is {} bytes long; S3 allows at most 1024",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn validate_target(bucket: &str, key: &str) -> Result<()> {
    validate_bucket(bucket)?;
    validate_key(key)
}

impl Client {
    /// Uploads `data` with a single PutObject request.
    ///
    /// Uses `args`' object settings (content type, metadata, headers,
    /// checksum, payload signing); its part and progress settings do not
    /// apply. For large or streamed data use [`Client::put_object`].
    pub fn put_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        args: &PutObjectArgs,
    ) -> Result<PutObjectOutput> {
        validate_target(bucket, key)?;
        let sent = send_slab(
            self,
            self.conn(),
            bucket,
            key,
            &Target::Object,
            data,
            args,
            None,
            None,
        )?;
        Ok(sent.into_single(data.len()))
    }

    /// Downloads an object into `dest` and returns what the reply said about it.
    ///
    /// A transport failure before any byte was written is retried; after that
    /// it is an error (the writer cannot be rewound).
    pub fn get_object(&self, bucket: &str, key: &str, dest: &mut impl Write) -> Result<ObjectInfo> {
        self.get_object_with(bucket, key, &GetObjectArgs::new(), dest)
    }

    /// [`get_object`](Client::get_object) of a byte range or a version
    /// (one GET; [`Client::download`] for large objects in parallel).
    /// `ObjectInfo::size` is the number of bytes written. A range past the
    /// end of the object is clipped to it by the server; one that starts
    /// past it is an error (416 `InvalidRange`); a server that ignores the
    /// range (a 200 with the whole object) is an error, nothing written.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// use s3pump::GetObjectArgs;
    /// let mut header = Vec::new();
    /// client.get_object_with("bucket", "big.bin", &GetObjectArgs::new().range(0..512), &mut header)?;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn get_object_with(
        &self,
        bucket: &str,
        key: &str,
        args: &GetObjectArgs,
        dest: &mut impl Write,
    ) -> Result<ObjectInfo> {
        validate_target(bucket, key)?;
        let mut req = Request::new("GetObject", Method::GET, bucket, Some(key));
        if let Some(v) = &args.version_id {
            req = req.query("versionId", v.clone());
        }
        if let Some((start, end)) = args.range {
            if start >= end {
                return Err(Error::invalid(format!(
                    "GetObject {bucket}/{key}: the range {start}..{end} is empty"
                )));
            }
            req = req.header("range", format!("bytes={start}-{}", end - 1));
        }
        let mut response = self.send_retrying(self.conn(), &req, true)?;
        if let Some((start, _)) = args.range {
            let content_range = header(response.headers(), "content-range").unwrap_or_default();
            let first = content_range
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, _)| a.trim().parse::<u64>().ok());
            if response.status().as_u16() != 206 || first != Some(start) {
                return Err(Error::InvalidResponse {
                    operation: "GetObject",
                    message: format!(
                        "asked for bytes from {start} of {bucket}/{key}, the server answered {} \
                         with Content-Range {content_range:?}",
                        response.status().as_u16()
                    ),
                });
            }
        }
        let mut reader = RateReader::new(response.body_mut().as_reader(), self.limits());
        let size = std::io::copy(&mut reader, dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::Other | std::io::ErrorKind::TimedOut => Error::Transport {
                operation: "GetObject",
                timeout: e.kind() == std::io::ErrorKind::TimedOut,
                source: Box::new(e),
            },
            _ => Error::Io {
                context: format!("GetObject {bucket}/{key}: copying the body"),
                source: e,
            },
        })?;
        Ok(ObjectInfo::from_headers(response.headers(), size))
    }

    /// [`get_object_with`](Client::get_object_with) into memory: the bytes
    /// (all of them: mind the object's size) and what the reply said.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let (config, info) = client.get_object_bytes("bucket", "config.json", &Default::default())?;
    /// println!("{} bytes, ETag {}", config.len(), info.etag);
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn get_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        args: &GetObjectArgs,
    ) -> Result<(Vec<u8>, ObjectInfo)> {
        let mut out = Vec::new();
        let info = self.get_object_with(bucket, key, args, &mut out)?;
        Ok((out, info))
    }

    /// Returns an object's size, ETag and metadata without its body.
    /// A missing object is [`Error::S3`] with status 404.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        validate_target(bucket, key)?;
        self.head(bucket, key, Vec::new(), None)
            .map(|(info, _)| info)
    }

    /// [`head_object`](Client::head_object) of a given version.
    pub fn head_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<ObjectInfo> {
        validate_target(bucket, key)?;
        let req = Request::new("HeadObject", Method::HEAD, bucket, Some(key))
            .query("versionId", version_id);
        let response = self.send_retrying(self.conn(), &req, true)?;
        let size = content_length(response.headers())?;
        Ok(ObjectInfo::from_headers(response.headers(), size))
    }

    /// HeadObject with extra request headers: the object's info, and the
    /// reply's headers for what else the caller looks for.
    pub(crate) fn head(
        &self,
        bucket: &str,
        key: &str,
        headers: Vec<(String, String)>,
        stop: Option<&Stop>,
    ) -> Result<(ObjectInfo, HeaderMap)> {
        let req = Request::new("HeadObject", Method::HEAD, bucket, Some(key))
            .headers(headers)
            .stop(stop);
        let response = self.send_retrying(self.conn(), &req, true)?;
        let size = content_length(response.headers())?;
        if size > MAX_OBJECT_SIZE {
            return Err(Error::InvalidResponse {
                operation: "HeadObject",
                message: format!(
                    "{bucket}/{key}: the server says the object is {size} bytes, more than the \
                     largest S3 object ({MAX_OBJECT_SIZE} bytes: 10,000 parts of 5 GiB)"
                ),
            });
        }
        let info = ObjectInfo::from_headers(response.headers(), size);
        Ok((info, response.headers().clone()))
    }

    /// Deletes an object. Deleting a missing object succeeds, as in S3.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        validate_target(bucket, key)?;
        let req = Request::new("DeleteObject", Method::DELETE, bucket, Some(key));
        self.send_retrying(self.conn(), &req, true)?;
        Ok(())
    }

    /// Deletes one version of an object (in a versioned bucket, for good;
    /// [`delete_object`](Client::delete_object) only adds a delete marker).
    pub fn delete_object_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        validate_target(bucket, key)?;
        let req = Request::new("DeleteObject", Method::DELETE, bucket, Some(key))
            .query("versionId", version_id);
        self.send_retrying(self.conn(), &req, true)?;
        Ok(())
    }

    /// Creates a bucket in the client's region.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        validate_bucket(bucket)?;
        let body = if self.region() == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(self.region())
            )
        };
        let req = Request::new("CreateBucket", Method::PUT, bucket, None)
            .body(body.as_bytes(), PayloadSigning::Signed);
        let mut response = self.send_retrying(self.conn(), &req, true)?;
        read_text("CreateBucket", &mut response)?;
        Ok(())
    }
}
