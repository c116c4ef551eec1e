//! Test and benchmark support for s3pump: an in-process S3 server with fault
//! injection and an RDMA emulation ([`TestServer`]), a throttling TCP relay
//! ([`Relay`]), a do-nothing S3 sink for benchmarks ([`SinkServer`]) and a
//! hostile S3 server answering each request with a test's script
//! ([`HostileServer`]).
//!
//! Include it with `mod support;` from an integration test, or with
//! `#[path = "../tests/support/mod.rs"] mod support;` from an example or bench.
//! It does not depend on the s3pump library.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod cred_services;
pub mod harness;
pub mod hostile;
pub mod logger;
pub mod proxy;
pub mod rdma_emu;
pub mod relay;
pub mod scripted;
pub mod server;
pub mod sink;
pub mod tls_front;
mod tracked;

pub use hostile::{HostileRequest, HostileServer, Reply, Step};
pub use relay::{Relay, RelayConfig, RelayFault};
pub use server::{
    ACCESS_KEY, Fault, FaultKind, Op, OpenUpload, RDMA_LENGTH_HEADER, RDMA_REPLY_HEADER,
    RDMA_TOKEN_HEADER, REGION, RdmaMode, SECRET_KEY, Stats, TestServer, WrongRegion,
    make_rdma_token, parse_rdma_token,
};
pub use sink::{RawSink, SinkServer, SinkStats, raw_sink, run_sink_forever};
pub use tracked::base64_encode;
