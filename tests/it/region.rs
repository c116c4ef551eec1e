//! Regions learnt from the server: a bucket in another region answers like
//! AWS (`400 AuthorizationHeaderMalformed` with `<Region>`, or `301` with
//! `x-amz-bucket-region`); the client re-signs for that region, remembers it
//! per bucket, and the next request goes straight there.

use s3pump::{DownloadArgs, PutObjectArgs};

use crate::support;
use support::harness::{Harness, data};
use support::{Fault, FaultKind, Op, WrongRegion};

const MIB: usize = 1 << 20;

fn learns(reply: WrongRegion) {
    support::logger::capture();
    let h = Harness::new();
    let server = h.local().expect("the in-process server");
    server.set_bucket_region("eu-west-3", reply);
    let client = h.client(); // signs for us-east-1
    let body = data(11 * MIB, 3);
    let key = h.key("far");
    client
        .put_object(
            &h.bucket,
            &key,
            &body[..],
            PutObjectArgs::new().part_size(5 * MIB as u64),
        )
        .unwrap();
    assert_eq!(
        server.region_rejections(),
        1,
        "one redirect, then straight to eu-west-3"
    );
    assert!(server.object_bytes(&h.bucket, &key).unwrap() == body);
    let mut out = Vec::new();
    client
        .download(
            &h.bucket,
            &key,
            &mut out,
            DownloadArgs::new().part_size(4 * MIB as u64),
        )
        .unwrap();
    assert!(out == body);
    client.head_object(&h.bucket, &key).unwrap();
    assert_eq!(
        server.region_rejections(),
        1,
        "remembered for the download and HEAD"
    );
    let logged =
        support::logger::lines_containing(&format!("bucket {} is in region eu-west-3", h.bucket));
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].starts_with("INFO"), "{logged:?}");

    // A fresh client learns with its first request, a download this time.
    let client = h.client();
    let mut out = Vec::new();
    client
        .download(
            &h.bucket,
            &key,
            &mut out,
            DownloadArgs::new().part_size(4 * MIB as u64),
        )
        .unwrap();
    assert!(out == body);
    assert_eq!(server.region_rejections(), 2);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn authorization_header_malformed_is_followed() {
    learns(WrongRegion::AuthorizationHeaderMalformed);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn permanent_redirect_is_followed() {
    learns(WrongRegion::PermanentRedirect);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn head_object_learns_from_the_header_alone() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let key = h.key("h");
    server.put_object_bytes(&h.bucket, &key, b"abc");
    server.set_bucket_region("ap-south-1", WrongRegion::PermanentRedirect);
    let client = h.client();
    assert_eq!(client.head_object(&h.bucket, &key).unwrap().size, 3);
    assert_eq!(server.region_rejections(), 1);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn the_region_changes_in_the_middle_of_a_multipart_upload() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    let client = h.client();
    let key = h.key("mid");
    let args = PutObjectArgs::new();
    let id = client
        .create_multipart_upload(&h.bucket, &key, &args)
        .unwrap();
    let part = data(5 * MIB, 9);
    let p1 = client
        .upload_part(&h.bucket, &key, &id, 1, &part, &args)
        .unwrap();
    server.set_bucket_region("eu-north-1", WrongRegion::AuthorizationHeaderMalformed);
    let p2 = client
        .upload_part(&h.bucket, &key, &id, 2, b"tail", &args)
        .unwrap();
    client
        .complete_multipart_upload(
            &h.bucket,
            &key,
            &id,
            &[p1, p2],
            s3pump::ChecksumAlgorithm::default(),
        )
        .unwrap();
    assert_eq!(server.region_rejections(), 1);
    let mut expected = part.clone();
    expected.extend_from_slice(b"tail");
    assert!(server.object_bytes(&h.bucket, &key).unwrap() == expected);
}

#[cfg_attr(s3pump_external_s3, ignore = "needs the in-process test server")]
#[test]
fn an_unlearnable_region_names_the_configured_one() {
    let h = Harness::new();
    let Some(server) = h.local() else { return };
    // A 301 with neither a header nor a <Region>.
    server.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(301, "PermanentRedirect"),
    ));
    let err = h
        .client()
        .put_object_bytes(&h.bucket, &h.key("x"), b"x", &PutObjectArgs::new())
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.s3_code(), Some("PermanentRedirect"), "{msg}");
    assert!(
        msg.contains("us-east-1") && msg.contains("did not say"),
        "{msg}"
    );
}

#[test]
fn a_bad_region_or_an_endpoint_with_userinfo_is_named_plainly() {
    use s3pump::{Client, Credentials};
    let build = |endpoint: &str, region: &str| {
        Client::builder()
            .endpoint(endpoint)
            .region(region)
            .credentials(Credentials::new("AKIDEXAMPLE", "secret", None))
            .build()
    };
    for region in ["us-east-1\n", "us east 1", "", "eu/west", "ré"] {
        let e = build("http://127.0.0.1:9", region).unwrap_err().to_string();
        assert!(
            e.contains("the region") && e.contains("is invalid"),
            "{region:?}: {e}"
        );
        assert!(!e.contains("header"), "{e}");
    }
    for region in ["us-east-1", "garage", "my_region", "auto"] {
        build("http://127.0.0.1:9", region).unwrap();
    }
    let e = build("http://user:hunter2@127.0.0.1:9", "us-east-1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("userinfo is not supported"), "{e}");
    assert!(e.contains("127.0.0.1:9"), "{e}");
    assert!(
        !e.contains("hunter2") && !e.contains("user:"),
        "no secret: {e}"
    );
}
