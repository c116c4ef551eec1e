//! The `s3pump` command line against the in-process server.
#![cfg(feature = "cli")]

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::harness::{Harness, data, multipart_etag};
use support::server::{ACCESS_KEY, REGION, SECRET_KEY};

fn s3pump(h: &Harness, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3pump"));
    cmd.args(args)
        .args(["--endpoint", h.endpoint()])
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", REGION)
        .env("HOME", std::env::temp_dir());
    cmd
}

/// Parses the one JSON line the CLI prints: a flat object of strings and numbers.
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

#[test]
fn put_from_stdin_and_get_round_trip() {
    let h = Harness::new();
    if h.local().is_none() {
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let fields = json_fields(&stdout);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["bucket", "key", "etag", "parts", "bytes", "seconds"]
    );
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

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy.bin");
    let out = s3pump(&h, &["get", &url, dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&dest).unwrap() == body,
        "downloaded bytes differ"
    );
}

#[test]
fn put_of_a_file_uses_its_size() {
    let h = Harness::new();
    if h.local().is_none() {
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
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(h.read_back("cli/file"), body);
}

#[test]
fn failures_exit_non_zero_with_one_line_naming_the_cause() {
    let h = Harness::new();
    if h.local().is_none() {
        return;
    }
    let cases: [(&[&str], &str); 5] = [
        (
            &["put", "/no/such/file", "s3://bucket/k"],
            "cannot open /no/such/file",
        ),
        (&["put", "-", "not-a-url"], "not an s3://BUCKET/KEY URL"),
        (
            &["put", "-", "s3://bucket/k", "--part-size", "5 parsecs"],
            "unknown unit",
        ),
        (
            &["put", "-", "s3://bucket/k", "--max-inflight-parts", "0"],
            "max_inflight_parts",
        ),
        (&["get", "s3://no-such-bucket/k", "-"], "404"),
    ];
    for (args, cause) in cases {
        let out = s3pump(&h, args).stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(cause), "{args:?}: {err}");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_kept_failed_upload_resumes_from_the_command_line() {
    use support::server::{Fault, FaultKind, Op};
    let h = Harness::new();
    let Some(server) = h.local() else { return };
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
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.stats().upload_part_calls, 1, "only part 2 is sent");
    assert_eq!(h.read_back("cli/resumed"), body);
    assert!(server.open_uploads().is_empty());
}
