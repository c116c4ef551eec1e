//! The part workers of a client, shared by all its transfers
//! (docs/ARCHITECTURE.md, "The engine").
//!
//! A transfer does not start threads of its own to send or fetch parts: it
//! hands each part, as a task, to the client's [`Engine`]. A transfer's
//! [`Lane`] lets at most its `max_inflight_parts` tasks be queued or running
//! at once. A free worker takes, of the queued tasks, one of the transfer
//! with the fewest tasks running (the oldest such task): concurrent
//! transfers share the workers evenly, and one that starts while another
//! fills every worker gets the next one free, instead of waiting behind all
//! the tasks the other has queued. Threads are started as tasks need them, at most `max_connections`
//! of them (each task leases one part connection, so a task never waits for
//! a connection), and a thread idle for [`WORKER_IDLE_TIME`] ends. Dropping
//! the engine (with the last clone of its client) lets its threads finish
//! what is queued and end; nothing waits for them.
//!
//! A task never blocks on anything another task must give back: a
//! transfer takes a part's buffer before it hands the part over (on the
//! transfer's own producer thread), so no mix of transfers can fill the
//! workers with tasks waiting for memory.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::{Condvar, Mutex};

use crate::pipeline::run::panic_message;
use crate::transport::pool::IDLE_CONNECTION_TIME;
use crate::{Error, Result};

/// How long a worker thread waits for a task before it ends: as long as an
/// idle part connection is kept.
pub(crate) const WORKER_IDLE_TIME: Duration = IDLE_CONNECTION_TIME;

/// One part's work, run on a worker thread.
pub(crate) type Task = Box<dyn FnOnce() + Send + 'static>;

/// A queued task and the count of running tasks of its transfer.
struct Queued {
    running: Arc<AtomicUsize>,
    task: Task,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    /// Threads running now, and the most at once.
    live: usize,
    peak: usize,
    /// Threads waiting for a task.
    idle: usize,
    /// Set when the engine is dropped: threads end once the queue is empty.
    closed: bool,
}

struct Shared {
    max: usize,
    idle_time: Duration,
    state: Mutex<State>,
    queued: Condvar,
}

/// The worker threads of one client.
pub(crate) struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// An engine of at most `max` threads, none started yet.
    pub fn new(max: usize) -> Engine {
        Engine::with_idle_time(max, WORKER_IDLE_TIME)
    }

    fn with_idle_time(max: usize, idle_time: Duration) -> Engine {
        Engine {
            shared: Arc::new(Shared {
                max: max.max(1),
                idle_time,
                state: Mutex::new(State::default()),
                queued: Condvar::new(),
            }),
        }
    }

    /// Worker threads running now, and the most at once so far.
    pub fn threads(&self) -> (usize, usize) {
        let st = self.shared.state.lock();
        (st.live, st.peak)
    }

    /// Queues `task` of the transfer whose running tasks `running` counts,
    /// starting a thread when every running one is busy and fewer than the
    /// maximum run. An error only when no thread runs and none can be
    /// started (the task is then dropped, not run).
    pub fn run(&self, running: &Arc<AtomicUsize>, task: Task) -> Result<()> {
        let mut st = self.shared.state.lock();
        st.queue.push_back(Queued {
            running: Arc::clone(running),
            task,
        });
        if st.queue.len() <= st.idle || st.live >= self.shared.max {
            self.shared.queued.notify_one();
            return Ok(());
        }
        st.live += 1;
        st.peak = st.peak.max(st.live);
        let shared = Arc::clone(&self.shared);
        let started = thread::Builder::new()
            .name("s3pump-worker".into())
            .spawn(move || work(&shared));
        if let Err(e) = started {
            st.live -= 1;
            if st.live == 0 {
                st.queue.pop_back();
                return Err(Error::Io {
                    context: "starting a part worker thread".into(),
                    source: e,
                });
            }
            log::warn!("could not start another part worker thread: {e}");
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.queued.notify_all();
    }
}

/// A worker thread: runs tasks until the engine is dropped and the queue is
/// empty, or none came for the idle time.
fn work(shared: &Shared) {
    let mut st = shared.state.lock();
    loop {
        if let Some(Queued { running, task }) = next(&mut st.queue) {
            drop(st);
            // The task's own guard reports a panic to its transfer; the
            // thread goes on with the next task.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(task)) {
                log::error!("a part task panicked: {}", panic_message(&panic));
            }
            running.fetch_sub(1, Ordering::SeqCst);
            st = shared.state.lock();
            continue;
        }
        if st.closed {
            break;
        }
        st.idle += 1;
        let waited = shared.queued.wait_for(&mut st, shared.idle_time);
        st.idle -= 1;
        if waited.timed_out() && st.queue.is_empty() {
            break;
        }
    }
    st.live -= 1;
}

/// Takes out of `queue` the oldest task of the transfers with the fewest
/// tasks running, counted as running from now on.
fn next(queue: &mut VecDeque<Queued>) -> Option<Queued> {
    let (i, _) = queue
        .iter()
        .enumerate()
        .min_by_key(|(i, q)| (q.running.load(Ordering::SeqCst), *i))?;
    let queued = queue.remove(i)?;
    queued.running.fetch_add(1, Ordering::SeqCst);
    Some(queued)
}

