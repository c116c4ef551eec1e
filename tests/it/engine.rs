//! One client shared by many threads: its transfers share one memory limit
//! (slabs), one pool of part connections, and neither starves nor
//! deadlocks the others; a failing transfer disturbs nobody.

use crate::support;

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use s3pump::{CancelHandle, Client, DownloadArgs, ErrorKind, PutObjectArgs};
use support::harness::{Harness, data};
use support::{Relay, RelayConfig};

const MIB: usize = 1 << 20;

/// Runs `jobs` on their own threads and waits for all of them, failing
/// (instead of hanging the test run) when they take longer than `limit`.
fn run_all<T: Send + 'static>(jobs: Vec<Box<dyn FnOnce() -> T + Send>>, limit: Duration) -> Vec<T> {
    let (tx, rx) = mpsc::channel();
    let n = jobs.len();
    for (i, job) in jobs.into_iter().enumerate() {
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send((i, job()));
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (i, v) = rx
            .recv_timeout(limit)
            .expect("a transfer hung: not every thread finished in time");
        out[i] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// A reader that fails after `ok` bytes.
struct FailAfter {
    data: Vec<u8>,
    pos: usize,
    ok: usize,
}

impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.ok {
            return Err(std::io::Error::other("the source broke"));
        }
        let n = buf
            .len()
            .min(self.ok - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn thirty_two_threads_share_the_memory_limit_and_a_failure_disturbs_nobody() {
    let h = Arc::new(Harness::new());
    let Some(server) = h.local() else { return };
    const LIMIT: u64 = 40 << 20;
    let client = h
        .builder()
        .memory_limit(LIMIT)
        .max_connections(8)
        .build()
        .unwrap();
    // Objects to download, put by another client.
    let sources: Vec<Vec<u8>> = (0..8)
        .map(|i| data(9 * MIB + i * 4321, 100 + i as u64))
        .collect();
    for (i, body) in sources.iter().enumerate() {
        h.client()
            .put_object_bytes(
                &h.bucket,
                &h.key(&format!("src-{i}")),
                body,
                &PutObjectArgs::new(),
            )
            .unwrap();
    }
    let sources = Arc::new(sources);
    let mut jobs: Vec<Box<dyn FnOnce() -> Result<String, String> + Send>> = Vec::new();
    for i in 0..22usize {
        let (client, h) = (client.clone(), Arc::clone(&h));
        jobs.push(Box::new(move || {
            let key = h.key(&format!("up-{i}"));
            let body = data(12 * MIB + i * 777, i as u64);
            let args = PutObjectArgs::new()
                .part_size(5 << 20)
                .max_inflight_parts(4);
            client
                .put_object(&h.bucket, &key, &body[..], args)
                .map_err(|e| format!("{key}: {e}"))?;
            Ok(key)
        }));
    }
    for i in 0..8usize {
        let (client, h, sources) = (client.clone(), Arc::clone(&h), Arc::clone(&sources));
        jobs.push(Box::new(move || {
            let key = h.key(&format!("src-{i}"));
            let mut got = Vec::new();
            let args = DownloadArgs::new().part_size(2 << 20).max_inflight_parts(4);
            client
                .download(&h.bucket, &key, &mut got, args)
                .map_err(|e| format!("{key}: {e}"))?;
            if got != sources[i] {
                return Err(format!("{key}: downloaded bytes differ"));
            }
            Ok(key)
        }));
    }
    // Two that fail: a source that breaks mid-way, and one cancelled by its
    // progress callback after its first part.
    {
        let (client, h) = (client.clone(), Arc::clone(&h));
        jobs.push(Box::new(move || {
            let source = FailAfter {
                data: data(20 * MIB, 7),
                pos: 0,
                ok: 11 * MIB,
            };
            let args = PutObjectArgs::new().part_size(5 << 20);
            match client.put_object(&h.bucket, &h.key("broken"), source, args) {
                Err(e) if e.kind() == ErrorKind::Io => Ok("broken".into()),
                other => Err(format!("the broken source: {other:?}")),
            }
        }));
    }
    {
        let (client, h) = (client.clone(), Arc::clone(&h));
        jobs.push(Box::new(move || {
            let body = data(20 * MIB, 8);
            let args = PutObjectArgs::new()
                .part_size(5 << 20)
                .on_progress(|_| false);
            match client.put_object(&h.bucket, &h.key("cancelled"), &body[..], args) {
                Err(e) if e.is_cancelled() => Ok("cancelled".into()),
                other => Err(format!("the cancelled upload: {other:?}")),
            }
        }));
    }
    assert_eq!(jobs.len(), 32);
    let results = run_all(jobs, Duration::from_secs(240));
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    for i in 0..22usize {
        let key = h.key(&format!("up-{i}"));
        let body = data(12 * MIB + i * 777, i as u64);
        assert!(
            server.object_bytes(&h.bucket, &key).unwrap() == body,
            "{key} differs"
        );
    }
    assert!(server.object_bytes(&h.bucket, &h.key("broken")).is_none());
    assert!(
        server
            .object_bytes(&h.bucket, &h.key("cancelled"))
            .is_none()
    );
    assert!(
        server.open_uploads().is_empty(),
        "{:?}",
        server.open_uploads()
    );
    let slabs = client.slab_stats();
    assert!(
        slabs.peak_mapped_bytes <= LIMIT,
        "mapped {} bytes at the peak, limit {LIMIT}",
        slabs.peak_mapped_bytes
    );
    assert_eq!(slabs.reserved_bytes, 0, "every reservation was given back");
    let conns = client.connection_stats();
    assert!(conns.peak_in_use <= 8, "{conns:?}");
    assert_eq!(conns.in_use, 0, "{conns:?}");
    // The parts of all 32 transfers (up to 128 asked in flight) ran on the
    // client's workers, never more than max_connections threads.
    assert!(
        (1..=8).contains(&conns.peak_workers),
        "{} part worker threads at the peak",
        conns.peak_workers
    );
    // Slabs were reused: far fewer mapped than parts sent.
    assert!(slabs.slabs_created < 60, "{slabs:?}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn connections_are_reused_across_transfers_and_capped() {
    let h = Arc::new(Harness::new());
    let Some(server) = h.local() else { return };
    // The relay counts the TCP connections the client opens.
    let relay = Arc::new(Relay::start(server.addr(), RelayConfig::default()));
    let client = h
        .builder()
        .endpoint(relay.endpoint())
        .max_connections(4)
        .build()
        .unwrap();
    let mut jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>> = Vec::new();
    for t in 0..8usize {
        let (client, h) = (client.clone(), Arc::clone(&h));
        jobs.push(Box::new(move || {
            // Multipart uploads: their parts go through the client's pool.
            for i in 0..5 {
                let body = data(5 * MIB + 1 + t, (t * 10 + i) as u64);
                let args = PutObjectArgs::new()
                    .part_size(5 << 20)
                    .max_inflight_parts(2);
                client
                    .put_object(&h.bucket, &h.key(&format!("mp-{t}-{i}")), &body[..], args)
                    .map_err(|e| e.to_string())?;
            }
            // Small objects: one PutObject each, on the shared connection.
            for i in 0..100 {
                let body = data(4096, (t * 1000 + i) as u64);
                client
                    .put_object(
                        &h.bucket,
                        &h.key(&format!("small-{t}-{i}")),
                        &body[..],
                        PutObjectArgs::new(),
                    )
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }));
    }
    for r in run_all(jobs, Duration::from_secs(240)) {
        r.unwrap();
    }
    let stats = client.connection_stats();
    assert!(stats.opened <= 4 && stats.peak_in_use <= 4, "{stats:?}");
    // 40 multipart uploads (80 parts) and 800 small objects: at most 4 part
    // connections, each with at most two sockets (the direct sender's for
    // the 5 MiB parts, ureq's for the few-byte last parts), and one shared
    // connection per calling thread. Without reuse that would be hundreds.
    let opened = relay.connections();
    assert!(
        opened <= 2 * 4 + 8,
        "{opened} TCP connections for 880 objects' requests"
    );
    assert!(server.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn transfers_asking_far_more_than_the_limit_all_finish() {
    let h = Arc::new(Harness::new());
    if h.local().is_none() {
        return;
    }
    // 24 MiB for transfers that would each like 17 slabs of 5-7 MiB.
    let client = h.builder().memory_limit(24 << 20).build().unwrap();
    let download_src = data(15 * MIB, 99);
    h.client()
        .put_object_bytes(
            &h.bucket,
            &h.key("dl"),
            &download_src,
            &PutObjectArgs::new(),
        )
        .unwrap();
    let download_src = Arc::new(download_src);
    let mut jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>> = Vec::new();
    for i in 0..9usize {
        let (client, h) = (client.clone(), Arc::clone(&h));
        jobs.push(Box::new(move || {
            let part = (5 + i % 3) << 20;
            let body = data(16 * MIB + i, i as u64);
            let args = PutObjectArgs::new()
                .part_size(part as u64)
                .max_inflight_parts(16);
            let out = client
                .put_object(&h.bucket, &h.key(&format!("d-{i}")), &body[..], args)
                .map_err(|e| e.to_string())?;
            (out.bytes == body.len() as u64)
                .then_some(())
                .ok_or_else(|| "short".to_string())
        }));
    }
    for i in 0..3usize {
        let (client, h, src) = (client.clone(), Arc::clone(&h), Arc::clone(&download_src));
        jobs.push(Box::new(move || {
            let mut got = Vec::new();
            let args = DownloadArgs::new()
                .part_size((3 + i as u64) << 20)
                .max_inflight_parts(16);
            client
                .download(&h.bucket, &h.key("dl"), &mut got, args)
                .map_err(|e| e.to_string())?;
            (got == *src)
                .then_some(())
                .ok_or_else(|| "differs".to_string())
        }));
    }
    for r in run_all(jobs, Duration::from_secs(240)) {
        r.unwrap();
    }
    assert!(client.slab_stats().peak_mapped_bytes <= 24 << 20);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn dropping_the_last_clone_elsewhere_mid_transfer_neither_hangs_nor_leaves_an_upload() {
    let h = Arc::new(Harness::new());
    let Some(server) = h.local() else { return };
    server.set_part_delay(Duration::from_millis(200));
    let client: Client = h.client();
    let cancel = CancelHandle::new();
    let (started_tx, started_rx) = mpsc::channel();
    let worker = {
        let (client, h, cancel) = (client.clone(), Arc::clone(&h), cancel.clone());
        thread::spawn(move || {
            let body = data(40 * MIB, 5);
            let started = std::sync::Mutex::new(Some(started_tx));
            let args = PutObjectArgs::new()
                .part_size(5 << 20)
                .max_inflight_parts(2)
                .cancel_handle(&cancel)
                .on_progress(move |_| {
                    if let Some(tx) = started.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    true
                });
            client.put_object(&h.bucket, &h.key("dropped"), &body[..], args)
        })
    };
    started_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the upload started");
    // The caller's clone goes away while the transfer runs on another.
    drop(client);
    cancel.cancel();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(worker.join());
    });
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no hang")
        .expect("no panic");
    assert!(result.unwrap_err().is_cancelled());
    assert!(server.open_uploads().is_empty(), "the upload was aborted");
    assert!(server.object_bytes(&h.bucket, &h.key("dropped")).is_none());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_transfer_started_while_another_fills_every_worker_gets_the_next_one_free() {
    let h = Arc::new(Harness::new());
    let Some(server) = h.local() else { return };
    // Each connection carries 20 MB/s: a 5 MiB part takes about 0.26 s.
    let relay = Arc::new(Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: Some(20_000_000),
            ..RelayConfig::default()
        },
    ));
    let client = h
        .builder()
        .endpoint(relay.endpoint())
        .max_connections(2)
        .build()
        .unwrap();
    // The big upload asks for 8 parts in flight on 2 workers: it always has
    // 6 queued behind the 2 running.
    let big_body = Arc::new(data(80 * MIB, 1));
    let big_done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let big = {
        let (client, h, body, done) = (
            client.clone(),
            Arc::clone(&h),
            Arc::clone(&big_body),
            Arc::clone(&big_done),
        );
        thread::spawn(move || {
            let args = PutObjectArgs::new()
                .part_size(5 << 20)
                .max_inflight_parts(8)
                .on_progress(move |p| {
                    done.store(p.bytes_sent, std::sync::atomic::Ordering::SeqCst);
                    true
                });
            client.put_object(&h.bucket, &h.key("big"), &body[..], args)
        })
    };
    // Once the big one's parts are on the wire, a small one starts.
    let start = std::time::Instant::now();
    while client.connection_stats().in_use < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the big upload never started"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let small_body = data(10 * MIB, 2);
    client
        .put_object(
            &h.bucket,
            &h.key("small"),
            &small_body[..],
            PutObjectArgs::new().part_size(5 << 20),
        )
        .unwrap();
    let big_then = big_done.load(std::sync::atomic::Ordering::SeqCst);
    big.join().unwrap().unwrap();
    // Its two parts took turns with the big one's: the big one had sent
    // well under half of its 80 MiB when the small one was done. Behind all
    // of the big one's queued parts (first come, first served), it would
    // have waited for at least 8 of them (40 MiB).
    assert!(
        big_then < 40 * MIB as u64,
        "the big upload had sent {big_then} bytes by the time the small one was done"
    );
    assert!(server.object_bytes(&h.bucket, &h.key("small")).unwrap() == small_body);
    assert!(server.object_bytes(&h.bucket, &h.key("big")).unwrap() == *big_body);
    assert!(server.open_uploads().is_empty());
}
