//! Presigned URLs: [`Client::presign`] signs a request in its query string
//! so that a client without credentials (a browser, `curl`, a worker) can
//! send it until it expires.

use std::time::{Duration, SystemTime};

use crate::auth::presign::presign_query;
use crate::auth::sigv4::{self, SigningRequest};
use crate::s3::object::validate_target;
use crate::{Client, Error, Result};

/// The longest a presigned URL may stay valid: 7 days, as S3 allows.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The request a presigned URL stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresignOperation {
    /// GetObject: `GET` the object (curl `URL`).
    GetObject,
    /// PutObject: `PUT` a whole object as the body (curl `-T FILE URL`).
    PutObject,
    /// HeadObject: `HEAD` the object.
    HeadObject,
    /// DeleteObject: `DELETE` the object.
    DeleteObject,
    /// UploadPart: `PUT` one part of a multipart upload that the holder of
    /// the credentials created (and will complete), so that workers without
    /// credentials can upload the parts in parallel.
    UploadPart {
        /// The multipart upload's id.
        upload_id: String,
        /// The part's number, 1 to 10,000.
        part_number: u32,
    },
}

impl PresignOperation {
    fn method(&self) -> &'static str {
        match self {
            PresignOperation::GetObject => "GET",
            PresignOperation::PutObject | PresignOperation::UploadPart { .. } => "PUT",
            PresignOperation::HeadObject => "HEAD",
            PresignOperation::DeleteObject => "DELETE",
        }
    }
}

/// The settings of [`Client::presign`].
#[derive(Debug, Clone)]
pub struct PresignArgs {
    expires_in: Duration,
    headers: Vec<(String, String)>,
    version_id: Option<String>,
    signed_at: Option<SystemTime>,
}

impl Default for PresignArgs {
    fn default() -> Self {
        PresignArgs {
            expires_in: Duration::from_secs(3600),
            headers: Vec::new(),
            version_id: None,
            signed_at: None,
        }
    }
}

impl PresignArgs {
    /// Valid for one hour, no header to send.
    pub fn new() -> Self {
        PresignArgs::default()
    }

    /// How long the URL stays valid, from 1 second to 7 days
    /// ([`MAX_PRESIGN_EXPIRY`]) in whole seconds (a fraction is dropped);
    /// [`Client::presign`] refuses anything else, as S3 does. With temporary
    /// credentials the URL also stops working when they expire.
    ///
    /// Defaults to 3600 s.
    pub fn expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = expires_in;
        self
    }

    /// The `Content-Type` the upload must be sent with (signed: another one
    /// is refused by the server). Returned in
    /// [`PresignedRequest::headers`].
    pub fn content_type(self, content_type: impl Into<String>) -> Self {
        self.header("content-type", content_type)
    }

    /// A header the request must be sent with, signed into the URL and
    /// returned in [`PresignedRequest::headers`]: a checksum
    /// (`x-amz-checksum-crc32c`), SSE-C keys
    /// (`x-amz-server-side-encryption-customer-*`), `x-amz-meta-*`
    /// metadata, a storage class… The name is lower-cased; `host`,
    /// `authorization` and `x-amz-date`, which the signing sets, are refused.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// A given version of the object (`versionId`), for GET, HEAD and DELETE.
    pub fn version_id(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }

    /// The time the URL is signed at, and its validity starts from.
    ///
    /// Defaults to now.
    pub fn signed_at(mut self, time: SystemTime) -> Self {
        self.signed_at = Some(time);
        self
    }
}

/// A presigned request: what to send, to where, with which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresignedRequest {
    /// `GET`, `PUT`, `HEAD` or `DELETE`.
    pub method: String,
    /// The whole URL, signature included. It is a secret for as long as it
    /// is valid: whoever holds it can send the request.
    pub url: String,
    /// The headers the request must carry, exactly (they are signed): those
    /// given with [`PresignArgs::header`] and [`PresignArgs::content_type`];
    /// `Host` (which every HTTP client sends) is not listed.
    pub headers: Vec<(String, String)>,
    /// When the URL stops working.
    pub expires_at: SystemTime,
}

