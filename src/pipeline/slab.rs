//! Part buffers ("slabs"): page-aligned anonymous mmaps, shared by every
//! transfer of a client under one memory limit, reused from transfer to
//! transfer (page faults once), each registered once with an RDMA provider
//! when the transfer has one, and kept registered while it waits in the pool.
//!
//! A transfer reserves its buffers before it starts ([`SlabPool::reserve`]:
//! it may wait there, holding nothing, until enough memory is free), and
//! then takes and gives back up to that many slabs ([`Reservation`]). A
//! transfer never waits for memory while it holds slabs, so no combination
//! of transfers can deadlock (docs/ARCHITECTURE.md, "The engine"). Bytes mapped, busy and idle
//! together, never exceed the limit: an idle slab of another size is
//! unmapped to make room. Sizes are rounded up to a few classes
//! ([`size_class`]: powers of two under 1 MiB, whole MiB above), so that
//! transfers of objects of nearby sizes (a tree of small files) share idle
//! slabs instead of each mapping and faulting in its own.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use memmap2::{MmapMut, MmapOptions};
use parking_lot::{Condvar, Mutex};

use crate::rdma::{RdmaProvider, RdmaRegistration};
use crate::{Error, Result};

/// The length mapped for buffers of `len` bytes: the next power of two
/// under 1 MiB (at least a page), else the next whole MiB.
fn size_class(len: usize) -> usize {
    const MIB: usize = 1 << 20;
    if len <= MIB {
        len.max(4096).next_power_of_two()
    } else {
        len.div_ceil(MIB).saturating_mul(MIB)
    }
}

/// How long an idle slab stays mapped for the next transfer.
pub(crate) const SLAB_IDLE_TIME: Duration = Duration::from_secs(30);

/// One mapping, with its RDMA registration. Field order matters: the
/// registration is dropped (deregistered) before the memory is unmapped.
struct Mapping {
    registration: Option<Box<dyn RdmaRegistration>>,
    map: MmapMut,
    /// What it is kept for: its length, and the provider it is registered
    /// with (by address), when it is.
    key: Key,
    /// Keeps the provider's allocation, hence its address, from being reused
    /// by another provider while this mapping is registered with it.
    _provider: Option<Weak<dyn RdmaProvider>>,
}

/// What a slab is reused for: the same length and the same RDMA provider.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    len: usize,
    provider: Option<usize>,
}

struct Idle {
    key: Key,
    mapping: Mapping,
    since: Instant,
}

/// How much memory the client's slabs take, as counted by the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlabStats {
    /// Bytes mapped now, busy and idle.
    pub mapped_bytes: u64,
    /// The most bytes ever mapped at once.
    pub peak_mapped_bytes: u64,
    /// Bytes reserved now by running transfers.
    pub reserved_bytes: u64,
    /// Slabs mapped since the client was built (a reused slab counts once).
    pub slabs_created: u64,
}

#[derive(Default)]
struct State {
    stats: SlabStats,
    idle: Vec<Idle>,
    /// Tickets of transfers waiting to reserve, first come first served.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// The slabs of one client.
pub(crate) struct SlabPool {
    limit: u64,
    state: Mutex<State>,
    freed: Condvar,
}

impl fmt::Debug for SlabPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabPool")
            .field("limit", &self.limit)
            .field("stats", &self.stats())
            .finish()
    }
}

fn provider_id(rdma: &Option<Arc<dyn RdmaProvider>>) -> Option<usize> {
    rdma.as_ref().map(|p| Arc::as_ptr(p) as *const () as usize)
}

impl SlabPool {
    /// A pool whose slabs together never map more than `limit` bytes.
    pub fn new(limit: u64) -> Arc<SlabPool> {
        Arc::new(SlabPool {
            limit,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        })
    }

    /// The pool's memory limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// What the pool holds now.
    pub fn stats(&self) -> SlabStats {
        self.state.lock().stats
    }

