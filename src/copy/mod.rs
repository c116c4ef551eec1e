//! Server-side copies: the bytes never pass through the client. One
//! CopyObject up to a threshold (and 5 GiB, its limit); above it, a
//! multipart upload whose parts are UploadPartCopy requests of byte ranges
//! of the source, planned as an upload's parts and run on the client's
//! workers, each bound to the source's ETag so that a source replaced
//! meanwhile fails the copy instead of mixing two objects. Moves are a copy
//! and then, once it is confirmed, a delete.

pub(crate) mod args;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use ureq::http::{HeaderMap, Method};

use crate::auth::sigv4::uri_encode;
use crate::client::{Request, Response, header, read_text, s3_error};
use crate::copy::args::{CopyObjectArgs, CopyObjectOutput};
use crate::pipeline::engine::Lane;
use crate::pipeline::plan::{self, MAX_PART_SIZE, Plan};
use crate::pipeline::run::{Control, Event, PanicGuard, gather};
use crate::s3::multipart::UploadedPart;
use crate::s3::object::{content_length, validate_target};
use crate::s3::xml;
use crate::transport::pool::Conn;
use crate::transport::stop::Stop;
use crate::{ChecksumAlgorithm, Client, Error, PutObjectArgs, Result};

/// The headers of the source that a multipart copy sets on the copy (a
/// CopyObject carries them over itself), besides `x-amz-meta-*`.
const CARRIED_HEADERS: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// The source of a copy, as its HeadObject described it.
struct Source {
    /// The `x-amz-copy-source` value: `bucket/key[?versionId=…]`, encoded.
    copy_source: String,
    size: u64,
    etag: String,
    headers: HeaderMap,
    what: String,
}

