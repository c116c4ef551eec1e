//! Planning a transfer: part size, part count, parts in flight and buffers,
//! for uploads (streams, files, resumed files) and downloads alike, with
//! S3's limits and the memory budget checked before anything is sent.

use std::sync::Arc;

use crate::download::DownloadArgs;
use crate::pipeline::slab::{Reservation, SlabPool};
use crate::pipeline::{GIB, MIB};
use crate::rdma::RdmaProvider;
use crate::{Error, PutObjectArgs, Result};

/// S3's smallest part (all but the last).
pub(crate) const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub(crate) const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's most parts in one upload.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// The most parts in flight s3pump allows.
pub(crate) const MAX_INFLIGHT: usize = 100;
/// Part size when the object's size is declared (grown to fit 10,000 parts).
pub(crate) const DEFAULT_PART_SIZE_KNOWN: u64 = 8 * MIB;
/// Part size when the object's size is unknown.
pub(crate) const DEFAULT_PART_SIZE_STREAM: u64 = 16 * MIB;
/// The largest buffer an RDMA provider can register: 4 GiB − 1.
pub(crate) const MAX_RDMA_BUFFER: u64 = 4 * GIB - 1;
/// Smallest range a download asks for at once.
pub(crate) const MIN_DOWNLOAD_PART_SIZE: u64 = MIB;
/// Range size of a download unless the caller sets one.
pub(crate) const DEFAULT_DOWNLOAD_PART_SIZE: u64 = 8 * MIB;
/// Balanced part sizes are multiples of this (page-aligned file offsets).
const PART_ALIGN: u64 = 4096;

/// How one transfer will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Size of every part but the last.
    pub part_size: u64,
    /// Bytes per buffer: the part size, or less for an object smaller than one part.
    pub slab_len: usize,
    /// Parts in flight (worker threads).
    pub inflight: usize,
    /// Number of parts: exact when the size is known (0 for an empty
    /// download), the most allowed (10,000) for a stream.
    pub parts: u64,
    /// The object's size when known; for a stream, the most that `parts`
    /// parts of `part_size` hold.
    pub max_bytes: u64,
}

