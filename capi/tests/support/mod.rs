//! The main crate's in-process S3 server (s3s-fs), included by path: the C
//! programs run against the same real S3 implementation as its tests.
#![allow(dead_code)]
#![allow(unused_imports)]

#[path = "../../../tests/support/server.rs"]
pub mod server;
#[path = "../../../tests/support/tracked.rs"]
mod tracked;
