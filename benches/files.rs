//! File upload (`upload_file`) and download (`download_to_file`) behind the
//! throttling relay, N = 1 and N = 8 in one run:
//! `cargo bench --bench files`.
//!
//! The in-process S3 server (s3s-fs) sits behind a loopback relay that caps
//! each connection at 20 MB/s with 20 ms of latency each way. A generated
//! file (1 GiB; `S3PUMP_BENCH_FILE_MIB` changes it) is uploaded and
//! downloaded with 1 and 8 parts in flight; every object's ETag and every
//! downloaded file's bytes are checked. `S3PUMP_BENCH_MARKDOWN=PATH` also
//! appends the table as Markdown; `S3PUMP_BENCH` without `files` skips it.
//!
//! Section `files-local` (`S3PUMP_BENCH=files-local`, also run with
//! `files`): `download_to_file` without the relay, from the in-process
//! server over http and over https (a TLS terminator in this process), 8
//! MiB ranges, N = 8. Each download runs in a child process (this binary
//! with `S3PUMP_BENCH_ROLE=download`), so the CPU time (getrusage user+sys)
//! and peak RSS are the client's alone; of `S3PUMP_BENCH_REPS` runs
//! (default 3), the shortest time and the least CPU; every downloaded file
//! is compared with the source. `S3PUMP_BENCH_AGAINST=BINARY` (this bench
//! built from another commit) runs that build's download child at the same
//! time as each of this one's, and prints both and their CPU ratio; with
//! `S3PUMP_BENCH_ALTERNATE=1` the two run one after the other (which goes
//! first alternates), for a quiet machine.
//!
//! Section `sendfile` (`S3PUMP_BENCH=sendfile`, also run with `files`): `upload_file`
//! of the same file with no relay, to the sink S3 server of
//! tests/support/sink.rs in a separate process (it discards bodies; over
//! https behind a TLS terminator in this process), by the client in a child
//! process of its own, so that getrusage counts the client's CPU only: the
//! file path (sendfile over http, read as it is encrypted over https)
//! against the pread/slab path (the child turns the file path off with the
//! hidden `s3pump::bench::set_sendfile` when it is given
//! `S3PUMP_BENCH_SLAB=1`). 8 MiB parts, N = 8,
//! `UNSIGNED-PAYLOAD` + CRC64NVME and signed SHA-256; the fastest of
//! `S3PUMP_BENCH_REPS` (default 3) runs. The sink checks nothing, so each
//! path also uploads the file once to the in-process s3s-fs server, over
//! http and over https, and the multipart ETag is checked.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use s3pump::{Client, Credentials, DownloadArgs, PayloadSigning, PutObjectArgs};
use support::harness::{data, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};
use support::{Relay, RelayConfig};

const PART: u64 = 8 << 20;

const ROLE: &str = "S3PUMP_BENCH_ROLE";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var(ROLE).as_deref() {
        Ok("download") => return role_download(),
        Ok("sink") => role_sink(),
        Ok("upload-client") => return role_upload_client(),
        Ok(other) => return Err(format!("unknown {ROLE} {other:?}").into()),
        Err(_) => {}
    }
    // Runs unless `S3PUMP_BENCH` names other sections only.
    let sections = std::env::var("S3PUMP_BENCH");
    let wants = |name: &str| {
        sections
            .as_ref()
            .map_or(true, |v| v.split(',').any(|s| s == name || s == "files"))
    };
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if wants("files") {
        relayed()?;
    }
    if wants("files-local") {
        local()?;
    }
    if wants("sendfile") {
        sendfile(file_mib())?;
    }
    Ok(())
}