impl Plan {
    /// Reserves up to `want` slabs of this plan's size from `pool`, at least
    /// two (one for an object of one part), waiting while the memory is
    /// taken by other transfers; `cancelled` ending the wait is
    /// [`Error::Cancelled`].
    pub fn reserve(
        &self,
        pool: &Arc<SlabPool>,
        want: usize,
        rdma: Option<Arc<dyn RdmaProvider>>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Reservation> {
        let min = if self.parts <= 1 { 1 } else { 2 };
        pool.reserve(self.slab_len, min, want, rdma, cancelled)?
            .ok_or(Error::Cancelled)
    }

    /// `(offset, length)` of part `number` (1-based) of an object of known size.
    pub fn range(&self, number: u64) -> (u64, usize) {
        let start = (number - 1) * self.part_size;
        let len = self.part_size.min(self.max_bytes - start);
        (start, len as usize)
    }
}

/// Plans an upload from its arguments, or says what is wrong with them.
pub(crate) fn upload(args: &PutObjectArgs, client_limit: u64) -> Result<Plan> {
    check_inflight(args.max_inflight_parts)?;
    if let Some(ps) = args.part_size {
        check_part_size(ps)?;
    }
    let part_size = match args.size {
        Some(size) => {
            let mut ps = args.part_size.unwrap_or(DEFAULT_PART_SIZE_KNOWN);
            if size.div_ceil(ps) > MAX_PARTS {
                // Grow in whole MiB until 10,000 parts hold the object.
                ps = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
            }
            if ps > MAX_PART_SIZE {
                return Err(Error::invalid(format!(
                    "an object of {size} bytes does not fit in {MAX_PARTS} parts of at most 5 GiB"
                )));
            }
            ps
        }
        None => args.part_size.unwrap_or(DEFAULT_PART_SIZE_STREAM),
    };
    finish_upload(args, part_size, client_limit, true)
}

/// Plans the rest of a multipart upload whose parts on the server fix the
/// part size: the checks of a fresh upload (S3's part limits, 10,000 parts,
/// RDMA's buffer limit, the memory budget), without choosing another size.
pub(crate) fn resumed(args: &PutObjectArgs, part_size: u64, client_limit: u64) -> Result<Plan> {
    check_inflight(args.max_inflight_parts)?;
    let size = args.size.unwrap_or(0);
    if size > part_size {
        check_part_size(part_size).map_err(|_| {
            Error::invalid(format!(
                "the upload's first part is {part_size} bytes; S3 parts other than the last \
                 must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes"
            ))
        })?;
    }
    if size.div_ceil(part_size) > MAX_PARTS {
        return Err(Error::invalid(format!(
            "the upload's parts of {part_size} bytes would make more than {MAX_PARTS} parts of \
             {size} bytes"
        )));
    }
    finish_upload(args, part_size, client_limit, false)
}

/// The rest of an upload's plan once its part size is chosen.
fn finish_upload(
    args: &PutObjectArgs,
    part_size: u64,
    client_limit: u64,
    balance: bool,
) -> Result<Plan> {
    if args.rdma.is_some() && part_size > MAX_RDMA_BUFFER {
        return Err(Error::invalid(format!(
            "part_size is {part_size} bytes; with RDMA a part buffer is at most 4 GiB - 1"
        )));
    }
    let (parts, max_bytes, slab_len) = match args.size {
        Some(size) => (
            size.div_ceil(part_size).max(1),
            size,
            part_size.min(size).max(1),
        ),
        None => (MAX_PARTS, part_size * MAX_PARTS, part_size),
    };
    let limit = args.memory_limit.min(client_limit);
    let slots = fit_in_memory(args.max_inflight_parts, parts, slab_len, limit)?;
    let plan = Plan {
        part_size,
        slab_len: slab_len_usize(slab_len)?,
        inflight: slots,
        parts,
        max_bytes,
    };
    let plan = match args.size {
        // A part size the caller chose is kept as it is.
        Some(size) if balance && args.part_size.is_none() => balanced(plan, size, MIN_PART_SIZE),
        _ => plan,
    };
    Ok(capped(plan))
}

/// Plans a download of `size` bytes.
pub(crate) fn download(size: u64, args: &DownloadArgs, client_limit: u64) -> Result<Plan> {
    check_download_args(args)?;
    let part_size = args.part_size;
    let parts = size.div_ceil(part_size);
    let slab_len = part_size.min(size).max(1);
    let limit = args.memory_limit.min(client_limit);
    let slots = fit_in_memory(args.max_inflight_parts, parts, slab_len, limit)?;
    let plan = Plan {
        part_size,
        slab_len: slab_len_usize(slab_len)?,
        inflight: slots,
        parts,
        max_bytes: size,
    };
    Ok(capped(balanced(plan, size, MIN_DOWNLOAD_PART_SIZE)))
}

/// Checks what can be checked of a download before anything is sent.
pub(crate) fn check_download_args(args: &DownloadArgs) -> Result<()> {
    check_inflight(args.max_inflight_parts)?;
    let ps = args.part_size;
    let max = if args.rdma.is_some() {
        MAX_RDMA_BUFFER
    } else {
        MAX_PART_SIZE
    };
    if !(MIN_DOWNLOAD_PART_SIZE..=max).contains(&ps) {
        return Err(Error::invalid(format!(
            "part_size is {ps} bytes; a download's part size must be between \
             {MIN_DOWNLOAD_PART_SIZE} (1 MiB) and {max} bytes{}",
            if args.rdma.is_some() {
                " (4 GiB - 1 with RDMA)"
            } else {
                " (5 GiB)"
            }
        )));
    }
    Ok(())
}

/// No more parts in flight than there are parts.
fn capped(plan: Plan) -> Plan {
    let parts = usize::try_from(plan.parts.max(1)).unwrap_or(usize::MAX);
    Plan {
        inflight: plan.inflight.min(parts),
        ..plan
    }
}

/// Evens out the parts of an object of known `size` among the slots in
/// flight (`plan.inflight`, before it is capped to the part count), so that the last wave does not run alone: 25 ranges with 8 in
/// flight run as 4 waves, the last with one range, which caps the speed-up
/// at 25/4 = 6.25; 32 smaller ranges run 4 full waves. The part size only
/// shrinks (never below `min`, and page-aligned), so memory stays within
/// the plan's; the part count stays within S3's 10,000.
fn balanced(plan: Plan, size: u64, min: u64) -> Plan {
    let n = plan.inflight as u64;
    if plan.parts <= 1 || n <= 1 || plan.parts.is_multiple_of(n) {
        return plan;
    }
    let mut target = plan.parts.div_ceil(n) * n;
    if target > MAX_PARTS {
        target = MAX_PARTS / n * n;
        if target <= plan.parts {
            return plan;
        }
    }
    let part_size = size
        .div_ceil(target)
        .next_multiple_of(PART_ALIGN)
        .max(min)
        .min(plan.part_size);
    let parts = size.div_ceil(part_size);
    if parts <= plan.parts {
        return plan;
    }
    Plan {
        part_size,
        slab_len: plan.slab_len.min(part_size as usize),
        parts,
        ..plan
    }
}

fn check_part_size(ps: u64) -> Result<()> {
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&ps) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "part_size is {ps} bytes; S3 parts must be between {MIN_PART_SIZE} (5 MiB) \
             and {MAX_PART_SIZE} (5 GiB) bytes"
        )))
    }
}

