//! Internals the benchmarks in `benches/` measure on their own. Hidden from
//! the documentation and not part of the API: it may change at any time.

use std::time::SystemTime;

use crate::{ChecksumAlgorithm, Credentials};

/// The SigV4 headers of one request, exactly as the client signs it (see
/// `sigv4::sign`).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    method: &str,
    canonical_uri: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_hash: &str,
) -> Vec<(String, String)> {
    crate::auth::sigv4::sign(
        credentials,
        region,
        time,
        &crate::auth::sigv4::SigningRequest {
            method,
            canonical_uri,
            query,
            headers,
            payload_hash,
        },
    )
}

/// The hex SHA-256 of `data`, as sent in `x-amz-content-sha256`.
pub fn hex_sha256(data: &[u8]) -> String {
    crate::auth::sigv4::hex_sha256(data)
}

/// The checksum of `data` a part would carry, `None` for no checksum.
pub fn checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> Option<u64> {
    algorithm.compute(data).map(|c| c.value)
}

/// The CRC of data `a` followed by data `b` of `b_len` bytes, from their CRCs,
/// as the full-object checksum is built from the parts' checksums.
pub fn checksum_combine(algorithm: ChecksumAlgorithm, a: u64, b: u64, b_len: u64) -> u64 {
    let crc = |value, len| crate::s3::checksum::Crc {
        algorithm,
        value,
        len,
    };
    crc(a, 0).combine(crc(b, b_len)).value
}

/// Turns the file path of `upload_file` (parts sent from the file: by
/// sendfile over plain http, read as they are encrypted over https) on or
/// off for the whole process (on by default); off, every part is read into
/// a buffer and sent from it. benches/files.rs measures both.
pub fn set_sendfile(enabled: bool) {
    crate::upload::sendfile::set_enabled(enabled);
}
