//! Per-part checksums (CRC64NVME, CRC32C) and their combination into a
//! full-object checksum.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crc_fast::CrcAlgorithm;

use crate::{Error, Result};

/// The checksum sent with every part so that the server can reject a part
/// corrupted on the way.
///
/// Computed on the worker threads with SIMD (crate `crc-fast`), so it costs
/// a few hundredths of a CPU second per GiB. Some third-party S3 servers
/// reject checksum headers they do not know: use [`ChecksumAlgorithm::None`]
/// for those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// CRC64/NVME (`x-amz-checksum-crc64nvme`), a full-object checksum. The default.
    #[default]
    Crc64Nvme,
    /// CRC32C (`x-amz-checksum-crc32c`), sent as a full-object checksum.
    Crc32c,
    /// No checksum header at all.
    None,
}

impl ChecksumAlgorithm {
    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::None => None,
        }
    }

    /// The algorithm's name on the wire (`CRC64NVME`, `CRC32C`), `None` for no checksum.
    pub fn name(self) -> Option<&'static str> {
        match self {
            ChecksumAlgorithm::Crc64Nvme => Some("CRC64NVME"),
            ChecksumAlgorithm::Crc32c => Some("CRC32C"),
            ChecksumAlgorithm::None => None,
        }
    }

    /// The request/response header carrying this checksum.
    pub(crate) fn header(self) -> Option<&'static str> {
        match self {
            ChecksumAlgorithm::Crc64Nvme => Some("x-amz-checksum-crc64nvme"),
            ChecksumAlgorithm::Crc32c => Some("x-amz-checksum-crc32c"),
            ChecksumAlgorithm::None => None,
        }
    }

    /// The element name of this checksum in Complete/ListParts XML.
    pub(crate) fn xml_element(self) -> Option<&'static str> {
        match self {
            ChecksumAlgorithm::Crc64Nvme => Some("ChecksumCRC64NVME"),
            ChecksumAlgorithm::Crc32c => Some("ChecksumCRC32C"),
            ChecksumAlgorithm::None => None,
        }
    }

    /// The checksum of `data`, `None` when no checksum is configured.
    pub(crate) fn compute(self, data: &[u8]) -> Option<Crc> {
        let alg = self.crc()?;
        Some(Crc {
            algorithm: self,
            value: crc_fast::checksum(alg, data),
            len: data.len() as u64,
        })
    }
}

/// A CRC value together with the length of the data it covers, so that CRCs
/// of consecutive parts can be combined into the CRC of the whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crc {
    pub algorithm: ChecksumAlgorithm,
    pub value: u64,
    pub len: u64,
}

impl Crc {
    /// The CRC of `self`'s data followed by `next`'s data.
    ///
    /// `crc(A‖B) = crc(A) · x^(8·|B|) mod P ⊕ crc(B)` for these reflected,
    /// pre- and post-inverted CRCs (zlib's `crc32_combine` method): a few
    /// microseconds, where `crc_fast::checksum_combine`'s GF(2) matrix
    /// squaring takes about 170 µs per call, which the caller's thread paid
    /// once per part after Complete (43 ms for a 4 GiB upload in 16 MiB
    /// parts, 1.7 s for 10,000 parts).
    pub fn combine(self, next: Crc) -> Crc {
        let (poly, top) = match self.algorithm {
            ChecksumAlgorithm::Crc64Nvme => (CRC64NVME_REFLECTED, 1u64 << 63),
            ChecksumAlgorithm::Crc32c => (CRC32C_REFLECTED, 1u64 << 31),
            ChecksumAlgorithm::None => unreachable!("a Crc always has an algorithm"),
        };
        let shift = x_pow_8n_mod_p(next.len, poly, top);
        Crc {
            algorithm: self.algorithm,
            value: mult_mod_p(shift, self.value, poly, top) ^ next.value,
            len: self.len + next.len,
        }
    }

    /// Parses the base64 form S3 uses, for data of `len` bytes.
    pub fn from_base64(algorithm: ChecksumAlgorithm, b64: &str, len: u64) -> Option<Crc> {
        let bytes = BASE64.decode(b64).ok()?;
        let value = match algorithm {
            ChecksumAlgorithm::Crc64Nvme => u64::from_be_bytes(bytes.try_into().ok()?),
            ChecksumAlgorithm::Crc32c => u32::from_be_bytes(bytes.try_into().ok()?) as u64,
            ChecksumAlgorithm::None => return None,
        };
        Some(Crc {
            algorithm,
            value,
            len,
        })
    }

    /// Base64 of the big-endian CRC, as S3 sends it in headers and XML.
    pub fn to_base64(self) -> String {
        match self.algorithm {
            ChecksumAlgorithm::Crc32c => BASE64.encode((self.value as u32).to_be_bytes()),
            _ => BASE64.encode(self.value.to_be_bytes()),
        }
    }
}