impl Client {
    /// Signs `operation` on `bucket`/`key` into a URL (SigV4 in the query
    /// string) that anyone holding it can use, without credentials, until
    /// it expires. Nothing is sent to the server: a URL for a missing
    /// object is made, and fails when used.
    ///
    /// The URL is signed for the bucket's region (the client's, or the one
    /// learnt from the server), with the session token when the
    /// credentials carry one. Fails on an anonymous client, an expiry
    /// outside 1 s to 7 days, a part number outside 1 to 10,000, or a
    /// header the signing sets itself.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use s3pump::{PresignArgs, PresignOperation};
    ///
    /// let client = s3pump::Client::from_env()?;
    /// let get = client.presign(
    ///     PresignOperation::GetObject,
    ///     "bucket",
    ///     "report.pdf",
    ///     &PresignArgs::new().expires_in(Duration::from_secs(600)),
    /// )?;
    /// println!("curl '{}'", get.url);
    ///
    /// // An upload that must be sent with its content type.
    /// let put = client.presign(
    ///     PresignOperation::PutObject,
    ///     "bucket",
    ///     "incoming/photo.jpg",
    ///     &PresignArgs::new().content_type("image/jpeg"),
    /// )?;
    /// for (name, value) in &put.headers {
    ///     println!("{name}: {value}");
    /// }
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn presign(
        &self,
        operation: PresignOperation,
        bucket: &str,
        key: &str,
        args: &PresignArgs,
    ) -> Result<PresignedRequest> {
        validate_target(bucket, key)?;
        let secs = args.expires_in.as_secs();
        if !(1..=MAX_PRESIGN_EXPIRY.as_secs()).contains(&secs) {
            return Err(Error::invalid(format!(
                "presign {bucket}/{key}: an expiry of {:?} is outside 1 s to 7 days (604800 s)",
                args.expires_in
            )));
        }
        for (name, _) in &args.headers {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid || matches!(name.as_str(), "host" | "authorization" | "x-amz-date") {
                return Err(Error::invalid(format!(
                    "presign {bucket}/{key}: the header {name:?} cannot be presigned"
                )));
            }
        }
        let mut query: Vec<(String, String)> = Vec::new();
        if let PresignOperation::UploadPart {
            upload_id,
            part_number,
        } = &operation
        {
            if !(1..=10_000).contains(part_number) || upload_id.is_empty() {
                return Err(Error::invalid(format!(
                    "presign UploadPart {bucket}/{key}: part {part_number} of upload \
                     {upload_id:?}: parts are numbered 1 to 10000 of a non-empty upload id"
                )));
            }
            query.push(("partNumber".to_owned(), part_number.to_string()));
            query.push(("uploadId".to_owned(), upload_id.clone()));
        }
        if let Some(v) = &args.version_id {
            query.push(("versionId".to_owned(), v.clone()));
        }
        let creds = self.current_credentials()?.ok_or_else(|| {
            Error::invalid(format!(
                "presign {bucket}/{key}: the client has no credentials to sign with (anonymous)"
            ))
        })?;
        let time = args.signed_at.unwrap_or_else(SystemTime::now);
        let expires_at = time + Duration::from_secs(secs);
        if let Some(expiry) = creds.expiry()
            && expiry < expires_at
        {
            log::warn!(
                "presign {bucket}/{key}: the credentials expire before the URL does; \
                 it stops working when they do"
            );
        }
        let region = self.bucket_region(bucket);
        let (authority, path) = self.host_and_path(bucket, Some(key), &region);
        let mut signed = args.headers.clone();
        signed.push(("host".to_owned(), authority.clone()));
        let method = operation.method();
        let query = presign_query(
            &creds,
            &region,
            time,
            secs,
            &SigningRequest {
                method,
                canonical_uri: &path,
                query: &query,
                headers: &signed,
                payload_hash: sigv4::UNSIGNED_PAYLOAD,
            },
        );
        Ok(PresignedRequest {
            method: method.to_owned(),
            url: format!("{}://{authority}{path}?{query}", self.scheme()),
            headers: args.headers.clone(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Addressing, Credentials};
    use std::time::UNIX_EPOCH;

    fn aws_client() -> Client {
        Client::builder()
            .endpoint("https://s3.amazonaws.com")
            .addressing(Addressing::VirtualHost)
            .region("us-east-1")
            .credentials(Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
            ))
            .build()
            .unwrap()
    }

    /// AWS's published presigned URL example, through the client's
    /// addressing (virtual host) and the public API.
    #[test]
    fn aws_example_through_the_client() {
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let p = aws_client()
            .presign(
                PresignOperation::GetObject,
                "examplebucket",
                "test.txt",
                &PresignArgs::new()
                    .expires_in(Duration::from_secs(86_400))
                    .signed_at(at),
            )
            .unwrap();
        assert_eq!(
            p.url,
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(p.method, "GET");
        assert!(p.headers.is_empty());
        assert_eq!(p.expires_at, at + Duration::from_secs(86_400));
    }

    #[test]
    fn bad_settings_are_refused_before_signing() {
        let c = aws_client();
        let get = |args: &PresignArgs| c.presign(PresignOperation::GetObject, "bucket", "k", args);
        for d in [0, 604_801] {
            let e = get(&PresignArgs::new().expires_in(Duration::from_secs(d))).unwrap_err();
            assert!(e.to_string().contains("outside 1 s to 7 days"), "{e}");
        }
        assert!(get(&PresignArgs::new().expires_in(MAX_PRESIGN_EXPIRY)).is_ok());
        assert!(get(&PresignArgs::new().expires_in(Duration::from_millis(999))).is_err());
        for name in ["Host", "authorization", "x-amz-date", "bad name", ""] {
            let e = get(&PresignArgs::new().header(name, "v")).unwrap_err();
            assert!(e.to_string().contains("cannot be presigned"), "{name}: {e}");
        }
        let part = |n: u32, id: &str| {
            c.presign(
                PresignOperation::UploadPart {
                    upload_id: id.to_owned(),
                    part_number: n,
                },
                "bucket",
                "k",
                &PresignArgs::new(),
            )
        };
        assert!(part(0, "u").is_err());
        assert!(part(10_001, "u").is_err());
        assert!(part(1, "").is_err());
        let ok = part(10_000, "u/1").unwrap();
        assert_eq!(ok.method, "PUT");
        assert!(
            ok.url.contains("&partNumber=10000&uploadId=u%2F1&"),
            "{}",
            ok.url
        );
        let anonymous = Client::builder().anonymous().build().unwrap();
        let e = anonymous
            .presign(
                PresignOperation::GetObject,
                "bucket",
                "k",
                &PresignArgs::new(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
    }
}
