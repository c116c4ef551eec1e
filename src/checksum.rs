//! Per-part checksums (CRC64NVME, CRC32C) and their combination into a
//! full-object checksum.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crc_fast::CrcAlgorithm;

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
    pub fn combine(self, next: Crc) -> Crc {
        let alg = self.algorithm.crc().expect("a Crc always has an algorithm");
        Crc {
            algorithm: self.algorithm,
            value: crc_fast::checksum_combine(alg, self.value, next.value, next.len),
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
