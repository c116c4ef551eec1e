//! Presigned URLs ([`s3pump::Client::presign`]) used by a plain HTTP client
//! (ureq without any of s3pump's signing) against a real S3 implementation:
//! GET, PUT, HEAD, DELETE and UploadPart; signed headers enforced; expired
//! and tampered URLs refused.

use std::time::{Duration, SystemTime};

use s3pump::{ChecksumAlgorithm, PresignArgs, PresignOperation, PutObjectArgs, UploadedPart};

use crate::support::harness::{Harness, data};

const MIB: usize = 1 << 20;

/// An HTTP client that knows nothing of S3 and hands back every status.
fn plain_http() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

fn body_of(mut r: ureq::http::Response<ureq::Body>) -> Vec<u8> {
    r.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap()
}

/// GET, PUT (with a signed content type), HEAD and DELETE through presigned
/// URLs, on a key that needs encoding.
#[test]
fn get_put_head_delete_by_a_plain_http_client() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("dir/naïve file+1 (ü).txt");
    let http = plain_http();

    // PUT: the body and the content type given at signing.
    let bytes = data(300_000, 20);
    let put = client
        .presign(
            PresignOperation::PutObject,
            &h.bucket,
            &key,
            &PresignArgs::new().content_type("text/x-presigned"),
        )
        .unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.headers,
        vec![("content-type".to_owned(), "text/x-presigned".to_owned())]
    );
    let mut req = http.put(&put.url);
    for (n, v) in &put.headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let r = req.send(&bytes[..]).unwrap();
    assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&body_of(r)));
    assert_eq!(h.read_back(&key), bytes);
    let info = client.head_object(&h.bucket, &key).unwrap();
    assert_eq!(info.content_type.as_deref(), Some("text/x-presigned"));

    // GET.
    let get = client
        .presign(
            PresignOperation::GetObject,
            &h.bucket,
            &key,
            &PresignArgs::new(),
        )
        .unwrap();
    assert!(get.headers.is_empty());
    let r = http.get(&get.url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body_of(r), bytes);

    // HEAD.
    let head = client
        .presign(
            PresignOperation::HeadObject,
            &h.bucket,
            &key,
            &PresignArgs::new(),
        )
        .unwrap();
    let r = http.head(&head.url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-length").unwrap().to_str().unwrap(),
        bytes.len().to_string()
    );

    // A URL signed for one method does not serve another.
    let r = http.delete(&get.url).call().unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.read_back(&key), bytes);

    // DELETE.
    let delete = client
        .presign(
            PresignOperation::DeleteObject,
            &h.bucket,
            &key,
            &PresignArgs::new(),
        )
        .unwrap();
    let r = http.delete(&delete.url).call().unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        client
            .head_object(&h.bucket, &key)
            .unwrap_err()
            .is_not_found()
    );
}

/// An expired URL, one whose key was changed, and a PUT without the signed
/// content type are all refused (403) and change nothing.
#[test]
fn expired_tampered_and_unsigned_header_requests_are_refused() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("guarded");
    client
        .put_object_bytes(&h.bucket, &key, b"original", &PutObjectArgs::new())
        .unwrap();
    let http = plain_http();

    let expired = client
        .presign(
            PresignOperation::GetObject,
            &h.bucket,
            &key,
            &PresignArgs::new()
                .expires_in(Duration::from_secs(60))
                .signed_at(SystemTime::now() - Duration::from_secs(120)),
        )
        .unwrap();
    assert!(expired.expires_at < SystemTime::now());
    let r = http.get(&expired.url).call().unwrap();
    assert_eq!(r.status(), 403);
    let text = String::from_utf8_lossy(&body_of(r)).into_owned();
    assert!(text.contains("AccessDenied"), "{text}");

    // The same URL still valid works (the refusal above was the expiry).
    let fresh = client
        .presign(
            PresignOperation::GetObject,
            &h.bucket,
            &key,
            &PresignArgs::new().expires_in(Duration::from_secs(60)),
        )
        .unwrap();
    let r = http.get(&fresh.url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body_of(r), b"original");

    // Another key under the same signature.
    let other = fresh.url.replacen("/guarded?", "/guarded2?", 1);
    assert_ne!(other, fresh.url);
    assert_eq!(http.get(&other).call().unwrap().status(), 403);

    // A PUT signed with a content type, sent without it.
    let put = client
        .presign(
            PresignOperation::PutObject,
            &h.bucket,
            &key,
            &PresignArgs::new().content_type("application/x-signed"),
        )
        .unwrap();
    let r = http.put(&put.url).send(&b"replaced"[..]).unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.read_back(&key), b"original");
}

/// A worker without credentials uploads the parts of a multipart upload the
/// client created, through presigned UploadPart URLs; the client completes it.
#[test]
fn upload_parts_through_presigned_urls() {
    let h = Harness::new();
    let client = h.client();
    let key = h.key("parts/by-url");
    let args = PutObjectArgs::new().checksum(ChecksumAlgorithm::None);
    let upload_id = client
        .create_multipart_upload(&h.bucket, &key, &args)
        .unwrap();
    let bytes = data(5 * MIB + 1234, 21);
    let http = plain_http();
    let mut parts = Vec::new();
    for (i, chunk) in bytes.chunks(5 * MIB).enumerate() {
        let part_number = i as u32 + 1;
        let url = client
            .presign(
                PresignOperation::UploadPart {
                    upload_id: upload_id.clone(),
                    part_number,
                },
                &h.bucket,
                &key,
                &PresignArgs::new(),
            )
            .unwrap();
        let r = http.put(&url.url).send(chunk).unwrap();
        assert_eq!(r.status(), 200, "part {part_number}");
        let etag = r
            .headers()
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        parts.push(UploadedPart::new(part_number, etag, chunk.len() as u64));
    }
    client
        .complete_multipart_upload(&h.bucket, &key, &upload_id, &parts, ChecksumAlgorithm::None)
        .unwrap();
    assert_eq!(h.read_back(&key), bytes);
    assert!(h.open_uploads().is_empty());
}
