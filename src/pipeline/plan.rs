//! Part planning: part size, parts in flight and buffers for one upload.

use crate::upload::args::{GIB, MIB};
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

/// How one upload will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Size of every part but the last.
    pub part_size: u64,
    /// Bytes per buffer: the part size, or less for a declared object smaller than one part.
    pub slab_len: u64,
    /// Worker threads, i.e. parts in flight.
    pub inflight: usize,
    /// Most buffers the upload maps: `inflight + 1`.
    pub slabs: usize,
    /// The most bytes the source may hold: the declared size, or what
    /// 10,000 parts of `part_size` hold.
    pub max_bytes: u64,
}

/// Plans an upload from its arguments, or says what is wrong with them.
pub(crate) fn plan(args: &PutObjectArgs) -> Result<Plan> {
    let n = check_inflight(args.max_inflight_parts)?;
    if let Some(ps) = args.part_size
        && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&ps)
    {
        return Err(Error::invalid(format!(
            "part_size is {ps} bytes; S3 parts must be between {MIN_PART_SIZE} (5 MiB) \
             and {MAX_PART_SIZE} (5 GiB) bytes"
        )));
    }
    let (part_size, parts, max_bytes) = match args.size {
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
            (ps, size.div_ceil(ps).max(1), size)
        }
        None => {
            let ps = args.part_size.unwrap_or(DEFAULT_PART_SIZE_STREAM);
            (ps, MAX_PARTS, ps * MAX_PARTS)
        }
    };
    if args.rdma.is_some() && part_size > MAX_RDMA_BUFFER {
        return Err(Error::invalid(format!(
            "part_size is {part_size} bytes; with RDMA a part buffer is at most 4 GiB - 1"
        )));
    }
    let slab_len = match args.size {
        Some(size) => part_size.min(size).max(1),
        None => part_size,
    };
    let inflight = fit_in_memory(n, parts, slab_len, args.memory_limit)?;
    Ok(Plan {
        part_size,
        slab_len,
        inflight,
        slabs: inflight + 1,
        max_bytes,
    })
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

/// How many of `n` parts may be in flight at once: no more than there are
/// `parts`, and few enough that one buffer more than that, of `slab_len`
/// bytes each, stays within `memory_limit` (lowered with a log line at
/// INFO). An error when not even two buffers fit.
pub(crate) fn fit_in_memory(
    n: usize,
    parts: u64,
    slab_len: u64,
    memory_limit: u64,
) -> Result<usize> {
    let inflight = n.min(usize::try_from(parts.max(1)).unwrap_or(usize::MAX));
    let fit = memory_limit / slab_len.max(1);
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

    fn p(args: PutObjectArgs) -> Plan {
        plan(&args).unwrap()
    }

    #[test]
    fn known_size_grows_part_size_in_mib_steps() {
        let plan = p(PutObjectArgs::new().size(100 * GIB));
        assert_eq!(plan.part_size, 11 * MIB); // 100 GiB / 10,000 = 10.24 MiB
        assert!(100 * GIB / plan.part_size < MAX_PARTS);
        let plan = p(PutObjectArgs::new().size(10 * MIB));
        assert_eq!(plan.part_size, 8 * MIB);
        assert_eq!(plan.inflight, 2); // only two parts
        assert_eq!(plan.slabs, 3);
    }

    #[test]
    fn unknown_size_caps_the_object() {
        let plan = p(PutObjectArgs::new());
        assert_eq!(plan.part_size, 16 * MIB);
        assert_eq!(plan.max_bytes, 16 * MIB * MAX_PARTS);
        assert_eq!((plan.inflight, plan.slabs), (8, 9));
    }

    #[test]
    fn small_declared_object_gets_a_small_buffer() {
        let plan = p(PutObjectArgs::new().size(1000));
        assert_eq!((plan.slab_len, plan.inflight, plan.slabs), (1000, 1, 2));
        assert_eq!(p(PutObjectArgs::new().size(0)).slab_len, 1);
    }

    #[test]
    fn memory_limit_lowers_inflight_or_refuses() {
        let args = PutObjectArgs::new()
            .part_size(100 * MIB)
            .max_inflight_parts(16)
            .memory_limit(GIB);
        assert_eq!(p(args).inflight, 9); // 10 slabs of 100 MiB fit in 1 GiB
        let err = plan(
            &PutObjectArgs::new()
                .part_size(100 * MIB)
                .memory_limit(150 * MIB),
        );
        assert!(err.unwrap_err().to_string().contains("memory_limit"));
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
            let err = plan(&args).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let huge = PutObjectArgs::new().size(60_000 * GIB);
        assert!(plan(&huge).unwrap_err().to_string().contains("10000 parts"));
    }
}