fn slab_len_usize(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::invalid("part_size does not fit in memory"))
}

/// Checks a `max_inflight_parts` setting: 1 to 100.
pub(crate) fn check_inflight(n: usize) -> Result<usize> {
    if (1..=MAX_INFLIGHT).contains(&n) {
        Ok(n)
    } else {
        Err(Error::invalid(format!(
            "max_inflight_parts is {n}; it must be between 1 and {MAX_INFLIGHT}"
        )))
    }
}

/// How many of `n` parts may be in flight at once: few enough that one
/// buffer more than that, of `slab_len` bytes each, stays within
/// `memory_limit` (lowered with a log line at INFO). An error when not even
/// two buffers fit (one, for an object of one part).
fn fit_in_memory(inflight: usize, parts: u64, slab_len: u64, memory_limit: u64) -> Result<usize> {
    let fit = memory_limit / slab_len.max(1);
    if parts <= 1 && fit >= 1 {
        return Ok(1);
    }
    if fit < 2 {
        return Err(Error::invalid(format!(
            "memory_limit of {memory_limit} bytes does not hold two buffers of {slab_len} bytes"
        )));
    }
    if (inflight as u64) < fit {
        return Ok(inflight);
    }
    let lowered = (fit - 1) as usize;
    log::info!(
        "{inflight} parts in flight of {slab_len} bytes would exceed the memory limit of \
         {memory_limit} bytes; using {lowered}"
    );
    Ok(lowered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's default memory limit.
    const L: u64 = 2 * GIB;

    fn p(args: PutObjectArgs) -> Plan {
        upload(&args, L).unwrap()
    }

    #[test]
    fn known_size_grows_part_size_in_mib_steps() {
        // 100 GiB / 10,000 = 10.24 MiB: 11 MiB parts, 9310 of them, which
        // 8 in flight cannot even out within 10,000 parts.
        let plan = p(PutObjectArgs::new().size(100 * GIB));
        assert_eq!(plan.part_size, 11 * MIB);
        assert_eq!(plan.parts, (100 * GIB).div_ceil(11 * MIB));
    }

    #[test]
    fn unknown_size_caps_the_object() {
        let plan = p(PutObjectArgs::new());
        assert_eq!(plan.part_size, 16 * MIB);
        assert_eq!(plan.max_bytes, 16 * MIB * MAX_PARTS);
        assert_eq!(plan.inflight, 8);
    }

    #[test]
    fn small_declared_object_gets_a_small_buffer() {
        let plan = p(PutObjectArgs::new().size(1000));
        assert_eq!((plan.slab_len, plan.inflight, plan.parts), (1000, 1, 1));
        assert_eq!(p(PutObjectArgs::new().size(0)).slab_len, 1);
    }

    #[test]
    fn known_sizes_are_balanced_over_the_parts_in_flight() {
        // 200 MiB in 8 MiB ranges is 25 ranges: 4 waves of 8, the last with
        // one. Balanced: 32 ranges of 6.25 MiB, 4 full waves.
        let d = download(200 * MIB, &DownloadArgs::new(), L).unwrap();
        assert_eq!((d.parts, d.inflight), (32, 8));
        assert_eq!(d.part_size, 200 * MIB / 32);
        assert!(d.slab_len as u64 <= 8 * MIB);
        // A small download runs all its ranges at once.
        let d = download(20 * MIB, &DownloadArgs::new(), L).unwrap();
        assert_eq!((d.parts, d.inflight, d.part_size), (8, 8, 20 * MIB / 8));
        // Uploads keep S3's 5 MiB minimum: 100 MiB is 13 parts of 8 MiB,
        // balanced to 16 parts of 6.25 MiB; 20 MiB is 4 parts of 5 MiB.
        let u = p(PutObjectArgs::new().size(100 * MIB));
        assert_eq!((u.parts, u.part_size), (16, 100 * MIB / 16));
        let u = p(PutObjectArgs::new().size(20 * MIB));
        assert_eq!((u.parts, u.part_size, u.inflight), (4, 5 * MIB, 4));
        // A part size the caller chose is kept.
        let u = p(PutObjectArgs::new().size(100 * MIB).part_size(8 * MIB));
        assert_eq!((u.parts, u.part_size), (13, 8 * MIB));
        // Already even, or one part: unchanged.
        let u = p(PutObjectArgs::new().size(64 * MIB));
        assert_eq!((u.parts, u.part_size), (8, 8 * MIB));
        assert_eq!(p(PutObjectArgs::new().size(MIB)).parts, 1);
        // Every byte is covered, and no part is past the end.
        for size in [13 * MIB + 7, 200 * MIB - 1, 77 * MIB + 4095] {
            let u = p(PutObjectArgs::new().size(size));
            let (start, len) = u.range(u.parts);
            assert_eq!(start + len as u64, size);
            assert!(len > 0 && len as u64 <= u.part_size);
        }
    }

    #[test]
    fn memory_limit_lowers_inflight_or_refuses() {
        // The client's limit, when it is the lower one.
        let args = PutObjectArgs::new()
            .part_size(100 * MIB)
            .max_inflight_parts(16);
        assert_eq!(upload(&args, GIB).unwrap().inflight, 9);
        let args = PutObjectArgs::new()
            .part_size(100 * MIB)
            .max_inflight_parts(16)
            .memory_limit(GIB);
        assert_eq!(p(args).inflight, 9); // 10 slabs of 100 MiB fit in 1 GiB
        let err = upload(
            &PutObjectArgs::new()
                .part_size(100 * MIB)
                .memory_limit(150 * MIB),
            L,
        );
        assert!(err.unwrap_err().to_string().contains("memory_limit"));
        let args = DownloadArgs::new()
            .part_size(100 * MIB)
            .max_inflight_parts(16)
            .memory_limit(GIB);
        assert_eq!(download(10 * GIB, &args, L).unwrap().inflight, 9);
        let args = DownloadArgs::new()
            .part_size(100 * MIB)
            .memory_limit(150 * MIB);
        let err = download(GIB, &args, L).unwrap_err().to_string();
        assert!(err.contains("memory_limit"), "{err}");
        // A small object needs small buffers only.
        assert_eq!(download(MIB, &args, L).unwrap().slab_len, MIB as usize);
        // An object of one part needs one buffer only.
        let one = PutObjectArgs::new().size(3 * MIB).memory_limit(4 * MIB);
        assert_eq!(upload(&one, L).unwrap().inflight, 1);
        let two = PutObjectArgs::new()
            .size(12 * MIB)
            .part_size(5 * MIB)
            .memory_limit(6 * MIB);
        assert!(upload(&two, L).is_err());
    }

    #[test]
    fn a_resumed_upload_is_checked_like_a_fresh_one() {
        let args = PutObjectArgs::new().size(40 * GIB).max_inflight_parts(8);
        // 5 GiB parts, 8 in flight: 45 GiB of buffers, far over the 2 GiB budget.
        let err = resumed(&args, 5 * GIB, L).unwrap_err().to_string();
        assert!(err.contains("memory_limit"), "{err}");
        let err = resumed(&args, MIB, L).unwrap_err().to_string();
        assert!(err.contains("first part is 1048576 bytes"), "{err}");
        let err = resumed(&PutObjectArgs::new().size(60 * GIB), 5 * MIB, L)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 10000 parts"), "{err}");
        let rdma = PutObjectArgs::new()
            .size(40 * GIB)
            .memory_limit(100 * GIB)
            .rdma(std::sync::Arc::new(NoRdma));
        let err = resumed(&rdma, 5 * GIB, u64::MAX).unwrap_err().to_string();
        assert!(err.contains("RDMA"), "{err}");
        // Within the limits, the listed part size is kept as it is.
        let plan = resumed(&args, 9 * MIB, L).unwrap();
        assert_eq!(
            (plan.part_size, plan.parts),
            (9 * MIB, (40 * GIB).div_ceil(9 * MIB))
        );
    }

    struct NoRdma;
    impl crate::RdmaProvider for NoRdma {
        fn is_connected(&self) -> bool {
            false
        }
        unsafe fn register(
            &self,
            _: *mut u8,
            _: usize,
        ) -> Result<Box<dyn crate::RdmaRegistration>> {
            Err(Error::Rdma("not connected".into()))
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, what) in [
            (
                PutObjectArgs::new().max_inflight_parts(0),
                "max_inflight_parts",
            ),
            (
                PutObjectArgs::new().max_inflight_parts(101),
                "max_inflight_parts",
            ),
            (PutObjectArgs::new().part_size(MIB), "part_size"),
            (PutObjectArgs::new().part_size(6 * GIB), "part_size"),
        ] {
            let err = upload(&args, L).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let huge = PutObjectArgs::new().size(60_000 * GIB);
        assert!(
            upload(&huge, L)
                .unwrap_err()
                .to_string()
                .contains("10000 parts")
        );
        for (args, what) in [
            (
                DownloadArgs::new().max_inflight_parts(0),
                "max_inflight_parts",
            ),
            (DownloadArgs::new().part_size(MIB - 1), "part_size"),
            (DownloadArgs::new().part_size(6 * GIB), "part_size"),
        ] {
            let err = check_download_args(&args).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }
}
