//! The `s3pump` command: parallel S3 upload and download from the shell.
//!
//! ```text
//! s3pump put SRC s3://BUCKET/KEY [OPTIONS]
//! s3pump get s3://BUCKET/KEY DEST [OPTIONS]
//! s3pump cp SRC DEST [--recursive] [OPTIONS]
//! s3pump mv SRC DEST [--recursive] [OPTIONS]
//! s3pump ls s3://BUCKET[/PREFIX] [--json]
//! s3pump rm s3://BUCKET/KEY [--recursive]
//! s3pump presign s3://BUCKET/KEY [--expires-in SECONDS] [--method GET|PUT]
//! ```
//!
//! `s3pump --help` and `s3pump put --help` say the rest. Modules: `args`
//! (the command line), `many` (cp, ls, rm), `copy` (cp and mv between
//! s3:// URLs, mv), `presign`, `progress` (the bar), `signals`
//! (SIGINT/SIGTERM cancel the transfer), `stream` (a stream source a cancel
//! can interrupt).

mod args;
mod copy;
mod escape;
mod many;
mod presign;
mod progress;
mod signals;
mod stream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use s3pump::{
    Addressing, CancelHandle, Client, DownloadArgs, FfiRdmaProvider, PayloadSigning, PutObjectArgs,
    RdmaProvider,
};
use serde::Serialize;

use args::{Cli, Command, Connection, Get, Put, S3Url, Transfer};
use stream::Cancellable;

/// Exit status of a usage error (clap's, and documented in `--help`).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    log::set_logger(&WARNINGS).expect("the only logger");
    log::set_max_level(log::LevelFilter::Warn);
    let cancel = CancelHandle::new();
    let interrupt = match signals::install(cancel.clone()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("s3pump: error: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(msg) = check_usage(&cli.command) {
        let name = match &cli.command {
            Command::Put(_) => "put",
            Command::Get(_) => "get",
            Command::Cp(_) => "cp",
            Command::Ls(_) => "ls",
            Command::Rm(_) => "rm",
            Command::Presign(_) => "presign",
            Command::Mv(_) => "mv",
        };
        eprintln!(
            "s3pump: error: {}; try 's3pump {name} --help'",
            escape::line(&msg)
        );
        return ExitCode::from(USAGE_ERROR);
    }
    if let Command::Mv(c) = &cli.command
        && let Err(msg) = many::check_cp(c).and_then(|()| copy::check_mv(c))
    {
        eprintln!("s3pump: error: {msg}; try 's3pump mv --help'");
        return ExitCode::from(USAGE_ERROR);
    }
    let (result, kept_upload) = match &cli.command {
        Command::Put(p) => (put(p, &cancel).map(Done::from), p.keep_failed_upload),
        Command::Get(g) => (get(g, &cancel).map(Done::from), false),
        Command::Cp(c) => (many::cp(c, &cancel), false),
        Command::Mv(c) => (copy::mv(c, &cancel), false),
        Command::Ls(l) => (many::ls(l), false),
        Command::Rm(r) => (many::rm(r), false),
        Command::Presign(p) => (presign::presign(p), false),
    };
    progress::finish();
    match (result, interrupt.signal()) {
        (Ok(done), signal) => {
            if signal.is_some() {
                progress::eprintln(
                    "s3pump: the transfer was complete before it could be cancelled",
                );
            }
            done.print()
        }
        (Err(msg), Some(signal)) => {
            // Cancelled: the notice is out already. A kept upload's id is
            // what the user needs to resume it.
            if kept_upload {
                eprintln!("s3pump: error: {}", escape::line(&msg));
            }
            ExitCode::from(signals::exit_status(signal))
        }
        (Err(msg), None) => {
            eprintln!("s3pump: error: {}", escape::line(&msg));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with status 0; a usage error is one line
/// on stderr (clap's message and where to read more) with status 2.
fn usage(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // `s3pump` alone: the help, as an error.
        let _ = e.print();
        return ExitCode::from(USAGE_ERROR);
    }
    let text = e.to_string();
    // clap's first paragraph (a message, perhaps with the arguments it
    // names on the lines below), on one line.
    let first: Vec<&str> = text
        .trim_start()
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let first = first.join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    // clap's own hint says "try '--help'"; name the command it was for.
    let command = std::env::args_os()
        .nth(1)
        .and_then(|c| c.into_string().ok())
        .filter(|c| Cli::command().find_subcommand(c).is_some())
        .map(|c| format!("{c} "))
        .unwrap_or_default();
    eprintln!(
        "s3pump: error: {}; try 's3pump {command}--help'",
        escape::line(first)
    );
    ExitCode::from(USAGE_ERROR)
}

/// Usage errors clap cannot see (exit status 2, before anything is sent):
/// ranges that depend on the direction, and what the paths are.
fn check_usage(command: &Command) -> Result<(), String> {
    match command {
        Command::Put(p) => {
            args::check_part_size(&p.transfer, true)?;
            if p.src == Path::new("-") && p.resume.is_some() {
                return Err("--resume needs a file, not standard input".into());
            }
            object_url(&p.url, &p.src).map(drop)
        }
        Command::Get(g) => {
            args::check_part_size(&g.transfer, false)?;
            if g.dest != Path::new("-") && !ends_with_slash(&g.dest) && g.dest.is_dir() {
                return Err(format!(
                    "{} is a directory: name the file, or end DEST with '/' to write the \
                     object in it",
                    g.dest.display()
                ));
            }
            download_path(&g.url, &g.dest, false).map(drop)
        }
        Command::Cp(c) => many::check_cp(c),
        Command::Ls(_) | Command::Rm(_) | Command::Presign(_) | Command::Mv(_) => Ok(()),
    }
}

/// Whether `path` was given with a trailing `/` (a directory).
fn ends_with_slash(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().ends_with(b"/")
}

/// The object `put` writes: `url`, or for a key that is empty or ends in `/`
/// that key followed by the file's name (as `cp` and `aws s3 cp` do).
fn object_url(url: &S3Url, src: &Path) -> Result<S3Url, String> {
    if !(url.key.is_empty() || url.key.ends_with('/')) {
        return Ok(url.clone());
    }
    let name = (src != Path::new("-"))
        .then(|| src.file_name())
        .flatten()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            format!(
                "{} ends in '/': name the key (the source has no file name)",
                url.text
            )
        })?;
    let key = format!("{}{name}", url.key);
    Ok(S3Url {
        text: format!("s3://{}/{key}", url.bucket),
        bucket: url.bucket.clone(),
        key,
    })
}

