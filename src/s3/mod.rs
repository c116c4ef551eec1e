//! The S3 protocol: single-request object operations, listing and batched
//! deletes, the multipart upload protocol, pagination that always ends, the XML of requests and replies,
//! and checksums.

pub(crate) mod bucket;
pub(crate) mod checksum;
pub(crate) mod list;
pub(crate) mod multipart;
pub(crate) mod object;
pub(crate) mod pages;
pub(crate) mod presign;
pub(crate) mod xml;
