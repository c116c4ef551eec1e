//! Replies a real S3 would not send, from a canned HTTP server on loopback:
//! a reply missing a required field is an error naming the operation and the
//! field (never a silently dropped entry); element-like text inside comments
//! or CDATA is not an element; a hostile reply is an error, not a panic or hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s3pump::{
    ChecksumAlgorithm, Client, Credentials, Error, ErrorKind, PutObjectArgs, RetryPolicy,
};

const NS: &str = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;

/// A server answering every request with `status` and `body`; returns the
/// endpoint and the number of requests served.
fn canned(status: u16, body: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    // Read one request head and its body.
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut sink = vec![0; length];
                    if reader.read_exact(&mut sink).is_err() {
                        return;
                    }
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
    (endpoint, served)
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
