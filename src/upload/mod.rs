//! Uploads: the parallel pipeline of docs/ARCHITECTURE.md. A stream is read by one
//! producer thread into slabs that N workers send as parts (`stream`); a
//! file's parts are read by the workers themselves (`file`); either way
//! the caller's thread gathers the part ETags (`crate::pipeline::run`) and
//! completes the upload, or aborts it on the first error. `part` sends one
//! slab, by RDMA or over HTTP.

pub(crate) mod args;
mod file;
pub(crate) mod part;
pub(crate) mod sendfile;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::pipeline::plan::Plan;
use crate::pipeline::run::Gathered;
use crate::pipeline::slab::{Reservation, Slab};
use crate::rdma::attempt::RdmaSlot;
use crate::s3::checksum::{Crc, verify_full_object};
use crate::s3::multipart::UploadedPart;
use crate::transport::pool::Conn;
use crate::transport::stop::Stop;
use crate::upload::part::{Sent, Target, send_slab};
use crate::{Client, Error, PutObjectArgs, PutObjectOutput, Result};

/// One upload's shared state: the caller's thread and the producer borrow
/// it, each part task on the client's workers holds it in an `Arc`.
pub(crate) struct Upload {
    pub client: Client,
    pub bucket: String,
    pub key: String,
    pub args: PutObjectArgs,
    pub plan: Plan,
    pub slabs: Reservation,
    /// Set once the server has shown it does not take RDMA.
    pub http_only: AtomicBool,
    /// Set on the first error or a cancel: the producer stops, requests in
    /// flight are cut short.
    pub stopped: Arc<Stop>,
}

impl Upload {
    pub(crate) fn new(
        client: &Client,
        bucket: &str,
        key: &str,
        args: PutObjectArgs,
        plan: Plan,
        slabs: Reservation,
    ) -> Arc<Self> {
        let stopped = Arc::new(Stop::default());
        if let Some(cancel) = &args.cancel {
            cancel.attach(&stopped);
        }
        Arc::new(Upload {
            client: client.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            args,
            plan,
            slabs,
            http_only: AtomicBool::new(false),
            stopped,
        })
    }

    fn rdma_slot<'s>(&'s self, slab: &'s Slab) -> Option<RdmaSlot<'s>> {
        RdmaSlot::of(slab, &self.http_only)
    }

    /// Sends one part of the multipart upload `upload_id` from `slab`.
    fn send_part(
        &self,
        conn: &Conn,
        upload_id: &str,
        number: u32,
        slab: &Slab,
        len: usize,
    ) -> Result<Sent> {
        let target = Target::Part {
            upload_id,
            part_number: number,
        };
        let data = &slab.as_slice()[..len];
        let rdma = self.rdma_slot(slab);
        send_slab(
            &self.client,
            conn,
            &self.bucket,
            &self.key,
            &target,
            data,
            &self.args,
            rdma.as_ref(),
            Some(&self.stopped),
        )
    }

    /// The one-part path: a single PutObject from the first buffer.
    pub(crate) fn single(&self, slab: &Slab, len: usize) -> Result<PutObjectOutput> {
        let sent = send_slab(
            &self.client,
            self.client.conn(),
            &self.bucket,
            &self.key,
            &Target::Object,
            &slab.as_slice()[..len],
            &self.args,
            self.rdma_slot(slab).as_ref(),
            Some(&self.stopped),
        )
        .map_err(|e| self.or_cancelled(e))?;
        Ok(sent.into_single(len))
    }

    /// `e`, or [`Error::Cancelled`] when a cancel cut the request short.
    pub(crate) fn or_cancelled(&self, e: Error) -> Error {
        if self.args.cancelled() {
            Error::Cancelled
        } else {
            e
        }
    }

    /// What the gather loop's logs call this upload.
    fn what(&self, upload_id: &str) -> String {
        format!("upload {upload_id} of {}/{}", self.bucket, self.key)
    }