impl Client {
    /// Copies `src_bucket`/`src_key` to `dst_bucket`/`dst_key` on the
    /// server: the bytes never pass through the client, across buckets and
    /// regions alike (each request goes to its bucket's region).
    ///
    /// A HeadObject of the source gives its size and ETag; every copy
    /// request is bound to that ETag (`x-amz-copy-source-if-match`), so a
    /// source replaced during the copy fails it with
    /// [`ErrorKind::ObjectChanged`](crate::ErrorKind::ObjectChanged), never
    /// a copy mixing two objects. Up to
    /// [`multipart_threshold`](CopyObjectArgs::multipart_threshold) (and
    /// always up to 5 GiB) one CopyObject copies the object; above, a
    /// multipart upload of parallel UploadPartCopy requests (at most
    /// [`max_inflight_parts`](CopyObjectArgs::max_inflight_parts) at once,
    /// each retried; the upload is aborted on the first failure).
    ///
    /// What the copy keeps: the source's content type, user metadata and
    /// `Cache-Control`, `Content-Disposition`, `Content-Encoding`,
    /// `Content-Language` and `Expires`, unless the arguments replace them
    /// ([`content_type`](CopyObjectArgs::content_type),
    /// [`metadata`](CopyObjectArgs::metadata)). A single CopyObject also
    /// keeps the tags (S3's default); a multipart copy does not (S3 sets no
    /// tags on a multipart upload unless told: pass `x-amz-tagging` with
    /// [`header`](CopyObjectArgs::header)). Storage class, encryption and
    /// checksum algorithm are S3's defaults unless set with `header`.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// let out = client.copy_object("logs", "2026/big.tar", "archive", "logs/2026/big.tar",
    ///     &s3pump::CopyObjectArgs::new())?;
    /// println!("{} bytes in {} parts, ETag {}", out.bytes, out.parts, out.etag);
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        args: &CopyObjectArgs,
    ) -> Result<CopyObjectOutput> {
        validate_target(src_bucket, src_key)?;
        validate_target(dst_bucket, dst_key)?;
        let source = self.head_source(src_bucket, src_key, args)?;
        if source.size <= args.multipart_threshold.min(MAX_PART_SIZE) {
            self.single_copy(&source, src_bucket, src_key, dst_bucket, dst_key, args)
        } else {
            self.multipart_copy(&source, dst_bucket, dst_key, args)
        }
    }

    /// Moves an object: [`copy_object`](Client::copy_object), then, only
    /// once the copy succeeded, a DeleteObject of the source (of the
    /// version copied, when one was given). When the delete fails, the
    /// copy is in place and the source too: the error says so.
    ///
    /// ```no_run
    /// # let client = s3pump::Client::from_env()?;
    /// client.move_object("b", "incoming/a.csv", "b", "done/a.csv", &s3pump::CopyObjectArgs::new())?;
    /// # Ok::<(), s3pump::Error>(())
    /// ```
    pub fn move_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        args: &CopyObjectArgs,
    ) -> Result<CopyObjectOutput> {
        if (src_bucket, src_key) == (dst_bucket, dst_key) {
            return Err(Error::invalid(format!(
                "moving {src_bucket}/{src_key} onto itself would delete it"
            )));
        }
        let out = self.copy_object(src_bucket, src_key, dst_bucket, dst_key, args)?;
        let mut req = Request::new("DeleteObject", Method::DELETE, src_bucket, Some(src_key));
        if let Some(v) = &args.source_version_id {
            req = req.query("versionId", v.clone());
        }
        self.send_retrying(self.conn(), &req, true).map_err(|e| {
            e.reword(|message| {
                format!(
                    "{src_bucket}/{src_key} was copied to {dst_bucket}/{dst_key} but not \
                     deleted: {message}"
                )
            })
        })?;
        Ok(out)
    }

    /// HeadObject of the copy's source (its given version).
    fn head_source(&self, bucket: &str, key: &str, args: &CopyObjectArgs) -> Result<Source> {
        let mut req = Request::new("HeadObject", Method::HEAD, bucket, Some(key));
        let mut copy_source = uri_encode(&format!("{bucket}/{key}"), true);
        if let Some(v) = &args.source_version_id {
            req = req.query("versionId", v.clone());
            copy_source.push_str("?versionId=");
            copy_source.push_str(&uri_encode(v, false));
        }
        let response = self.send_retrying(self.conn(), &req, true)?;
        let headers = response.headers().clone();
        let size = content_length(&headers)?;
        let etag = header(&headers, "etag")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::InvalidResponse {
                operation: "HeadObject",
                message: format!("no ETag for {bucket}/{key}: the copy cannot be bound to it"),
            })?;
        Ok(Source {
            copy_source,
            size,
            etag,
            headers,
            what: format!("{bucket}/{key}"),
        })
    }

    /// One CopyObject.
    fn single_copy(
        &self,
        src: &Source,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        args: &CopyObjectArgs,
    ) -> Result<CopyObjectOutput> {
        let mut req = Request::new("CopyObject", Method::PUT, dst_bucket, Some(dst_key))
            .header("x-amz-copy-source", src.copy_source.clone())
            .header("x-amz-copy-source-if-match", src.etag.clone())
            .headers(args.headers.clone());
        if args.replaces_metadata() {
            req = req
                .header("x-amz-metadata-directive", "REPLACE")
                .headers(replaced_headers(args));
        }
        if let Some(c) = &args.condition {
            let (name, value) = c.header();
            req = req.header(&name, value);
        }
        // A 412 is the source's condition or the destination's: when the
        // source still has its ETag, it was the destination's.
        let which = |e: Error| match (&e, &args.condition) {
            (Error::S3 { status: 412, .. }, Some(c))
                if self
                    .head_source(src_bucket, src_key, args)
                    .is_ok_and(|now| now.etag == src.etag) =>
            {
                c.explain(dst_bucket, dst_key, e)
            }
            _ => source_changed(e, src),
        };
        let mut response = self.send_retrying(self.conn(), &req, true).map_err(which)?;
        let etag = copy_result(&req, &mut response, "CopyObjectResult").map_err(which)?;
        Ok(CopyObjectOutput {
            etag,
            version_id: header(response.headers(), "x-amz-version-id"),
            source_etag: src.etag.clone(),
            bytes: src.size,
            parts: 1,
        })
    }

    /// CreateMultipartUpload, the parts copied in parallel, Complete; abort
    /// on the first failure.
    fn multipart_copy(
        &self,
        src: &Source,
        dst_bucket: &str,
        dst_key: &str,
        args: &CopyObjectArgs,
    ) -> Result<CopyObjectOutput> {
        let mut sizing = PutObjectArgs::new()
            .size(src.size)
            .max_inflight_parts(args.max_inflight_parts);
        if let Some(ps) = args.part_size {
            sizing = sizing.part_size(ps);
        }
        // No buffer is mapped: the memory budget does not apply.
        let plan = plan::upload(&sizing, u64::MAX)?;
        let mut create = PutObjectArgs::new().checksum(ChecksumAlgorithm::None);
        let object_headers = if args.replaces_metadata() {
            replaced_headers(args)
        } else {
            carried_headers(&src.headers)
        };
        for (name, value) in object_headers.into_iter().chain(args.headers.clone()) {
            create = create.header(name, value);
        }
        let upload_id = self.create_multipart_upload(dst_bucket, dst_key, &create)?;
        let job = Arc::new(CopyJob {
            client: self.clone(),
            dst_bucket: dst_bucket.to_owned(),
            dst_key: dst_key.to_owned(),
            upload_id: upload_id.clone(),
            copy_source: src.copy_source.clone(),
            source_etag: src.etag.clone(),
            plan,
            stopped: Stop::default(),
        });
        let copied = job
            .copy_parts(args)
            .map_err(|(part, e)| (part, source_changed(e, src)));
        let result = copied.and_then(|parts| {
            self.complete_upload(
                dst_bucket,
                dst_key,
                &upload_id,
                &parts,
                ChecksumAlgorithm::None,
                args.condition.as_ref(),
                None,
            )
            .map_err(|e| (None, e))
            .map(|done| (parts.len(), done))
        });
        match result {
            Ok((parts, done)) => Ok(CopyObjectOutput {
                etag: done.etag,
                version_id: done.version_id,
                source_etag: src.etag.clone(),
                bytes: src.size,
                parts: parts as u32,
            }),
            Err((part_number, e)) => {
                if let Err(abort) = self.abort_multipart_upload(dst_bucket, dst_key, &upload_id) {
                    log::warn!("AbortMultipartUpload of upload {upload_id} failed: {abort}");
                }
                Err(Error::Upload {
                    upload_id,
                    part_number,
                    source: Box::new(e),
                })
            }
        }
    }
}

