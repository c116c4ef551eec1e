//! Many objects: `Client::upload_dir` and `Client::download_prefix` against
//! the in-process server: trees round-trip byte-identical, hostile keys are
//! refused without writing outside the target, failures stop or do not stop
//! the tree, symbolic links are not followed unless asked.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use s3pump::{ErrorKind, PutObjectArgs, TreeArgs, TreeProgress};
use support::harness::{Harness, data};
use support::server::{Fault, FaultKind, Op};

/// Every file under `root` (symbolic links as `->target`), by relative path.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, format!("->{}", target.display()).into_bytes());
            } else if t.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                go(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

pub(crate) fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

#[test]
fn a_tree_round_trips_byte_identical() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "top.txt", b"top");
    write(src.path(), "empty", b"");
    write(src.path(), "a/b/c/deep.bin", &data(70_000, 1));
    write(src.path(), "a/b/empty too", b"");
    write(src.path(), "with space/file name.txt", b"spaces");
    write(src.path(), "ünïcødé/日本語 ファイル.bin", &data(1234, 2));
    // One multipart object (two parts of 5 MiB).
    write(src.path(), "a/big.bin", &data((5 << 20) + 17, 3));
    let before = snapshot(src.path());
    let files = before.keys().filter(|k| !k.ends_with('/')).count() as u64;
    let bytes: u64 = before.values().map(|v| v.len() as u64).sum();

    let seen = Arc::new(Mutex::new(Vec::<TreeProgress>::new()));
    let record = seen.clone();
    let prefix = h.key("tree");
    let up = h
        .client()
        .upload_dir(
            src.path(),
            &h.bucket,
            &prefix,
            TreeArgs::new()
                .concurrency(3)
                .put_args(PutObjectArgs::new().part_size(5 << 20))
                .on_progress(move |p| {
                    record.lock().unwrap().push(p);
                    true
                }),
        )
        .unwrap();
    assert!(up.is_complete(), "{:?}", up.failures);
    assert_eq!((up.objects, up.bytes), (files, bytes));
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(
        (
            last.objects_done,
            last.objects_total,
            last.bytes_done,
            last.bytes_total
        ),
        (files, files, bytes, bytes)
    );
    // The keys are the prefix, a '/' and the relative paths.
    let keys: Vec<String> = h
        .client()
        .list_objects(&h.bucket, &prefix)
        .map(|o| o.unwrap().key)
        .collect();
    assert!(
        keys.contains(&format!("{prefix}/ünïcødé/日本語 ファイル.bin")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("{prefix}/a/b/c/deep.bin")),
        "{keys:?}"
    );
    assert_eq!(keys.len() as u64, files);

    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("copy");
    let down = h
        .client()
        .download_prefix(&h.bucket, &prefix, &target, TreeArgs::new().concurrency(4))
        .unwrap();
    assert!(down.is_complete(), "{:?}", down.failures);
    assert_eq!((down.objects, down.bytes), (files, bytes));
    assert_eq!(snapshot(&target), before);
    // No temporary file was left behind.
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 1);
}