    /// Reserves slabs of `len` bytes (rounded up to its [`size_class`]) for
    /// one transfer: `want` of them, or as
    /// many as fit but at least `min`, waiting (first come, first served)
    /// until `min` fit, or `stop` says the transfer was cancelled
    /// (`Ok(None)`). An error when `min` of them exceed the whole limit:
    /// waiting could never help. With `rdma`, each slab is registered with
    /// that provider when it is mapped.
    pub fn reserve(
        self: &Arc<Self>,
        len: usize,
        min: usize,
        want: usize,
        rdma: Option<Arc<dyn RdmaProvider>>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Reservation>> {
        let len = size_class(len);
        let bytes = len as u64;
        if bytes.saturating_mul(min as u64) > self.limit {
            return Err(Error::invalid(format!(
                "memory_limit of {} bytes does not hold {min} buffers of {len} bytes",
                self.limit
            )));
        }
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push_back(ticket);
        let granted = loop {
            let free = self.limit - st.stats.reserved_bytes;
            let fit = usize::try_from(free / bytes).unwrap_or(usize::MAX);
            if st.waiting.front() == Some(&ticket) && fit >= min {
                break fit.min(want.max(min));
            }
            if stop() {
                st.waiting.retain(|&t| t != ticket);
                self.freed.notify_all();
                return Ok(None);
            }
            self.freed.wait_for(&mut st, Duration::from_millis(20));
        };
        st.waiting.pop_front();
        st.stats.reserved_bytes += granted as u64 * bytes;
        // The next in line may fit too.
        self.freed.notify_all();
        drop(st);
        if granted < want {
            log::debug!(
                "{want} buffers of {len} bytes asked for, {granted} reserved within the memory \
                 limit of {} bytes",
                self.limit
            );
        }
        let (permit_tx, permit_rx) = crossbeam_channel::bounded(granted);
        for _ in 0..granted {
            let _ = permit_tx.send(());
        }
        Ok(Some(Reservation {
            home: Arc::new(Home {
                pool: Arc::clone(self),
                key: Key {
                    len,
                    provider: provider_id(&rdma),
                },
                rdma,
                slabs: granted,
                permit_tx,
                held: Mutex::new((0, 0)),
            }),
            permit_rx,
        }))
    }

    /// A mapping for `key`: an idle one, else a new one, unmapping idle
    /// slabs of other sizes to stay within the limit (a reservation vouches
    /// that there is room once they are gone).
    fn take(&self, key: Key, rdma: &Option<Arc<dyn RdmaProvider>>) -> Result<Mapping> {
        let mut evicted;
        {
            let mut st = self.state.lock();
            let found = st
                .idle
                .iter()
                .position(|i| i.key == key)
                .map(|i| st.idle.swap_remove(i).mapping);
            evicted = Self::remove_expired(&mut st);
            if let Some(m) = found {
                drop(st);
                drop(evicted);
                return Ok(m);
            }
            while st.stats.mapped_bytes + key.len as u64 > self.limit {
                let Some(idle) = st.idle.pop() else { break };
                st.stats.mapped_bytes -= idle.key.len as u64;
                evicted.push(idle);
            }
            // Counted before mapping, so that no other transfer maps past the
            // limit meanwhile; taken back if the mapping fails.
            st.stats.mapped_bytes += key.len as u64;
        }
        // Unmapped outside the lock.
        drop(evicted);
        let mapping = map(key, rdma);
        let mut st = self.state.lock();
        match &mapping {
            Ok(_) => {
                st.stats.peak_mapped_bytes = st.stats.peak_mapped_bytes.max(st.stats.mapped_bytes);
                st.stats.slabs_created += 1;
            }
            Err(_) => st.stats.mapped_bytes -= key.len as u64,
        }
        drop(st);
        mapping
    }

    /// Takes out of the idle list the slabs idle for longer than
    /// [`SLAB_IDLE_TIME`], no longer counted as mapped; they are unmapped
    /// when the list returned is dropped (outside the lock).
    fn remove_expired(st: &mut State) -> Vec<Idle> {
        let now = Instant::now();
        Self::remove_idle(st, |i| now.duration_since(i.since) > SLAB_IDLE_TIME)
    }

    /// Takes the idle slabs `unmap` picks out of the idle list, no longer
    /// counted as mapped.
    fn remove_idle(st: &mut State, mut unmap: impl FnMut(&Idle) -> bool) -> Vec<Idle> {
        let gone: Vec<Idle> = st.idle.extract_if(.., |i| unmap(i)).collect();
        for idle in &gone {
            st.stats.mapped_bytes -= idle.key.len as u64;
        }
        gone
    }

    /// Takes back a mapping for the next transfer, and unmaps those idle
    /// for longer than [`SLAB_IDLE_TIME`].
    fn give_back(&self, mapping: Mapping) {
        let expired = {
            let mut st = self.state.lock();
            let expired = Self::remove_expired(&mut st);
            st.idle.push(Idle {
                key: mapping.key,
                mapping,
                since: Instant::now(),
            });
            expired
        };
        drop(expired);
    }

    /// Unmaps every idle slab (the client has been idle, or is going away).
    pub fn trim(&self) {
        let idle = Self::remove_idle(&mut self.state.lock(), |_| true);
        drop(idle);
    }
}

fn map(key: Key, rdma: &Option<Arc<dyn RdmaProvider>>) -> Result<Mapping> {
    let mut map = MmapOptions::new()
        .len(key.len)
        .map_anon()
        .map_err(|e| Error::Io {
            context: format!("mapping a {} byte part buffer", key.len),
            source: e,
        })?;
    let registration = match rdma {
        Some(provider) if provider.is_connected() => {
            // SAFETY: the registration is stored in the same `Mapping` as
            // the map and declared before it, so it is dropped (deregistered)
            // before the memory is unmapped; the mapping never moves while
            // it lives.
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
    // A buffer the provider did not register is an ordinary one.
    let key = Key {
        provider: registration.as_ref().and(key.provider),
        ..key
    };
    let provider = rdma
        .as_ref()
        .filter(|_| key.provider.is_some())
        .map(Arc::downgrade);
    Ok(Mapping {
        registration,
        map,
        key,
        _provider: provider,
    })
}

/// What a transfer's slabs go back to.
struct Home {
    pool: Arc<SlabPool>,
    key: Key,
    rdma: Option<Arc<dyn RdmaProvider>>,
    slabs: usize,
    permit_tx: Sender<()>,
    /// Slabs held now, and the most held at once.
    held: Mutex<(usize, usize)>,
}

/// The slabs one transfer may hold at once. Dropping it gives the memory
/// back to the pool (its slabs go back as each is dropped).
pub(crate) struct Reservation {
    home: Arc<Home>,
    permit_rx: Receiver<()>,
}

impl Reservation {
    /// How many slabs this transfer may hold at once.
    pub fn slabs(&self) -> usize {
        self.home.slabs
    }

    /// A slab: at once when fewer than [`slabs`](Self::slabs) are held, else
    /// when one comes back. `Ok(None)` when `stop` fires first.
    pub fn acquire(&self, stop: &Receiver<()>) -> Result<Option<Slab>> {
        select! {
            recv(self.permit_rx) -> permit => match permit {
                Ok(()) => self.slab().map(Some),
                Err(_) => Ok(None),
            },
            recv(stop) -> _ => Ok(None),
        }
    }

    /// A slab if one is free now.
    pub fn try_acquire(&self) -> Result<Option<Slab>> {
        match self.permit_rx.try_recv() {
            Ok(()) => self.slab().map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The first slab of a fresh reservation (which always has one).
    pub fn first(&self) -> Result<Slab> {
        self.try_acquire()?
            .ok_or_else(|| Error::Internal("a fresh buffer reservation had no buffer".into()))
    }

    fn slab(&self) -> Result<Slab> {
        let home = &self.home;
        let mapping = match home.pool.take(home.key, &home.rdma) {
            Ok(m) => m,
            Err(e) => {
                let _ = home.permit_tx.try_send(());
                return Err(e);
            }
        };
        let mut held = home.held.lock();
        held.0 += 1;
        held.1 = held.1.max(held.0);
        Ok(Slab {
            mapping: Some(mapping),
            home: Arc::clone(home),
        })
    }

    /// The most slabs held at once so far, and their bytes.
    pub fn used(&self) -> (usize, u64) {
        let peak = self.home.held.lock().1;
        (peak, peak as u64 * self.home.key.len as u64)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let mut st = self.pool.state.lock();
        st.stats.reserved_bytes -= self.slabs as u64 * self.key.len as u64;
        self.pool.freed.notify_all();
    }
}

/// One part buffer of a transfer. Dropping it gives it back, for the next
/// part or the next transfer.
pub(crate) struct Slab {
    mapping: Option<Mapping>,
    home: Arc<Home>,
}

impl Slab {
    pub fn as_slice(&self) -> &[u8] {
        self.mapping.as_ref().map_or(&[], |m| &m.map[..])
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.mapping.as_mut().map_or(&mut [], |m| &mut m.map[..])
    }

    pub fn registration(&self) -> Option<&dyn RdmaRegistration> {
        self.mapping.as_ref()?.registration.as_deref()
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        if let Some(mapping) = self.mapping.take() {
            self.home.pool.give_back(mapping);
        }
        self.home.held.lock().0 -= 1;
        let _ = self.home.permit_tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    #[test]
    fn slabs_are_reused_and_the_limit_holds() {
        let pool = SlabPool::new(10 << 20);
        let (_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let r = pool.reserve(1 << 20, 2, 4, None, &never).unwrap().unwrap();
        assert_eq!(r.slabs(), 4);
        let a = r.acquire(&stop).unwrap().unwrap();
        let b = r.acquire(&stop).unwrap().unwrap();
        drop((a, b));
        let _c = r.acquire(&stop).unwrap().unwrap();
        assert_eq!(pool.stats().slabs_created, 2, "a returned slab is reused");
        drop((_c, r));
        // Another size: the idle 1 MiB slabs make room for 4 MiB ones.
        let r = pool.reserve(4 << 20, 2, 10, None, &never).unwrap().unwrap();
        assert_eq!(r.slabs(), 2, "10 MiB hold two 4 MiB slabs");
        let held: Vec<Slab> = (0..2).map(|_| r.try_acquire().unwrap().unwrap()).collect();
        assert!(r.try_acquire().unwrap().is_none());
        let s = pool.stats();
        assert!(
            s.mapped_bytes <= 10 << 20 && s.peak_mapped_bytes <= 10 << 20,
            "{s:?}"
        );
        drop(held);
        drop(r);
        assert_eq!(pool.stats().reserved_bytes, 0);
        pool.trim();
        assert_eq!(pool.stats().mapped_bytes, 0);
    }

    #[test]
    fn a_reservation_waits_for_memory_and_refuses_the_impossible() {
        let pool = SlabPool::new(4 << 20);
        let err = pool.reserve(3 << 20, 2, 2, None, &never).err().unwrap();
        assert!(err.to_string().contains("memory_limit"), "{err}");
        let first = pool.reserve(1 << 20, 2, 4, None, &never).unwrap().unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let r = pool.reserve(1 << 20, 2, 2, None, &never).unwrap().unwrap();
                r.slabs()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "no memory is free yet");
        drop(first);
        assert_eq!(waiter.join().unwrap(), 2);
        // A cancelled wait gives up.
        let _hold = pool.reserve(1 << 20, 4, 4, None, &never).unwrap().unwrap();
        let r = pool.reserve(1 << 20, 1, 1, None, &|| true).unwrap();
        assert!(r.is_none());
    }

    #[test]
    fn nearby_sizes_share_a_class() {
        assert_eq!(size_class(1), 4096);
        assert_eq!(size_class(300 << 10), 512 << 10);
        assert_eq!(size_class((300 << 10) + 1), 512 << 10);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1), 2 << 20);
        assert_eq!(size_class(8 << 20), 8 << 20);
        // A slab of another transfer's nearby size is taken again, not mapped anew.
        let pool = SlabPool::new(64 << 20);
        for len in [300 << 10, (300 << 10) + 1, 400 << 10] {
            let r = pool.reserve(len, 1, 1, None, &|| false).unwrap().unwrap();
            drop(r.first().unwrap());
        }
        assert_eq!(pool.stats().slabs_created, 1);
    }
}