/// One multipart copy's shared state: each part task holds it in an `Arc`.
struct CopyJob {
    client: Client,
    dst_bucket: String,
    dst_key: String,
    upload_id: String,
    copy_source: String,
    source_etag: String,
    plan: Plan,
    /// Set on the first error: no new part starts.
    stopped: Stop,
}

impl CopyJob {
    /// Copies every part, `plan.inflight` at once on the client's workers;
    /// the parts in order, or the first error (with its part number).
    #[allow(clippy::type_complexity)]
    fn copy_parts(
        self: &Arc<Self>,
        args: &CopyObjectArgs,
    ) -> std::result::Result<Vec<UploadedPart>, (Option<u32>, Error)> {
        let parts = self.plan.parts as u32;
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<Event<String>>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let _ = event_tx.send(Event::Produced {
            parts,
            bytes: self.plan.max_bytes,
        });
        let what = format!(
            "copy {} of {} to {}/{}",
            self.upload_id, self.copy_source, self.dst_bucket, self.dst_key
        );
        let ctl = Control {
            what: &what,
            cancel: args.cancel.as_ref(),
            stopped: &self.stopped,
            progress: None,
            total: Some(self.plan.max_bytes),
        };
        let mut done = BTreeMap::new();
        let gathered = thread::scope(|s| {
            let feeder = s.spawn(move || {
                let _guard = PanicGuard(&event_tx, "feeder");
                let lane = Lane::new(self.plan.inflight);
                for number in 1..=parts {
                    if self.stopped.is_set() {
                        break;
                    }
                    let task = self.part_task(number, event_tx.clone());
                    match lane.run(self.client.engine(), &stop_rx, task) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            let _ = event_tx.send(Event::Failed(e));
                            break;
                        }
                    }
                }
            });
            gather(
                &ctl,
                event_rx,
                stop_tx,
                vec![feeder],
                |number, len, etag| {
                    done.insert(number, UploadedPart::new(number, etag, len as u64));
                    Ok(len as u64)
                },
            )
        });
        if let Some(failure) = gathered.failure {
            return Err(failure);
        }
        if done.len() != parts as usize {
            return Err((
                None,
                Error::Internal("the copy ended without every part".into()),
            ));
        }
        Ok(done.into_values().collect())
    }

    /// The task that copies part `number`.
    fn part_task(
        self: &Arc<Self>,
        number: u32,
        events: crossbeam_channel::Sender<Event<String>>,
    ) -> impl FnOnce() + Send + 'static {
        let job = Arc::clone(self);
        move || {
            let _guard = PanicGuard(&events, "worker");
            if job.stopped.is_set() {
                return;
            }
            let (offset, len) = job.plan.range(u64::from(number));
            let stopped = || job.stopped.is_set();
            let result = match job.client.connections().acquire(&stopped) {
                Some(conn) => job.copy_part(&conn, number, offset, len),
                None => Err(Error::Cancelled),
            };
            if result.is_err() {
                job.stopped.set();
            }
            let _ = events.send(Event::Done {
                number,
                len,
                result,
            });
        }
    }

    /// UploadPartCopy of `len` bytes of the source from `offset`.
    fn copy_part(&self, conn: &Conn, number: u32, offset: u64, len: usize) -> Result<String> {
        let last = offset + len as u64 - 1;
        let req = Request::new(
            "UploadPartCopy",
            Method::PUT,
            &self.dst_bucket,
            Some(&self.dst_key),
        )
        .query("partNumber", number.to_string())
        .query("uploadId", self.upload_id.clone())
        .header("x-amz-copy-source", self.copy_source.clone())
        .header("x-amz-copy-source-range", format!("bytes={offset}-{last}"))
        .header("x-amz-copy-source-if-match", self.source_etag.clone())
        .stop(Some(&self.stopped));
        self.client.retrying(&req, Some(number), true, |_| {
            let mut response = self.client.send(conn, &req)?;
            copy_result(&req, &mut response, "CopyPartResult")
        })
    }
}

