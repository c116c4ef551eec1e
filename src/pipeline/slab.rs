//! Part buffers: page-aligned anonymous mmaps, created on first need, at most
//! a fixed number per upload, reused part after part, each registered once
//! with the RDMA provider when there is one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, select};
use memmap2::{MmapMut, MmapOptions};

use crate::rdma::{RdmaProvider, RdmaRegistration};
use crate::{Error, Result};

/// One part buffer. Field order matters: the RDMA registration is dropped
/// (deregistered) before the memory is unmapped.
pub(crate) struct Slab {
    registration: Option<Box<dyn RdmaRegistration>>,
    map: MmapMut,
}

impl Slab {
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub fn registration(&self) -> Option<&dyn RdmaRegistration> {
        self.registration.as_deref()
    }
}

/// The buffers of one upload.
pub(crate) struct SlabPool {
    len: usize,
    max: usize,
    created: AtomicUsize,
    free_tx: Sender<Slab>,
    free_rx: Receiver<Slab>,
    rdma: Option<Arc<dyn RdmaProvider>>,
}

impl SlabPool {
    /// A pool of at most `max` buffers of `len` bytes each; with `rdma`, each
    /// buffer is registered when it is created.
    pub fn new(len: usize, max: usize, rdma: Option<Arc<dyn RdmaProvider>>) -> SlabPool {
        let (free_tx, free_rx) = crossbeam_channel::bounded(max);
        SlabPool {
            len: len.max(1),
            max,
            created: AtomicUsize::new(0),
            free_tx,
            free_rx,
            rdma,
        }
    }

    /// A free buffer: a returned one, else a new one while fewer than `max`
    /// exist, else the next one returned. `Ok(None)` when `stop` fires first.
    pub fn acquire(&self, stop: &Receiver<()>) -> Result<Option<Slab>> {
        if let Ok(slab) = self.free_rx.try_recv() {
            return Ok(Some(slab));
        }
        let mut n = self.created.load(Ordering::Relaxed);
        while n < self.max {
            match self
                .created
                .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return self.create().map(Some),
                Err(now) => n = now,
            }
        }
        select! {
            recv(self.free_rx) -> slab => Ok(slab.ok()),
            recv(stop) -> _ => Ok(None),
        }
    }

    /// The first buffer of a fresh pool (which always has one to give).
    pub fn first(&self) -> Result<Slab> {
        // A stop channel that is already closed: `acquire` cannot wait.
        let (_, closed) = crossbeam_channel::bounded::<()>(0);
        self.acquire(&closed)?
            .ok_or_else(|| Error::Panic("a fresh buffer pool had no buffer".into()))
    }

    /// Gives a buffer back for the next part.
    pub fn release(&self, slab: Slab) {
        // The channel holds `max` buffers and this pool keeps its receiver,
        // so the send cannot fail; if it somehow did, the slab is just freed.
        let _ = self.free_tx.try_send(slab);
    }

    fn create(&self) -> Result<Slab> {
        let mut map = MmapOptions::new()
            .len(self.len)
            .map_anon()
            .map_err(|e| Error::Io {
                context: format!("mapping a {} byte part buffer", self.len),
                source: e,
            })?;
        let registration = match &self.rdma {
            Some(provider) if provider.is_connected() => {
                // SAFETY: the registration is stored in the same `Slab` as the
                // mapping and declared before it, so it is dropped
                // (deregistered) before the memory is unmapped; the mapping
                // never moves while it lives.
                match unsafe { provider.register(map.as_mut_ptr(), map.len()) } {
                    Ok(r) => Some(r),
                    Err(e) => {
                        // Nothing is lost: this buffer's parts go over HTTP.
                        log::warn!("{e}; parts in this buffer go over HTTP");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Slab { registration, map })
    }

    /// How many buffers were mapped, and their total bytes.
    pub fn mapped(&self) -> (usize, u64) {
        let n = self.created.load(Ordering::Relaxed);
        (n, n as u64 * self.len as u64)
    }
}
