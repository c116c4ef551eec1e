//! `cp` (one object, or a tree with `--recursive`), `ls` and `rm`.
//!
//! A single-object `cp` is `put` or `get` with the key or file name filled
//! in; a tree goes through `Client::upload_dir` / `download_prefix`; a copy
//! between two s3:// URLs is `copy.rs`'s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use s3pump::{CancelHandle, DownloadArgs, ListEntry, PayloadSigning, PutObjectArgs, TreeArgs};
use serde::Serialize;

use crate::args::{Cp, Get, Ls, Put, Rm, S3Url, parse_s3_location};
use crate::escape;
use crate::{Done, client, failure, progress, rdma_provider};

/// One side of a `cp`.
enum Loc {
    Local(PathBuf),
    S3(S3Url),
}

fn loc(s: &str) -> Result<Loc, String> {
    if s.starts_with("s3://") {
        parse_s3_location(s).map(Loc::S3)
    } else {
        Ok(Loc::Local(PathBuf::from(s)))
    }
}

/// The options `cp` was given that only an upload uses.
fn upload_only(c: &Cp) -> Option<&'static str> {
    [
        (c.checksum.is_some(), "--checksum"),
        (c.unsigned_payload, "--unsigned-payload"),
        (c.signed_payload, "--signed-payload"),
        (c.content_type.is_some(), "--content-type"),
        (!c.meta.is_empty(), "--meta"),
        (c.follow_symlinks, "--follow-symlinks"),
        (c.condition.if_none_match, "--if-none-match"),
        (c.condition.if_match.is_some(), "--if-match"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name))
}

