//! The `s3pump` command line: the real binary against the in-process server.
//!
//! Every flag, argument, environment variable and JSON field the CLI has is
//! a contract (scripts use them); each is exercised here:
//! - put: SRC (file, `-`, a pipe), s3://BUCKET/KEY, `--part-size`,
//!   `--max-inflight-parts`, `--checksum crc64nvme|crc32c|none`,
//!   `--unsigned-payload`, `--content-type`, `--meta K=V` (repeated),
//!   `--keep-failed-upload`, `--resume`;
//! - get: s3://BUCKET/KEY, DEST (file, `-`), `--part-size`,
//!   `--max-inflight-parts`, `--no-verify-checksum`;
//! - both: `--endpoint`, `--region`, `--path-style`, `--rdma-library`,
//!   `--no-progress`; `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `S3PUMP_RDMA_LIBRARY`;
//! - cp: SRC and DEST (a file, `-`, a directory, an s3:// URL; a key or
//!   path ending in `/` gets the other side's name), `--recursive`,
//!   `--concurrency`, `--keep-going`, `--follow-symlinks`, the upload-only and
//!   download-only options refused on the other direction; the summary
//!   `{"objects","bytes","failed","seconds"}` (`"refused"` after `"failed"` when
//!   keys were skipped), failed objects on stderr;
//! - ls: `s3://BUCKET[/PREFIX]`, `--json` (`{"key","size","last_modified","etag"}`),
//!   more than 1000 keys; rm: one key, `--recursive` over more than 1000 keys,
//!   `{"deleted","failed"}`;
//! - every command: `--profile`, `--no-sign-request`, `--ca-bundle`, and put's
//!   `--signed-payload`; refusals name the credential source;
//! - the JSON line `{"bucket","key","etag","parts","bytes","seconds"}`;
//! - exit status 0, 1, 2, 130 (SIGINT), 143 (SIGTERM); help and version.
#![cfg(feature = "cli")]

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::harness::{Harness, data, multipart_etag};
use support::server::{ACCESS_KEY, Fault, FaultKind, Op, REGION, SECRET_KEY, TestServer};

pub(crate) fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3pump"));
    cmd.env_clear()
        .env("HOME", std::env::temp_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// The binary with credentials for the test server, and `--endpoint` after `args`.
pub(crate) fn s3pump(h: &Harness, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args(args)
        .args(["--endpoint", h.endpoint()])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION);
    cmd
}

pub(crate) fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses the one JSON line the CLI prints: a flat object of strings and
/// numbers, as (name, raw value) in order.
fn json_fields(line: &str) -> Vec<(String, String)> {
    let inner = line
        .trim()
        .strip_prefix('{')
        .unwrap()
        .strip_suffix('}')
        .unwrap();
    inner
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':').unwrap();
            (k.trim_matches('"').to_string(), v.to_string())
        })
        .collect()
}

