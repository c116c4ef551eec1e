//! Many objects on one client: `cargo bench --bench objects`.
//!
//! The S3 server (the in-process test server, s3s-fs, no relay) runs in a
//! child process, so the CPU time measured here (`getrusage` of this
//! process) is the client's alone.
//!
//! - `many`: 1000 objects of 1 MiB and 100 of 16 MiB, each uploaded with one
//!   `put_object` per object from one thread in a loop, and from 16 threads
//!   sharing one client; then the same objects as files of a directory tree
//!   with `upload_dir`, and back with `download_prefix` (16 objects at
//!   once, the default), beside the floor of a download, writing the same
//!   files with `std::fs::write`: objects/s, MB/s, client CPU s per GiB. Every
//!   uploaded object's ETag is checked (from the reply, or by listing the
//!   tree's prefix), every downloaded file's bytes.
//! - `budget`: 32 concurrent `put_object` of 64 MiB streams on one client
//!   with `memory_limit` 256 MiB, against 4 concurrent ones moving the same
//!   2 GiB: wall time, peak RSS (each run in a fresh child process; the RSS
//!   before the transfers beside it), the pool's peak of mapped slab bytes
//!   and the peak of part worker threads.
//!
//! `S3PUMP_BENCH_SINK=1` runs `many` against the sink S3 server of
//! tests/support/sink.rs instead (nothing stored, ETags not checked, no
//! tree download), so that the client and not s3s-fs is the limit.
//!
//! `S3PUMP_BENCH=many,budget` picks sections (`objects` runs both);
//! `S3PUMP_BENCH_MARKDOWN=PATH` appends the tables as Markdown.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use s3pump::{Client, Credentials, DownloadArgs, PayloadSigning, PutObjectArgs, TreeArgs};
use support::harness::{data, md5_hex, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};

const MIB: usize = 1 << 20;
const ROLE: &str = "S3PUMP_BENCH_ROLE";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => return role_server(),
        Ok("budget") => return role_budget(),
        Ok(other) => panic!("unknown {ROLE} {other:?}"),
        Err(_) => {}
    }
    let sections = std::env::var("S3PUMP_BENCH").unwrap_or_else(|_| "many,budget".into());
    let wants = |s: &str| sections.split(',').any(|x| x == s || x == "objects");
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let mut md = String::new();
    println!("{}", machine());
    if wants("many") {
        many(&mut md)?;
    }
    if wants("budget") {
        budget(&mut md)?;
    }
    if let Ok(path) = std::env::var("S3PUMP_BENCH_MARKDOWN") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(md.as_bytes())?;
    }
    Ok(())
}

fn machine() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `S3PUMP_BENCH_SINK=1`: the server is the sink S3 server of
/// tests/support/sink.rs (stores nothing, checks nothing, fake ETags), so
/// that the client, not s3s-fs, is the limit; uploads only, ETags unchecked.
fn sink_mode() -> bool {
    std::env::var_os("S3PUMP_BENCH_SINK").is_some()
}

