//! `cp s3://… s3://…` (one object, or a prefix with `--recursive`): copies
//! on the server, the bytes never pass through s3pump; and `mv` in the
//! three directions `cp` has: the copy (or upload, or download), then the
//! source deleted once the copy is in place.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use s3pump::{CancelHandle, Client, CopyObjectArgs};

use crate::args::{Cp, S3Url, parse_s3_location};
use crate::many::TreeReport;
use crate::{Done, Report, client, failure};

/// The options `cp` and `mv` refuse between two s3:// URLs.
pub fn check_s3_to_s3(c: &Cp) -> Result<(), String> {
    if c.src == c.dest {
        return Err("SRC and DEST are the same object".into());
    }
    for (set, flag) in [
        (c.checksum.is_some(), "--checksum"),
        (c.unsigned_payload, "--unsigned-payload"),
        (c.signed_payload, "--signed-payload"),
        (c.follow_symlinks, "--follow-symlinks"),
        (c.no_verify_checksum, "--no-verify-checksum"),
        (c.transfer.rdma_library.is_some(), "--rdma-library"),
    ] {
        if set {
            return Err(format!(
                "{flag} does not apply to a copy between two s3:// URLs (on the server)"
            ));
        }
    }
    Ok(())
}

/// The copy arguments `c` asks for.
fn copy_args(c: &Cp, cancel: &CancelHandle) -> CopyObjectArgs {
    let mut args = CopyObjectArgs::new().cancel_handle(cancel);
    // As `aws s3 cp`'s multipart_threshold: an object larger than one part
    // is copied in parts.
    if let Some(ps) = c.transfer.part_size {
        args = args.part_size(ps).multipart_threshold(ps);
    }
    if let Some(n) = c.transfer.max_inflight_parts {
        args = args.max_inflight_parts(n);
    }
    if let Some(ct) = &c.content_type {
        args = args.content_type(ct);
    }
    for (k, v) in &c.meta {
        args = args.metadata(k, v);
    }
    match (&c.condition.if_match, c.condition.if_none_match) {
        (Some(etag), _) => args.if_match(etag),
        (None, true) => args.if_none_match(),
        (None, false) => args,
    }
}

/// `cp` (or, with `delete_source`, `mv`) from `from` to `to`, both on S3.
pub fn s3_to_s3(
    c: &Cp,
    cancel: &CancelHandle,
    from: &S3Url,
    to: &S3Url,
    delete_source: bool,
) -> Result<Done, String> {
    let client = client(&c.connection)?;
    let args = copy_args(c, cancel);
    if c.recursive {
        return tree(c, &client, &args, from, to, delete_source);
    }
    let mut key = to.key.clone();
    if key.is_empty() || key.ends_with('/') {
        key.push_str(from.key.rsplit('/').next().unwrap_or(&from.key));
    }
    let dest = S3Url {
        bucket: to.bucket.clone(),
        text: format!("s3://{}/{key}", to.bucket),
        key,
    };
    let started = Instant::now();
    let out = one(&client, &args, from, &dest, delete_source)?;
    Ok(Report::new(&dest, out.etag, out.parts.into(), out.bytes, started).into())
}

/// One object copied (or moved).
fn one(
    client: &Client,
    args: &CopyObjectArgs,
    from: &S3Url,
    to: &S3Url,
    delete_source: bool,
) -> Result<s3pump::CopyObjectOutput, String> {
    let (a, b) = ((&from.bucket, &from.key), (&to.bucket, &to.key));
    let result = if delete_source {
        client.move_object(a.0, a.1, b.0, b.1, args)
    } else {
        client.copy_object(a.0, a.1, b.0, b.1, args)
    };
    result.map_err(|e| failure(client, &format!("{} -> {}", from.text, to.text), &e))
}