/// Refuses combinations `cp` cannot do, before anything is sent (a usage
/// error).
pub fn check_cp(c: &Cp) -> Result<(), String> {
    let (src, dest) = (loc(&c.src)?, loc(&c.dest)?);
    let upload = match (&src, &dest) {
        (Loc::S3(from), Loc::S3(_)) => {
            if !c.recursive && (from.key.is_empty() || from.key.ends_with('/')) {
                return Err(format!(
                    "{} names no object; use --recursive to copy a prefix",
                    from.text
                ));
            }
            return crate::copy::check_s3_to_s3(c);
        }
        (Loc::Local(_), Loc::Local(_)) => {
            return Err("one of SRC and DEST must be an s3:// URL".into());
        }
        (Loc::Local(_), Loc::S3(_)) => true,
        (Loc::S3(_), Loc::Local(_)) => false,
    };
    crate::args::check_part_size(&c.transfer, upload)?;
    if upload && c.no_verify_checksum {
        return Err("--no-verify-checksum applies to downloads only".into());
    }
    if !upload && let Some(flag) = upload_only(c) {
        return Err(format!("{flag} applies to uploads only"));
    }
    if let (Loc::Local(path), false) = (&src, c.recursive)
        && path.is_dir()
    {
        return Err(format!(
            "{} is a directory; use --recursive to copy a tree",
            path.display()
        ));
    }
    if c.recursive {
        if c.src == "-" || c.dest == "-" {
            return Err("--recursive copies a directory, not standard input or output".into());
        }
        if let (Loc::Local(local), _) | (_, Loc::Local(local)) = (&src, &dest)
            && local.exists()
            && !local.is_dir()
        {
            return Err(format!(
                "{} is not a directory; --recursive copies a directory tree (without it, \
                 one file)",
                local.display()
            ));
        }
        if c.condition.if_match.is_some() {
            return Err("--if-match names the ETag of one object; not with --recursive".into());
        }
    } else {
        for (set, flag) in [
            (c.concurrency.is_some(), "--concurrency"),
            (c.keep_going, "--keep-going"),
            (c.follow_symlinks, "--follow-symlinks"),
        ] {
            if set {
                return Err(format!("{flag} needs --recursive"));
            }
        }
        if let Loc::S3(url) = &src
            && (url.key.is_empty() || url.key.ends_with('/'))
        {
            return Err(format!(
                "{} names no object; use --recursive to copy a prefix",
                url.text
            ));
        }
        match (&src, &dest) {
            (Loc::Local(path), Loc::S3(to)) => crate::object_url(to, path).map(drop)?,
            (Loc::S3(from), Loc::Local(path)) => {
                crate::download_path(from, path, false).map(drop)?
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn cp(c: &Cp, cancel: &CancelHandle) -> Result<Done, String> {
    let (src, dest) = (loc(&c.src)?, loc(&c.dest)?);
    match (src, dest, c.recursive) {
        (Loc::Local(path), Loc::S3(to), false) => {
            let put = Put {
                src: path,
                url: to,
                checksum: c.checksum,
                unsigned_payload: c.unsigned_payload,
                signed_payload: c.signed_payload,
                content_type: c.content_type.clone(),
                meta: c.meta.clone(),
                keep_failed_upload: false,
                resume: None,
                condition: c.condition.clone(),
                transfer: c.transfer.clone(),
                connection: c.connection.clone(),
                output: c.output.clone(),
            };
            crate::put(&put, cancel).map(Done::from)
        }
        (Loc::S3(from), Loc::Local(mut path), false) => {
            if c.dest != "-" && path.is_dir() && !c.dest.ends_with('/') {
                // An existing directory: the object goes in it (`get` does
                // this for a DEST ending in '/').
                path = PathBuf::from(format!("{}/", c.dest));
            }
            let get = Get {
                url: from,
                dest: path,
                no_verify_checksum: c.no_verify_checksum,
                transfer: c.transfer.clone(),
                connection: c.connection.clone(),
                output: c.output.clone(),
            };
            crate::get(&get, cancel).map(Done::from)
        }
        (Loc::Local(dir), Loc::S3(to), true) => cp_tree(c, cancel, Tree::Up(&dir, &to)),
        (Loc::S3(from), Loc::Local(dir), true) => cp_tree(c, cancel, Tree::Down(&from, &dir)),
        (Loc::S3(from), Loc::S3(to), _) => crate::copy::s3_to_s3(c, cancel, &from, &to, false),
        _ => Err("one of SRC and DEST must be an s3:// URL".into()),
    }
}

enum Tree<'a> {
    Up(&'a Path, &'a S3Url),
    Down(&'a S3Url, &'a Path),
}

/// The one JSON line of `cp --recursive`.
#[derive(Serialize)]
pub(crate) struct TreeReport {
    pub objects: u64,
    pub bytes: u64,
    pub failed: u64,
    /// Listed keys skipped: outside the prefix, or unsafe as local paths
    /// (only when there were some).
    #[serde(skip_serializing_if = "is_zero")]
    pub refused: u64,
    /// Wall time, rounded to the millisecond.
    pub seconds: f64,
}

fn cp_tree(c: &Cp, cancel: &CancelHandle, tree: Tree<'_>) -> Result<Done, String> {
    let client = client(&c.connection)?;
    let started = Instant::now();
    let mut args = TreeArgs::new()
        .keep_going(c.keep_going)
        .follow_symlinks(c.follow_symlinks)
        .cancel_handle(cancel);
    if let Some(n) = c.concurrency {
        args = args.concurrency(n);
    }
    if let Some(f) = progress::start_tree(!c.output.no_progress) {
        args = args.on_progress(f);
    }
    let (summary, url) = match tree {
        Tree::Up(dir, to) => {
            args = args.put_args(put_args(c)?);
            let out = client.upload_dir(dir, &to.bucket, &to.key, args);
            (out, to)
        }
        Tree::Down(from, dir) => {
            args = args.download_args(download_args(c)?);
            let out = client.download_prefix(&from.bucket, &from.key, dir, args);
            (out, from)
        }
    };
    let summary = summary.map_err(|e| failure(&client, &url.text, &e))?;
    let mut errors: Vec<String> = summary
        .failures
        .iter()
        .map(|f| {
            let what = match &f.path {
                Some(p) => format!("s3://{}/{} ({})", url.bucket, f.key, p.display()),
                None => format!("s3://{}/{}", url.bucket, f.key),
            };
            format!(
                "failed: {}",
                failure(&client, &escape::field(&what), &f.error)
            )
        })
        .collect();
    // Each refused key was a warning already (the library logs it).
    if summary.not_started > 0 {
        errors.push(format!(
            "{} objects not started after the first failure (--keep-going goes on)",
            summary.not_started
        ));
    }
    let report = TreeReport {
        objects: summary.objects,
        bytes: summary.bytes,
        failed: summary.failures.len() as u64,
        refused: summary.refused.len() as u64,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    Ok(Done {
        errors,
        lines: vec![serde_json::to_string(&report).expect("a report serialises")],
        to_stderr: false,
        failed: !summary.is_complete(),
    })
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Each object's upload arguments, as `put` makes them.
fn put_args(c: &Cp) -> Result<PutObjectArgs, String> {
    let mut args = PutObjectArgs::new().strict_checksums(c.transfer.strict_checksums);
    if let Some(ps) = c.transfer.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = c.transfer.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(ck) = c.checksum {
        args = args.checksum(ck.into());
    }
    args = args.payload_signing(if c.unsigned_payload {
        PayloadSigning::Unsigned
    } else if c.signed_payload {
        PayloadSigning::Signed
    } else {
        PayloadSigning::Auto
    });
    if let Some(ct) = &c.content_type {
        args = args.content_type(ct);
    }
    for (k, v) in &c.meta {
        args = args.metadata(k, v);
    }
    if let Some(provider) = rdma_provider(&c.transfer)? {
        args = args.rdma(provider);
    }
    Ok(c.condition.apply(args))
}

/// Each object's download arguments, as `get` makes them.
fn download_args(c: &Cp) -> Result<DownloadArgs, String> {
    let mut args = DownloadArgs::new()
        .verify_checksum(!c.no_verify_checksum)
        .strict_checksums(c.transfer.strict_checksums);
    if let Some(ps) = c.transfer.part_size {
        args = args.part_size(ps);
    }
    if let Some(n) = c.transfer.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(provider) = rdma_provider(&c.transfer)? {
        args = args.rdma(provider);
    }
    Ok(args)
}

/// One object of `ls --json`.
#[derive(Serialize)]
struct Listed<'a> {
    key: &'a str,
    size: u64,
    last_modified: Option<&'a str>,
    etag: Option<&'a str>,
}

/// A common prefix of `ls --json`.
#[derive(Serialize)]
struct ListedPrefix<'a> {
    prefix: &'a str,
}

pub fn ls(l: &Ls) -> Result<Done, String> {
    let client = client(&l.connection)?;
    let mut out = std::io::stdout().lock();
    // Without --recursive, one "directory" level: objects and `PRE` lines.
    let delimiter = if l.recursive { "" } else { "/" };
    for entry in client.list_directory(&l.url.bucket, &l.url.key, delimiter) {
        let o = match entry.map_err(|e| failure(&client, &l.url.text, &e))? {
            ListEntry::Object(o) => o,
            ListEntry::Prefix(p) => {
                let line = if l.json {
                    serde_json::to_string(&ListedPrefix { prefix: &p })
                        .expect("a listing serialises")
                } else {
                    format!("{:>12} PRE {p}", "")
                };
                if writeln!(out, "{line}").is_err() {
                    break;
                }
                continue;
            }
            _ => continue,
        };
        let line = if l.json {
            serde_json::to_string(&Listed {
                key: &o.key,
                size: o.size,
                last_modified: o.last_modified.as_deref(),
                etag: o.etag.as_deref(),
            })
            .expect("a listing serialises")
        } else {
            let modified = o.last_modified.as_deref().unwrap_or("-");
            format!(
                "{:>12} {} {}",
                o.size,
                escape::field(modified),
                escape::field(&o.key)
            )
        };
        let line = escape::json(&line);
        if writeln!(out, "{line}").is_err() {
            // The reader went away (`| head`): nothing more to say.
            break;
        }
    }
    let _ = out.flush();
    Ok(Done::default())
}

/// The one JSON line of `rm`.
#[derive(Serialize)]
struct Removed {
    deleted: u64,
    failed: u64,
}

pub fn rm(r: &Rm) -> Result<Done, String> {
    let client = client(&r.connection)?;
    let (bucket, key) = (&r.url.bucket, &r.url.key);
    if !r.recursive {
        if key.is_empty() {
            return Err(format!(
                "{} names no object; use --recursive to delete a prefix",
                r.url.text
            ));
        }
        client
            .delete_object(bucket, key)
            .map_err(|e| failure(&client, &r.url.text, &e))?;
        return Ok(removed(1, Vec::new()));
    }
    let prefix = if key.is_empty() || key.ends_with('/') {
        key.clone()
    } else {
        format!("{key}/")
    };
    // Only keys under the prefix, and only keys S3 can hold: any other key
    // a server lists is reported and skipped.
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for object in client.list_objects(bucket, &prefix) {
        let key = object.map_err(|e| failure(&client, &r.url.text, &e))?.key;
        let why = if !key.starts_with(&prefix) {
            format!("not under the prefix {}", escape::field(&prefix))
        } else if key.len() > MAX_KEY {
            format!(
                "the key is {} bytes long; S3 keys are at most {MAX_KEY}",
                key.len()
            )
        } else {
            keys.push(key);
            continue;
        };
        errors.push(format!("skipped: s3://{bucket}/{}: {why}", short(&key)));
    }
    // A batch at a time, so that a failed batch can say what went before.
    let mut deleted = 0;
    for batch in keys.chunks(DELETE_BATCH) {
        let out = client.delete_objects(bucket, batch).map_err(|e| {
            let mut msg = failure(&client, &r.url.text, &e);
            if deleted > 0 {
                msg.push_str(&format!(
                    "; {deleted} keys of earlier DeleteObjects batches were deleted"
                ));
            }
            msg
        })?;
        deleted += out.deleted;
        errors.extend(out.errors.iter().map(|e| {
            format!(
                "failed: s3://{bucket}/{}: {}: {}",
                short(&e.key),
                escape::field(&e.code),
                short(&e.message)
            )
        }));
    }
    Ok(removed(deleted, errors))
}

/// Longest S3 key.
const MAX_KEY: usize = 1024;
/// Keys per DeleteObjects request (S3's most).
const DELETE_BATCH: usize = 1000;

/// A key or a server's message for a line: escaped, and cut to its first
/// 200 characters (with its length) when longer.
fn short(key: &str) -> String {
    const SHOWN: usize = 200;
    if key.chars().count() <= SHOWN {
        return escape::field(key);
    }
    let head: String = key.chars().take(SHOWN).collect();
    format!("{}… ({} bytes)", escape::field(&head), key.len())
}

fn removed(deleted: u64, errors: Vec<String>) -> Done {
    let line = serde_json::to_string(&Removed {
        deleted,
        failed: errors.len() as u64,
    })
    .expect("a report serialises");
    Done {
        failed: !errors.is_empty(),
        errors,
        lines: vec![line],
        to_stderr: false,
    }
}