/// A front for the test server that answers every ListObjectsV2 with
/// `listing` (and closes that connection) and relays anything else.
fn listing_front(upstream: std::net::SocketAddr, listing: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let listing = listing.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut conn = conn;
                if head.lines().next().unwrap_or("").contains("list-type=2") {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{listing}",
                        listing.len()
                    );
                    let _ = conn.write_all(reply.as_bytes());
                    return;
                }
                // Anything else: the rest of this connection goes upstream.
                let mut up = TcpStream::connect(upstream).unwrap();
                up.write_all(head.as_bytes()).unwrap();
                let mut up_reader = up.try_clone().unwrap();
                let mut back = conn.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_reader, &mut back);
                    let _ = back.shutdown(std::net::Shutdown::Both);
                });
                let buffered = reader.buffer().to_vec();
                let _ = up.write_all(&buffered);
                let mut rest = reader.into_inner();
                let _ = std::io::copy(&mut rest, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    endpoint
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn keys_leaving_the_target_are_refused_and_nothing_is_written_outside() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    server.put_object_bytes(&h.bucket, "good.txt", b"good");
    // The server stores keys as files, so it cannot hold these keys: the
    // listing that names them is served by a front.
    let hostile = [
        "../escape-1.txt",
        "/tmp/s3pump-escape-2.txt",
        "a/../../escape-3.txt",
        "sub/../../../escape-4.txt",
        "a//b.txt",
        "nul\u{0}.txt",
    ];
    let mut contents = String::new();
    for key in hostile.iter().copied().chain(["dir/", "good.txt"]) {
        let escaped = key.replace('\0', "&#0;");
        contents.push_str(&format!(
            "<Contents><Key>{escaped}</Key><Size>4</Size></Contents>"
        ));
    }
    // Quick-xml refuses a NUL character reference: keep that key out if so.
    let listing = format!(
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <IsTruncated>false</IsTruncated>{}</ListBucketResult>",
        contents.replace(
            "<Contents><Key>nul&#0;.txt</Key><Size>4</Size></Contents>",
            ""
        )
    );
    let endpoint = listing_front(server.addr(), listing);
    let client = h.builder().endpoint(&endpoint).build().unwrap();

    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("a").join("target");
    // Without keep_going: a refused key is skipped, not a failure that
    // stops the other objects.
    let out = client
        .download_prefix(&h.bucket, "", &target, TreeArgs::new())
        .unwrap();
    // The good key is there, the marker skipped, every hostile key refused.
    assert_eq!(std::fs::read(target.join("good.txt")).unwrap(), b"good");
    assert_eq!((out.objects, out.skipped), (1, 1));
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert!(!out.is_complete());
    let mut refused: Vec<&str> = out.refused.iter().map(|r| r.key.as_str()).collect();
    refused.sort();
    let mut expected: Vec<&str> = hostile[..5].to_vec();
    expected.sort();
    assert_eq!(refused, expected);
    for r in &out.refused {
        assert!(r.reason.contains("refused"), "{}", r.reason);
    }
    // Nothing outside the target: its parents hold only the path to it.
    assert_eq!(
        snapshot(parent.path()).keys().collect::<Vec<_>>(),
        ["a/", "a/target/", "a/target/good.txt"]
    );
    assert!(!Path::new("/tmp/s3pump-escape-2.txt").exists());
    // Nothing was asked of the server for the refused keys.
    assert_eq!(server.stats().head_object_calls, 1);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_download_does_not_write_through_a_symlink_in_the_target() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    server.put_object_bytes(&h.bucket, "p/link/x.txt", b"x");
    let outside = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), target.path().join("link")).unwrap();
    let out = h
        .client()
        .download_prefix(&h.bucket, "p", target.path(), TreeArgs::new())
        .unwrap();
    assert_eq!(out.failures.len(), 1);
    assert!(out.failures[0].error.to_string().contains("symbolic link"));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

fn small_tree(n: usize) -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    for i in 0..n {
        write(src.path(), &format!("f{i}"), &data(100 + i, i as u64));
    }
    src
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_first_failure_stops_new_uploads_unless_keep_going() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let src = small_tree(6);
    // Concurrency 1: the order is the walk's (name order).
    server.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(403, "AccessDenied"),
    ));
    let out = h
        .client()
        .upload_dir(
            src.path(),
            &h.bucket,
            "stop",
            TreeArgs::new().concurrency(1),
        )
        .unwrap();
    assert_eq!(
        (out.objects, out.failures.len(), out.not_started),
        (0, 1, 5)
    );
    assert_eq!(out.failures[0].key, "stop/f0");
    assert_eq!(out.failures[0].error.kind(), ErrorKind::AccessDenied);
    assert_eq!(
        out.failures[0].path.as_deref(),
        Some(src.path().join("f0").as_path())
    );
    assert!(!out.is_complete());

    server.inject(Fault::new(Op::PutObject, FaultKind::status(403, "AccessDenied")).attempt(3));
    let out = h
        .client()
        .upload_dir(
            src.path(),
            &h.bucket,
            "go",
            TreeArgs::new().concurrency(1).keep_going(true),
        )
        .unwrap();
    assert_eq!(
        (out.objects, out.failures.len(), out.not_started),
        (5, 1, 0)
    );
    assert_eq!(out.failures[0].key, "go/f2");
    let listed = h.client().list_objects(&h.bucket, "go/").count();
    assert_eq!(listed, 5);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_first_failure_stops_new_downloads_unless_keep_going() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    for i in 0..6 {
        server.put_object_bytes(&h.bucket, &format!("d/f{i}"), &data(100, i));
    }
    let target = tempfile::tempdir().unwrap();
    server.inject(Fault::new(Op::HeadObject, FaultKind::status(403, "AccessDenied")).attempt(2));
    let out = h
        .client()
        .download_prefix(
            &h.bucket,
            "d/",
            target.path().join("stop"),
            TreeArgs::new().concurrency(1),
        )
        .unwrap();
    assert_eq!(
        (out.objects, out.failures.len(), out.not_started),
        (1, 1, 4)
    );
    assert_eq!(out.failures[0].key, "d/f1");
    assert_eq!(
        out.failures[0].path.as_deref(),
        Some(target.path().join("stop").join("f1").as_path())
    );
    assert_eq!(
        std::fs::read_dir(target.path().join("stop"))
            .unwrap()
            .count(),
        1
    );

    server.inject(Fault::new(Op::HeadObject, FaultKind::status(403, "AccessDenied")).attempt(2));
    let out = h
        .client()
        .download_prefix(
            &h.bucket,
            "d/",
            target.path().join("go"),
            TreeArgs::new().concurrency(1).keep_going(true),
        )
        .unwrap();
    assert_eq!(
        (out.objects, out.failures.len(), out.not_started),
        (5, 1, 0)
    );
    assert_eq!(
        std::fs::read_dir(target.path().join("go")).unwrap().count(),
        5
    );
}

