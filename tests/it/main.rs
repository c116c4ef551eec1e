//! s3pump's integration tests, in one binary: the in-process S3 server of
//! `tests/support` (s3s, tokio, hyper) is compiled and linked once instead of
//! once per test file. Each module is one area; `cargo test --all-features
//! <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod cli_copy;
mod cli_presign;
mod conditional;
mod copy;
mod credentials;
mod deadlines;
mod direct_get;
mod direct_http;
mod download;
mod engine;
mod everyday;
mod faults;
mod hostile;
mod https_parts;
mod list;
mod presign;
mod proxy;
mod put_object;
mod quirks;
mod rdma;
mod rdma_ffi;
mod readme;
mod region;
mod s3_ops;
mod secrets;
mod sendfile;
mod soak;
mod support_selftest;
mod tls;
mod tree;
mod upload_file;
mod xml_replies;
