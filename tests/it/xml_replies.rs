//! Replies a real S3 would not send, from a canned HTTP server on loopback:
//! a reply missing a required field is an error naming the operation and the
//! field (never a silently dropped entry); element-like text inside comments
//! or CDATA is not an element; a hostile reply is an error, not a panic or hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3pump::{
    ChecksumAlgorithm, Client, Credentials, Error, ErrorKind, PutObjectArgs, RetryPolicy,
};

const NS: &str = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;

/// A request as the canned server received it: its head and its body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A server answering every request with `status` and `body`; returns the
/// endpoint and the number of requests served.
fn canned(status: u16, body: String) -> (String, Arc<AtomicUsize>) {
    let (endpoint, served, _) = recording(status, body);
    (endpoint, served)
}

/// [`canned`], also keeping every request it received.
fn recording(status: u16, body: String) -> (String, Arc<AtomicUsize>, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let requests = seen.clone();
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            let count = count.clone();
            let requests = requests.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    // Read one request head and its body.
                    let mut length = 0usize;
                    let mut line = String::new();
                    let mut head = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut sink = vec![0; length];
                    if reader.read_exact(&mut sink).is_err() {
                        return;
                    }
                    requests.lock().unwrap().push((head, sink));
                    count.fetch_add(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if conn.write_all(head.as_bytes()).is_err()
                        || conn.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, served, seen)
}

fn client(endpoint: &str) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(Credentials::new("AKID", "secret", None))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

fn invalid(e: Error) -> (&'static str, String) {
    match e {
        Error::InvalidResponse { operation, message } => (operation, message),
        e => panic!("not InvalidResponse: {e:?}"),
    }
}

#[test]
fn an_upload_without_its_upload_id_is_an_error_not_a_dropped_entry() {
    let body = format!(
        "<?xml version=\"1.0\"?><ListMultipartUploadsResult {NS}><Bucket>b</Bucket>\
         <IsTruncated>false</IsTruncated>\
         <Upload><Key>one</Key><UploadId>u1</UploadId></Upload>\
         <Upload><Key>two</Key></Upload></ListMultipartUploadsResult>"
    );
    let (endpoint, _) = canned(200, body);
    let err = client(&endpoint)
        .list_multipart_uploads("bucket")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    let (operation, message) = invalid(err);
    assert_eq!(operation, "ListMultipartUploads");
    assert!(
        message.contains("<UploadId>") && message.contains("<Upload>"),
        "{message}"
    );
}

#[test]
fn a_part_without_its_etag_is_an_error_naming_list_parts() {
    let body = format!(
        "<ListPartsResult {NS}><IsTruncated>false</IsTruncated>\
         <Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag><Size>5</Size></Part>\
         <Part><PartNumber>2</PartNumber><Size>5</Size></Part></ListPartsResult>"
    );
    let (endpoint, _) = canned(200, body);
    let err = client(&endpoint)
        .list_parts("bucket", "key", "u", ChecksumAlgorithm::None)
        .unwrap_err();
    let (operation, message) = invalid(err);
    assert_eq!(operation, "ListParts");
    assert!(message.contains("<ETag>"), "{message}");
}

#[test]
fn a_truncated_listing_without_its_marker_is_an_error_not_a_silent_stop() {
    let body = format!(
        "<ListMultipartUploadsResult {NS}><IsTruncated>true</IsTruncated>\
         <Upload><Key>one</Key><UploadId>u1</UploadId></Upload></ListMultipartUploadsResult>"
    );
    let (endpoint, _) = canned(200, body);
    let (operation, message) = invalid(
        client(&endpoint)
            .list_multipart_uploads("bucket")
            .unwrap_err(),
    );
    assert_eq!(operation, "ListMultipartUploads");
    assert!(message.contains("NextKeyMarker"), "{message}");
}

#[test]
fn an_upload_id_only_inside_a_comment_or_cdata_is_not_one() {
    let body = format!(
        "<InitiateMultipartUploadResult {NS}><Bucket>b</Bucket>\
         <!-- <UploadId>commented</UploadId> -->\
         <Key><![CDATA[<UploadId>cdata</UploadId>]]></Key></InitiateMultipartUploadResult>"
    );
    let (endpoint, _) = canned(200, body);
    let err = client(&endpoint)
        .create_multipart_upload("bucket", "key", &PutObjectArgs::new())
        .unwrap_err();
    let (operation, message) = invalid(err);
    assert_eq!(operation, "CreateMultipartUpload");
    assert!(message.contains("<UploadId>"), "{message}");
    // The same with a real UploadId and entities in it.
    let body = format!(
        "<InitiateMultipartUploadResult {NS}><!-- <UploadId>no</UploadId> -->\
         <UploadId>a&amp;b&#x2F;c</UploadId></InitiateMultipartUploadResult>"
    );
    let (endpoint, _) = canned(200, body);
    let id = client(&endpoint)
        .create_multipart_upload("bucket", "key", &PutObjectArgs::new())
        .unwrap();
    assert_eq!(id, "a&b/c");
}

