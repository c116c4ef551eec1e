//! The multipart upload protocol: create, upload a part, complete, abort,
//! list. The buffering driver that uses it is in `upload.rs`.

use md5::{Digest, Md5};
use ureq::http::Method;

use crate::client::{Request, header, read_text, s3_error};
use crate::error::quote;
use crate::s3::checksum::Crc;
use crate::s3::object::{validate_bucket, validate_target};
use crate::s3::pages::Pages;
use crate::s3::xml;
use crate::transport::stop::Stop;
use crate::upload::args::WriteCondition;
use crate::upload::part::{Target, send_slab};
use crate::{ChecksumAlgorithm, Client, Error, PayloadSigning, PutObjectArgs, Result};

/// A part the server has stored, as listed in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadedPart {
    /// 1-based part number.
    pub part_number: u32,
    /// The part's ETag, exactly as the server sent it (quotes included).
    pub etag: String,
    /// Size in bytes (from ListParts; the bytes sent for a part just uploaded).
    pub size: u64,
    /// The part's checksum (base64) in the upload's checksum algorithm, if any.
    pub checksum: Option<String>,
}

impl UploadedPart {
    /// A part as a caller recorded it when [`Client::upload_part`] answered,
    /// to complete the upload later with
    /// [`Client::complete_multipart_upload`].
    ///
    /// ```
    /// let part = s3pump::UploadedPart::new(1, "\"9b2cf535f27731c974343645a3985328\"", 5 << 20)
    ///     .checksum("vOaltThbDtg=");
    /// assert_eq!(part.part_number, 1);
    /// ```
    pub fn new(part_number: u32, etag: impl Into<String>, size: u64) -> Self {
        UploadedPart {
            part_number,
            etag: etag.into(),
            size,
            checksum: None,
        }
    }

    /// The part's checksum (base64), in the upload's checksum algorithm.
    pub fn checksum(mut self, checksum: impl Into<String>) -> Self {
        self.checksum = Some(checksum.into());
        self
    }
}

/// What CompleteMultipartUpload returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompletedUpload {
    /// The object's ETag, exactly as the server sent it.
    pub etag: String,
    /// The version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// The full-object checksum (base64) the server reported, if any.
    pub checksum: Option<String>,
}

/// A multipart upload in progress, as listed by ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MultipartUpload {
    /// The object key.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
}