/// `upload_file` and `download_to_file` behind the relay, N = 1 and 8.
fn relayed() -> Result<(), Box<dyn std::error::Error>> {
    let mib = file_mib();
    let server = TestServer::start();
    server.create_bucket("bench");
    let relay = Relay::start(
        server.addr(),
        RelayConfig {
            rate_bytes_per_sec: Some(20_000_000),
            delay: Duration::from_millis(20),
        },
    );
    let client = Client::builder()
        .endpoint(relay.endpoint())
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .build()?;

    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.bin");
    let body = data(mib << 20, 7);
    std::fs::write(&src, &body)?;
    let etag = multipart_etag(&body, PART as usize);

    let mut rows = Vec::new();
    let mut base = (0.0, 0.0);
    println!(
        "files: {mib} MiB, {} MiB parts, relay 20 MB/s + 20 ms per connection",
        PART >> 20
    );
    println!(
        "{:<10} {:>3} {:>9} {:>9} {:>9}  check",
        "op", "N", "seconds", "MB/s", "speed-up"
    );
    for n in [1usize, 8] {
        let key = format!("file-{n}");
        let started = Instant::now();
        let out = client.upload_file(
            "bench",
            &key,
            &src,
            PutObjectArgs::new()
                .part_size(PART)
                .max_inflight_parts(n)
                .payload_signing(PayloadSigning::Unsigned),
        )?;
        let up = started.elapsed().as_secs_f64();
        if out.etag != etag {
            return Err(format!("upload N={n}: ETag {} expected {etag}", out.etag).into());
        }

        let dest = dir.path().join(format!("copy-{n}.bin"));
        let started = Instant::now();
        client.download_to_file(
            "bench",
            &key,
            &dest,
            DownloadArgs::new().part_size(PART).max_inflight_parts(n),
        )?;
        let down = started.elapsed().as_secs_f64();
        if std::fs::read(&dest)? != body {
            return Err(format!("download N={n}: bytes differ").into());
        }
        std::fs::remove_file(&dest)?;
        if n == 1 {
            base = (up, down);
        }
        for (op, secs, base) in [("upload", up, base.0), ("download", down, base.1)] {
            let mbps = body.len() as f64 / secs / 1e6;
            println!(
                "{op:<10} {n:>3} {secs:>9.2} {mbps:>9.1} {:>8.2}×  identical",
                base / secs
            );
            rows.push(format!(
                "| {op} | {n} | {secs:.2} | {mbps:.1} | {:.2}× |",
                base / secs
            ));
        }
    }
    append_markdown("| op | N | seconds | MB/s | speed-up over N = 1 |", &rows)?;
    Ok(())
}

