//! Many objects: `list_objects` (ListObjectsV2 pages followed lazily, keys
//! URL-encoded on the wire and decoded) and `delete_objects` (batches of at
//! most 1000 keys, Quiet mode, Content-MD5), against the in-process server.

use crate::support;

use std::collections::BTreeMap;
use std::time::Instant;

use s3pump::{Client, ObjectSummary, PutObjectArgs};
use support::harness::{Harness, data, md5_hex};
use support::{Fault, FaultKind, Op};

/// Puts `keys` (small distinct bodies) from a few threads; returns key -> body.
fn put_all(client: &Client, bucket: &str, keys: &[String]) -> BTreeMap<String, Vec<u8>> {
    let bodies: Vec<(String, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), data(i % 97, i as u64)))
        .collect();
    std::thread::scope(|s| {
        for chunk in bodies.chunks(bodies.len().div_ceil(4).max(1)) {
            s.spawn(move || {
                for (k, body) in chunk {
                    client
                        .put_object_bytes(bucket, k, body, &PutObjectArgs::new())
                        .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
                }
            });
        }
    });
    bodies.into_iter().collect()
}

fn listed(client: &Client, bucket: &str, prefix: &str, page: u32) -> Vec<ObjectSummary> {
    client
        .list_objects(bucket, prefix)
        .page_size(page)
        .collect::<s3pump::Result<Vec<_>>>()
        .unwrap()
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn listing_follows_continuation_tokens_lazily() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let client = h.client();
    let mut keys: Vec<String> = (0..30).map(|i| format!("p/{i:03}")).collect();
    keys.extend(["q/outside".to_string(), "p-".to_string(), "pz".to_string()]);
    let bodies = put_all(&client, &h.bucket, &keys);
    server.reset_stats();

    // Taking a few objects fetches one page only.
    let first: Vec<ObjectSummary> = client
        .list_objects(&h.bucket, "p/")
        .page_size(7)
        .take(7)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first.len(), 7);
    assert_eq!(server.stats().list_objects_calls, 1);
    let page8 = client
        .list_objects(&h.bucket, "p/")
        .page_size(7)
        .nth(7)
        .unwrap()
        .unwrap();
    assert_eq!(page8.key, "p/007");
    assert_eq!(server.stats().list_objects_calls, 3);

    server.reset_stats();
    let all = listed(&client, &h.bucket, "p/", 7);
    // 30 keys, 7 a page: 5 pages, the last one not truncated.
    assert_eq!(server.stats().list_objects_calls, 5);
    let expected: Vec<&String> = bodies.keys().filter(|k| k.starts_with("p/")).collect();
    let got: Vec<&String> = all.iter().map(|o| &o.key).collect();
    assert_eq!(got, expected);
    for o in &all {
        let body = &bodies[&o.key];
        assert_eq!(o.size, body.len() as u64, "{}", o.key);
        assert_eq!(
            o.etag.as_deref(),
            Some(format!("\"{}\"", md5_hex(body)).as_str())
        );
        assert!(o.last_modified.is_some(), "{}", o.key);
    }
    // The empty prefix lists everything in the bucket.
    assert_eq!(listed(&client, &h.bucket, "", 1000).len(), keys.len());
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn a_failed_page_is_retried_and_a_missing_bucket_is_one_error() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let client = h.client();
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    put_all(&client, &h.bucket, &keys);
    server.inject(Fault::new(Op::ListObjectsV2, FaultKind::status(503, "SlowDown")).attempt(2));
    server.reset_stats();
    assert_eq!(listed(&client, &h.bucket, "", 3).len(), 10);
    assert_eq!(
        server.stats().list_objects_calls,
        5,
        "4 pages and one retry"
    );

    let mut it = client.list_objects("no-such-bucket-here", "");
    let err = it.next().unwrap().unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(it.next().is_none(), "an error ends the listing");
    let mut bad = client.list_objects("Bad_Bucket", "");
    assert_eq!(
        bad.next().unwrap().unwrap_err().kind(),
        s3pump::ErrorKind::InvalidArgument
    );
}

#[test]
fn awkward_keys_round_trip_through_list_and_delete() {
    let h = Harness::new();
    let client = h.client();
    let names = [
        "with space",
        "two  spaces ",
        "plus+sign",
        "percent%20literal",
        "%2B",
        "ünïcödé/日本語",
        "xml<&>'\"chars",
        "semi;colon,comma=equals&amp",
        "(parens)!*'~",
        "tab\there",
        "emoji 🦀",
    ];
    let keys: Vec<String> = names.iter().map(|n| h.key(&format!("awk/{n}"))).collect();
    let bodies = put_all(&client, &h.bucket, &keys);
    let prefix = h.key("awk/");
    let got: Vec<String> = listed(&client, &h.bucket, &prefix, 4)
        .into_iter()
        .map(|o| o.key)
        .collect();
    let expected: Vec<String> = bodies.keys().cloned().collect();
    assert_eq!(got, expected);
    // The listed keys name the objects: each reads back.
    for k in &got {
        assert_eq!(h.read_back(k), bodies[k], "{k:?}");
    }
    let out = client.delete_objects(&h.bucket, &got).unwrap();
    assert_eq!(out.deleted, keys.len() as u64);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(listed(&client, &h.bucket, &prefix, 1000).is_empty());
    for k in &keys {
        let err = client.head_object(&h.bucket, k).unwrap_err();
        assert!(err.is_not_found(), "{k:?}: {err}");
    }
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn more_than_1000_keys_list_in_pages_and_delete_in_batches() {
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    let client = h.client();
    let keys: Vec<String> = (0..1050).map(|i| format!("many/{i:05}")).collect();
    let started = Instant::now();
    put_all(&client, &h.bucket, &keys);
    let put = started.elapsed();
    server.reset_stats();
    let started = Instant::now();
    let all = listed(&client, &h.bucket, "many/", 1000);
    let list = started.elapsed();
    assert_eq!(
        all.iter().map(|o| &o.key).collect::<Vec<_>>(),
        keys.iter().collect::<Vec<_>>()
    );
    assert_eq!(server.stats().list_objects_calls, 2, "1000 + 50");

    let started = Instant::now();
    // A missing key among them deletes fine, as in S3.
    let mut to_delete = keys.clone();
    to_delete.push("many/never-existed".into());
    let out = client.delete_objects(&h.bucket, &to_delete).unwrap();
    let delete = started.elapsed();
    assert_eq!(out.deleted, 1051);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(server.stats().delete_objects_calls, 2, "1000 + 51");
    assert!(listed(&client, &h.bucket, "many/", 1000).is_empty());
    eprintln!("1050 objects: put {put:?}, list {list:?}, delete {delete:?}");
}

#[test]
fn invalid_keys_are_refused_before_anything_is_deleted() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("keep");
    client
        .put_object_bytes(&h.bucket, &key, b"x", &PutObjectArgs::new())
        .unwrap();
    let too_long = "k".repeat(1025);
    let err = client
        .delete_objects(&h.bucket, [key.as_str(), "", too_long.as_str()])
        .unwrap_err();
    assert_eq!(err.kind(), s3pump::ErrorKind::InvalidArgument, "{err}");
    assert_eq!(h.read_back(&key), b"x");
    // Nothing to delete is nothing sent.
    let out = client
        .delete_objects(&h.bucket, Vec::<String>::new())
        .unwrap();
    assert_eq!(out.deleted, 0);
}