/// The server child: prints `PORT n`, serves until its stdin closes.
fn role_server() -> Result<(), Box<dyn std::error::Error>> {
    if sink_mode() {
        // Exits when the parent closes our stdin.
        std::thread::spawn(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
            std::process::exit(0);
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        println!("PORT {}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        support::run_sink_forever(listener);
    }
    let server = TestServer::start();
    server.create_bucket("bench");
    println!("PORT {}", server.addr().port());
    std::io::stdout().flush()?;
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line)? > 0 {}
    Ok(())
}

struct ChildServer {
    child: Child,
    port: u16,
}

impl ChildServer {
    fn start() -> Result<ChildServer, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, "server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .ok_or("the server child did not say its port")?
            .parse()?;
        Ok(ChildServer { child, port })
    }

    fn client(&self) -> Client {
        client_for(self.port, None)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn client_for(port: u16, memory_limit: Option<u64>) -> Client {
    let mut b = Client::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None));
    if let Some(limit) = memory_limit {
        b = b.memory_limit(limit);
    }
    b.build().expect("client")
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn args() -> PutObjectArgs {
    PutObjectArgs::new()
        .part_size(8 << 20)
        .payload_signing(PayloadSigning::Unsigned)
}

fn many(md: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let server = ChildServer::start()?;
    let client = server.client();
    println!(
        "many objects: one client, {} in a child process, unsigned, CRC64NVME",
        if sink_mode() {
            "the sink S3 server"
        } else {
            "s3s-fs"
        }
    );
    println!(
        "{:<32} {:>8} {:>10} {:>9} {:>12}",
        "workload", "threads", "objects/s", "MB/s", "CPU s/GiB"
    );
    md.push_str(
        "| workload | threads | objects/s | MB/s | client CPU s/GiB |\n|---|---|---|---|---|\n",
    );
    for (count, size) in [(1000usize, MIB), (100, 16 * MIB)] {
        let bodies: Arc<Vec<Vec<u8>>> =
            Arc::new((0..8).map(|i| data(size, 1000 + i as u64)).collect());
        let etags: Arc<Vec<String>> = Arc::new(
            bodies
                .iter()
                .map(|b| {
                    if b.len() <= 8 * MIB {
                        format!("\"{}\"", md5_hex(b))
                    } else {
                        multipart_etag(b, 8 * MIB)
                    }
                })
                .collect(),
        );
        for threads in [1usize, 16] {
            let next = Arc::new(AtomicUsize::new(0));
            let cpu = cpu_seconds();
            let started = Instant::now();
            std::thread::scope(|s| -> Result<(), String> {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (client, next, bodies, etags) = (&client, &next, &bodies, &etags);
                        s.spawn(move || -> Result<(), String> {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= count {
                                    return Ok(());
                                }
                                let key = format!("many-{size}-{threads}-{i}");
                                let out = client
                                    .put_object("bench", &key, &bodies[i % 8][..], args())
                                    .map_err(|e| e.to_string())?;
                                if !sink_mode() && out.etag != etags[i % 8] {
                                    return Err(format!("{key}: ETag {}", out.etag));
                                }
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| "a thread panicked".to_string())??;
                }
                Ok(())
            })?;
            let secs = started.elapsed().as_secs_f64();
            let name = format!("{count} × {} MiB, put_object", size / MIB);
            row(md, &name, threads, count, size, secs, cpu_seconds() - cpu);
        }
        tree_rows(md, &client, count, size, &bodies, &etags)?;
    }
    md.push('\n');
    Ok(())
}

/// Prints and records one row of the `many` table.
fn row(
    md: &mut String,
    name: &str,
    threads: usize,
    count: usize,
    size: usize,
    secs: f64,
    cpu: f64,
) {
    let bytes = (count * size) as f64;
    let (ops, mbps, cpu_gib) = (
        count as f64 / secs,
        bytes / secs / 1e6,
        cpu / (bytes / (1u64 << 30) as f64),
    );
    println!("{name:<32} {threads:>8} {ops:>10.0} {mbps:>9.1} {cpu_gib:>12.3}");
    md.push_str(&format!(
        "| {name} | {threads} | {ops:.0} | {mbps:.1} | {cpu_gib:.3} |\n"
    ));
}

/// The same objects as a directory tree: `upload_dir`, then
/// `download_prefix`, with the default 16 objects at once.
fn tree_rows(
    md: &mut String,
    client: &Client,
    count: usize,
    size: usize,
    bodies: &[Vec<u8>],
    etags: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    // Writing the tree here is the floor of any download of it: the same
    // files made in a fresh directory (inode allocation, page cache).
    let cpu = cpu_seconds();
    let started = Instant::now();
    for i in 0..count {
        let sub = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("f{i}")), &bodies[i % 8])?;
    }
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let name = |what: &str| format!("{count} × {} MiB, {what}", size / MIB);
    row(
        md,
        &name("std::fs::write (floor)"),
        1,
        count,
        size,
        secs,
        cpu,
    );
    let prefix = format!("tree-{size}/");
    let tree_args = || {
        TreeArgs::new()
            .put_args(args())
            .download_args(DownloadArgs::new().part_size(8 << 20))
    };

    let cpu = cpu_seconds();
    let started = Instant::now();
    let up = client.upload_dir(&src, "bench", &prefix, tree_args())?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    if !up.is_complete() || up.objects != count as u64 {
        return Err(format!("upload_dir: {up:?}").into());
    }
    if sink_mode() {
        row(md, &name("upload_dir"), 16, count, size, secs, cpu);
        return Ok(());
    }
    for object in client.list_objects("bench", &prefix) {
        let object = object?;
        let i: usize = object.key.rsplit_once("/f").ok_or("a key")?.1.parse()?;
        // s3s-fs lists the MD5 of the whole content, also for an object
        // uploaded in parts (whose ETag it answered Complete with).
        let md5 = format!("\"{}\"", md5_hex(&bodies[i % 8]));
        let listed = object.etag.as_deref();
        if listed != Some(etags[i % 8].as_str()) && listed != Some(md5.as_str()) {
            return Err(format!("{}: ETag {:?}", object.key, object.etag).into());
        }
    }
    row(md, &name("upload_dir"), 16, count, size, secs, cpu);

    let dest = dir.path().join("dest");
    let cpu = cpu_seconds();
    let started = Instant::now();
    let down = client.download_prefix("bench", &prefix, &dest, tree_args())?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    if !down.is_complete() || down.objects != count as u64 {
        return Err(format!("download_prefix: {down:?}").into());
    }
    for i in 0..count {
        let path = dest.join(format!("d{}/f{i}", i % 10));
        if std::fs::read(&path)? != bodies[i % 8] {
            return Err(format!("{} differs", path.display()).into());
        }
    }
    row(md, &name("download_prefix"), 16, count, size, secs, cpu);
    Ok(())
}