/// The ETag of a CopyObject or UploadPartCopy reply (`root` names its
/// document); a 200 reply carrying an `<Error>` is that error (S3 sends the
/// status before the copy is done).
fn copy_result(req: &Request<'_>, response: &mut Response, root: &str) -> Result<String> {
    let text = read_text(req.operation, response)?;
    let doc = xml::parse(req.operation, &text)?;
    if doc.name() == "Error" {
        return Err(s3_error(
            response.status().as_u16(),
            response.headers(),
            &text,
        ));
    }
    let etag = doc.expect(root)?.req("ETag")?.to_owned();
    if etag.is_empty() {
        return Err(Error::InvalidResponse {
            operation: req.operation,
            message: format!("<{root}> has an empty <ETag>"),
        });
    }
    Ok(etag)
}

/// A copy request refused because its `x-amz-copy-source-if-match` no
/// longer held (412) is [`Error::ObjectChanged`]: the source was replaced.
fn source_changed(e: Error, src: &Source) -> Error {
    match e {
        Error::S3 {
            status: 412,
            message,
            ..
        } => Error::ObjectChanged(format!(
            "copy of {}: the source was replaced (its ETag is no longer {}); nothing was copied \
             ({message})",
            src.what, src.etag
        )),
        e => e,
    }
}

/// The object headers the arguments give in place of the source's.
fn replaced_headers(args: &CopyObjectArgs) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if let Some(ct) = &args.content_type {
        h.push(("content-type".to_owned(), ct.clone()));
    }
    for (k, v) in args.metadata.iter().flatten() {
        h.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone()));
    }
    h
}

/// The source's headers a multipart copy sets on the copy.
fn carried_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            CARRIED_HEADERS.contains(&name) || name.starts_with("x-amz-meta-")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}