/// The file `get` writes: `dest`, or for a `dest` ending in `/` the key's
/// last segment in that directory, which is created when `create` is set.
fn download_path(url: &S3Url, dest: &Path, create: bool) -> Result<PathBuf, String> {
    if !ends_with_slash(dest) {
        return Ok(dest.to_path_buf());
    }
    let name = url.key.rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        return Err(format!(
            "{} ends in '/': it names no file to write in {}",
            url.text,
            dest.display()
        ));
    }
    if create {
        std::fs::create_dir_all(dest)
            .map_err(|e| format!("cannot create the directory {}: {e}", dest.display()))?;
    }
    Ok(dest.join(name))
}

/// The one JSON line `put` and `get` print on success.
#[derive(Serialize)]
struct Report {
    bucket: String,
    key: String,
    etag: String,
    parts: u64,
    bytes: u64,
    /// Wall time, rounded to the millisecond.
    seconds: f64,
    /// Whether the line goes to stderr (after a download to standard output,
    /// so that it does not mix with the object's bytes).
    #[serde(skip)]
    to_stderr: bool,
}

impl Report {
    fn new(url: &S3Url, etag: String, parts: u64, bytes: u64, started: Instant) -> Report {
        Report {
            bucket: url.bucket.clone(),
            key: url.key.clone(),
            etag,
            parts,
            bytes,
            seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            to_stderr: false,
        }
    }
}

/// What a command that succeeded (as a whole) prints, and its status.
#[derive(Default)]
struct Done {
    /// Lines for stderr first (failed objects).
    errors: Vec<String>,
    /// The JSON line (or `ls`' lines) for stdout.
    lines: Vec<String>,
    /// The JSON line goes to stderr instead (after a download to stdout).
    to_stderr: bool,
    /// Exit status 1 (an object failed).
    failed: bool,
}

impl From<Report> for Done {
    fn from(r: Report) -> Done {
        Done {
            lines: vec![serde_json::to_string(&r).expect("a report serialises")],
            to_stderr: r.to_stderr,
            ..Done::default()
        }
    }
}