/// One transfer's share of the engine: at most `inflight` of its tasks are
/// queued or running at once.
pub(crate) struct Lane {
    take: Sender<()>,
    give_back: Receiver<()>,
    /// Its tasks running on a worker now.
    running: Arc<AtomicUsize>,
}

/// A lane's place held by a running task; given back when dropped.
struct Place(Receiver<()>);

impl Drop for Place {
    fn drop(&mut self) {
        let _ = self.0.try_recv();
    }
}

impl Lane {
    /// A lane of `inflight` places.
    pub fn new(inflight: usize) -> Lane {
        let (take, give_back) = crossbeam_channel::bounded(inflight.max(1));
        Lane {
            take,
            give_back,
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `task` on `engine` once fewer than `inflight` of this lane's
    /// tasks are queued or running. `Ok(false)` when `stop` fires (or is
    /// dropped) first: `task` is then dropped, not run.
    pub fn run(
        &self,
        engine: &Engine,
        stop: &Receiver<()>,
        task: impl FnOnce() + Send + 'static,
    ) -> Result<bool> {
        select! {
            send(self.take, ()) -> taken => if taken.is_err() { return Ok(false) },
            recv(stop) -> _ => return Ok(false),
        }
        let place = Place(self.give_back.clone());
        engine.run(
            &self.running,
            Box::new(move || {
                // Given back when the task ends, also by a panic.
                let _place = place;
                task();
            }),
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        f()
    }

    #[test]
    fn threads_start_as_needed_up_to_the_maximum_and_end_when_idle() {
        let engine = Engine::with_idle_time(3, Duration::from_millis(200));
        let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
        let running = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let (rx, running, done) = (release_rx.clone(), running.clone(), done.clone());
            engine
                .run(
                    &Arc::default(),
                    Box::new(move || {
                        running.fetch_add(1, Ordering::SeqCst);
                        let _ = rx.recv();
                        running.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }),
                )
                .unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || running
            .load(Ordering::SeqCst)
            == 3));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(running.load(Ordering::SeqCst), 3, "never more than max run");
        assert_eq!(engine.threads(), (3, 3));
        drop(release_tx);
        assert!(wait_until(Duration::from_secs(5), || done
            .load(Ordering::SeqCst)
            == 10));
        // Idle threads end after the idle time.
        assert!(wait_until(Duration::from_secs(5), || engine.threads().0 == 0));
        assert_eq!(engine.threads().1, 3);
    }

    #[test]
    fn a_panicking_task_does_not_take_its_thread_down() {
        let engine = Engine::with_idle_time(1, Duration::from_secs(5));
        let running = Arc::default();
        engine.run(&running, Box::new(|| panic!("boom"))).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        engine
            .run(&running, Box::new(move || tx.send(7).unwrap()))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        assert_eq!(engine.threads().1, 1, "the same thread ran both");
    }

    #[test]
    fn a_free_worker_takes_a_task_of_the_transfer_with_the_fewest_running() {
        let busy = Arc::new(AtomicUsize::new(2));
        let idle = Arc::new(AtomicUsize::new(0));
        let task = |r: &Arc<AtomicUsize>, tag: u8, log: &Arc<Mutex<Vec<u8>>>| {
            let log = Arc::clone(log);
            Queued {
                running: Arc::clone(r),
                task: Box::new(move || log.lock().push(tag)),
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut queue: VecDeque<Queued> = VecDeque::new();
        for tag in [1, 2, 3] {
            queue.push_back(task(&busy, tag, &log));
        }
        queue.push_back(task(&idle, 10, &log));
        queue.push_back(task(&idle, 11, &log));
        // The transfer with none running goes first, though it came last;
        // then, both having two running, the oldest task.
        for _ in 0..3 {
            (next(&mut queue).unwrap().task)();
        }
        assert_eq!(*log.lock(), vec![10, 11, 1]);
        assert_eq!(idle.load(Ordering::SeqCst), 2);
        assert_eq!(busy.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_lane_caps_its_tasks_and_a_stop_ends_its_wait() {
        let engine = Engine::with_idle_time(8, Duration::from_secs(5));
        let lane = Arc::new(Lane::new(2));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..12 {
            let (running, peak) = (running.clone(), peak.clone());
            let ran = lane
                .run(&engine, &stop_rx, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(10));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .unwrap();
            assert!(ran);
        }
        assert!(wait_until(Duration::from_secs(5), || running
            .load(Ordering::SeqCst)
            == 0));
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        // With both places taken, a stop ends the wait without running.
        let (hold_tx, hold_rx) = crossbeam_channel::unbounded::<()>();
        for _ in 0..2 {
            let rx = hold_rx.clone();
            lane.run(&engine, &stop_rx, move || {
                let _ = rx.recv();
            })
            .unwrap();
        }
        drop(stop_tx);
        assert!(!lane.run(&engine, &stop_rx, || panic!("not run")).unwrap());
        drop(hold_tx);
    }
}
