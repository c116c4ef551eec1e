//! The one RDMA attempt-and-fallback loop, for uploads and downloads alike
//! (docs/RDMA.md): a request carrying a fresh token, retried once with a new
//! token; a server that shows it does not take RDMA turns RDMA off for the
//! rest of the transfer, and the part goes over HTTP from the same slab.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::client::{Request, Response};
use crate::pipeline::slab::Slab;
use crate::rdma::{RdmaOp, RdmaRegistration};
use crate::transport::pool::Conn;
use crate::{Client, Result};

/// Header carrying the RDMA token of a request.
pub(crate) const RDMA_TOKEN_HEADER: &str = "x-amz-rdma-token";
/// Reply header that says the server moved the bytes by RDMA.
pub(crate) const RDMA_REPLY_HEADER: &str = "x-amz-rdma-reply";
/// Reply header of an RDMA GetObject: how many bytes the server wrote into
/// the client's memory.
pub(crate) const RDMA_LENGTH_HEADER: &str = "x-amz-rdma-length";

/// A slab registered for RDMA, and the transfer-wide switch that turns RDMA
/// off once the server has shown it does not take it.
pub(crate) struct RdmaSlot<'a> {
    pub registration: &'a dyn RdmaRegistration,
    pub http_only: &'a AtomicBool,
}

impl<'a> RdmaSlot<'a> {
    /// The slot of `slab`, when it is registered; `http_only` is its
    /// transfer's switch.
    pub fn of(slab: &'a Slab, http_only: &'a AtomicBool) -> Option<RdmaSlot<'a>> {
        slab.registration().map(|registration| RdmaSlot {
            registration,
            http_only,
        })
    }

    /// Whether RDMA is still worth trying in this transfer.
    pub fn usable(&self) -> bool {
        !self.http_only.load(Ordering::Relaxed)
    }
}

/// How an RDMA attempt ended, when it did not fail.
pub(crate) enum ByRdma<R> {
    /// The server moved the bytes; what `check` made of its reply.
    Done(R),
    /// Send over HTTP instead. When the server refused, this is its reply
    /// (a download may find the range in its body).
    Http(Option<Response>),
}

/// Sends `request` (which gets the token header) for `len` bytes of the
/// slot's memory, `op` telling whether the server reads or writes them.
/// `check` turns a reply that carries [`RDMA_REPLY_HEADER`] into a result;
/// a retryable failure is tried once more with a fresh token.
///
/// [`ByRdma::Http`] means: the provider could not mint a token (HTTP can
/// still serve this part), or the server does not take RDMA (a reply without
/// the reply header, or 501), which also switches the transfer to HTTP,
/// logged once at INFO.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attempt<R>(
    client: &Client,
    conn: &Conn,
    slot: &RdmaSlot<'_>,
    op: RdmaOp,
    len: usize,
    request: &Request<'_>,
    part: Option<u32>,
    mut check: impl FnMut(Response, &Request<'_>) -> Result<R>,
) -> Result<ByRdma<R>> {
    let object = format!("{}/{}", request.bucket, request.key.unwrap_or(""));
    let part_text = part.map(|p| format!(" part {p}")).unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = match slot.registration.token(0, len, op) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{object}: {e}; sending{part_text} over HTTP");
                return Ok(ByRdma::Http(None));
            }
        };
        let rdma_req = request.with_rdma_token(&token);
        // While the request is out, no Rust reference to the slab's bytes
        // exists on this side for a GET: the server writes them through the
        // registration.
        let result = client.send_raw(conn, &rdma_req);
        slot.registration.release_token(token);
        // Any reply without the RDMA reply header, success or error (a 501,
        // or a checksum mismatch on an empty upload body), comes from a
        // server that did not touch the memory.
        let refused = match &result {
            Ok(r) => r.headers().get(RDMA_REPLY_HEADER).is_none() || r.status() == 501,
            Err(_) => false,
        };
        if refused {
            if !slot.http_only.swap(true, Ordering::Relaxed) {
                log::info!(
                    "{object}: the server does not take RDMA ({} answered without \
                     {RDMA_REPLY_HEADER}); sending this and every later part over HTTP",
                    request.operation
                );
            }
            return Ok(ByRdma::Http(result.ok()));
        }
        match result.and_then(|r| check(r, &rdma_req)) {
            Ok(v) => return Ok(ByRdma::Done(v)),
            Err(e) if attempt < 2 && e.is_retryable() => log::debug!(
                "{}{part_text} RDMA attempt {attempt} failed, retrying with a fresh token: {e}",
                request.operation
            ),
            Err(e) => return Err(e),
        }
    }
}