const FIELDS: [&str; 6] = ["bucket", "key", "etag", "parts", "bytes", "seconds"];

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn put_from_stdin_and_get_round_trip() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let body = data(13 << 20, 99);
    let url = format!("s3://{}/cli/from stdin", h.bucket);
    let mut child = s3pump(
        &h,
        &[
            "put",
            "-",
            &url,
            "--part-size",
            "5MiB",
            "--max-inflight-parts",
            "3",
            "--meta",
            "k=v",
            "--meta",
            "eq=a=b",
            "--content-type",
            "text/x-test",
            "--no-progress",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = body.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let fields = json_fields(&stdout);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, FIELDS);
    assert_eq!(fields[0].1, format!("\"{}\"", h.bucket));
    assert_eq!(fields[1].1, "\"cli/from stdin\"");
    assert_eq!(
        fields[2].1,
        format!(
            "\"{}\"",
            multipart_etag(&body, 5 << 20).replace('"', "\\\"")
        )
    );
    assert_eq!(fields[3].1, "3");
    assert_eq!(fields[4].1, body.len().to_string());
    assert!(fields[5].1.parse::<f64>().unwrap() >= 0.0);
    let info = h.client().head_object(&h.bucket, "cli/from stdin").unwrap();
    assert_eq!(info.content_type.as_deref(), Some("text/x-test"));
    assert_eq!(
        info.metadata,
        [
            ("eq".to_string(), "a=b".to_string()),
            ("k".to_string(), "v".to_string())
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy.bin");
    let out = s3pump(
        &h,
        &[
            "get",
            &url,
            dest.to_str().unwrap(),
            "--part-size",
            "2MiB",
            "--max-inflight-parts",
            "2",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fields = json_fields(&stdout);
    // 7 ranges of 2 MiB, balanced to 8 smaller ones for 2 in flight.
    assert_eq!(
        fields[3],
        ("parts".to_string(), "8".to_string()),
        "13 MiB in ranges of at most 2 MiB, balanced over the 2 in flight"
    );
    assert!(
        std::fs::read(&dest).unwrap() == body,
        "downloaded bytes differ"
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn put_of_a_file_uses_its_size() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let body = data(6 << 20, 5);
    std::fs::write(&src, &body).unwrap();
    let url = format!("s3://{}/cli/file", h.bucket);
    let out = s3pump(
        &h,
        &[
            "put",
            src.to_str().unwrap(),
            &url,
            "--checksum",
            "crc32c",
            "--unsigned-payload",
            "--path-style",
            "--region",
            REGION,
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(h.read_back("cli/file"), body);
}

/// Each `--checksum` value is accepted; the key is escaped in the JSON line
/// (which is valid JSON), and `get -` writes the bytes to stdout and the
/// line to stderr.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn every_checksum_json_escaping_and_get_to_stdout() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let key = "cli/q\"uo\\te";
    let url = format!("s3://{}/{key}", h.bucket);
    for (i, checksum) in ["crc64nvme", "crc32c", "none"].into_iter().enumerate() {
        let body = data(100 << 10, i as u64);
        let mut child = s3pump(&h, &["put", "-", &url, "--checksum", checksum])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{checksum}: {}", stderr_of(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["key"], key, "{checksum}");
        assert_eq!(v["bytes"], body.len(), "{checksum}");
        assert_eq!(v["parts"], 1, "{checksum}");
        assert_eq!(h.read_back(key), body, "{checksum}");
    }
    let body = h.read_back(key);
    let out = s3pump(
        &h,
        &["get", &url, "-", "--no-verify-checksum", "--no-progress"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out.stdout == body, "stdout holds the object");
    let line = String::from_utf8(out.stderr).unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = FIELDS;
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(v["bucket"], h.bucket.as_str());
    assert_eq!(v["bytes"], body.len());
    let etag = h.client().head_object(&h.bucket, key).unwrap().etag;
    assert_eq!(v["etag"], etag.as_str());
}

/// The endpoint and region come from the environment when not given.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn endpoint_region_and_credentials_from_the_environment() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let url = format!("s3://{}/cli/env", h.bucket);
    let mut child = bin()
        .args(["put", "-", &url])
        .env("AWS_ENDPOINT_URL", h.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from the env")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(h.read_back("cli/env"), b"from the env");

    // Without credentials: a failure (1) naming them.
    let out = bin()
        .args(["get", &url, "-", "--endpoint", h.endpoint()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("credentials"),
        "{}",
        stderr_of(&out)
    );
}

/// `--rdma-library` and `S3PUMP_RDMA_LIBRARY` are both read, by both commands.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_rdma_library_flag_and_variable_are_honoured() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libno-such-rdma.so");
    let lib = lib.to_str().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"x").unwrap();
    let url = format!("s3://{}/cli/rdma", h.bucket);
    let runs: [(&[&str], bool); 4] = [
        (
            &["put", src.to_str().unwrap(), &url, "--rdma-library", lib],
            false,
        ),
        (&["get", &url, "-", "--rdma-library", lib], false),
        (&["put", src.to_str().unwrap(), &url], true),
        (&["get", &url, "-"], true),
    ];
    for (args, by_env) in runs {
        let mut cmd = s3pump(&h, args);
        if by_env {
            cmd.env("S3PUMP_RDMA_LIBRARY", lib);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("cannot load RDMA library {lib}")),
            "{args:?}: {err}"
        );
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn failures_exit_1_and_usage_errors_exit_2_with_one_line_naming_the_cause() {
    let h = Harness::new();
    if h.local().is_none() {
        eprintln!("skipped: needs the in-process server");
        return;
    }
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["put", "/no/such/file", "s3://bucket/k"],
            1,
            "cannot open /no/such/file",
        ),
        (&["get", "s3://no-such-bucket/k", "-"], 1, "404"),
        (&["put", "-", "not-a-url"], 2, "not an s3://BUCKET/KEY URL"),
        (
            &["put", "-", "s3://bucket/k", "--part-size", "5 parsecs"],
            2,
            "unknown unit",
        ),
        (
            &["put", "-", "s3://bucket/k", "--checksum", "md5"],
            2,
            "'md5'",
        ),
        (
            &["put", "-", "s3://bucket/k", "--meta", "novalue"],
            2,
            "is not K=V",
        ),
        (&["put", "-"], 2, "s3://BUCKET/KEY"),
    ];
    for (args, code, cause) in cases {
        let out = s3pump(&h, args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr_of(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("s3pump: error: "), "{args:?}: {err}");
        assert!(err.contains(cause), "{args:?}: {err}");
    }
}

/// Regression: these exited 1 (after building a client) where the README
/// promises 2 for a usage error. Each is one line naming the valid range or
/// what to do, and nothing is sent (no endpoint is even given).
#[test]
fn every_invalid_value_is_a_usage_error_naming_the_valid_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"f").unwrap();
    let f = file.to_str().unwrap();
    let cases: [(&[&str], &str); 16] = [
        (
            &["put", f, "s3://b/k", "--part-size", "1KiB"],
            "5 MiB to 5 GiB for an upload",
        ),
        (
            &["put", f, "s3://b/k", "--part-size", "6GiB"],
            "5 MiB to 5 GiB for an upload",
        ),
        (
            &["put", f, "s3://b/k", "--max-inflight-parts", "0"],
            "from 1 to 100",
        ),
        (
            &["put", f, "s3://b/k", "--max-inflight-parts", "101"],
            "from 1 to 100",
        ),
        (
            &["get", "s3://b/k", "out", "--part-size", "100KiB"],
            "1 MiB to 5 GiB for a download",
        ),
        (
            &["get", "s3://b/k", "out", "--max-inflight-parts", "-1"],
            "from 1 to 100",
        ),
        (
            &["cp", f, "s3://b/k", "--part-size", "4MiB"],
            "5 MiB to 5 GiB for an upload",
        ),
        (
            &["cp", "s3://b/k", "out", "--part-size", "1000"],
            "1 MiB to 5 GiB for a download",
        ),
        (
            &["cp", "--recursive", d, "s3://b/p", "--concurrency", "0"],
            "at least 1",
        ),
        (
            &["cp", "--recursive", f, "s3://b/p"],
            "is not a directory; --recursive copies a directory tree",
        ),
        (
            &["cp", "--recursive", "s3://b/p", f],
            "is not a directory; --recursive copies a directory tree",
        ),
        (&["get", "s3://b/k", d], "is a directory: name the file"),
        (&["get", "s3://b/p/", &format!("{d}/")], "names no file"),
        (
            &["put", "-", "s3://b/k", "--resume", "ID"],
            "--resume needs a file",
        ),
        (&["put", "-", "s3://b/p/"], "name the key"),
        (&["cp", "-", "s3://b/"], "name the key"),
    ];
    for (args, cause) in cases {
        let out = bin().args(args).stdin(Stdio::null()).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("s3pump: error: "), "{args:?}: {err}");
        assert!(err.contains(cause), "{args:?}: {err}");
        let command = format!("try 's3pump {} --help'", args[0]);
        assert!(err.contains(&command), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"f", "the file is untouched");
    // The ranges are in --help too.
    for command in ["put", "get", "cp"] {
        let out = bin().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for range in [
            "in flight at once, 1 to 100",
            "5 MiB to 5 GiB for an upload, 1 MiB to 5 GiB for a download",
        ] {
            assert!(help.contains(range), "{command} --help lacks {range:?}");
        }
    }
}

/// `get` and `cp` to a path ending in `/` create the directory and write the
/// object in it under its last key segment; `put` and `cp` to a key ending
/// in `/` both append the file's name.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_trailing_slash_means_a_directory_on_both_sides() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("photo.jpg");
    std::fs::write(&src, b"jpeg").unwrap();
    let src = src.to_str().unwrap();
    for (command, prefix) in [("put", "by-put/"), ("cp", "by-cp/")] {
        let url = format!("s3://{}/{prefix}", h.bucket);
        let (code, stdout, stderr) = run(s3pump(&h, &[command, src, &url, "--no-progress"]));
        assert_eq!(code, Some(0), "{command}: {stderr}");
        let key = format!("{prefix}photo.jpg");
        assert_eq!(json_fields(&stdout)[1].1, format!("\"{key}\""), "{command}");
        assert_eq!(h.read_back(&key), b"jpeg", "{command}");
    }
    let url = format!("s3://{}/by-put/photo.jpg", h.bucket);
    for (command, sub) in [("get", "new/"), ("cp", "deeper/still/")] {
        let dest = format!("{}/{sub}", dir.path().display());
        let (code, _, stderr) = run(s3pump(&h, &[command, &url, &dest, "--no-progress"]));
        assert_eq!(code, Some(0), "{command} {dest}: {stderr}");
        let written = dir.path().join(sub).join("photo.jpg");
        assert_eq!(std::fs::read(&written).unwrap(), b"jpeg", "{command}");
        // Nothing else (no temporary file) is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path().join(sub)).unwrap().count(), 1);
    }
}

/// Regression: `s3pump --help` printed the usage flattened to one line on
/// stderr, as an error, with status 1.
#[test]
fn help_and_version_go_to_stdout_formatted_with_status_0() {
    let cases: [(&[&str], &[&str]); 9] = [
        (
            &["--help"],
            &[
                "Usage: s3pump <COMMAND>",
                "put",
                "get",
                "cp",
                "ls",
                "rm",
                "Exit status:",
            ],
        ),
        (&["-h"], &["Usage: s3pump <COMMAND>"]),
        (&["help"], &["Usage: s3pump <COMMAND>"]),
        (
            &["put", "--help"],
            &[
                "Usage: s3pump put [OPTIONS] <SRC> <s3://BUCKET/KEY>",
                "--part-size <SIZE>",
                "--max-inflight-parts <N>",
                "--checksum <ALGORITHM>",
                "--unsigned-payload",
                "--content-type <T>",
                "--meta <K=V>",
                "--keep-failed-upload",
                "--resume <UPLOAD_ID>",
                "--endpoint <URL>",
                "--region <R>",
                "--path-style",
                "--rdma-library <PATH>",
                "--no-progress",
                "2    usage error",
            ],
        ),
        (
            &["get", "--help"],
            &[
                "Usage: s3pump get [OPTIONS] <s3://BUCKET/KEY> <DEST>",
                "--no-verify-checksum",
                "--part-size <SIZE>",
                "--endpoint <URL>",
                "130",
            ],
        ),
        (
            &["cp", "--help"],
            &[
                "Usage: s3pump cp [OPTIONS] <SRC> <DEST>",
                "--recursive",
                "--concurrency <N>",
                "--keep-going",
                "--follow-symlinks",
                "--signed-payload",
                "--no-verify-checksum",
                "--profile <NAME>",
                "--no-sign-request",
                "--ca-bundle <PATH>",
                "{\"objects\":N,\"bytes\":N,\"failed\":N,\"seconds\":F}",
            ],
        ),
        (
            &["ls", "--help"],
            &[
                "Usage: s3pump ls [OPTIONS] <s3://BUCKET[/PREFIX]>",
                "--json",
                "--profile <NAME>",
            ],
        ),
        (
            &["rm", "--help"],
            &[
                "Usage: s3pump rm [OPTIONS] <s3://BUCKET/KEY>",
                "--recursive",
            ],
        ),
        (
            &["--version"],
            &[concat!("s3pump ", env!("CARGO_PKG_VERSION"))],
        ),
    ];
    for (args, expected) in cases {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr_of(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr_of(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        for line in expected {
            assert!(text.contains(line), "{args:?} lacks {line:?}:\n{text}");
        }
        if args != ["--version"] {
            assert!(text.lines().count() > 5, "{args:?} is formatted:\n{text}");
        }
    }
    let help = String::from_utf8(bin().args(["--help"]).output().unwrap().stdout).unwrap();
    for status in ["0    success", "1    failure", "2    usage error"] {
        assert!(help.contains(status), "{help}");
    }
    // No command at all: the help, on stderr, as a usage error.
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(stderr_of(&out).contains("Usage: s3pump <COMMAND>"));
}

/// Regression: `get` silently accepted the options only `put` uses.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn get_refuses_the_options_only_put_uses() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    server.put_object_bytes(&h.bucket, "k", b"data");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let url = format!("s3://{}/k", h.bucket);
    let put_only: [&[&str]; 6] = [
        &["--checksum", "crc32c"],
        &["--unsigned-payload"],
        &["--content-type", "text/plain"],
        &["--meta", "k=v"],
        &["--keep-failed-upload"],
        &["--resume", "ID"],
    ];
    server.reset_stats();
    for option in put_only {
        let mut args = vec!["get", &url, dest.to_str().unwrap()];
        args.extend(option);
        let out = s3pump(&h, &args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{option:?}: {}",
            stderr_of(&out)
        );
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("unexpected argument '{}'", option[0])),
            "{option:?}: {err}"
        );
        assert!(err.contains("s3pump get --help"), "{err}");
    }
    assert_eq!(server.stats(), Default::default(), "nothing was sent");
    assert!(!dest.exists());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_kept_failed_upload_resumes_from_the_command_line() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let body = data(4 << 20 << 1, 6); // 8 MiB: parts of 5 MiB and 3 MiB
    std::fs::write(&src, &body).unwrap();
    let url = format!("s3://{}/cli/resumed", h.bucket);
    let src = src.to_str().unwrap();
    let common = ["--part-size", "5MiB", "--max-inflight-parts", "1"];

    server.inject(Fault::new(Op::UploadPart, FaultKind::status(503, "SlowDown")).part(2));
    server.inject(Fault::new(Op::UploadPart, FaultKind::status(403, "AccessDenied")).part(2));
    let mut args = vec!["put", src, &url, "--keep-failed-upload"];
    args.extend(common);
    let out = s3pump(&h, &args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    let id = err
        .split("upload ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no upload id in {err}"))
        .to_string();
    assert_eq!(server.open_uploads()[0].upload_id, id);

    server.reset_stats();
    let mut args = vec!["put", src, &url, "--resume", &id];
    args.extend(common);
    let out = s3pump(&h, &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(server.stats().upload_part_calls, 1, "only part 2 is sent");
    assert_eq!(h.read_back("cli/resumed"), body);
    assert!(server.open_uploads().is_empty());
}

// ---- Signals ---------------------------------------------------------------

/// A running `s3pump` whose stderr is read line by line as it comes.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for a stderr line containing `text`.
    fn wait_for_line(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stderr.push(line),
                Err(_) => panic!("no line with {text:?} on stderr: {:?}", self.stderr),
            }
        }
    }

    /// Waits for the exit (killing the child after `timeout`); returns the
    /// status and all of stderr.
    fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "s3pump did not exit in {timeout:?}; stderr: {:?}",
                    self.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert!(stdout.is_empty(), "no JSON line after a cancel: {stdout}");
        // The reader thread ends at EOF: collect the rest.
        self.stderr.extend(self.lines.iter());
        (status, self.stderr.join("\n"))
    }
}