/// The size of the files, in MiB.
fn file_mib() -> usize {
    std::env::var("S3PUMP_BENCH_FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// `download_to_file` from the in-process server without relay, http and
/// https, N = 8, each in a child process.
fn local() -> Result<(), Box<dyn std::error::Error>> {
    let mib = file_mib();
    let n = 8;
    let reps: usize = std::env::var("S3PUMP_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let server = TestServer::start();
    server.create_bucket("bench");
    let ca = support::tls_front::TestCa::new("s3pump files bench CA");
    let cert = ca.issue(&["127.0.0.1"], support::tls_front::Validity::Current);
    let front = support::tls_front::TlsFront::start(server.addr(), &cert);
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;
    let body = data(mib << 20, 11);
    let client = Client::builder()
        .endpoint(server.endpoint())
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .build()?;
    client.put_object(
        "bench",
        "local",
        &body[..],
        PutObjectArgs::new()
            .part_size(PART)
            .payload_signing(PayloadSigning::Unsigned),
    )?;
    println!(
        "\nfiles-local: download_to_file of {mib} MiB, {} MiB ranges, N = {n}, \
         in-process server (TLS terminator in the bench process), client in a child process",
        PART >> 20
    );
    println!(
        "{:<8} {:>9} {:>9} {:>10} {:>13}  check",
        "scheme", "seconds", "MB/s", "CPU s/GiB", "peak RSS MiB"
    );
    let mut rows = Vec::new();
    for (scheme, endpoint) in [
        ("http", server.endpoint()),
        ("https", front.endpoint("127.0.0.1")),
    ] {
        let dest = dir.path().join(format!("copy-{scheme}.bin"));
        let against = std::env::var_os("S3PUMP_BENCH_AGAINST").map(std::path::PathBuf::from);
        let alternate = std::env::var_os("S3PUMP_BENCH_ALTERNATE").is_some();
        let mut runs: Vec<(f64, f64, u64)> = Vec::new();
        let mut against_runs: Vec<(f64, f64, u64)> = Vec::new();
        for _ in 0..reps {
            let spawn = |exe: &std::path::Path, dest: &std::path::Path| {
                Command::new(exe)
                    .env("S3PUMP_BENCH_ROLE", "download")
                    .env("S3PUMP_BENCH_ENDPOINT", &endpoint)
                    .env("S3PUMP_BENCH_CA", &ca_file)
                    .env("S3PUMP_BENCH_DEST", dest)
                    .env("S3PUMP_BENCH_INFLIGHT", n.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            };
            // With `S3PUMP_BENCH_AGAINST=BINARY` (this bench built from
            // another commit), that build's child runs at the same time:
            // both see the same load, so their ratio is fair on a loaded
            // machine. With `S3PUMP_BENCH_ALTERNATE=1` the two run one
            // after the other instead (which goes first alternates): on a
            // quiet machine, each then has the cores and caches to itself.
            let other_dest = dir.path().join(format!("against-{scheme}.bin"));
            let this_exe = std::env::current_exe()?;
            match &against {
                Some(exe) if alternate => {
                    let first_this = runs.len().is_multiple_of(2);
                    let (a, b) = if first_this {
                        ((&this_exe, &dest), (exe, &other_dest))
                    } else {
                        ((exe, &other_dest), (&this_exe, &dest))
                    };
                    let ra = child_result(spawn(a.0, a.1)?, a.1, &body)?;
                    let rb = child_result(spawn(b.0, b.1)?, b.1, &body)?;
                    let (this, other) = if first_this { (ra, rb) } else { (rb, ra) };
                    runs.push(this);
                    against_runs.push(other);
                }
                Some(exe) => {
                    let this = spawn(&this_exe, &dest)?;
                    let other = spawn(exe, &other_dest)?;
                    runs.push(child_result(this, &dest, &body)?);
                    against_runs.push(child_result(other, &other_dest, &body)?);
                }
                None => runs.push(child_result(spawn(&this_exe, &dest)?, &dest, &body)?),
            }
        }
        // The fastest run's time, the least CPU of any run (on a loaded
        // machine both only grow), the largest peak RSS.
        let secs = runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let cpu = runs.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let hwm = runs.iter().map(|r| r.2).max().unwrap_or(0);
        let gib = body.len() as f64 / (1u64 << 30) as f64;
        let each: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.2} s {:.3} CPU s/GiB", r.0, r.1 / gib))
            .collect();
        println!("  {scheme} runs: {}", each.join(", "));
        if !against_runs.is_empty() {
            let each: Vec<String> = against_runs
                .iter()
                .zip(&runs)
                .map(|(a, r)| {
                    format!(
                        "{:.2} s {:.3} CPU s/GiB (this/against {:.2})",
                        a.0,
                        a.1 / gib,
                        r.1 / a.1
                    )
                })
                .collect();
            let when = if alternate {
                "alternating"
            } else {
                "at the same time"
            };
            println!("  {scheme} against, {when}: {}", each.join(", "));
        }
        let mbps = body.len() as f64 / secs / 1e6;
        let row = (scheme, secs, mbps, cpu / gib, hwm as f64 / 1024.0);
        println!(
            "{:<8} {:>9.2} {:>9.0} {:>10.3} {:>13.0}  identical",
            row.0, row.1, row.2, row.3, row.4
        );
        rows.push(format!(
            "| {} | {n} | {:.2} | {:.0} | {:.3} | {:.0} |",
            row.0, row.1, row.2, row.3, row.4
        ));
    }
    append_markdown(
        "| scheme | N | seconds | MB/s | CPU s/GiB | peak RSS MiB |",
        &rows,
    )?;
    Ok(())
}

/// Waits for a `download` child; its time, CPU and peak RSS, once the
/// file it wrote is checked against `body` (and removed).
fn child_result(
    child: std::process::Child,
    dest: &std::path::Path,
    body: &[u8],
) -> Result<(f64, f64, u64), Box<dyn std::error::Error>> {
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "download child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no RESULT from the child: {stdout}"))?;
    let v: Vec<f64> = result
        .split(' ')
        .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
        .collect();
    if std::fs::read(dest)? != body {
        return Err(format!("{}: bytes differ", dest.display()).into());
    }
    std::fs::remove_file(dest)?;
    Ok((v[0], v[1] + v[2], v[3] as u64))
}

/// The child of `files-local`: one `download_to_file`, measured; prints
/// `RESULT secs= user= sys= hwm_kib=`.
fn role_download() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let n: usize = var("S3PUMP_BENCH_INFLIGHT")?.parse()?;
    let client = Client::builder()
        .endpoint(var("S3PUMP_BENCH_ENDPOINT")?)
        .region(REGION)
        .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
        .ca_bundle(var("S3PUMP_BENCH_CA")?)
        .build()?;
    let dest = var("S3PUMP_BENCH_DEST")?;
    let (u0, s0) = cpu();
    let started = Instant::now();
    client.download_to_file(
        "bench",
        "local",
        &dest,
        DownloadArgs::new().part_size(PART).max_inflight_parts(n),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let (u1, s1) = cpu();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "RESULT secs={secs} user={} sys={} hwm_kib={hwm}",
        u1 - u0,
        s1 - s0
    );
    Ok(())
}