#[test]
fn an_error_document_with_a_commented_code_reads_the_real_code() {
    let body = "<?xml version=\"1.0\"?><Error><!-- <Code>AccessDenied</Code> -->\
                <Code>NoSuchKey</Code><Message>gone &amp; forgotten</Message></Error>"
        .to_string();
    let (endpoint, _) = canned(404, body);
    let err = client(&endpoint)
        .get_object("bucket", "key", &mut Vec::new())
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("NoSuchKey"), "{err}");
    assert!(err.is_not_found());
    assert!(err.to_string().contains("gone & forgotten"), "{err}");
}

#[test]
fn hostile_replies_are_errors_not_panics_or_hangs() {
    let deep = format!("<ListPartsResult>{}", "<a>".repeat(1_000_000));
    let wide = format!(
        "<ListPartsResult>{}</ListPartsResult>",
        "<Part/>".repeat(1_000_000)
    );
    let huge = format!(
        "<ListPartsResult><Key>{}</Key></ListPartsResult>",
        "x".repeat(17 << 20)
    );
    let garbage = "\u{0}\u{1}<<<>>>&&&;".repeat(1000);
    for (what, body) in [
        ("deep", deep),
        ("wide", wide),
        ("huge", huge),
        ("garbage", garbage),
    ] {
        let (endpoint, _) = canned(200, body);
        let started = Instant::now();
        let err = client(&endpoint)
            .list_parts("bucket", "key", "u", ChecksumAlgorithm::None)
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidResponse | ErrorKind::Transport
            ),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn delete_objects_sends_quiet_xml_with_content_md5_and_reports_per_key_errors() {
    use base64::Engine;
    use md5::Digest;
    let reply = format!(
        "<?xml version=\"1.0\"?><DeleteResult {NS}>\
         <Error><Key>b&amp;c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>\
         </DeleteResult>"
    );
    let (endpoint, _, seen) = recording(200, reply);
    let out = client(&endpoint)
        .delete_objects("bucket", ["a", "b&c", "d <e>"])
        .unwrap();
    assert_eq!(out.deleted, 2);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].key, "b&c");
    assert_eq!(out.errors[0].code, "AccessDenied");
    assert_eq!(out.errors[0].message, "Access Denied");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (head, body) = &seen[0];
    assert!(head.starts_with("POST /bucket?delete"), "{head}");
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
    let sent_md5 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-md5:")
                .then(|| l[12..].trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Content-MD5 in {head}"));
    assert_eq!(sent_md5, md5);
    let body = String::from_utf8(body.clone()).unwrap();
    assert!(body.contains("<Quiet>true</Quiet>"), "{body}");
    assert!(
        body.contains("<Key>b&amp;c</Key>") && body.contains("<Key>d &lt;e&gt;</Key>"),
        "{body}"
    );
}

#[test]
fn a_listing_whose_token_does_not_advance_is_an_error_not_a_loop() {
    let reply = format!(
        "<ListBucketResult {NS}><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>\
         <Contents><Key>a</Key><Size>1</Size></Contents></ListBucketResult>"
    );
    let (endpoint, served) = canned(200, reply);
    let items: Vec<_> = client(&endpoint)
        .list_objects("bucket", "")
        .take(10)
        .collect();
    // Page 1 (token t), page 2 (token t again): an error, then the end.
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().key, "a");
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    assert!(err.to_string().contains("NextContinuationToken"), "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    // An object without its Size is an error too, not a dropped entry.
    let reply =
        format!("<ListBucketResult {NS}><Contents><Key>a</Key></Contents></ListBucketResult>");
    let (endpoint, _) = canned(200, reply);
    let err = client(&endpoint)
        .list_objects("bucket", "")
        .next()
        .unwrap()
        .unwrap_err();
    let (operation, message) = invalid(err);
    assert_eq!(operation, "ListObjectsV2");
    assert!(message.contains("<Size>"), "{message}");
}
