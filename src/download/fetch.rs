//! One range of a download: the ranged GET (with `If-Match`), by RDMA or
//! over HTTP into its slab, and the checks that the reply is the range
//! asked for, of the object the download started with.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;

use ureq::http::Method;

use super::Download;
use crate::client::{Request, Response, check_status, header};
use crate::error::quote;
use crate::pipeline::slab::Slab;
use crate::rdma::RdmaOp;
use crate::rdma::attempt::{ByRdma, RDMA_LENGTH_HEADER, RDMA_REPLY_HEADER, attempt};
use crate::s3::checksum::Crc;
use crate::transport::direct::RangeInto;
use crate::transport::pace::RateReader;
use crate::transport::pool::Conn;
use crate::{Error, Result};

/// The operation name of a ranged GET, in errors and logs.
const GET: &str = "GetObject";

impl Download {
    /// The ranged GET of range `number`, without the RDMA token.
    fn request(&self, number: u64) -> Request<'_> {
        let (start, len) = self.plan.range(number);
        let mut req = Request::new(GET, Method::GET, &self.bucket, Some(&self.key))
            .header("range", format!("bytes={start}-{}", start + len as u64 - 1))
            .headers(self.args.headers.clone())
            .stop(Some(&self.stopped));
        if let Some(etag) = &self.head.etag {
            req = req.header("if-match", etag.as_str());
        }
        req
    }

    /// Fetches range `number` into `slab`, and into `file` at its offset
    /// when given: by RDMA when the slab is registered and the server takes
    /// it, else over HTTP, retried on its own from scratch into the same
    /// slab. Returns the range's CRC when the object's checksum is being
    /// verified.
    ///
    /// Into a file, a body the direct sender reads is written through as it
    /// arrives (`transport::direct::RangeInto`); any other (by RDMA, through
    /// ureq) is written once it is whole. A failed write to the file is
    /// final, not retried.
    pub(super) fn fetch(
        &self,
        conn: &Conn,
        number: u64,
        slab: &mut Slab,
        file: Option<&File>,
    ) -> Result<Option<Crc>> {
        let (start, len) = self.plan.range(number);
        let part = u32::try_from(number).unwrap_or(u32::MAX);
        let req = self.request(number);
        let mut reply = None;
        if let Some(slot) = self.rdma_slot(slab).filter(|s| s.usable()) {
            let by_rdma = attempt(
                &self.client,
                conn,
                &slot,
                RdmaOp::Get,
                len,
                &req,
                Some(part),
                |r, rq| {
                    let r = check_status(rq, r).map_err(|e| self.changed(e))?;
                    self.check_rdma_reply(r, start, len)
                },
            )?;
            match by_rdma {
                ByRdma::Done(()) => {
                    let data = &slab.as_slice()[..len];
                    self.write_whole(file, data, start)?;
                    return Ok(self.checksum(data));
                }
                // A 2xx reply without the RDMA header carries the range in its body.
                ByRdma::Http(r) => reply = r.filter(|r| r.status().is_success()),
            }
        }
        let mut into = RangeInto {
            buf: &mut slab.as_mut_slice()[..len],
            file: file.map(|f| (f, start)),
            file_error: None,
        };
        let filled = self.client.retrying(&req, Some(part), true, |_| {
            let (response, filled) = match reply.take() {
                Some(r) => (r, false),
                // Over http(s), the body straight into the buffer (and
                // through to the file): filled.
                None => self.client.send_into(conn, &req, &mut into).map_err(|e| {
                    match into.file_error.take() {
                        Some(source) => self.write_error(start, len, source),
                        None => self.changed(e),
                    }
                })?,
            };
            self.read_range(response, filled, start, into.buf)?;
            Ok(filled)
        })?;
        if !filled {
            self.write_whole(file, into.buf, start)?;
        }
        Ok(self.checksum(into.buf))
    }

    /// Writes a whole range to the file at its offset, when there is one.
    fn write_whole(&self, file: Option<&File>, data: &[u8], start: u64) -> Result<()> {
        match file {
            Some(f) => f
                .write_all_at(data, start)
                .map_err(|e| self.write_error(start, data.len(), e)),
            None => Ok(()),
        }
    }

    fn write_error(&self, start: u64, len: usize, source: std::io::Error) -> Error {
        Error::Io {
            context: format!(
                "{}/{}: writing bytes {start}..{} to the file",
                self.bucket,
                self.key,
                start + len as u64
            ),
            source,
        }
    }

    fn checksum(&self, data: &[u8]) -> Option<Crc> {
        self.head
            .checksum
            .as_ref()
            .and_then(|(alg, _)| alg.compute(data))
    }

    /// Checks a successful RDMA reply: the right range of the right object,
    /// and as many bytes written as the range holds.
    fn check_rdma_reply(&self, mut response: Response, start: u64, len: usize) -> Result<()> {
        self.check_reply_head(&response, start, len as u64)?;
        match header(response.headers(), RDMA_LENGTH_HEADER) {
            Some(n) if n.trim().parse::<u64>().ok() == Some(len as u64) => {}
            Some(n) => {
                return Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "the server wrote {n} bytes by RDMA for a range of {len} (bytes {start}..)"
                    ),
                });
            }
            // Without the length, the Content-Range checked above vouches for it.
            None if response.headers().contains_key("content-range") => {}
            None => {
                return Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "an RDMA reply with neither {RDMA_LENGTH_HEADER} nor Content-Range"
                    ),
                });
            }
        }
        // The body should be empty; read it to its end so that the
        // connection can be reused.
        let _ = std::io::copy(
            &mut response.body_mut().as_reader().take(1 << 16),
            &mut std::io::sink(),
        );
        Ok(())
    }

    /// Checks a reply's status, ETag and range against what was asked.
    fn check_reply_head(&self, response: &Response, start: u64, len: u64) -> Result<()> {
        let h = response.headers();
        if let (Some(want), Some(got)) = (&self.head.etag, header(h, "etag"))
            && !same_etag(want, &got)
        {
            return Err(Error::ObjectChanged(format!(
                "{}/{} had ETag {want} when the download started, a GET of bytes {start}.. \
                 answered for ETag {got}",
                self.bucket, self.key
            )));
        }
        let status = response.status().as_u16();
        let size = self.plan.max_bytes;
        match status {
            206 => match header(h, "content-range")
                .as_deref()
                .map(parse_content_range)
            {
                Some(Some((a, b, total))) if total != Some(size) => {
                    Err(Error::ObjectChanged(format!(
                        "{}/{} was {size} bytes when the download started; a GET of bytes \
                         {a}-{b} says it is {} now",
                        self.bucket,
                        self.key,
                        total.map_or("of unknown size".to_string(), |t| t.to_string())
                    )))
                }
                Some(Some((a, b, _))) if a == start && b.checked_add(1) == Some(start + len) => {
                    Ok(())
                }
                Some(other) => Err(Error::InvalidResponse {
                    operation: GET,
                    message: format!(
                        "asked for bytes {start}-{}, the reply's Content-Range is {}{}",
                        start + len - 1,
                        quote(&header(h, "content-range").unwrap_or_default()),
                        if other.is_none() { " (not valid)" } else { "" }
                    ),
                }),
                // An RDMA reply may not carry one; the length header is checked then.
                None if h.contains_key(RDMA_REPLY_HEADER) => Ok(()),
                None => Err(Error::InvalidResponse {
                    operation: GET,
                    message: "a 206 reply without Content-Range".into(),
                }),
            },
            // Some servers answer a range covering the whole object with 200.
            200 if start == 0 && len == size => Ok(()),
            200 => Err(Error::InvalidResponse {
                operation: GET,
                message: format!(
                    "asked for bytes {start}-{}, the server sent the whole object (200): it \
                     ignores Range",
                    start + len - 1
                ),
            }),
            other => Err(Error::InvalidResponse {
                operation: GET,
                message: format!("unexpected status {other} for a ranged GET"),
            }),
        }
    }

    /// Checks a ranged GET's reply and reads its body into `buf`, unless
    /// it is already there (`filled`: read by the direct sender, which
    /// does so only for a `Content-Length` of the range's length). A body
    /// shorter than the range is a (retryable) transport error; one longer
    /// is an invalid reply.
    fn read_range(
        &self,
        mut response: Response,
        filled: bool,
        start: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let len = buf.len() as u64;
        self.check_reply_head(&response, start, len)?;
        if let Some(cl) = header(response.headers(), "content-length")
            && cl.trim().parse::<u64>().ok() != Some(len)
        {
            return Err(Error::InvalidResponse {
                operation: GET,
                message: format!("Content-Length {cl} for a range of {len} bytes"),
            });
        }
        if filled {
            return Ok(());
        }
        let limits = self.client.limits();
        let mut reader = RateReader::new(response.body_mut().as_reader(), limits);
        let mut n = 0;
        while n < buf.len() {
            match reader.read(&mut buf[n..]) {
                Ok(0) => {
                    return Err(Error::Transport {
                        operation: GET,
                        source: format!(
                            "the body of bytes {start}.. ended after {n} of {len} bytes"
                        )
                        .into(),
                        timeout: false,
                    });
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Transport {
                        operation: GET,
                        timeout: e.kind() == ErrorKind::TimedOut,
                        source: std::io::Error::new(
                            e.kind(),
                            format!("reading bytes {start}.. after {n} of {len}: {e}"),
                        )
                        .into(),
                    });
                }
            }
        }
        // Read to the end, so that the connection can be reused and a
        // longer body is noticed.
        let mut extra = [0u8; 1];
        if let Ok(k) = reader.read(&mut extra)
            && k > 0
        {
            return Err(Error::InvalidResponse {
                operation: GET,
                message: format!("the body of bytes {start}.. is longer than {len} bytes"),
            });
        }
        Ok(())
    }

    /// Turns the replies that mean "the object is not the one HeadObject
    /// described" into [`Error::ObjectChanged`].
    fn changed(&self, e: Error) -> Error {
        match &e {
            Error::S3 { status: 412, .. } => Error::ObjectChanged(format!(
                "{}/{} no longer has ETag {} ({e})",
                self.bucket,
                self.key,
                self.head.etag.as_deref().unwrap_or("")
            )),
            Error::S3 { status: 416, .. } => Error::ObjectChanged(format!(
                "{}/{} is no longer {} bytes long ({e})",
                self.bucket, self.key, self.plan.max_bytes
            )),
            _ => e,
        }
    }
}

/// Whether two ETags name the same version (weak prefix and quotes ignored).
fn same_etag(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    bare(a) == bare(b)
}

/// Parses `bytes a-b/total` (`total` may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn etags_compare_without_quotes_or_weakness() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(same_etag("\"abc-3\"", "W/\"abc-3\""));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }
}