#[test]
fn symlinks_are_not_followed_unless_asked() {
    let h = Harness::new();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", b"outside");
    write(outside.path(), "dir/inner.txt", b"inner");
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "real.txt", b"real");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        src.path().join("file-link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("dir"), src.path().join("dir-link")).unwrap();
    // A loop: followed, it is reported, not walked forever.
    std::os::unix::fs::symlink(src.path(), src.path().join("loop")).unwrap();

    let out = h
        .client()
        .upload_dir(src.path(), &h.bucket, "plain", TreeArgs::new())
        .unwrap();
    assert!(out.is_complete(), "{:?}", out.failures);
    assert_eq!((out.objects, out.skipped), (1, 3));
    let keys: Vec<String> = h
        .client()
        .list_objects(&h.bucket, "plain/")
        .map(|o| o.unwrap().key)
        .collect();
    assert_eq!(keys, ["plain/real.txt"]);

    let out = h
        .client()
        .upload_dir(
            src.path(),
            &h.bucket,
            "follow",
            TreeArgs::new().follow_symlinks(true).keep_going(true),
        )
        .unwrap();
    assert_eq!(out.objects, 3);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].key, "follow/loop");
    let mut keys: Vec<String> = h
        .client()
        .list_objects(&h.bucket, "follow/")
        .map(|o| o.unwrap().key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "follow/dir-link/inner.txt",
            "follow/file-link",
            "follow/real.txt"
        ]
    );
    assert_eq!(h.read_back("follow/file-link"), b"outside");
}

#[test]
fn a_cancelled_tree_stops_and_leaves_no_upload_open() {
    let h = Harness::new();
    let src = small_tree(40);
    let out = h.client().upload_dir(
        src.path(),
        &h.bucket,
        "c",
        TreeArgs::new()
            .concurrency(2)
            .on_progress(|p| p.objects_done < 3),
    );
    let err = out.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    let listed = h.client().list_objects(&h.bucket, "c/").count();
    assert!(listed < 40, "{listed} objects went up after the cancel");
    assert!(h.open_uploads().is_empty());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn concurrency_caps_the_objects_in_flight() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    for i in 0..12 {
        server.put_object_bytes(&h.bucket, &format!("c/{i:02}"), &data(1000, i));
    }
    for concurrency in [1, 4] {
        server.reset_stats();
        // Every GET held 100 ms: objects overlap as much as they are allowed to.
        for _ in 0..12 {
            server.inject(Fault::new(
                Op::GetObject,
                FaultKind::Delay(std::time::Duration::from_millis(100)),
            ));
        }
        let target = tempfile::tempdir().unwrap();
        let out = h
            .client()
            .download_prefix(
                &h.bucket,
                "c",
                target.path(),
                TreeArgs::new().concurrency(concurrency),
            )
            .unwrap();
        assert!(out.is_complete(), "{:?}", out.failures);
        assert_eq!(out.objects, 12);
        assert_eq!(
            server.stats().peak_get_objects_in_flight,
            concurrency as u64,
            "concurrency {concurrency}"
        );
    }
}
