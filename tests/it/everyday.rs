//! The everyday object and bucket API around transfers: listing by
//! "directory", a ranged GET, a GET into memory, HeadBucket, ListBuckets,
//! DeleteBucket; against a real S3 implementation.

use s3pump::{ErrorKind, GetObjectArgs, ListEntry, PutObjectArgs};

use crate::support::harness::{Harness, data};

/// Objects directly under the prefix and one entry per common prefix, in
/// key order, across pages, with keys that need encoding.
#[test]
fn list_directory_rolls_up_common_prefixes() {
    let h = Harness::new();
    let client = h.client();
    let base = h.key("dir/");
    for k in ["a", "b/1", "b/2", "c d/ü", "e+f", "g/h/i"] {
        client
            .put_object_bytes(
                &h.bucket,
                &format!("{base}{k}"),
                b"x",
                &PutObjectArgs::new(),
            )
            .unwrap();
    }
    for page in [1000, 1, 2] {
        let entries: Vec<ListEntry> = client
            .list_directory(&h.bucket, &base, "/")
            .page_size(page)
            .collect::<s3pump::Result<_>>()
            .unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|e| match e {
                ListEntry::Object(o) => format!("{} {}", o.size, &o.key[base.len()..]),
                ListEntry::Prefix(p) => format!("PRE {}", &p[base.len()..]),
                _ => unreachable!("{e:?}"),
            })
            .collect();
        assert_eq!(
            names,
            ["1 a", "PRE b/", "PRE c d/", "1 e+f", "PRE g/"],
            "page size {page}"
        );
    }
    // Without a delimiter: every object, as list_objects.
    let all = client
        .list_directory(&h.bucket, &base, "")
        .filter(|e| matches!(e, Ok(ListEntry::Object(_))))
        .count();
    assert_eq!(all, 6);
}

/// A range of bytes, into a writer or into memory; a range starting past
/// the end is an error; an empty range is refused before sending.
#[test]
fn ranged_get_and_get_into_memory() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("ranged");
    let bytes = data(100_000, 50);
    client
        .put_object_bytes(&h.bucket, &key, &bytes, &PutObjectArgs::new())
        .unwrap();
    let mut part = Vec::new();
    let info = client
        .get_object_with(
            &h.bucket,
            &key,
            &GetObjectArgs::new().range(10..20_010),
            &mut part,
        )
        .unwrap();
    assert_eq!(part, &bytes[10..20_010]);
    assert_eq!(info.size, 20_000);
    // Past the end: clipped by the server.
    let (tail, _) = client
        .get_object_bytes(
            &h.bucket,
            &key,
            &GetObjectArgs::new().range(99_990..200_000),
        )
        .unwrap();
    assert_eq!(tail, &bytes[99_990..]);
    let (all, info) = client
        .get_object_bytes(&h.bucket, &key, &GetObjectArgs::new())
        .unwrap();
    assert_eq!(all, bytes);
    assert_eq!(info.etag, client.head_object(&h.bucket, &key).unwrap().etag);
    let e = client
        .get_object_bytes(
            &h.bucket,
            &key,
            &GetObjectArgs::new().range(100_000..100_001),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
    let e = client
        .get_object_bytes(&h.bucket, &key, &GetObjectArgs::new().range(5..5))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[cfg_attr(s3pump_external_s3, ignore = "creates and deletes buckets")]
#[test]
fn head_list_and_delete_buckets() {
    let h = Harness::new();
    let client = h.client();
    client.head_bucket(&h.bucket).unwrap();
    let e = client.head_bucket("s3pump-no-such-bucket").unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let extra = format!("{}-extra", h.bucket);
    client.create_bucket(&extra).unwrap();
    let names: Vec<String> = client
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(
        names.contains(&h.bucket) && names.contains(&extra),
        "{names:?}"
    );

    client
        .put_object_bytes(&extra, "k", b"x", &PutObjectArgs::new())
        .unwrap();
    let e = client.delete_bucket(&extra).unwrap_err();
    assert_eq!(e.s3_code(), Some("BucketNotEmpty"), "{e}");
    client.delete_object(&extra, "k").unwrap();
    client.delete_bucket(&extra).unwrap();
    assert!(client.head_bucket(&extra).unwrap_err().is_not_found());
}