    /// Completes the upload when every part is in, else aborts it (unless
    /// asked to keep it) and returns the first error with the upload id.
    fn finish(
        &self,
        upload_id: &str,
        g: Gathered,
        parts: BTreeMap<u32, (Sent, usize)>,
    ) -> Result<PutObjectOutput> {
        let result = match (g.failure, g.produced) {
            (Some((part, e)), _) => Err((part, e)),
            (None, Some((count, bytes))) if count as usize == parts.len() => self
                .complete(upload_id, &parts, bytes)
                .map_err(|e| (None, e)),
            (None, _) => Err((
                None,
                Error::Internal("the pipeline ended without every part".into()),
            )),
        };
        result.map_err(|(part_number, source)| {
            if self.args.keep_failed_upload {
                log::info!("upload {upload_id} failed; kept on the server for resuming");
            } else {
                self.abort(upload_id);
            }
            Error::Upload {
                upload_id: upload_id.to_string(),
                part_number,
                source: Box::new(source),
            }
        })
    }

    /// CompleteMultipartUpload with the parts in ascending order, then the
    /// full-object checksum check.
    fn complete(
        &self,
        upload_id: &str,
        parts: &BTreeMap<u32, (Sent, usize)>,
        bytes: u64,
    ) -> Result<PutObjectOutput> {
        let list: Vec<UploadedPart> = parts
            .iter()
            .map(|(&number, (sent, len))| UploadedPart {
                part_number: number,
                etag: sent.etag.clone(),
                size: *len as u64,
                checksum: sent.crc.map(|c| c.to_base64()),
            })
            .collect();
        let done = match self.client.complete_upload(
            &self.bucket,
            &self.key,
            upload_id,
            &list,
            self.args.checksum,
            self.args.condition.as_ref(),
            Some(&self.stopped),
        ) {
            Ok(done) => done,
            // Cut short by a cancel: the caller aborts.
            Err(_) if self.args.cancelled() => return Err(Error::Cancelled),
            // No definite answer (the connection failed, or the server kept
            // erring): the Complete may have been applied. Look before the
            // caller aborts.
            Err(e @ (Error::Transport { .. } | Error::S3 { status: 500.., .. })) => {
                let refs: Vec<&UploadedPart> = list.iter().collect();
                self.client
                    .completed_earlier(&self.bucket, &self.key, &refs)
                    .ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        let local = parts
            .values()
            .filter_map(|(sent, _)| sent.crc)
            .reduce(Crc::combine)
            .map(|c| c.to_base64());
        if let (Some(local), Some(remote)) = (&local, &done.checksum) {
            // A composite checksum ("…-N") is not comparable to a full-object CRC.
            if !remote.contains('-') {
                verify_full_object(
                    self.args.checksum,
                    remote,
                    local,
                    &format!("{}/{}", self.bucket, self.key),
                    "the data read had",
                    self.args.strict_checksums,
                )?;
            }
        }
        Ok(PutObjectOutput {
            etag: done.etag,
            version_id: done.version_id,
            parts: list.len() as u32,
            bytes,
            checksum: local,
            slabs: 0,
            slab_bytes: 0,
        })
    }

    /// Aborts the upload after a failure; a failed abort is logged, the
    /// caller still gets the first error.
    fn abort(&self, upload_id: &str) {
        log::debug!(
            "aborting upload {upload_id} of {}/{}",
            self.bucket,
            self.key
        );
        match self
            .client
            .abort_multipart_upload(&self.bucket, &self.key, upload_id)
        {
            Ok(()) => {}
            // Gone already (aborted, or completed before the error that led
            // here): nothing is left behind.
            Err(e) if e.s3_code() == Some("NoSuchUpload") => {
                log::debug!("AbortMultipartUpload of upload {upload_id}: already gone: {e}");
            }
            Err(e) => log::warn!("AbortMultipartUpload of upload {upload_id} failed: {e}"),
        }
    }
}
