//! `s3pump presign` and the conditional writes of `put` and `cp`
//! (`--if-none-match`, `--if-match ETAG`): the real binary against the
//! in-process server, the URL used by a plain HTTP client.
#![cfg(feature = "cli")]

use crate::cli::{s3pump, stderr_of};
use crate::support::harness::{Harness, data};

/// The URL `s3pump presign` prints: the only line on stdout.
fn presign(h: &Harness, args: &[&str]) -> String {
    let out = s3pump(h, &[&["presign"], args].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let url = stdout.strip_suffix('\n').expect("one line");
    assert!(!url.contains('\n'), "{stdout}");
    url.to_owned()
}

fn plain_http() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

#[cfg_attr(s3pump_external_s3, ignore = "the CLI tests use the in-process server")]
#[test]
fn presigned_get_and_put_work_without_credentials() {
    let h = Harness::new();
    let client = h.client();
    let bytes = data(100_000, 30);
    client
        .put_object_bytes(&h.bucket, "shared/ü k", &bytes, &Default::default())
        .unwrap();
    let http = plain_http();

    // GET, default expiry and method.
    let url = presign(&h, &[&format!("s3://{}/shared/ü k", h.bucket)]);
    assert!(url.contains("X-Amz-Expires=3600&"), "{url}");
    let mut r = http.get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_vec().unwrap(), bytes);

    // PUT, a given expiry; the method in any case.
    let url = presign(
        &h,
        &[
            &format!("s3://{}/uploaded", h.bucket),
            "--method",
            "put",
            "--expires-in",
            "60",
        ],
    );
    assert!(url.contains("X-Amz-Expires=60&"), "{url}");
    let r = http.put(&url).send(&bytes[..1000]).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.read_back("uploaded"), &bytes[..1000]);
    // The PUT URL does not read.
    assert_eq!(http.get(&url).call().unwrap().status(), 403);

    // Expiries S3 refuses are usage errors; nothing is printed.
    for bad in ["0", "604801", "-5", "soon"] {
        let out = s3pump(
            &h,
            &[
                "presign",
                &format!("s3://{}/k", h.bucket),
                "--expires-in",
                bad,
            ],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty());
    }
    let max = presign(
        &h,
        &[&format!("s3://{}/k", h.bucket), "--expires-in", "604800"],
    );
    assert!(max.contains("X-Amz-Expires=604800&"), "{max}");
}

#[cfg_attr(s3pump_external_s3, ignore = "the CLI tests use the in-process server")]
#[test]
fn put_and_cp_if_none_match_and_if_match() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::write(&one, b"first").unwrap();
    std::fs::write(&two, b"second").unwrap();
    let url = format!("s3://{}/lock", h.bucket);
    let run = |args: &[&str]| s3pump(&h, args).output().unwrap();

    let out = run(&["put", one.to_str().unwrap(), &url, "--if-none-match"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    for cmd in ["put", "cp"] {
        let out = run(&[cmd, two.to_str().unwrap(), &url, "--if-none-match"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr_of(&out);
        assert!(err.contains("precondition failed"), "{cmd}: {err}");
        assert!(err.contains("lock"), "{cmd}: {err}");
        assert_eq!(h.read_back("lock"), b"first", "{cmd}: unchanged");
    }

    let etag = h.client().head_object(&h.bucket, "lock").unwrap().etag;
    let out = run(&["put", two.to_str().unwrap(), &url, "--if-match", "\"0000\""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("precondition failed"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(h.read_back("lock"), b"first");
    let out = run(&["cp", two.to_str().unwrap(), &url, "--if-match", &etag]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(h.read_back("lock"), b"second");

    // Usage errors: both at once, on a download, --if-match on a tree.
    for args in [
        vec!["put", "f", &url, "--if-none-match", "--if-match", "e"],
        vec!["cp", &url, "./x", "--if-none-match"],
        vec!["cp", "--recursive", ".", &url, "--if-match", "e"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    }
}
