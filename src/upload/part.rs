//! Sends one buffer as a PutObject or an UploadPart, by RDMA or over HTTP,
//! with retries. Runs on the pipeline's worker threads, so the per-byte work
//! (checksum, payload hash) happens here.

use std::sync::atomic::{AtomicBool, Ordering};

use ureq::Agent;
use ureq::http::Method;

use crate::client::{Request, Response, check_status, header};
use crate::rdma::{RdmaOp, RdmaRegistration};
use crate::s3::checksum::Crc;
use crate::{Client, Error, PayloadSigning, PutObjectArgs, Result};

/// Header carrying the RDMA token of a request.
pub(crate) const RDMA_TOKEN_HEADER: &str = "x-amz-rdma-token";
/// Reply header that says the server moved the bytes by RDMA.
pub(crate) const RDMA_REPLY_HEADER: &str = "x-amz-rdma-reply";

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

/// A buffer registered for RDMA, and the upload-wide switch that turns RDMA
/// off once the server has shown it does not take it.
pub(crate) struct RdmaSlot<'a> {
    pub registration: &'a dyn RdmaRegistration,
    pub http_only: &'a AtomicBool,
}

/// What the server answered for a buffer it stored.
pub(crate) struct Sent {
    pub etag: String,
    pub version_id: Option<String>,
    pub crc: Option<Crc>,
}

/// Sends `data` as `target`: by RDMA when `rdma` is given and the server
/// takes it, else over HTTP from the same memory.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_slab(
    client: &Client,
    agent: &Agent,
    bucket: &str,
    key: &str,
    target: &Target<'_>,
    data: &[u8],
    args: &PutObjectArgs,
    rdma: Option<&RdmaSlot<'_>>,
) -> Result<Sent> {
    let crc = args.checksum.compute(data);
    let (operation, part) = match target {
        Target::Object => ("PutObject", None),
        Target::Part { part_number, .. } => ("UploadPart", Some(*part_number)),
    };
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

    if let Some(slot) = rdma.filter(|s| !s.http_only.load(Ordering::Relaxed))
        && let Some(response) = send_by_rdma(client, agent, &req, operation, part, data, slot)?
    {
        return sent(response, operation, crc);
    }

    let req = req.body(data, args.payload_signing);
    let response = client.retrying(&req, part, true, |_| client.send(agent, &req))?;
    sent(response, operation, crc)
}

/// Tries RDMA: an empty-body request carrying a fresh token, retried once
/// with a new token. `Ok(None)` means the server does not take RDMA (no
/// reply header, or 501): the caller sends over HTTP, and so does every
/// later buffer of the upload.
fn send_by_rdma(
    client: &Client,
    agent: &Agent,
    req: &Request<'_>,
    operation: &'static str,
    part: Option<u32>,
    data: &[u8],
    slot: &RdmaSlot<'_>,
) -> Result<Option<Response>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = match slot.registration.token(0, data.len(), RdmaOp::Put) {
            Ok(t) => t,
            Err(e) => {
                // The provider cannot serve this request; HTTP can.
                log::warn!(
                    "{bucket}/{key}: {e}; sending over HTTP",
                    bucket = req.bucket,
                    key = req.key.unwrap_or("")
                );
                return Ok(None);
            }
        };
        let rdma_req = Request {
            headers: req.headers.clone(),
            query: req.query.clone(),
            ..Request::new(operation, Method::PUT, req.bucket, req.key)
        }
        .header(RDMA_TOKEN_HEADER, token.as_str())
        .body(&[], PayloadSigning::Unsigned);
        let result = client.send_raw(agent, &rdma_req);
        slot.registration.release_token(token);
        // Any reply without the RDMA reply header, success or error (a 501,
        // or a checksum mismatch on the empty body), comes from a server
        // that did not read the memory.
        let refused = match &result {
            Ok(response) => response.headers().get(RDMA_REPLY_HEADER).is_none(),
            Err(_) => false,
        };
        if refused {
            if !slot.http_only.swap(true, Ordering::Relaxed) {
                log::info!(
                    "{}/{}: the server does not take RDMA ({operation} answered without \
                     {RDMA_REPLY_HEADER}); sending this and every later part over HTTP",
                    req.bucket,
                    req.key.unwrap_or("")
                );
            }
            return Ok(None);
        }
        match result.and_then(|response| check_status(&rdma_req, response)) {
            Ok(response) => return Ok(Some(response)),
            Err(e) if attempt < 2 && crate::client::retry::is_retryable(&e, true) => {
                log::debug!(
                    "{operation}{} RDMA attempt {attempt} failed, retrying with a fresh token: {e}",
                    part.map(|p| format!(" part {p}")).unwrap_or_default()
                );
            }
            Err(e) => return Err(e),
        }
    }
}

fn sent(response: Response, operation: &'static str, crc: Option<Crc>) -> Result<Sent> {
    let etag = header(response.headers(), "etag").ok_or_else(|| Error::InvalidResponse {
        operation,
        message: "no ETag header".into(),
    })?;
    Ok(Sent {
        etag,
        version_id: header(response.headers(), "x-amz-version-id"),
        crc,
    })
}