/// Polls `cond` until it holds.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn upload_is_mid_flight(server: &TestServer) -> bool {
    !server.open_uploads().is_empty() && server.stats().upload_part_calls >= 1
}

/// Sets the flag when dropped (also when the test panics).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Feeds `pipe` 6 MiB, a little more than one part, then holds it open
/// without writing until `stop` is set: a stream that stalls, so the
/// upload's producer is blocked waiting for data when the signal comes.
fn stalled_stream(mut pipe: impl Write + Send + 'static, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        if pipe.write_all(&data(6 << 20, 1)).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// Ctrl-C during `put -` of a stream that is still open but idle: the
/// multipart upload is aborted at once (not when the stream next delivers),
/// the notice printed, the status 130.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn sigint_during_a_stream_put_aborts_the_upload() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let url = format!("s3://{}/cli/interrupted", h.bucket);
    let mut cmd = s3pump(
        &h,
        &[
            "put",
            "-",
            &url,
            "--part-size",
            "5MiB",
            "--max-inflight-parts",
            "2",
        ],
    );
    cmd.stdin(Stdio::piped());
    let mut run = Running::spawn(cmd);
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    stalled_stream(run.child.stdin.take().unwrap(), Arc::clone(&stop.0));
    wait_until("an UploadPart", Duration::from_secs(20), || {
        upload_is_mid_flight(server)
    });
    run.signal(libc::SIGINT);
    let (status, stderr) = run.wait(Duration::from_secs(20));
    drop(stop);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled: SIGINT received"), "{stderr}");
    assert!(
        server.open_uploads().is_empty(),
        "left open: {:?}",
        server.open_uploads()
    );
    assert_eq!(server.stats().abort_calls, 1);
    assert_eq!(server.object_bytes(&h.bucket, "cli/interrupted"), None);
}

