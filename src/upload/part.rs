//! Sends one buffer as a PutObject or an UploadPart, by RDMA or over HTTP,
//! with retries. Runs on the pipeline's worker threads, so the per-byte work
//! (checksum, payload hash) happens here.

use std::fs::File;

use ureq::http::Method;

use crate::client::{Request, Response, check_status, header};
use crate::error::quote;
use crate::rdma::RdmaOp;
use crate::rdma::attempt::{ByRdma, RdmaSlot, attempt};
use crate::s3::checksum::Crc;
use crate::transport::pool::Conn;
use crate::transport::stop::Stop;
use crate::{Client, Error, PutObjectArgs, PutObjectOutput, Result};

/// What a buffer is sent as.
pub(crate) enum Target<'a> {
    /// The whole object, with one PutObject.
    Object,
    /// One part of a multipart upload.
    Part {
        upload_id: &'a str,
        part_number: u32,
    },
}

/// What the server answered for a buffer it stored.
pub(crate) struct Sent {
    pub etag: String,
    pub version_id: Option<String>,
    pub crc: Option<Crc>,
}

impl Sent {
    /// The output of an upload that was this one PutObject of `len` bytes.
    pub(crate) fn into_single(self, len: usize) -> PutObjectOutput {
        PutObjectOutput {
            etag: self.etag,
            version_id: self.version_id,
            parts: 1,
            bytes: len as u64,
            checksum: self.crc.map(|c| c.to_base64()),
            slabs: 0,
            slab_bytes: 0,
        }
    }
}

/// Sends `data` as `target`: by RDMA when `rdma` is given and the server
/// takes it, else over HTTP from the same memory.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_slab(
    client: &Client,
    conn: &Conn,
    bucket: &str,
    key: &str,
    target: &Target<'_>,
    data: &[u8],
    args: &PutObjectArgs,
    rdma: Option<&RdmaSlot<'_>>,
    stop: Option<&Stop>,
) -> Result<Sent> {
    let crc = args.checksum.compute(data);
    let (operation, part) = operation(target);
    let req = request(bucket, key, target, args, crc);

    if let Some(slot) = rdma.filter(|s| s.usable()) {
        let by_rdma = attempt(
            client,
            conn,
            slot,
            RdmaOp::Put,
            data.len(),
            &req,
            part,
            |r, rq| check_status(rq, r),
        )?;
        if let ByRdma::Done(response) = by_rdma {
            return sent(response, operation, crc);
        }
    }

    let req = req.body(data, args.payload_signing).stop(stop);
    client.retrying(&req, part, true, |n| {
        let result = client.send(conn, &req);
        settle(client, (bucket, key, target), args, data, n, result, crc)
    })
}

/// Sends `len` bytes of `file` from `offset` as `target` over HTTP, the
/// body from the file when the transport can (else from `mapped`);
/// `mapped` is a read-only mapping of those bytes, which the payload's
/// SHA-256 (when signed) is computed from, and `crc` their checksum. Every
/// attempt, retries included, first runs `check` (which says whether the
/// file still holds what was mapped): its error ends the retries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_from_file(
    client: &Client,
    conn: &Conn,
    bucket: &str,
    key: &str,
    target: &Target<'_>,
    (file, offset, mapped): (&File, u64, &[u8]),
    crc: Option<Crc>,
    args: &PutObjectArgs,
    stop: Option<&Stop>,
    check: &dyn Fn() -> Result<()>,
) -> Result<Sent> {
    let (_, part) = operation(target);
    let mut req = request(bucket, key, target, args, crc)
        .body(mapped, args.payload_signing)
        .stop(stop);
    req.file = Some((file, offset));
    client.retrying(&req, part, true, |n| {
        check()?;
        let result = client.send(conn, &req);
        settle(client, (bucket, key, target), args, mapped, n, result, crc)
    })
}

/// The outcome of attempt `n` of sending `body` as `target`. A conditional
/// PutObject ([`PutObjectArgs::if_none_match`], [`PutObjectArgs::if_match`])
/// refused with 412 on a retry may have been written by an earlier attempt
/// whose reply was lost: when the object in place is this body (its ETag is
/// the body's MD5, as S3 gives a PutObject without SSE-KMS), that was the
/// write. Otherwise the refusal names the key and the condition.
fn settle(
    client: &Client,
    (bucket, key, target): (&str, &str, &Target<'_>),
    args: &PutObjectArgs,
    body: &[u8],
    n: u32,
    result: Result<Response>,
    crc: Option<Crc>,
) -> Result<Sent> {
    let (operation, _) = operation(target);
    let e = match result {
        Ok(response) => return sent(response, operation, crc),
        Err(e) => e,
    };
    let (Target::Object, Some(condition)) = (target, &args.condition) else {
        return Err(e);
    };
    if n > 1 && matches!(e, Error::S3 { status: 412, .. }) {
        use md5::{Digest, Md5};
        let md5: String = Md5::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(info) = client.head_object(bucket, key)
            && info.etag.trim_matches('"') == md5
        {
            log::debug!(
                "PutObject {bucket}/{key}: a retry was refused, the earlier attempt wrote it"
            );
            return Ok(Sent {
                etag: info.etag,
                version_id: info.version_id,
                crc,
            });
        }
    }
    Err(condition.explain(bucket, key, e))
}

/// The operation's name, and the part number of a part.
fn operation(target: &Target<'_>) -> (&'static str, Option<u32>) {
    match target {
        Target::Object => ("PutObject", None),
        Target::Part { part_number, .. } => ("UploadPart", Some(*part_number)),
    }
}

/// The request for `target`, without its body: the object's or the part's
/// headers, and the checksum header when there is a `crc`.
fn request<'r>(
    bucket: &'r str,
    key: &'r str,
    target: &Target<'r>,
    args: &PutObjectArgs,
    crc: Option<Crc>,
) -> Request<'r> {
    let (operation, _) = operation(target);
    let mut req = match target {
        Target::Object => {
            Request::new(operation, Method::PUT, bucket, Some(key)).headers(args.object_headers())
        }
        Target::Part {
            upload_id,
            part_number,
        } => Request::new(operation, Method::PUT, bucket, Some(key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", *upload_id)
            .headers(args.part_headers()),
    };
    if let (Some(c), Some(h)) = (crc, args.checksum.header()) {
        req = req.header(h, c.to_base64());
    }
    if let (Target::Object, Some(condition)) = (target, &args.condition) {
        let (name, value) = condition.header();
        req = req.header(&name, value);
    }
    req
}

fn sent(response: Response, operation: &'static str, crc: Option<Crc>) -> Result<Sent> {
    let etag = header(response.headers(), "etag").ok_or_else(|| Error::InvalidResponse {
        operation,
        message: "no ETag header".into(),
    })?;
    if etag.trim().trim_matches('"').is_empty() {
        return Err(Error::InvalidResponse {
            operation,
            message: format!("an empty ETag header ({})", quote(&etag)),
        });
    }
    Ok(Sent {
        etag,
        version_id: header(response.headers(), "x-amz-version-id"),
        crc,
    })
}
