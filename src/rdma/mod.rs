//! RDMA providers: register part buffers once, mint a token per request.
//!
//! See `docs/RDMA.md` for the wire protocol and how a site plugs in its
//! RDMA library.

pub(crate) mod attempt;
pub(crate) mod ffi;

use crate::Result;

/// Whether a token lets the server read the memory (an upload) or write it
/// (a download).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdmaOp {
    /// The server reads the range: the request uploads it.
    Put,
    /// The server writes the range: the request downloads into it.
    Get,
}

/// A source of RDMA registrations and tokens, used from worker threads.
pub trait RdmaProvider: Send + Sync {
    /// Whether the provider can move data now. When it cannot, uploads go
    /// over HTTP.
    fn is_connected(&self) -> bool;

    /// Registers `len` bytes at `ptr` with the NIC. The registration
    /// deregisters the memory when dropped.
    ///
    /// # Safety
    /// The memory must stay mapped and valid until the returned registration
    /// has been dropped.
    unsafe fn register(&self, ptr: *mut u8, len: usize) -> Result<Box<dyn RdmaRegistration>>;
}

/// Memory registered with an [`RdmaProvider`]; deregistered on drop.
pub trait RdmaRegistration: Send + Sync {
    /// Mints a token that lets the server access `[offset, offset + len)` of
    /// the registered memory for one request. Every token must be given back
    /// with [`release_token`](Self::release_token).
    fn token(&self, offset: usize, len: usize, op: RdmaOp) -> Result<String>;

    /// Releases a token minted by [`token`](Self::token).
    fn release_token(&self, token: String);
}
