//! What uploads and downloads share: planning, part buffers (slabs), the
//! events worker threads send, and the caller's gather/cancel/join loop.

pub(crate) mod plan;
pub(crate) mod slab;