/// SIGTERM during `put FILE` while parts are in flight: no new part starts,
/// the upload is aborted, the status 143.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn sigterm_during_a_file_put_aborts_the_upload() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, data(24 << 20, 3)).unwrap(); // 5 parts
    server.set_part_delay(Duration::from_millis(300));
    let url = format!("s3://{}/cli/terminated", h.bucket);
    let run = Running::spawn(s3pump(
        &h,
        &[
            "put",
            src.to_str().unwrap(),
            &url,
            "--part-size",
            "5MiB",
            "--max-inflight-parts",
            "2",
        ],
    ));
    wait_until("an UploadPart", Duration::from_secs(20), || {
        upload_is_mid_flight(server)
    });
    run.signal(libc::SIGTERM);
    let (status, stderr) = run.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("cancelled: SIGTERM received"), "{stderr}");
    assert!(server.open_uploads().is_empty());
    let stats = server.stats();
    assert_eq!(stats.abort_calls, 1);
    assert!(stats.upload_part_calls < 5, "it stopped early: {stats:?}");
    assert_eq!(stats.complete_calls, 0);
}

/// Under `--keep-failed-upload` a cancelled upload is kept and its id
/// printed, and `--resume` finishes it.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_cancelled_upload_kept_on_request_can_be_resumed() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let body = data(16 << 20, 7); // 4 parts
    std::fs::write(&src, &body).unwrap();
    server.set_part_delay(Duration::from_millis(200));
    let url = format!("s3://{}/cli/kept", h.bucket);
    let src = src.to_str().unwrap();
    let common = ["--part-size", "5MiB", "--max-inflight-parts", "1"];
    let mut args = vec!["put", src, &url, "--keep-failed-upload"];
    args.extend(common);
    let run = Running::spawn(s3pump(&h, &args));
    wait_until("an UploadPart", Duration::from_secs(20), || {
        upload_is_mid_flight(server)
    });
    run.signal(libc::SIGINT);
    let (status, stderr) = run.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled: SIGINT received"), "{stderr}");
    let open = server.open_uploads();
    assert_eq!(open.len(), 1, "kept");
    assert!(stderr.contains(&open[0].upload_id), "{stderr}");
    assert_eq!(server.stats().abort_calls, 0);

    server.set_part_delay(Duration::ZERO);
    let mut args = vec!["put", src, &url, "--resume", &open[0].upload_id];
    args.extend(common);
    let out = s3pump(&h, &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(h.read_back("cli/kept"), body);
    assert!(server.open_uploads().is_empty());
}