impl Done {
    fn print(&self) -> ExitCode {
        for e in &self.errors {
            eprintln!("s3pump: {}", escape::line(e));
        }
        for line in &self.lines {
            let line = escape::json(line);
            if self.to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The error message of a request with `client`: `context: error`, and
/// where the credentials came from when the server refused them (or they
/// could not be had); never a secret.
fn failure(client: &Client, context: &str, e: &s3pump::Error) -> String {
    let mut msg = format!("{context}: {e}");
    if matches!(
        e.kind(),
        s3pump::ErrorKind::AccessDenied | s3pump::ErrorKind::Credentials
    ) {
        match client.credentials_source() {
            Some(source) => msg.push_str(&format!(" (credentials from: {source})")),
            None => msg.push_str(" (the request was not signed: --no-sign-request)"),
        }
    }
    msg
}

fn client(c: &Connection) -> Result<Client, String> {
    let mut b = s3pump::ClientBuilder::from_env();
    if let Some(p) = &c.profile {
        b = b.profile(p);
    }
    if c.no_sign_request {
        b = b.anonymous();
    }
    if let Some(path) = &c.ca_bundle {
        b = b.ca_bundle(path);
    }
    if let Some(e) = &c.endpoint {
        b = b.endpoint(e);
    }
    if let Some(r) = &c.region {
        b = b.region(r);
    }
    if c.path_style {
        b = b.addressing(Addressing::PathStyle);
    }
    b.build().map_err(|e| e.to_string())
}

/// The RDMA provider from `--rdma-library`, else `S3PUMP_RDMA_LIBRARY`.
fn rdma_provider(t: &Transfer) -> Result<Option<Arc<dyn RdmaProvider>>, String> {
    let provider =
        FfiRdmaProvider::from_path_or_env(t.rdma_library.as_deref()).map_err(|e| e.to_string())?;
    Ok(provider.map(|p| Arc::new(p) as Arc<dyn RdmaProvider>))
}

fn put(p: &Put, cancel: &CancelHandle) -> Result<Report, String> {
    let url = &object_url(&p.url, &p.src)?;
    let client = client(&p.connection)?;
    let mut args = PutObjectArgs::new()
        .cancel_handle(cancel)
        .strict_checksums(p.transfer.strict_checksums);
    if let Some(ps) = p.transfer.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = p.transfer.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(c) = p.checksum {
        args = args.checksum(c.into());
    }
    args = args.payload_signing(if p.unsigned_payload {
        PayloadSigning::Unsigned
    } else if p.signed_payload {
        PayloadSigning::Signed
    } else {
        PayloadSigning::Auto
    });
    if let Some(ct) = &p.content_type {
        args = args.content_type(ct);
    }
    for (k, v) in &p.meta {
        args = args.metadata(k, v);
    }
    if let Some(provider) = rdma_provider(&p.transfer)? {
        args = args.rdma(provider);
    }
    let stdin = p.src == Path::new("-");
    // A file's size, so that the bar shows it from the start.
    let size = std::fs::metadata(&p.src)
        .ok()
        .filter(|m| !stdin && m.is_file())
        .map(|m| m.len());
    if let Some(f) = progress::start(!p.output.no_progress, size) {
        args = args.on_progress(f);
    }
    args = p
        .condition
        .apply(args.keep_failed_upload(p.keep_failed_upload));
    let (bucket, key) = (&url.bucket, &url.key);
    let started = Instant::now();
    let out = match (stdin, &p.resume) {
        (true, _) => {
            let source = Cancellable::stdin(cancel.clone())
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            client.put_object(bucket, key, source, args)
        }
        (false, Some(id)) => client.resume_upload_file(bucket, key, &p.src, id, args),
        (false, None) => {
            let path = p.src.display();
            let meta = std::fs::metadata(&p.src).map_err(|e| format!("cannot open {path}: {e}"))?;
            if meta.is_file() {
                client.upload_file(bucket, key, &p.src, args)
            } else {
                // A pipe or device: read it as a stream.
                let file =
                    std::fs::File::open(&p.src).map_err(|e| format!("cannot open {path}: {e}"))?;
                client.put_object(
                    bucket,
                    key,
                    Cancellable::new(file.into(), cancel.clone()),
                    args,
                )
            }
        }
    }
    .map_err(|e| failure(&client, &url.text, &e))?;
    Ok(Report::new(
        url,
        out.etag,
        out.parts.into(),
        out.bytes,
        started,
    ))
}

fn get(g: &Get, cancel: &CancelHandle) -> Result<Report, String> {
    let url = &g.url;
    let client = client(&g.connection)?;
    let mut args = DownloadArgs::new()
        .verify_checksum(!g.no_verify_checksum)
        .strict_checksums(g.transfer.strict_checksums)
        .cancel_handle(cancel);
    if let Some(ps) = g.transfer.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = g.transfer.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(provider) = rdma_provider(&g.transfer)? {
        args = args.rdma(provider);
    }
    if let Some(f) = progress::start(!g.output.no_progress, None) {
        args = args.on_progress(f);
    }
    let (bucket, key) = (&url.bucket, &url.key);
    let started = Instant::now();
    let to_stdout = g.dest == Path::new("-");
    let out = if to_stdout {
        client.download(bucket, key, &mut std::io::stdout().lock(), args)
    } else {
        let dest = download_path(url, &g.dest, true)?;
        client.download_to_file(bucket, key, &dest, args)
    }
    .map_err(|e| failure(&client, &url.text, &e))?;
    let mut report = Report::new(url, out.etag, out.parts, out.size, started);
    report.to_stderr = to_stdout;
    Ok(report)
}

/// The library's warnings (a failed abort, an RDMA fallback, a temporary
/// file that could not be removed) on stderr, one line each.
struct Warnings;

static WARNINGS: Warnings = Warnings;

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn && metadata.target().starts_with("s3pump")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let msg = escape::line(&record.args().to_string());
            progress::eprintln(&format!("s3pump: warning: {msg}"));
        }
    }

    fn flush(&self) {}
}
