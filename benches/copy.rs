//! A 1 GiB server-side copy: `cargo bench --bench copy` (or, with the
//! dependencies already built, `cargo bench --profile dev --bench copy`:
//! the client does no per-byte work in a copy).
//!
//! The S3 server (the in-process test server, s3s-fs) runs in a child
//! process. One 1 GiB object is uploaded, then copied to new keys in turns
//! by `Client::copy_object` (its defaults: 8 MiB parts, 8 in flight) and by
//! `aws s3 cp s3://… s3://…` (s3transfer's managed copy: 8 MiB parts, 10
//! requests at once), `S3PUMP_BENCH_RUNS` times each (default 3): wall
//! time, and the client's CPU (`getrusage` of this process for s3pump, of
//! the finished `aws` child for the AWS CLI). Every copy's size, first and
//! last MiB are checked against the source. Needs `aws` on the PATH.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use s3pump::{Client, CopyObjectArgs, Credentials, GetObjectArgs, PutObjectArgs};
use support::harness::data;
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 1 << 30;
const ROLE: &str = "S3PUMP_BENCH_ROLE";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var(ROLE).as_deref() == Ok("server") {
        let server = TestServer::start();
        server.create_bucket("bench");
        println!("PORT {}", server.addr().port());
        std::io::stdout().flush()?;
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line)? > 0 {}
        return Ok(());
    }
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let runs: usize = std::env::var("S3PUMP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let server = ChildServer::start()?;
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let client = Client::builder()
        .endpoint(&endpoint)
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .build()?;
    let source = data(SIZE as usize, 20);
    client.put_object(
        "bench",
        "src",
        &source[..],
        PutObjectArgs::new().part_size(64 * MIB),
    )?;
    let check = |key: &str| -> Result<(), Box<dyn std::error::Error>> {
        let info = client.head_object("bench", key)?;
        assert_eq!(info.size, SIZE, "{key}");
        for start in [0, SIZE - MIB] {
            let args = GetObjectArgs::new().range(start..start + MIB);
            let (bytes, _) = client.get_object_bytes("bench", key, &args)?;
            let at = start as usize;
            assert!(bytes == source[at..at + MIB as usize], "{key} at {start}");
        }
        Ok(())
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "1 GiB server-side copy, s3s-fs in a child process; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| run | client | parts | wall s | client CPU s |");
    println!("|---|---|---|---|---|");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let key = format!("s3pump-{run}");
        let (cpu, started) = (cpu_seconds(rusage_self()), Instant::now());
        let out = client.copy_object("bench", "src", "bench", &key, &CopyObjectArgs::new())?;
        let (wall, cpu) = (
            started.elapsed().as_secs_f64(),
            cpu_seconds(rusage_self()) - cpu,
        );
        check(&key)?;
        println!(
            "| {run} | s3pump copy_object | {} | {wall:.2} | {cpu:.2} |",
            out.parts
        );
        ours.push(wall);

        let key = format!("aws-{run}");
        let (cpu, started) = (cpu_seconds(rusage_children()), Instant::now());
        let status = Command::new("aws")
            .args(["s3", "cp", "--only-show-errors", "s3://bench/src"])
            .arg(format!("s3://bench/{key}"))
            .args(["--endpoint-url", &endpoint])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .status()?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(rusage_children()) - cpu;
        assert!(status.success(), "aws s3 cp failed: {status}");
        check(&key)?;
        println!("| {run} | aws s3 cp | 128 | {wall:.2} | {cpu:.2} |");
        theirs.push(wall);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "median wall: s3pump {a:.2} s, aws s3 cp {b:.2} s: aws / s3pump = {:.2}",
        b / a
    );
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
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn rusage_self() -> libc::rusage {
    rusage(libc::RUSAGE_SELF)
}

fn rusage_children() -> libc::rusage {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, and a valid `who`.
    unsafe { libc::getrusage(who, &mut u) };
    u
}

/// User and system CPU seconds of a rusage.
fn cpu_seconds(u: libc::rusage) -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
