//! The `s3pump` command: parallel S3 upload and download from the shell.
//!
//! ```text
//! s3pump put SRC s3://BUCKET/KEY [--part-size SIZE] [--max-inflight-parts N]
//!            [--checksum crc64nvme|crc32c|none] [--unsigned-payload]
//!            [--content-type T] [--meta K=V]...
//! s3pump get s3://BUCKET/KEY DEST [--part-size SIZE] [--max-inflight-parts N]
//! common: [--endpoint URL] [--region R] [--path-style] [--rdma-library PATH]
//! ```

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use s3pump::{
    Addressing, ChecksumAlgorithm, Client, DownloadArgs, FfiRdmaProvider, PayloadSigning, Progress,
    PutObjectArgs, RdmaProvider,
};

const USAGE: &str = "usage:
  s3pump put SRC s3://BUCKET/KEY [--part-size SIZE] [--max-inflight-parts N]
             [--checksum crc64nvme|crc32c|none] [--unsigned-payload]
             [--content-type T] [--meta K=V]...
             [--keep-failed-upload] [--resume UPLOAD_ID]
  s3pump get s3://BUCKET/KEY DEST [--part-size SIZE] [--max-inflight-parts N]
             [--no-verify-checksum]
options for both:
  --endpoint URL        S3 endpoint (else AWS_ENDPOINT_URL, else AWS)
  --region R            region (else AWS_REGION, else us-east-1)
  --path-style          path-style addressing (on by default with an endpoint)
  --rdma-library PATH   RDMA provider library (else S3PUMP_RDMA_LIBRARY)
SRC is a file (its parts are read in parallel), or - for standard input (read
as a stream of unknown size). --keep-failed-upload keeps a failed upload on the
server (the error names its id); --resume UPLOAD_ID sends only what it misses.
DEST is a file (written to a temporary file renamed into place when complete),
or - for standard output (written in order; the JSON line then goes to stderr).
SIZE is bytes or a number with KiB, MiB or GiB.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok((line, report_to_stderr)) => {
            if report_to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            let msg = msg.replace('\n', " ");
            eprintln!("s3pump: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command line.
#[derive(Default)]
struct Options {
    positional: Vec<String>,
    endpoint: Option<String>,
    region: Option<String>,
    path_style: bool,
    part_size: Option<u64>,
    max_inflight_parts: Option<usize>,
    checksum: Option<ChecksumAlgorithm>,
    unsigned_payload: bool,
    content_type: Option<String>,
    meta: Vec<(String, String)>,
    rdma_library: Option<String>,
    resume: Option<String>,
    keep_failed_upload: bool,
    no_verify_checksum: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_string()),
            "--endpoint" => o.endpoint = Some(value(arg)?),
            "--region" => o.region = Some(value(arg)?),
            "--path-style" => o.path_style = true,
            "--part-size" => o.part_size = Some(parse_size(&value(arg)?)?),
            "--max-inflight-parts" => {
                let v = value(arg)?;
                o.max_inflight_parts =
                    Some(v.parse().map_err(|_| {
                        format!("--max-inflight-parts: {v:?} is not a whole number")
                    })?);
            }
            "--checksum" => {
                o.checksum = Some(match value(arg)?.as_str() {
                    "crc64nvme" => ChecksumAlgorithm::Crc64Nvme,
                    "crc32c" => ChecksumAlgorithm::Crc32c,
                    "none" => ChecksumAlgorithm::None,
                    other => {
                        return Err(format!(
                            "--checksum: {other:?} is not one of crc64nvme, crc32c, none"
                        ));
                    }
                })
            }
            "--unsigned-payload" => o.unsigned_payload = true,
            "--content-type" => o.content_type = Some(value(arg)?),
            "--meta" => {
                let v = value(arg)?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--meta: {v:?} is not K=V"))?;
                o.meta.push((k.to_string(), val.to_string()));
            }
            "--rdma-library" => o.rdma_library = Some(value(arg)?),
            "--resume" => o.resume = Some(value(arg)?),
            "--keep-failed-upload" => o.keep_failed_upload = true,
            "--no-verify-checksum" => o.no_verify_checksum = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => o.positional.push(arg.clone()),
        }
    }
    Ok(o)
}

/// Parses `1048576`, `5MiB`, `1.5GiB`, `64KiB` (also KB/MB/GB as binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "size {s:?}: unknown unit (use bytes, KiB, MiB or GiB)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is not a number"))?;
    Ok((n * mult as f64).round() as u64)
}

/// Splits `s3://bucket/key`.
fn parse_s3_url(s: &str) -> Result<(String, String), String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{s:?} is not an s3://BUCKET/KEY URL"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("{s:?} has no key: use s3://BUCKET/KEY"))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(format!("{s:?} needs both a bucket and a key"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn client(o: &Options) -> Result<Client, String> {
    let mut b = s3pump::ClientBuilder::from_env();
    if let Some(e) = &o.endpoint {
        b = b.endpoint(e);
    }
    if let Some(r) = &o.region {
        b = b.region(r);
    }
    if o.path_style {
        b = b.addressing(Addressing::PathStyle);
    }
    b.build().map_err(|e| e.to_string())
}