/// Compares the full-object checksum a server sent (`remote`, base64) with
/// the one computed here (`local`) for `what` (`bucket/key`); `ours` says
/// what `local` is of ("the bytes downloaded have").
///
/// A `remote` that cannot be a value of `algorithm` (not base64, or not its
/// width: moto sends a 4-byte CRC32 under the CRC64NVME header) says nothing
/// about the data: it is "unverifiable", a warning (the transfer succeeds),
/// or an [`Error::ChecksumMismatch`] when `strict`. A well-formed value that
/// differs is always that error.
pub(crate) fn verify_full_object(
    algorithm: ChecksumAlgorithm,
    remote: &str,
    local: &str,
    what: &str,
    ours: &str,
    strict: bool,
) -> Result<()> {
    if remote == local {
        return Ok(());
    }
    let name = algorithm.name().unwrap_or("checksum");
    let width = match algorithm {
        ChecksumAlgorithm::Crc64Nvme => 8,
        ChecksumAlgorithm::Crc32c => 4,
        ChecksumAlgorithm::None => return Ok(()),
    };
    let sent = BASE64.decode(remote.trim()).map(|b| b.len());
    if sent != Ok(width) {
        let sent = match sent {
            Ok(n) => format!("{n} bytes"),
            Err(_) => "not base64".to_string(),
        };
        let msg = format!(
            "{what}: the full-object {name} checksum is unverifiable: the server sent {remote:?} \
             ({sent}; a {name} is {width} bytes)"
        );
        if strict {
            return Err(Error::ChecksumMismatch(format!(
                "{msg} and checksums are strict"
            )));
        }
        log::warn!("{msg}; the data was not checked against it");
        return Ok(());
    }
    Err(Error::ChecksumMismatch(format!(
        "{what}: the server reports full-object {name} {remote}, {ours} {local}"
    )))
}

/// CRC-32C's polynomial 0x1EDC6F41, bit-reflected.
const CRC32C_REFLECTED: u64 = 0x82F6_3B78;
/// CRC-64/NVME's polynomial 0xAD93D23594C93659, bit-reflected.
const CRC64NVME_REFLECTED: u64 = 0x9A6C_9329_AC4B_C9B5;

/// `a · b mod P` in GF(2), in the reflected representation of a CRC whose
/// top bit (`top`, = x⁰) is 1 << (width − 1).
fn mult_mod_p(a: u64, mut b: u64, poly: u64, top: u64) -> u64 {
    let mut m = top;
    let mut p = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ poly } else { b >> 1 };
    }
    p
}

/// `x^(8·n) mod P`: the operator that appends `n` zero bytes to a CRC.
fn x_pow_8n_mod_p(mut n: u64, poly: u64, top: u64) -> u64 {
    let mut result = top; // x⁰
    let mut square = top >> 8; // x⁸
    while n != 0 {
        if n & 1 != 0 {
            result = mult_mod_p(square, result, poly, top);
        }
        square = mult_mod_p(square, square, poly, top);
        n >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // CRC-64/NVME check value of "123456789" and CRC-32C's.
        let c = ChecksumAlgorithm::Crc64Nvme.compute(b"123456789").unwrap();
        assert_eq!(c.value, 0xae8b_1486_0a79_9888);
        let c = ChecksumAlgorithm::Crc32c.compute(b"123456789").unwrap();
        assert_eq!(c.value, 0xe306_9283);
        assert_eq!(c.to_base64(), BASE64.encode([0xe3, 0x06, 0x92, 0x83]));
        assert_eq!(
            Crc::from_base64(ChecksumAlgorithm::Crc32c, &c.to_base64(), 9),
            Some(c)
        );
        let c = ChecksumAlgorithm::Crc64Nvme.compute(b"123456789").unwrap();
        assert_eq!(
            Crc::from_base64(ChecksumAlgorithm::Crc64Nvme, &c.to_base64(), 9),
            Some(c)
        );
        assert_eq!(
            Crc::from_base64(ChecksumAlgorithm::Crc64Nvme, "AAAA", 9),
            None
        );
        assert!(ChecksumAlgorithm::None.compute(b"x").is_none());
    }

    #[test]
    fn combining_agrees_with_crc_fast() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 256) as u8).collect();
        for (alg, crc_alg) in [
            (ChecksumAlgorithm::Crc64Nvme, CrcAlgorithm::Crc64Nvme),
            (ChecksumAlgorithm::Crc32c, CrcAlgorithm::Crc32Iscsi),
        ] {
            for split in [0, 1, 7, 8, 9, 4096, 65_535, 69_999, 70_000] {
                let (a, b) = data.split_at(split);
                let (ca, cb) = (alg.compute(a).unwrap(), alg.compute(b).unwrap());
                let ours = ca.combine(cb);
                assert_eq!(ours, alg.compute(&data).unwrap(), "{alg:?} split {split}");
                let theirs = crc_fast::checksum_combine(crc_alg, ca.value, cb.value, cb.len);
                assert_eq!(ours.value, theirs, "{alg:?} split {split}");
            }
            // Lengths far beyond the data: against crc_fast's combine.
            for len in [16u64 << 20, 5 << 30, (1 << 40) + 12345] {
                let theirs = crc_fast::checksum_combine(crc_alg, 0x1234_5678, 0x9abc_def0, len);
                let ours = Crc {
                    algorithm: alg,
                    value: 0x1234_5678,
                    len: 1,
                }
                .combine(Crc {
                    algorithm: alg,
                    value: 0x9abc_def0,
                    len,
                });
                assert_eq!(ours.value, theirs, "{alg:?} len {len}");
            }
        }
    }

    #[test]
    fn combining_parts_gives_the_whole_objects_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in [ChecksumAlgorithm::Crc64Nvme, ChecksumAlgorithm::Crc32c] {
            let whole = alg.compute(&data).unwrap();
            let combined = data
                .chunks(30_001)
                .map(|c| alg.compute(c).unwrap())
                .reduce(Crc::combine)
                .unwrap();
            assert_eq!(combined, whole);
        }
    }
}
