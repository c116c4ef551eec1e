//! `s3pump cp` between two s3:// URLs (one object, `--recursive`) and
//! `s3pump mv` in its three directions: the real binary against the
//! in-process server.
#![cfg(feature = "cli")]

use crate::cli::{s3pump, stderr_of};
use crate::support::harness::{Harness, data};

fn json_line(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr_of(out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    stdout
}

#[cfg_attr(s3pump_external_s3, ignore = "the CLI tests use the in-process server")]
#[test]
fn cp_between_buckets_on_the_server() {
    let h = Harness::new();
    let server = h.local().unwrap();
    let other = format!("{}-2", h.bucket);
    server.create_bucket(&other);
    let client = h.client();
    let bytes = data(12 << 20, 40);
    let args = s3pump::PutObjectArgs::new()
        .content_type("text/x-cli")
        .metadata("k", "v");
    client
        .put_object(&h.bucket, "dir/big ü", &bytes[..], args)
        .unwrap();
    client
        .put_object_bytes(&h.bucket, "dir/sub/small", b"small", &Default::default())
        .unwrap();
    client
        .put_object_bytes(&h.bucket, "elsewhere", b"no", &Default::default())
        .unwrap();
    server.reset_stats();

    // One object, to a key ending in '/': it gets the source's name; in parts.
    let src = format!("s3://{}/dir/big ü", h.bucket);
    let line = json_line(
        &s3pump(
            &h,
            &[
                "cp",
                &src,
                &format!("s3://{other}/copied/"),
                "--part-size",
                "5MiB",
                "--max-inflight-parts",
                "2",
            ],
        )
        .output()
        .unwrap(),
    );
    assert!(
        line.starts_with(&format!(
            "{{\"bucket\":\"{other}\",\"key\":\"copied/big ü\",\"etag\":"
        )),
        "{line}"
    );
    assert!(line.contains("\"parts\":3,\"bytes\":12582912,"), "{line}");
    // No byte went through the client: no upload, no download.
    let stats = server.stats();
    assert_eq!(stats.http_body_bytes, 0, "{stats:?}");
    assert_eq!(stats.get_body_bytes, 0, "{stats:?}");
    let mut back = Vec::new();
    let info = client
        .get_object(&other, "copied/big ü", &mut back)
        .unwrap();
    assert_eq!(back, bytes);
    assert_eq!(info.content_type.as_deref(), Some("text/x-cli"));
    assert_eq!(info.metadata, vec![("k".to_owned(), "v".to_owned())]);

    // A prefix.
    let line = json_line(
        &s3pump(
            &h,
            &[
                "cp",
                "--recursive",
                &format!("s3://{}/dir/", h.bucket),
                &format!("s3://{other}/q/"),
            ],
        )
        .output()
        .unwrap(),
    );
    assert!(
        line.starts_with("{\"objects\":2,\"bytes\":12582917,\"failed\":0,"),
        "{line}"
    );
    let mut small = Vec::new();
    client
        .get_object(&other, "q/sub/small", &mut small)
        .unwrap();
    assert_eq!(small, b"small");
    assert!(client.head_object(&other, "q/elsewhere").is_err());

    // Into the source prefix itself: refused, nothing copied.
    let out = s3pump(
        &h,
        &[
            "cp",
            "--recursive",
            &format!("s3://{}/dir", h.bucket),
            &format!("s3://{}/dir/again/", h.bucket),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        client
            .list_objects(&h.bucket, "dir/again/")
            .next()
            .is_none()
    );

    // Options that make no sense on the server are usage errors.
    let out = s3pump(
        &h,
        &[
            "cp",
            &src,
            &format!("s3://{other}/x"),
            "--checksum",
            "crc32c",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    // A missing source: exit 1, nothing copied.
    let out = s3pump(
        &h,
        &[
            "cp",
            &format!("s3://{}/absent", h.bucket),
            &format!("s3://{other}/y"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(client.head_object(&other, "y").unwrap_err().is_not_found());
}

#[cfg_attr(s3pump_external_s3, ignore = "the CLI tests use the in-process server")]
#[test]
fn mv_in_three_directions() {
    let h = Harness::new();
    let client = h.client();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    let bytes = data(300_000, 41);
    std::fs::write(&file, &bytes).unwrap();
    let b = &h.bucket;

    // file -> s3: the file is removed once uploaded.
    json_line(
        &s3pump(&h, &["mv", file.to_str().unwrap(), &format!("s3://{b}/a/")])
            .output()
            .unwrap(),
    );
    assert!(!file.exists());
    assert_eq!(h.read_back("a/f.bin"), bytes);

    // s3 -> s3: copied, then deleted.
    json_line(
        &s3pump(
            &h,
            &[
                "mv",
                &format!("s3://{b}/a/f.bin"),
                &format!("s3://{b}/b/g.bin"),
            ],
        )
        .output()
        .unwrap(),
    );
    assert!(client.head_object(b, "a/f.bin").unwrap_err().is_not_found());
    assert_eq!(h.read_back("b/g.bin"), bytes);

    // s3 -> file: the object is deleted once the file is in place.
    let back = dir.path().join("back.bin");
    let out = s3pump(
        &h,
        &["mv", &format!("s3://{b}/b/g.bin"), back.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    assert!(client.head_object(b, "b/g.bin").unwrap_err().is_not_found());

    // --recursive between prefixes.
    for k in ["in/1", "in/d/2"] {
        client
            .put_object_bytes(b, k, k.as_bytes(), &Default::default())
            .unwrap();
    }
    let line = json_line(
        &s3pump(
            &h,
            &[
                "mv",
                "--recursive",
                &format!("s3://{b}/in"),
                &format!("s3://{b}/done"),
            ],
        )
        .output()
        .unwrap(),
    );
    assert!(line.starts_with("{\"objects\":2,"), "{line}");
    assert_eq!(h.read_back("done/d/2"), b"in/d/2");
    assert!(client.head_object(b, "in/1").unwrap_err().is_not_found());

    // A failed move keeps its source.
    std::fs::write(&file, b"kept").unwrap();
    let out = s3pump(
        &h,
        &[
            "mv",
            file.to_str().unwrap(),
            &format!("s3://{b}/done/1"),
            "--if-none-match",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("precondition failed"));
    assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    assert_eq!(h.read_back("done/1"), b"in/1");

    // Refused: standard input, a directory tree, a FIFO.
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for args in [
        vec!["mv", "-", &format!("s3://{b}/x")],
        vec![
            "mv",
            "--recursive",
            dir.path().to_str().unwrap(),
            &format!("s3://{b}/t/"),
        ],
        vec!["mv", fifo.to_str().unwrap(), &format!("s3://{b}/x")],
    ] {
        let out = s3pump(&h, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    }
    assert!(fifo.exists());
}