/// The RDMA provider from `--rdma-library`, else `S3PUMP_RDMA_LIBRARY`.
fn rdma_provider(o: &Options) -> Result<Option<Arc<dyn RdmaProvider>>, String> {
    let provider = FfiRdmaProvider::from_path_or_env(o.rdma_library.as_deref().map(Path::new))
        .map_err(|e| e.to_string())?;
    Ok(provider.map(|p| Arc::new(p) as Arc<dyn RdmaProvider>))
}

/// Runs the command; returns its JSON report and whether the report goes to
/// stderr (after a download to standard output, so that it does not mix with
/// the object's bytes).
fn run(args: &[String]) -> Result<(String, bool), String> {
    let (cmd, rest) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    let o = parse(rest)?;
    match cmd.as_str() {
        "put" => put(&o).map(|line| (line, false)),
        "get" => get(&o).map(|line| (line, o.positional.get(1).is_some_and(|d| d == "-"))),
        "-h" | "--help" | "help" => Err(USAGE.to_string()),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn put(o: &Options) -> Result<String, String> {
    let [src, url] = o.positional.as_slice() else {
        return Err(format!("put takes SRC and s3://BUCKET/KEY\n{USAGE}"));
    };
    let (bucket, key) = parse_s3_url(url)?;
    let client = client(o)?;
    let mut args = PutObjectArgs::new();
    if let Some(ps) = o.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = o.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(c) = o.checksum {
        args = args.checksum(c);
    }
    args = args.payload_signing(if o.unsigned_payload {
        PayloadSigning::Unsigned
    } else {
        PayloadSigning::Signed
    });
    if let Some(ct) = &o.content_type {
        args = args.content_type(ct);
    }
    for (k, v) in &o.meta {
        args = args.metadata(k, v);
    }
    if let Some(provider) = rdma_provider(o)? {
        args = args.rdma(provider);
    }
    if std::io::stderr().is_terminal() {
        args = args.on_progress(progress_bar());
    }
    let started = Instant::now();
    args = args.keep_failed_upload(o.keep_failed_upload);
    let out = match (src.as_str(), &o.resume) {
        ("-", Some(_)) => return Err("--resume needs a file, not standard input".into()),
        ("-", None) => client.put_object(&bucket, &key, std::io::stdin(), args),
        (path, Some(id)) => client.resume_upload_file(&bucket, &key, path, id, args),
        (path, None) => {
            let meta = std::fs::metadata(path).map_err(|e| format!("cannot open {path}: {e}"))?;
            if meta.is_file() {
                client.upload_file(&bucket, &key, path, args)
            } else {
                // A pipe or device: read it as a stream.
                let file =
                    std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
                client.put_object(&bucket, &key, file, args)
            }
        }
    }
    .map_err(|e| format!("{url}: {e}"))?;
    finish_progress();
    Ok(json_line(
        &bucket,
        &key,
        &out.etag,
        out.parts.into(),
        out.bytes,
        started,
    ))
}

fn get(o: &Options) -> Result<String, String> {
    let [url, dest] = o.positional.as_slice() else {
        return Err(format!("get takes s3://BUCKET/KEY and DEST\n{USAGE}"));
    };
    let (bucket, key) = parse_s3_url(url)?;
    let client = client(o)?;
    let mut args = DownloadArgs::new().verify_checksum(!o.no_verify_checksum);
    if let Some(ps) = o.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = o.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(provider) = rdma_provider(o)? {
        args = args.rdma(provider);
    }
    if std::io::stderr().is_terminal() {
        args = args.on_progress(progress_bar());
    }
    let started = Instant::now();
    let out = if dest == "-" {
        client.download(&bucket, &key, &mut std::io::stdout().lock(), args)
    } else {
        client.download_to_file(&bucket, &key, dest, args)
    }
    .map_err(|e| format!("{url}: {e}"))?;
    finish_progress();
    Ok(json_line(
        &bucket, &key, &out.etag, out.parts, out.size, started,
    ))
}

fn progress_bar() -> impl FnMut(Progress) -> bool + Send + 'static {
    let started = Instant::now();
    move |p: Progress| {
        let mib = p.bytes_sent as f64 / (1 << 20) as f64;
        let rate = mib / started.elapsed().as_secs_f64().max(1e-6);
        match p.total {
            Some(t) if t > 0 => {
                let frac = p.bytes_sent as f64 / t as f64;
                let filled = (frac * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:5.1}% {mib:.0} MiB {rate:.0} MiB/s ",
                    "#".repeat(filled),
                    " ".repeat(30 - filled.min(30)),
                    frac * 100.0
                );
            }
            _ => eprint!("\r{mib:.0} MiB {rate:.0} MiB/s "),
        }
        true
    }
}

fn finish_progress() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// The one line `put` and `get` print on success.
fn json_line(
    bucket: &str,
    key: &str,
    etag: &str,
    parts: u64,
    bytes: u64,
    started: Instant,
) -> String {
    format!(
        "{{\"bucket\":{},\"key\":{},\"etag\":{},\"parts\":{parts},\"bytes\":{bytes},\"seconds\":{:.3}}}",
        json_string(bucket),
        json_string(key),
        json_string(etag),
        started.elapsed().as_secs_f64()
    )
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("64 KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn urls_and_json() {
        assert_eq!(
            parse_s3_url("s3://b/a/b c").unwrap(),
            ("b".to_string(), "a/b c".to_string())
        );
        assert!(parse_s3_url("s3://b").is_err());
        assert!(parse_s3_url("http://b/k").is_err());
        assert_eq!(json_string("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
    }
}