/// Ctrl-C during `get` into a file: the temporary file is removed and no
/// file is left in the directory.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn sigint_during_a_get_leaves_no_file_behind() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    server.put_object_bytes(&h.bucket, "big", &data(16 << 20, 4));
    for _ in 0..16 {
        server.inject(Fault::new(
            Op::GetObject,
            FaultKind::Delay(Duration::from_millis(300)),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let url = format!("s3://{}/big", h.bucket);
    let run = Running::spawn(s3pump(
        &h,
        &[
            "get",
            &url,
            dest.to_str().unwrap(),
            "--part-size",
            "1MiB",
            "--max-inflight-parts",
            "2",
        ],
    ));
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    wait_until(
        "a ranged GET and the temporary file",
        Duration::from_secs(20),
        || server.stats().get_object_calls >= 1 && files() == 1,
    );
    run.signal(libc::SIGINT);
    let (status, stderr) = run.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled: SIGINT received"), "{stderr}");
    assert_eq!(files(), 0, "the temporary file is removed");
    assert!(server.stats().get_object_calls < 16, "it stopped early");
}

/// A second signal while the first one's cleanup waits on a slow part ends
/// the process at once (without cleaning up: that is what it is for).
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_second_signal_exits_at_once() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, data(6 << 20, 3)).unwrap();
    server.set_part_delay(Duration::from_secs(8));
    let url = format!("s3://{}/cli/killed", h.bucket);
    let mut run = Running::spawn(s3pump(
        &h,
        &["put", src.to_str().unwrap(), &url, "--part-size", "5MiB"],
    ));
    wait_until("an UploadPart", Duration::from_secs(20), || {
        upload_is_mid_flight(server)
    });
    run.signal(libc::SIGINT);
    run.wait_for_line("cancelled: SIGINT received", Duration::from_secs(20));
    let second = Instant::now();
    run.signal(libc::SIGINT);
    // Well before the part held for 8 s could finish (and the abort follow).
    let (status, stderr) = run.wait(Duration::from_secs(6));
    assert!(
        second.elapsed() < Duration::from_secs(6),
        "{:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("SIGINT received again"), "{stderr}");
    assert_eq!(server.stats().abort_calls, 0, "no cleanup after the second");
}

// ---- Progress ----------------------------------------------------------------

/// A pseudo-terminal: (master, slave).
fn pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the locals; the name
    // pointer may be null and the termios/winsize pointers are valid or null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Runs `put` of a slow upload with stderr on a terminal; returns what the
/// terminal received and the JSON line.
fn put_on_a_terminal(h: &Harness, src: &Path, extra: &[&str]) -> (String, String) {
    let url = format!("s3://{}/cli/progress", h.bucket);
    let mut args = vec!["put", src.to_str().unwrap(), &url, "--part-size", "5MiB"];
    args.extend(extra);
    on_a_terminal(h, &args)
}

/// Runs the command with stderr on an 80-column terminal; returns what the
/// terminal received and stdout.
fn on_a_terminal(h: &Harness, args: &[&str]) -> (String, String) {
    let (mut master, slave) = pty();
    let mut cmd = s3pump(h, args);
    cmd.env("TERM", "xterm")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the slave: the master reads EOF (EIO) at the exit
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    (
        reader.join().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The bar is drawn on a terminal, not elsewhere (every other test has stderr
/// on a pipe and asserts it empty or one line), and `--no-progress` turns it off.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn progress_is_drawn_only_on_a_terminal_unless_turned_off() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, data(12 << 20, 8)).unwrap(); // 3 parts
    server.set_part_delay(Duration::from_millis(300));

    let (terminal, json) = put_on_a_terminal(&h, &src, &["--max-inflight-parts", "1"]);
    assert!(json.starts_with("{\"bucket\":"), "{json}");
    assert!(terminal.contains("MiB"), "a bar: {terminal:?}");
    assert!(terminal.contains('%'), "a bar: {terminal:?}");

    let (terminal, json) = put_on_a_terminal(&h, &src, &["--no-progress"]);
    assert!(json.starts_with("{\"bucket\":"), "{json}");
    assert_eq!(terminal, "", "--no-progress draws nothing");
}

/// The frames drawn on a terminal: its output without escape sequences,
/// cut at every carriage return and newline.
fn frames(terminal: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = terminal.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then a letter.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(|f| f.trim_end().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Regression: the bar was about 90 columns (two lines a frame on an
/// 80-column terminal), and `cp --recursive` first drew `100% 0 B/0 B`.
#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_bar_fits_80_columns_and_shows_no_percentage_before_the_total() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, data(12 << 20, 8)).unwrap();
    server.set_part_delay(Duration::from_millis(300));
    let (terminal, _) = put_on_a_terminal(&h, &src, &["--max-inflight-parts", "1"]);
    let (tree, _) = on_a_terminal(
        &h,
        &[
            "cp",
            "--recursive",
            dir.path().to_str().unwrap(),
            &format!("s3://{}/tree", h.bucket),
            "--part-size",
            "5MiB",
            "--max-inflight-parts",
            "1",
        ],
    );
    for (what, out) in [("put", &terminal), ("cp --recursive", &tree)] {
        let frames = frames(out);
        assert!(frames.iter().any(|f| f.contains('%')), "{what}: {frames:?}");
        for f in &frames {
            assert!(f.chars().count() < 80, "{what}: {f:?}");
            assert!(!f.contains("0 B/0 B"), "{what}: {f:?}");
        }
    }
}

// ---- cp, ls, rm and the connection flags ----

use crate::tree::{snapshot, write};

/// Runs `cmd` and returns (status, stdout, stderr).
fn run(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cp_recursive_up_and_down_gives_an_identical_tree() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.jpg", &data(3000, 1));
    write(src.path(), "empty", b"");
    write(src.path(), "2024/summer/beach day.jpg", &data(70_000, 2));
    write(src.path(), "2024/ünïcødé 写真.png", &data(5000, 3));
    write(src.path(), "2024/summer/big.raw", &data((5 << 20) + 1, 4));
    let files = 5;
    let bytes = 3000 + 70_000 + 5000 + (5 << 20) + 1;
    let url = format!("s3://{}/photos", h.bucket);
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &[
            "cp",
            "--recursive",
            src.path().to_str().unwrap(),
            &url,
            "--concurrency",
            "3",
            "--part-size",
            "5MiB",
        ],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let fields = json_fields(&stdout);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["objects", "bytes", "failed", "seconds"]);
    assert_eq!(fields[0].1, files.to_string());
    assert_eq!(fields[1].1, bytes.to_string());
    assert_eq!(fields[2].1, "0");
    assert!(fields[3].1.parse::<f64>().unwrap() >= 0.0);
    assert_eq!(
        h.read_back("photos/2024/ünïcødé 写真.png"),
        data(5000, 3),
        "keys are the prefix, '/', and the relative path"
    );

    let dest = tempfile::tempdir().unwrap();
    let copy = dest.path().join("copy");
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &[
            "cp",
            "--recursive",
            &format!("{url}/"),
            copy.to_str().unwrap(),
        ],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json_fields(&stdout)[0].1, files.to_string());
    // As `diff -r` would see them: the same paths with the same bytes.
    assert_eq!(snapshot(&copy), snapshot(src.path()));

    // A single object each way, with the name taken from the other side.
    let (code, _, stderr) = run(s3pump(
        &h,
        &[
            "cp",
            src.path().join("a.jpg").to_str().unwrap(),
            &format!("s3://{}/single/", h.bucket),
        ],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &[
            "cp",
            &format!("s3://{}/single/a.jpg", h.bucket),
            &format!("{}/", dest.path().display()),
        ],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json_fields(&stdout)[1].1, "\"single/a.jpg\"");
    assert_eq!(
        std::fs::read(dest.path().join("a.jpg")).unwrap(),
        data(3000, 1)
    );
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cp_recursive_lists_failed_objects_and_exits_1() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let src = tempfile::tempdir().unwrap();
    for i in 0..4 {
        write(src.path(), &format!("f{i}"), &data(100, i));
    }
    server.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(403, "AccessDenied"),
    ));
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &[
            "cp",
            "--recursive",
            "--keep-going",
            "--concurrency",
            "1",
            src.path().to_str().unwrap(),
            &format!("s3://{}/p/", h.bucket),
        ],
    ));
    assert_eq!(code, Some(1), "{stderr}");
    let fields = json_fields(&stdout);
    assert_eq!((fields[0].1.as_str(), fields[2].1.as_str()), ("3", "1"));
    let failed: Vec<&str> = stderr.lines().collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(
        failed[0].starts_with(&format!("s3pump: failed: s3://{}/p/f0", h.bucket)),
        "{stderr}"
    );
    // A refusal names where the credentials came from, never the secret.
    assert!(
        failed[0].contains("credentials from: environment (AWS_ACCESS_KEY_ID)"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");
}

/// Puts `n` objects under `prefix` directly into the server's store.
fn many_objects(server: &TestServer, bucket: &str, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
    for key in &keys {
        server.put_object_bytes(bucket, key, key.as_bytes());
    }
    keys
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn ls_pages_through_more_than_1000_keys() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let keys = many_objects(server, &h.bucket, "many/", 1203);
    server.put_object_bytes(&h.bucket, "other", b"x");
    server.reset_stats();
    let (code, stdout, stderr) = run(s3pump(&h, &["ls", &format!("s3://{}/many/", h.bucket)]));
    assert_eq!(code, Some(0), "{stderr}");
    let listed: Vec<&str> = stdout.lines().collect();
    assert_eq!(listed.len(), keys.len());
    for (line, key) in listed.iter().zip(&keys) {
        // size, last modified, key
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], key.len().to_string(), "{line}");
        assert!(parts[1].starts_with("20"), "{line}");
        assert_eq!(parts[2], key, "{line}");
    }
    assert!(server.stats().list_objects_calls >= 2, "one page only");

    let (code, stdout, stderr) = run(s3pump(
        &h,
        &["ls", "--json", "--recursive", &format!("s3://{}", h.bucket)],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), keys.len() + 1);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["key"], "many/00000");
    assert_eq!(first["size"], 10);
    assert!(first["last_modified"].is_string(), "{first}");

    // Without --recursive: one "directory" level, as `aws s3 ls`.
    let (code, stdout, stderr) = run(s3pump(&h, &["ls", &format!("s3://{}", h.bucket)]));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PRE", "many/"]
    );
    assert!(lines[1].ends_with(" other"), "{stdout}");
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &["ls", "--json", &format!("s3://{}/ma", h.bucket)],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"prefix":"many/"}"#);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn rm_recursive_deletes_more_than_1000_keys_in_batches() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    many_objects(server, &h.bucket, "gone/", 1203);
    // Not under the prefix "gone/" although they start with "gone".
    server.put_object_bytes(&h.bucket, "gone-not/kept", b"x");
    server.put_object_bytes(&h.bucket, "single", b"x");
    server.reset_stats();
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &["rm", "--recursive", &format!("s3://{}/gone", h.bucket)],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"deleted":1203,"failed":0}"#);
    assert_eq!(server.stats().delete_objects_calls, 2);
    assert_eq!(h.client().list_objects(&h.bucket, "gone/").count(), 0);
    assert!(server.object_bytes(&h.bucket, "gone-not/kept").is_some());

    let (code, stdout, stderr) = run(s3pump(&h, &["rm", &format!("s3://{}/single", h.bucket)]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"deleted":1,"failed":0}"#);
    assert!(server.object_bytes(&h.bucket, "single").is_none());
    // A prefix without --recursive is refused.
    let (code, _, stderr) = run(s3pump(&h, &["rm", &format!("s3://{}", h.bucket)]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--recursive"), "{stderr}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn no_sign_request_sends_no_credentials() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    server.put_object_bytes(&h.bucket, "k", b"x");
    let before = server.access_keys_used().len();
    // Valid keys are in the environment: --no-sign-request must not use them.
    let (code, stdout, stderr) = run(s3pump(
        &h,
        &["ls", "--no-sign-request", &format!("s3://{}", h.bucket)],
    ));
    // The server takes only signed requests: an unsigned one is refused.
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    assert!(stderr.contains("not signed"), "{stderr}");
    assert_eq!(
        server.access_keys_used().len(),
        before,
        "a request was signed"
    );
    // The same without the flag is signed and listed.
    let (code, stdout, stderr) = run(s3pump(&h, &["ls", &format!("s3://{}", h.bucket)]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with(" k\n"), "{stdout}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn profile_picks_the_named_profile_of_the_shared_files() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong-secret-0123\n\n\
             [good]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        format!("[default]\nregion = {REGION}\n\n[profile good]\nregion = {REGION}\n"),
    )
    .unwrap();
    let cmd = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("HOME", home.path())
            .arg("ls")
            .arg(format!("s3://{}", h.bucket))
            .args(extra)
            .args(["--endpoint", h.endpoint()]);
        cmd
    };
    let (code, _, stderr) = run(cmd(&["--profile", "good"]));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(cmd(&[]));
    assert_eq!(
        code,
        Some(1),
        "the default profile's keys are wrong: {stderr}"
    );
    assert!(
        stderr.contains("credentials from: profile `default`: static keys"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret-0123"), "{stderr}");
    let (code, _, stderr) = run(cmd(&["--profile", "missing"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn ca_bundle_and_signed_payload_over_https() {
    use support::tls_front::{TestCa, Validity};
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let ca = TestCa::new("s3pump cli CA");
    let front = crate::tls::front(&h, &ca.issue(&["127.0.0.1"], Validity::Current));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, data(1000, 5)).unwrap();
    let put = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION)
            .arg("put")
            .arg(&file)
            .arg(format!("s3://{}/k", h.bucket))
            .args(["--endpoint", &front.endpoint("127.0.0.1")])
            .args(extra);
        run(cmd)
    };
    // The private CA is unknown without the flag.
    let (code, _, stderr) = put(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("AWS_CA_BUNDLE"), "{stderr}");
    // With it: over https the default sends UNSIGNED-PAYLOAD and a checksum...
    server.reset_stats();
    let (code, _, stderr) = put(&["--ca-bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(server.stats().unsigned_payload_calls, 1);
    // ...and --signed-payload signs the SHA-256 of the body.
    server.reset_stats();
    let (code, _, stderr) = put(&["--ca-bundle", bundle.to_str().unwrap(), "--signed-payload"]);
    assert_eq!(code, Some(0), "{stderr}");
    let stats = server.stats();
    assert_eq!(
        (stats.put_object_calls, stats.unsigned_payload_calls),
        (1, 0)
    );
    assert_eq!(h.read_back("k"), data(1000, 5));
    // The two payload flags exclude each other.
    let (code, _, stderr) = put(&["--signed-payload", "--unsigned-payload"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cp_streams_and_refuses_what_it_cannot_do() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let body = data(100_000, 9);
    let url = format!("s3://{}/streamed", h.bucket);
    let mut cmd = s3pump(&h, &["cp", "-", &url]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(h.read_back("streamed"), body);
    // To standard output: the bytes on stdout, the JSON line on stderr.
    let out = s3pump(&h, &["cp", &url, "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out.stdout == body, "stdout differs");
    assert_eq!(json_fields(&stderr_of(&out))[1].1, "\"streamed\"");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"f").unwrap();
    let f = file.to_str().unwrap();
    let bucket_url = format!("s3://{}/", h.bucket);
    let cases: [(&[&str], &str); 9] = [
        (&["cp", d, d], "must be an s3:// URL"),
        (&["cp", d, &bucket_url], "is a directory; use --recursive"),
        (&["cp", &url, &url], "the same object"),
        (
            &["cp", &url, d, "--checksum", "none"],
            "--checksum applies to uploads only",
        ),
        (&["cp", f, &url, "--no-verify-checksum"], "downloads only"),
        (
            &["cp", f, &url, "--concurrency", "2"],
            "--concurrency needs --recursive",
        ),
        (&["cp", "--recursive", "-", &url], "standard input"),
        (&["cp", &bucket_url, d], "use --recursive"),
        (&["cp", "-", &bucket_url], "name the key"),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run(s3pump(&h, args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn cp_recursive_stops_at_the_first_failure_and_skips_symlinks_unless_asked() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", b"outside");
    let src = tempfile::tempdir().unwrap();
    for i in 0..4 {
        write(src.path(), &format!("f{i}"), &data(100, i));
    }
    std::os::unix::fs::symlink(outside.path().join("secret"), src.path().join("link")).unwrap();
    let cp = |prefix: &str, extra: &[&str]| {
        let mut args = vec![
            "cp".to_string(),
            "--recursive".into(),
            "--concurrency".into(),
            "1".into(),
            src.path().to_str().unwrap().into(),
            format!("s3://{}/{prefix}", h.bucket),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(s3pump(&h, &args))
    };
    let (code, stdout, stderr) = cp("plain", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json_fields(&stdout)[0].1, "4");
    assert!(stderr.contains("symbolic link, not followed"), "{stderr}");
    assert!(server.object_bytes(&h.bucket, "plain/link").is_none());

    let (code, stdout, stderr) = cp("follow", &["--follow-symlinks"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json_fields(&stdout)[0].1, "5");
    assert_eq!(h.read_back("follow/link"), b"outside");

    // Without --keep-going the first failure starts no new object.
    server.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(403, "AccessDenied"),
    ));
    let (code, stdout, stderr) = cp("stop", &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let fields = json_fields(&stdout);
    assert_eq!((fields[0].1.as_str(), fields[2].1.as_str()), ("0", "1"));
    assert!(stderr.contains("failed: s3://"), "{stderr}");
    assert!(stderr.contains("3 objects not started"), "{stderr}");
}