impl Client {
    /// Starts a multipart upload and returns its upload id. Object-level
    /// settings of `args` (content type, metadata, headers, checksum
    /// algorithm) are sent here.
    pub fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        args: &PutObjectArgs,
    ) -> Result<String> {
        self.create_upload(bucket, key, args, None)
    }

    /// [`create_multipart_upload`](Self::create_multipart_upload) for a
    /// transfer that `stop` stops.
    pub(crate) fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        args: &PutObjectArgs,
        stop: Option<&Stop>,
    ) -> Result<String> {
        validate_target(bucket, key)?;
        let mut req = Request::new("CreateMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploads", "")
            .headers(args.object_headers())
            .stop(stop);
        if let Some(name) = args.checksum.name() {
            req = req
                .header("x-amz-checksum-algorithm", name)
                .header("x-amz-checksum-type", "FULL_OBJECT");
        }
        let body = self.retrying(&req, None, true, |_| {
            let mut response = self.send(self.conn(), &req)?;
            read_text("CreateMultipartUpload", &mut response)
        })?;
        let root =
            xml::parse("CreateMultipartUpload", &body)?.expect("InitiateMultipartUploadResult")?;
        let id = root.req("UploadId")?;
        if id.is_empty() {
            return Err(root.error("<UploadId> is empty".into()));
        }
        Ok(id.to_string())
    }

    /// Uploads one part of a multipart upload from memory, over HTTP, with the
    /// checksum and payload signing of `args`.
    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        data: &[u8],
        args: &PutObjectArgs,
    ) -> Result<UploadedPart> {
        validate_target(bucket, key)?;
        if !(1..=10_000).contains(&part_number) {
            return Err(Error::invalid(format!(
                "part number {part_number} is outside 1..=10000"
            )));
        }
        let target = Target::Part {
            upload_id,
            part_number,
        };
        let sent = send_slab(
            self,
            self.conn(),
            bucket,
            key,
            &target,
            data,
            args,
            None,
            None,
        )?;
        Ok(UploadedPart {
            part_number,
            etag: sent.etag,
            size: data.len() as u64,
            checksum: sent.crc.map(|c| c.to_base64()),
        })
    }

    /// Completes a multipart upload from its parts (listed in ascending part
    /// order whatever order `parts` is in). `checksum` is the algorithm the
    /// upload was created with; each part's checksum is listed with it.
    ///
    /// A 200 reply carrying an `<Error>` document is that error. When a retry
    /// answers `NoSuchUpload`, the object is checked with HeadObject: if its
    /// ETag is the one these parts make, the first attempt succeeded.
    pub fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
        checksum: ChecksumAlgorithm,
    ) -> Result<CompletedUpload> {
        self.complete_upload(bucket, key, upload_id, parts, checksum, None, None)
    }

    /// [`Client::complete_multipart_upload`] with a write condition
    /// (`If-None-Match: *` or `If-Match`), which S3 checks here: a refusal
    /// names the key and the condition. A retry refused by the condition
    /// may follow an attempt that completed (its reply lost): as for
    /// `NoSuchUpload`, the object in place is then checked. A transfer's
    /// Complete is cut short when `stop` is set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
        checksum: ChecksumAlgorithm,
        condition: Option<&WriteCondition>,
        stop: Option<&Stop>,
    ) -> Result<CompletedUpload> {
        validate_target(bucket, key)?;
        let mut sorted: Vec<&UploadedPart> = parts.iter().collect();
        sorted.sort_by_key(|p| p.part_number);
        let mut body = String::from("<CompleteMultipartUpload>");
        for p in &sorted {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                p.part_number,
                xml::escape(&p.etag)
            ));
            if let (Some(element), Some(value)) = (checksum.xml_element(), &p.checksum) {
                body.push_str(&format!("<{element}>{}</{element}>", xml::escape(value)));
            }
            body.push_str("</Part>");
        }
        body.push_str("</CompleteMultipartUpload>");
        let mut req = Request::new("CompleteMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploadId", upload_id)
            .body(body.as_bytes(), PayloadSigning::Signed)
            .stop(stop);
        // The full-object checksum, combined from the parts' CRCs: the
        // server checks the assembled object against it before committing.
        if let (Some(full), Some(h)) = (full_object_crc(&sorted, checksum), checksum.header()) {
            req = req
                .header(h, full.to_base64())
                .header("x-amz-checksum-type", "FULL_OBJECT");
        }
        if let Some(c) = condition {
            let (name, value) = c.header();
            req = req.header(&name, value);
        }
        let result = self.retrying(&req, None, true, |attempt| {
            let result = self.send(self.conn(), &req).and_then(|mut response| {
                let text = read_text("CompleteMultipartUpload", &mut response)?;
                // A 200 reply can still be an error document.
                let root = xml::parse("CompleteMultipartUpload", &text)?;
                if root.name() == "Error" {
                    return Err(s3_error(
                        response.status().as_u16(),
                        response.headers(),
                        &text,
                    ));
                }
                let root = root.expect("CompleteMultipartUploadResult")?;
                let etag = root.req("ETag")?;
                if etag.trim().trim_matches('"').is_empty() {
                    return Err(root.error(format!("an empty <ETag> ({})", quote(etag))));
                }
                Ok(CompletedUpload {
                    etag: etag.to_string(),
                    version_id: header(response.headers(), "x-amz-version-id"),
                    checksum: checksum
                        .xml_element()
                        .and_then(|e| root.opt(e))
                        .map(str::to_string),
                })
            });
            match result {
                Ok(done) => Ok(done),
                // The assembled object does not match the full-object
                // checksum combined from the parts: nothing a retry can mend.
                Err(Error::S3 { code, message, .. }) if code == "BadDigest" => {
                    Err(Error::ChecksumMismatch(format!(
                        "the server refused the full-object checksum of the parts \
                         (BadDigest: {message})"
                    )))
                }
                Err(e)
                    if attempt > 1
                        && (e.s3_code() == Some("NoSuchUpload")
                            || (condition.is_some()
                                && matches!(e, Error::S3 { status: 412, .. }))) =>
                {
                    self.completed_earlier(bucket, key, &sorted).ok_or(e)
                }
                Err(e) => Err(e),
            }
        });
        match condition {
            Some(c) => result.map_err(|e| c.explain(bucket, key, e)),
            None => result,
        }
    }

    /// After a retried Complete answered `NoSuchUpload`: whether the object
    /// now in place is the one these parts make (an earlier attempt succeeded).
    pub(crate) fn completed_earlier(
        &self,
        bucket: &str,
        key: &str,
        parts: &[&UploadedPart],
    ) -> Option<CompletedUpload> {
        let expected = multipart_etag(parts.iter().map(|p| p.etag.as_str()))?;
        let info = self.head_object(bucket, key).ok()?;
        log::debug!(
            "CompleteMultipartUpload retry answered NoSuchUpload; object ETag {} expected {expected}",
            info.etag
        );
        (info.etag.trim_matches('"') == expected).then_some(CompletedUpload {
            etag: info.etag,
            version_id: info.version_id,
            checksum: None,
        })
    }

    /// Aborts a multipart upload, discarding its parts.
    ///
    /// An upload that does not exist (any more) is an error of kind
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) (`NoSuchUpload`),
    /// whatever the status it comes with (moto sends a 500 for an upload
    /// already completed), and is not retried.
    pub fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        validate_target(bucket, key)?;
        let req = Request::new("AbortMultipartUpload", Method::DELETE, bucket, Some(key))
            .query("uploadId", upload_id);
        self.send_retrying(self.conn(), &req, true)?;
        Ok(())
    }

    /// Lists the parts of a multipart upload (all pages), in part order.
    /// Each part's checksum is read in the `checksum` algorithm.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        checksum: ChecksumAlgorithm,
    ) -> Result<Vec<UploadedPart>> {
        validate_target(bucket, key)?;
        let mut parts: Vec<UploadedPart> = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = Pages::new(
            "ListParts",
            "<NextPartNumberMarker>",
            format!(
                "the parts of upload {} of {bucket}/{}",
                quote(upload_id),
                quote(key)
            ),
        );
        loop {
            let mut req = Request::new("ListParts", Method::GET, bucket, Some(key))
                .query("uploadId", upload_id);
            if let Some(m) = &marker {
                req = req.query("part-number-marker", m.clone());
            }
            let mut response = self.send_retrying(self.conn(), &req, true)?;
            let text = read_text("ListParts", &mut response)?;
            // moto names the root <ListPartsResponse>; the content is the same.
            let root = xml::parse("ListParts", &text)?
                .expect_one_of(&["ListPartsResult", "ListPartsResponse"])?;
            let before = parts.iter().map(|p| p.part_number).max();
            for p in root.children("Part") {
                parts.push(UploadedPart {
                    part_number: p.req_parse("PartNumber")?,
                    etag: p.req("ETag")?.to_string(),
                    size: p.req_parse("Size")?,
                    checksum: checksum
                        .xml_element()
                        .and_then(|e| p.opt(e))
                        .map(str::to_string),
                });
            }
            if !root.flag("IsTruncated")? {
                break;
            }
            let after = parts.iter().map(|p| p.part_number).max();
            marker = Some(pages.next(root.opt("NextPartNumberMarker"), after > before)?);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Lists the multipart uploads in progress in a bucket (all pages).
    pub fn list_multipart_uploads(&self, bucket: &str) -> Result<Vec<MultipartUpload>> {
        validate_bucket(bucket)?;
        let mut uploads: Vec<MultipartUpload> = Vec::new();
        let mut markers: Option<(String, String)> = None;
        let mut pages = Pages::new(
            "ListMultipartUploads",
            "<NextKeyMarker>/<NextUploadIdMarker>",
            format!("bucket {}", quote(bucket)),
        );
        loop {
            let mut req = Request::new("ListMultipartUploads", Method::GET, bucket, None)
                .query("uploads", "");
            if let Some((k, u)) = &markers {
                req = req
                    .query("key-marker", k.clone())
                    .query("upload-id-marker", u.clone());
            }
            let mut response = self.send_retrying(self.conn(), &req, true)?;
            let text = read_text("ListMultipartUploads", &mut response)?;
            let root =
                xml::parse("ListMultipartUploads", &text)?.expect("ListMultipartUploadsResult")?;
            let greatest = |u: &[MultipartUpload]| {
                u.iter().map(|u| (u.key.clone(), u.upload_id.clone())).max()
            };
            let before = greatest(&uploads);
            for u in root.children("Upload") {
                uploads.push(MultipartUpload {
                    key: u.req("Key")?.to_string(),
                    upload_id: u.req("UploadId")?.to_string(),
                });
            }
            if !root.flag("IsTruncated")? {
                break;
            }
            let added = greatest(&uploads) > before;
            let (key, id) = (root.opt("NextKeyMarker"), root.opt("NextUploadIdMarker"));
            // The two markers as one place (a NUL cannot be in either).
            let both = key.map(|k| format!("{k}\0{}", id.unwrap_or("")));
            pages.next(both.as_deref(), added)?;
            markers = Some((
                key.unwrap_or_default().to_string(),
                id.unwrap_or_default().to_string(),
            ));
        }
        Ok(uploads)
    }
}

/// The CRC of the whole object, from every part's CRC and size; `None`
/// unless every part has a checksum in `algorithm`.
pub(crate) fn full_object_crc(
    parts: &[&UploadedPart],
    algorithm: ChecksumAlgorithm,
) -> Option<Crc> {
    parts
        .iter()
        .map(|p| Crc::from_base64(algorithm, p.checksum.as_deref()?, p.size))
        .collect::<Option<Vec<Crc>>>()?
        .into_iter()
        .reduce(Crc::combine)
}

/// The ETag S3 gives a multipart object without SSE-KMS/SSE-C:
/// `hex(md5(md5(part 1) ‖ … ‖ md5(part n)))-n`, from the parts' ETags.
/// `None` when a part's ETag is not an MD5.
pub(crate) fn multipart_etag<'a>(part_etags: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut md5 = Md5::new();
    let mut n = 0;
    for etag in part_etags {
        let hex = etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        let mut raw = [0u8; 16];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        md5.update(raw);
        n += 1;
    }
    let digest = md5.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{hex}-{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // md5("a") and md5("b"); md5 of their concatenated raw digests.
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        let mut raw = Vec::new();
        for h in [a, b] {
            raw.extend((0..16).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()));
        }
        let expected: String = Md5::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let quoted = [format!("\"{a}\""), format!("\"{b}\"")];
        assert_eq!(
            multipart_etag(quoted.iter().map(String::as_str)).unwrap(),
            format!("{expected}-2")
        );
        assert_eq!(multipart_etag(["\"xyz\""].into_iter()), None);
    }
}