/// User and system CPU seconds of this process.
fn cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// What one child upload measured.
#[derive(Clone, Copy)]
struct Measured {
    secs: f64,
    user: f64,
    sys: f64,
    bytes: u64,
}

impl Measured {
    fn cpu_per_gib(&self) -> f64 {
        (self.user + self.sys) / (self.bytes as f64 / (1u64 << 30) as f64)
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// The sink S3 server (tests/support/sink.rs), in this child process.
fn role_sink() -> ! {
    // Exits when the parent closes our stdin (or dies).
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    println!("PORT {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    support::run_sink_forever(listener);
}

/// One `upload_file` of `S3PUMP_BENCH_FILE` to `S3PUMP_BENCH_ENDPOINT`,
/// measured; prints `RESULT secs user sys bytes`.
fn role_upload_client() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    if std::env::var("S3PUMP_BENCH_SLAB").is_ok() {
        s3pump::bench::set_sendfile(false);
    }
    let signed = env("S3PUMP_BENCH_MODE")? == "signed";
    let mut builder = Client::builder()
        .endpoint(env("S3PUMP_BENCH_ENDPOINT")?)
        .region(REGION)
        .credentials(Credentials::new("bench", "bench-secret", None));
    if let Ok(ca) = std::env::var("S3PUMP_BENCH_CA") {
        builder = builder.add_root_certificates_pem(&std::fs::read(ca)?);
    }
    let client = builder.build()?;
    let path = env("S3PUMP_BENCH_FILE")?;
    let size = std::fs::metadata(&path)?.len();
    let (u0, s0) = cpu();
    let started = Instant::now();
    let out = client.upload_file(
        "bench",
        "sendfile",
        &path,
        upload_args(signed).max_inflight_parts(8),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let (u1, s1) = cpu();
    if out.bytes != size || out.parts as u64 != size.div_ceil(PART) {
        return Err(format!("sent {} bytes in {} parts", out.bytes, out.parts).into());
    }
    println!("RESULT {secs} {} {} {}", u1 - u0, s1 - s0, out.bytes);
    Ok(())
}

fn upload_args(signed: bool) -> PutObjectArgs {
    let args = PutObjectArgs::new()
        .part_size(PART)
        .checksum(s3pump::ChecksumAlgorithm::Crc64Nvme);
    if signed {
        args.payload_signing(PayloadSigning::Signed)
    } else {
        args.payload_signing(PayloadSigning::Unsigned)
    }
}

fn run_upload_child(endpoint: &str, ca: &Path, file: &Path, slab: bool, signed: bool) -> Measured {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.env(ROLE, "upload-client")
        .env("S3PUMP_BENCH_ENDPOINT", endpoint)
        .env("S3PUMP_BENCH_CA", ca)
        .env("S3PUMP_BENCH_FILE", file)
        .env(
            "S3PUMP_BENCH_MODE",
            if signed { "signed" } else { "unsigned" },
        )
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if slab {
        cmd.env("S3PUMP_BENCH_SLAB", "1");
    }
    let out = cmd.output().expect("run the client child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("the client child printed no RESULT: {stdout}"));
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    Measured {
        secs: v[0],
        user: v[1],
        sys: v[2],
        bytes: v[3] as u64,
    }
}

/// The sink in a child process; killed (its stdin closed) on drop.
struct Sink(Child, u16);

impl Sink {
    fn start() -> Sink {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(ROLE, "sink")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the sink's port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the sink said {line:?}"));
        Sink(child, port)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// upload_file from the file (sendfile over http, read as it is encrypted
/// over https) against the pread/slab path.
fn sendfile(mib: usize) -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::var("S3PUMP_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.bin");
    let body = data(mib << 20, 11);
    std::fs::write(&src, &body)?;
    let etag = multipart_etag(&body, PART as usize);
    drop(body);

    let ca = support::tls_front::TestCa::new("s3pump sendfile bench CA");
    let cert = ca.issue(&["127.0.0.1"], support::tls_front::Validity::Current);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;

    // Both paths make the right object on both schemes (the sink checks
    // nothing).
    let server = TestServer::start();
    server.create_bucket("bench");
    let front = support::tls_front::TlsFront::start(server.addr(), &cert);
    for endpoint in [server.endpoint(), front.endpoint("127.0.0.1")] {
        let client = Client::builder()
            .endpoint(&endpoint)
            .region(REGION)
            .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None))
            .add_root_certificates_pem(ca.pem().as_bytes())
            .build()?;
        for slab in [false, true] {
            s3pump::bench::set_sendfile(!slab);
            let out = client.upload_file(
                "bench",
                "checked",
                &src,
                upload_args(false).max_inflight_parts(8),
            )?;
            if out.etag != etag || (out.slabs == 0) == slab {
                return Err(format!(
                    "{endpoint} slab={slab}: ETag {} ({} slabs), expected {etag}",
                    out.etag, out.slabs
                )
                .into());
            }
        }
    }
    s3pump::bench::set_sendfile(true);
    drop((front, server));

    let sink = Sink::start();
    let sink_addr = std::net::SocketAddr::from(([127, 0, 0, 1], sink.1));
    let sink_front = support::tls_front::TlsFront::start(sink_addr, &cert);
    println!(
        "\nsendfile: upload_file of {mib} MiB to the sink (another process; over https behind a TLS \
         terminator in this process), {} MiB parts, N = 8, best of {reps}",
        PART >> 20
    );
    println!(
        "{:<6} {:<10} {:<9} {:>9} {:>9} {:>11} {:>9}",
        "scheme", "payload", "path", "seconds", "MB/s", "CPU s/GiB", "vs pread"
    );
    let mut rows = Vec::new();
    for (scheme, endpoint) in [
        ("http", format!("http://{sink_addr}")),
        ("https", sink_front.endpoint("127.0.0.1")),
    ] {
        for signed in [false, true] {
            let payload = if signed { "signed" } else { "unsigned" };
            let mut pread = None;
            for slab in [true, false] {
                let best = (0..reps)
                    .map(|_| run_upload_child(&endpoint, &ca_file, &src, slab, signed))
                    .min_by(|a, b| a.secs.total_cmp(&b.secs))
                    .expect("reps >= 1");
                let path = match (slab, scheme) {
                    (true, _) => "pread",
                    (false, "http") => "sendfile",
                    (false, _) => "from file",
                };
                let base = *pread.get_or_insert(best.cpu_per_gib());
                println!(
                    "{scheme:<6} {payload:<10} {path:<9} {:>9.3} {:>9.0} {:>11.3} {:>8.2}×   (user {:.2} s, sys {:.2} s)",
                    best.secs,
                    best.mbps(),
                    best.cpu_per_gib(),
                    best.cpu_per_gib() / base,
                    best.user,
                    best.sys
                );
                rows.push(format!(
                    "| {scheme} | {payload} + CRC64NVME | {path} | {:.3} | {:.0} | {:.3} | {:.2}× |",
                    best.secs,
                    best.mbps(),
                    best.cpu_per_gib(),
                    best.cpu_per_gib() / base
                ));
            }
        }
    }
    append_markdown(
        "| scheme | payload | path | seconds | MB/s | client CPU s/GiB | CPU vs pread |",
        &rows,
    )?;
    Ok(())
}

/// With `S3PUMP_BENCH_MARKDOWN=PATH`, appends a table (`header`, its rule
/// line, `rows`) to that file.
fn append_markdown(header: &str, rows: &[String]) -> std::io::Result<()> {
    let Ok(path) = std::env::var("S3PUMP_BENCH_MARKDOWN") else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let columns = header.matches('|').count().saturating_sub(1);
    writeln!(f, "{header}")?;
    writeln!(f, "|{}", "---|".repeat(columns))?;
    for row in rows {
        writeln!(f, "{row}")?;
    }
    Ok(())
}