/// `left` bytes of `src`, over and over: a stream that cannot seek.
struct Cycle<'a> {
    src: &'a [u8],
    pos: usize,
    left: usize,
}

impl std::io::Read for Cycle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left).min(self.src.len() - self.pos);
        buf[..n].copy_from_slice(&self.src[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.src.len();
        self.left -= n;
        Ok(n)
    }
}

/// The budget child: `S3PUMP_BENCH_PORT`, `S3PUMP_BENCH_CONCURRENCY`;
/// prints `RESULT seconds maxrss_kib peak_mapped_bytes`.
fn role_budget() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("S3PUMP_BENCH_PORT")?.parse()?;
    let concurrency: usize = std::env::var("S3PUMP_BENCH_CONCURRENCY")?.parse()?;
    let total = 32usize * 64 * MIB;
    let each = total / concurrency;
    let client = client_for(port, Some(256 << 20));
    // The source the streams cycle through is the benchmark's own memory,
    // kept small so that the peak RSS is mostly the client's.
    let source = data(4 * MIB, 5);
    let before = rss_kib();
    let started = Instant::now();
    std::thread::scope(|s| -> Result<(), String> {
        let handles: Vec<_> = (0..concurrency)
            .map(|t| {
                let (client, source) = (&client, &source);
                s.spawn(move || -> Result<(), String> {
                    let reader = Cycle {
                        src: source,
                        pos: 0,
                        left: each,
                    };
                    client
                        .put_object(
                            "bench",
                            &format!("budget-{concurrency}-{t}"),
                            reader,
                            args(),
                        )
                        .map(|out| assert_eq!(out.bytes, each as u64))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a thread panicked".to_string())??;
        }
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    // SAFETY: as in cpu_seconds.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    println!(
        "RESULT {secs} {} {} {before} {}",
        u.ru_maxrss,
        client.slab_stats().peak_mapped_bytes,
        client.connection_stats().peak_workers
    );
    Ok(())
}

/// This process's resident memory now, KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn budget(md: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let server = ChildServer::start()?;
    println!("shared budget: 2 GiB in 64 MiB streams, memory_limit 256 MiB, one client");
    println!(
        "{:<12} {:>9} {:>9} {:>12} {:>14} {:>16} {:>8}",
        "concurrent",
        "seconds",
        "MB/s",
        "peak RSS MiB",
        "RSS before MiB",
        "peak slabs MiB",
        "workers"
    );
    md.push_str("| concurrent uploads | seconds | MB/s | peak RSS MiB | RSS before MiB | peak mapped slabs MiB | peak worker threads |\n|---|---|---|---|---|---|---|\n");
    for concurrency in [4usize, 32] {
        let out = Command::new(std::env::current_exe()?)
            .env(ROLE, "budget")
            .env("S3PUMP_BENCH_PORT", server.port.to_string())
            .env("S3PUMP_BENCH_CONCURRENCY", concurrency.to_string())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .ok_or_else(|| {
                format!(
                    "the budget child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let (secs, rss_mib, slabs_mib) = (f[0], f[1] / 1024.0, f[2] / MIB as f64);
        let (before_mib, workers) = (f[3] / 1024.0, f[4]);
        let mbps = (32 * 64 * MIB) as f64 / secs / 1e6;
        println!(
            "{concurrency:<12} {secs:>9.2} {mbps:>9.1} {rss_mib:>12.0} {before_mib:>14.0} {slabs_mib:>16.0} {workers:>8}"
        );
        md.push_str(&format!(
            "| {concurrency} | {secs:.2} | {mbps:.1} | {rss_mib:.0} | {before_mib:.0} | {slabs_mib:.0} | {workers} |\n"
        ));
    }
    md.push('\n');
    Ok(())
}