/// Every object under `from`'s prefix to the same relative key under
/// `to`'s, `--concurrency` at once.
fn tree(
    c: &Cp,
    client: &Client,
    args: &CopyObjectArgs,
    from: &S3Url,
    to: &S3Url,
    delete_source: bool,
) -> Result<Done, String> {
    let started = Instant::now();
    let concurrency = c.concurrency.unwrap_or(16);
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let prefix = with_slash(&from.key);
    let dest_prefix = with_slash(&to.key);
    if from.bucket == to.bucket && dest_prefix.starts_with(&prefix) {
        // The copies would be listed, and copied again.
        return Err(format!(
            "{} is inside {}: copy to a prefix outside the source",
            to.text, from.text
        ));
    }
    let listing = Mutex::new(client.list_objects(&from.bucket, &prefix));
    let stop = AtomicBool::new(false);
    let totals = Mutex::new((0u64, 0u64, Vec::<String>::new()));
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let next = listing.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let object = match next {
                        None => break,
                        Some(Err(e)) => {
                            let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                            t.2.push(failure(client, &from.text, &e));
                            stop.store(true, Ordering::SeqCst);
                            break;
                        }
                        Some(Ok(o)) => o,
                    };
                    // A "directory marker" has nothing to copy.
                    if object.key.ends_with('/') {
                        continue;
                    }
                    let rest = &object.key[prefix.len().min(object.key.len())..];
                    let key = format!("{dest_prefix}{rest}");
                    let src = S3Url {
                        text: format!("s3://{}/{}", from.bucket, object.key),
                        bucket: from.bucket.clone(),
                        key: object.key,
                    };
                    let dst = S3Url {
                        text: format!("s3://{}/{key}", to.bucket),
                        bucket: to.bucket.clone(),
                        key,
                    };
                    let result = one(client, args, &src, &dst, delete_source);
                    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(out) => {
                            t.0 += 1;
                            t.1 += out.bytes;
                        }
                        Err(e) => {
                            t.2.push(format!("failed: {e}"));
                            if !c.keep_going {
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                }
            });
        }
    });
    let (objects, bytes, errors) = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    let report = TreeReport {
        objects,
        bytes,
        failed: errors.len() as u64,
        refused: 0,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    Ok(Done {
        failed: !errors.is_empty(),
        errors,
        lines: vec![serde_json::to_string(&report).expect("a report serialises")],
        to_stderr: false,
    })
}

/// `prefix/` (an empty prefix stays empty: the whole bucket).
fn with_slash(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

/// `s3pump mv SRC DEST`: `cp`, then the source deleted once the copy is in
/// place (a local file only after its upload completed, an object only
/// after its download was renamed into place).
pub fn mv(c: &Cp, cancel: &CancelHandle) -> Result<Done, String> {
    let s3 = |s: &str| s.starts_with("s3://");
    match (s3(&c.src), s3(&c.dest)) {
        (true, true) => {
            let from = parse_s3_location(&c.src)?;
            let to = parse_s3_location(&c.dest)?;
            s3_to_s3(c, cancel, &from, &to, true)
        }
        (false, true) => {
            let path = PathBuf::from(&c.src);
            let done = crate::many::cp(c, cancel)?;
            std::fs::remove_file(&path).map_err(|e| {
                format!(
                    "{} was uploaded to {} but could not be removed: {e}",
                    path.display(),
                    c.dest
                )
            })?;
            Ok(done)
        }
        (true, false) => {
            let from = parse_s3_location(&c.src)?;
            let done = crate::many::cp(c, cancel)?;
            let client = client(&c.connection)?;
            client.delete_object(&from.bucket, &from.key).map_err(|e| {
                failure(
                    &client,
                    &format!("{} was downloaded to {} but not deleted", c.src, c.dest),
                    &e,
                )
            })?;
            Ok(done)
        }
        (false, false) => Err("one of SRC and DEST must be an s3:// URL".into()),
    }
}

/// The combinations `mv` refuses besides `cp`'s (a usage error): standard
/// input or output, a source that is not a regular file, and a tree
/// between a directory and S3 (not done yet: `cp --recursive`, then `rm`).
pub fn check_mv(c: &Cp) -> Result<(), String> {
    let s3 = |s: &str| s.starts_with("s3://");
    if c.src == "-" || c.dest == "-" {
        return Err("mv needs a file, not standard input or output".into());
    }
    if c.recursive && !(s3(&c.src) && s3(&c.dest)) {
        return Err(
            "mv --recursive moves between two s3:// prefixes only; for a directory use \
             cp --recursive, then rm"
                .into(),
        );
    }
    if !s3(&c.src) {
        let meta =
            std::fs::symlink_metadata(&c.src).map_err(|e| format!("cannot read {}: {e}", c.src))?;
        if !meta.is_file() {
            return Err(format!(
                "{} is not a regular file: mv removes only regular files",
                c.src
            ));
        }
    }
    Ok(())
}
