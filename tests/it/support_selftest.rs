//! Tests of the test support itself (tests/support), without the s3pump
//! library: requests are made with ureq and a minimal SigV4 signer below.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use support::*;

// ---------------------------------------------------------------- helpers --

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` for now (UTC).
fn amz_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[allow(clippy::too_many_arguments)]
/// A signed request: `query` is already in canonical form (sorted, encoded,
/// `k=v` joined by `&`); keys in these tests need no encoding.
fn signed(
    agent: &ureq::Agent,
    server: &TestServer,
    method: &str,
    path: &str,
    query: &str,
    extra: &[(&str, String)],
    body: &[u8],
    unsigned_payload: bool,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let host = server.addr().to_string();
    let date = amz_date();
    let payload_hash =
        if let Some((_, v)) = extra.iter().find(|(k, _)| *k == "x-amz-content-sha256") {
            v.clone()
        } else if unsigned_payload {
            "UNSIGNED-PAYLOAD".to_owned()
        } else {
            hex(&Sha256::digest(body))
        };
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.clone()),
        ("x-amz-content-sha256".into(), payload_hash.clone()),
        ("x-amz-date".into(), date.clone()),
    ];
    for (k, v) in extra.iter().filter(|(k, _)| *k != "x-amz-content-sha256") {
        headers.push((k.to_ascii_lowercase(), v.clone()));
    }
    headers.sort();
    let signed_headers: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed_headers = signed_headers.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical =
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{}/{REGION}/s3/aws4_request", &date[..8]);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), &date[..8]);
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let sig = hex(&hmac(&key, &sts));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed_headers}, Signature={sig}"
    );

    let url = if query.is_empty() {
        format!("{}{path}", server.endpoint())
    } else {
        format!("{}{path}?{query}", server.endpoint())
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", auth);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let req = req.body(body.to_vec()).unwrap();
    let mut resp = agent.run(req).expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.body_mut().read_to_vec().unwrap_or_default();
    (status, headers, body)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn xml_tag<'a>(doc: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = doc[start..].find(&format!("</{tag}>"))? + start;
    Some(&doc[start..end])
}

fn crc64(data: &[u8]) -> String {
    base64_encode(&crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data).to_be_bytes())
}

fn create_upload(a: &ureq::Agent, s: &TestServer, path: &str) -> String {
    let (st, _, body) = signed(a, s, "POST", path, "uploads=", &[], b"", false);
    assert_eq!(st, 200, "{}", text(&body));
    xml_tag(&text(&body), "UploadId").unwrap().to_owned()
}

// ----------------------------------------------------------------- server --

#[test]
fn unsigned_request_gets_403_with_xml_error() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let mut resp = agent()
        .put(format!("{}/bkt/k", s.endpoint()))
        .send(&b"hello"[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.body_mut().read_to_string().unwrap();
    assert!(
        body.contains("<Error>") && body.contains("<Code>AccessDenied</Code>"),
        "{body}"
    );
    assert_eq!(s.stats().put_object_calls, 1);
    assert_eq!(
        s.stats().http_body_bytes,
        0,
        "s3s rejects before reading the body"
    );
}

#[test]
fn signed_put_get_and_checksums() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let data = b"hello, s3pump".to_vec();

    let (st, h, body) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/k1",
        "",
        &[("x-amz-checksum-crc64nvme", crc64(&data))],
        &data,
        false,
    );
    assert_eq!(st, 200, "{}", text(&body));
    assert!(h.get("etag").is_some());
    assert_eq!(s.object_bytes("bkt", "k1").unwrap(), data);

    // UNSIGNED-PAYLOAD is accepted.
    let (st, _, body) = signed(&a, &s, "PUT", "/bkt/k2", "", &[], &data, true);
    assert_eq!(st, 200, "{}", text(&body));

    // A wrong checksum is rejected with BadDigest and nothing is stored.
    let (st, _, body) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/k3",
        "",
        &[("x-amz-checksum-crc64nvme", crc64(b"other"))],
        &data,
        true,
    );
    assert_eq!(st, 400, "{}", text(&body));
    assert_eq!(xml_tag(&text(&body), "Code"), Some("BadDigest"));
    assert!(s.object_bytes("bkt", "k3").is_none());

    let (st, _, body) = signed(&a, &s, "GET", "/bkt/k1", "", &[], b"", false);
    assert_eq!((st, body), (200, data.clone()));
    let st = s.stats();
    assert_eq!((st.put_object_calls, st.get_object_calls), (3, 1));
    assert_eq!(st.http_body_bytes, 3 * data.len() as u64);
}

#[test]
fn multipart_tracking_list_and_part_checksum() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();

    let id1 = create_upload(&a, &s, "/bkt/one");
    let id2 = create_upload(&a, &s, "/bkt/two");
    assert_eq!(s.open_uploads().len(), 2);
    assert_eq!(s.open_uploads()[0].upload_id, id1);

    let (st, _, body) = signed(&a, &s, "GET", "/bkt", "uploads=", &[], b"", false);
    let doc = text(&body);
    assert_eq!(st, 200, "{doc}");
    assert!(doc.contains(&id1) && doc.contains(&id2), "{doc}");

    // A part with a wrong checksum is rejected; a right one is echoed back.
    let part = vec![7u8; 1000];
    let q = format!("partNumber=1&uploadId={id1}");
    let (st, _, body) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/one",
        &q,
        &[("x-amz-checksum-crc64nvme", crc64(b"x"))],
        &part,
        true,
    );
    assert_eq!(
        (st, xml_tag(&text(&body), "Code")),
        (400, Some("BadDigest"))
    );
    let (st, h, _) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/one",
        &q,
        &[("x-amz-checksum-crc64nvme", crc64(&part))],
        &part,
        true,
    );
    assert_eq!(st, 200);
    assert_eq!(
        h.get("x-amz-checksum-crc64nvme").unwrap().to_str().unwrap(),
        crc64(&part)
    );
    let etag = h.get("etag").unwrap().to_str().unwrap().to_owned();

    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let (st, _, body) = signed(
        &a,
        &s,
        "POST",
        "/bkt/one",
        &format!("uploadId={id1}"),
        &[],
        complete.as_bytes(),
        false,
    );
    assert_eq!(st, 200, "{}", text(&body));
    assert!(text(&body).contains("CompleteMultipartUploadResult"));
    assert_eq!(s.object_bytes("bkt", "one").unwrap(), part);

    // A second Complete: NoSuchUpload (s3s-fs alone would say AccessDenied).
    let (st, _, body) = signed(
        &a,
        &s,
        "POST",
        "/bkt/one",
        &format!("uploadId={id1}"),
        &[],
        complete.as_bytes(),
        false,
    );
    assert_eq!(
        (st, xml_tag(&text(&body), "Code")),
        (404, Some("NoSuchUpload"))
    );

    let (st, _, _) = signed(
        &a,
        &s,
        "DELETE",
        "/bkt/two",
        &format!("uploadId={id2}"),
        &[],
        b"",
        false,
    );
    assert_eq!(st, 204);
    assert!(s.open_uploads().is_empty());

    let st = s.stats();
    assert_eq!(
        (
            st.create_multipart_calls,
            st.upload_part_calls,
            st.complete_calls,
            st.abort_calls
        ),
        (2, 2, 2, 1)
    );
}

#[test]
fn faults_fire_once_and_in_order() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let url = format!("{}/bkt/k", s.endpoint());

    s.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(503, "SlowDown"),
    ));
    let mut r = a.put(&url).send(&b"abc"[..]).unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(xml_tag(&body, "Code"), Some("SlowDown"), "{body}");
    assert!(xml_tag(&body, "RequestId").is_some());
    // Fired once: the next PUT reaches s3s (unsigned → 403).
    assert_eq!(
        a.put(&url).send(&b"abc"[..]).unwrap().status().as_u16(),
        403
    );

    // attempt 2 of a given part; other parts do not count.
    s.inject(
        Fault::new(Op::UploadPart, FaultKind::status(500, "InternalError"))
            .part(2)
            .attempt(2),
    );
    let part = |n: u32| {
        a.put(format!("{url}?partNumber={n}&uploadId=x"))
            .send(&b"p"[..])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(part(2), 403);
    assert_eq!(part(1), 403);
    assert_eq!(part(2), 500);
    assert_eq!(part(2), 403);

    // ErrorIn200 on Complete.
    s.inject(Fault::new(
        Op::CompleteMultipartUpload,
        FaultKind::ErrorIn200 {
            code: "InternalError".into(),
        },
    ));
    let mut r = a
        .post(format!("{url}?uploadId=x"))
        .send(&b"<x/>"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("<Code>InternalError</Code>")
    );

    // DropConnection: no reply at all.
    s.inject(Fault::new(Op::HeadObject, FaultKind::DropConnection));
    assert!(a.head(&url).call().is_err());
    assert_eq!(a.head(&url).call().unwrap().status().as_u16(), 403);
    assert_eq!(s.pending_faults(), 0);
}

#[test]
fn error_in_200_after_processing_really_processes() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let id = create_upload(&a, &s, "/bkt/obj");
    let part = vec![1u8; 100];
    let (st, h, _) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/obj",
        &format!("partNumber=1&uploadId={id}"),
        &[],
        &part,
        false,
    );
    assert_eq!(st, 200);
    let etag = h.get("etag").unwrap().to_str().unwrap().to_owned();
    s.inject(Fault::new(
        Op::CompleteMultipartUpload,
        FaultKind::ErrorIn200AfterProcessing {
            code: "InternalError".into(),
        },
    ));
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let (st, _, body) = signed(
        &a,
        &s,
        "POST",
        "/bkt/obj",
        &format!("uploadId={id}"),
        &[],
        complete.as_bytes(),
        false,
    );
    assert_eq!(
        (st, xml_tag(&text(&body), "Code")),
        (200, Some("InternalError"))
    );
    assert_eq!(s.object_bytes("bkt", "obj").unwrap(), part);
    assert!(s.open_uploads().is_empty());
}

#[test]
fn part_delay_shows_parts_in_flight() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let id = create_upload(&a, &s, "/bkt/big");
    s.set_part_delay(Duration::from_millis(300));
    s.reset_stats();
    let t0 = Instant::now();
    thread::scope(|sc| {
        for n in 1..=3 {
            let (s, id) = (&s, &id);
            sc.spawn(move || {
                let (st, _, _) = signed(
                    &agent(),
                    s,
                    "PUT",
                    "/bkt/big",
                    &format!("partNumber={n}&uploadId={id}"),
                    &[],
                    b"x",
                    false,
                );
                assert_eq!(st, 200);
            });
        }
    });
    assert!(
        t0.elapsed() < Duration::from_millis(850),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(s.stats().peak_upload_parts_in_flight, 3);
    assert_eq!(s.stats().upload_part_calls, 3);
}

#[test]
fn rdma_emulation() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let token = make_rdma_token(data.as_ptr(), data.len());
    let rdma = |path: &str, q: &str, token: &str| {
        signed(
            &a,
            &s,
            "PUT",
            path,
            q,
            &[
                ("x-amz-rdma-token", token.to_owned()),
                ("x-amz-checksum-crc64nvme", crc64(&data)),
            ],
            b"",
            true,
        )
    };

    // Off: ignored, an empty object is stored... with a checksum that does not match.
    let (st, h, _) = rdma("/bkt/off", "", &token);
    assert_eq!(st, 400);
    assert!(h.get(RDMA_REPLY_HEADER).is_none());

    s.set_rdma_mode(RdmaMode::Honour);
    let (st, h, body) = rdma("/bkt/on", "", &token);
    assert_eq!(st, 200, "{}", text(&body));
    assert_eq!(h.get(RDMA_REPLY_HEADER).unwrap(), "ok");
    assert_eq!(s.object_bytes("bkt", "on").unwrap(), data);

    let id = create_upload(&a, &s, "/bkt/mp");
    let (st, h, _) = rdma("/bkt/mp", &format!("partNumber=1&uploadId={id}"), &token);
    assert_eq!(
        (st, h.get(RDMA_REPLY_HEADER).map(|v| v.to_str().unwrap())),
        (200, Some("ok"))
    );
    let st = s.stats();
    assert_eq!(
        (st.rdma_requests, st.rdma_bytes, st.http_body_bytes),
        (2, 2 * data.len() as u64, 0)
    );

    for bad in [
        "emu:1234:5",
        "emu:00007F12345A0000:5",
        "emu:00007f12345a0000:-5",
        "emu:0000000000000000:5",
        "x",
    ] {
        let (st, _, body) = rdma("/bkt/bad", "", bad);
        assert_eq!(
            (st, xml_tag(&text(&body), "Code")),
            (400, Some("InvalidArgument")),
            "{bad}"
        );
    }

    // GET into memory, with a range.
    let mut dst = vec![0u8; 1000];
    let token = make_rdma_token(dst.as_mut_ptr(), dst.len());
    let (st, h, body) = signed(
        &a,
        &s,
        "GET",
        "/bkt/on",
        "",
        &[
            ("range", "bytes=10-509".into()),
            ("x-amz-rdma-token", token),
        ],
        b"",
        false,
    );
    assert_eq!((st, body.len()), (206, 0));
    assert_eq!(h.get(RDMA_REPLY_HEADER).unwrap(), "ok");
    assert_eq!(h.get(RDMA_LENGTH_HEADER).unwrap(), "500");
    assert_eq!(&dst[..500], &data[10..510]);

    s.set_rdma_mode(RdmaMode::Refuse501);
    let (st, h, body) = rdma(
        "/bkt/refused",
        "",
        &make_rdma_token(data.as_ptr(), data.len()),
    );
    assert_eq!(
        (st, xml_tag(&text(&body), "Code")),
        (501, Some("NotImplemented"))
    );
    assert!(h.get(RDMA_REPLY_HEADER).is_none());
}

/// Pins down what s3s 0.14 / s3s-fs 0.14.1 answer in the cases client tests
/// care about, including the known gaps (so an upgrade that changes them shows
/// up here).
#[test]
fn s3s_behaviour_and_known_gaps() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let code = |b: &[u8]| xml_tag(&text(b), "Code").map(str::to_owned);

    // Bad signature: 403 SignatureDoesNotMatch.
    let (st, _, body) = signed(&a, &s, "PUT", "/bkt/k", "", &[], b"abc", false);
    assert_eq!(st, 200, "{}", text(&body));
    let date = amz_date();
    let mut r = a
        .put(format!("{}/bkt/k", s.endpoint()))
        .header("x-amz-date", &date)
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}/{REGION}/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                &date[..8],
                "0".repeat(64)
            ),
        )
        .send(&b"abc"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        code(&r.body_mut().read_to_vec().unwrap()).as_deref(),
        Some("SignatureDoesNotMatch")
    );

    // Gap: a body that does not match its signed SHA-256 is a 500, not a 400.
    let wrong = hex(&Sha256::digest(b"xyz"));
    let (st, _, body) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/k2",
        "",
        &[("x-amz-content-sha256", wrong)],
        b"abc",
        false,
    );
    assert_eq!((st, code(&body).as_deref()), (500, Some("InternalError")));
    assert!(s.object_bytes("bkt", "k2").is_none());

    // Complete is the wrapper's, as S3 does it (s3s-fs's checks no ETag,
    // answers 500 for a missing part and destroys the upload on any
    // rejection): a wrong ETag or a missing part is 400 InvalidPart, a small
    // non-last part 400 EntityTooSmall, and the upload stays open.
    let abc_md5 = "900150983cd24fb0d6963f7d28e17f72";
    let complete_of = |parts: &[(u32, &str)]| {
        let mut x = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            x.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
            ));
        }
        x + "</CompleteMultipartUpload>"
    };
    let id = create_upload(&a, &s, "/bkt/mp3");
    for n in 1..=2 {
        let (st, _, _) = signed(
            &a,
            &s,
            "PUT",
            "/bkt/mp3",
            &format!("partNumber={n}&uploadId={id}"),
            &[],
            b"abc",
            false,
        );
        assert_eq!(st, 200);
    }
    for (parts, want) in [
        (complete_of(&[(1, "nonsense")]), "InvalidPart"),
        (complete_of(&[(1, abc_md5), (3, abc_md5)]), "InvalidPart"),
        (
            complete_of(&[(2, abc_md5), (1, abc_md5)]),
            "InvalidPartOrder",
        ),
        (complete_of(&[(1, abc_md5), (2, abc_md5)]), "EntityTooSmall"),
    ] {
        let (st, _, body) = signed(
            &a,
            &s,
            "POST",
            "/bkt/mp3",
            &format!("uploadId={id}"),
            &[],
            parts.as_bytes(),
            false,
        );
        assert_eq!((st, code(&body).as_deref()), (400, Some(want)), "{parts}");
        assert_eq!(
            s.open_uploads().len(),
            1,
            "a rejected Complete keeps the upload"
        );
    }
    // One small part alone is a valid object.
    let (st, _, body) = signed(
        &a,
        &s,
        "POST",
        "/bkt/mp3",
        &format!("uploadId={id}"),
        &[],
        complete_of(&[(1, abc_md5)]).as_bytes(),
        false,
    );
    assert_eq!(st, 200, "{}", text(&body));
    assert!(s.open_uploads().is_empty());
    assert_eq!(s.object_bytes("bkt", "mp3").unwrap(), b"abc");

    // Unknown upload id on UploadPart: NoSuchUpload (from the wrapper).
    let (st, _, body) = signed(
        &a,
        &s,
        "PUT",
        "/bkt/mp",
        "partNumber=1&uploadId=nope",
        &[],
        b"abc",
        false,
    );
    assert_eq!((st, code(&body).as_deref()), (404, Some("NoSuchUpload")));

    // HEAD of a missing key: 404 with no body.
    let (st, _, body) = signed(&a, &s, "HEAD", "/bkt/missing", "", &[], b"", false);
    assert_eq!((st, body.len()), (404, 0));
}

// ------------------------------------------------------------------ relay --

/// An echo server: every connection gets its bytes back.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn relay_forwards_flips_and_cuts() {
    let relay = Relay::start(echo_server(), RelayConfig::default());
    let mut c = TcpStream::connect(relay.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    relay.arm(RelayFault::FlipAfter(3));
    c.write_all(b"abcdef").unwrap();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abceef");

    relay.arm(RelayFault::CutAfter(10));
    c.write_all(&[b'z'; 100]).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got); // EOF or reset
    assert!(got.len() <= 10, "{}", got.len());
    assert_eq!(relay.bytes_up(), 5 + 6 + 10);
    assert_eq!(relay.connections(), 1);
    assert!(!relay.fault_pending());
}

#[test]
fn relay_stall_stops_everything() {
    let relay = Relay::start(echo_server(), RelayConfig::default());
    relay.arm(RelayFault::StallAfter(4));
    let mut c = TcpStream::connect(relay.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.write_all(b"12345678").unwrap();
    let mut buf = [0u8; 8];
    let mut n = 0;
    while let Ok(k) = c.read(&mut buf[n..]) {
        if k == 0 {
            break;
        }
        n += k;
    }
    // "1234" reached the echo server, but its echo is not forwarded back.
    assert_eq!(n, 0);
    assert_eq!(relay.bytes_up(), 4);
}

#[test]
fn relay_rate_limit_and_delay() {
    let relay = Relay::start(
        echo_server(),
        RelayConfig {
            rate_bytes_per_sec: Some(2_000_000),
            delay: Duration::from_millis(20),
        },
    );
    let mut c = TcpStream::connect(relay.addr()).unwrap();
    // Round trip of one byte: at least 2 × 20 ms.
    let t0 = Instant::now();
    c.write_all(b"x").unwrap();
    c.read_exact(&mut [0u8; 1]).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t0.elapsed()
    );

    let data = vec![5u8; 1_000_000];
    let t0 = Instant::now();
    let mut r = c.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut got = vec![0u8; 1_000_000];
        r.read_exact(&mut got).unwrap();
        got
    });
    c.write_all(&data).unwrap();
    let got = reader.join().unwrap();
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Not a test of correctness: prints what the relay achieves at 20 MB/s and
/// 20 ms with 1 and 8 connections. `cargo test --test support_selftest -- --ignored --nocapture`
#[test]
#[ignore]
fn relay_throughput() {
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap();
    thread::spawn(move || {
        for c in sink.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                let _ = c.write_all(b"k");
            });
        }
    });
    let cfg = RelayConfig {
        rate_bytes_per_sec: Some(20_000_000),
        delay: Duration::from_millis(20),
    };
    let relay = Relay::start(addr, cfg);
    for conns in [1usize, 8] {
        let per_conn = 60_000_000usize;
        let t0 = Instant::now();
        thread::scope(|sc| {
            for _ in 0..conns {
                sc.spawn(|| {
                    let mut c = TcpStream::connect(relay.addr()).unwrap();
                    let chunk = vec![0u8; 1 << 20];
                    for _ in 0..per_conn / chunk.len() {
                        c.write_all(&chunk).unwrap();
                    }
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    c.read_exact(&mut [0u8; 1]).unwrap();
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let total = (per_conn / (1 << 20) * (1 << 20) * conns) as f64;
        println!(
            "{conns} connection(s): {:.1} MB/s total, {:.1} MB/s each",
            total / secs / 1e6,
            total / secs / 1e6 / conns as f64
        );
    }
}

#[test]
fn faulted_request_keeps_the_connection_and_drop_cuts_it() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let relay = Relay::start(s.addr(), RelayConfig::default());
    let a = agent();
    let url = format!("{}/bkt/k", relay.endpoint());
    let big = vec![0u8; 1 << 20];

    s.inject(Fault::new(
        Op::PutObject,
        FaultKind::status(503, "SlowDown"),
    ));
    let mut r = a.put(&url).send(&big[..]).unwrap();
    assert_eq!(r.status().as_u16(), 503);
    r.body_mut().read_to_vec().unwrap(); // ureq pools the connection once the body is read
    assert_eq!(a.head(&url).call().unwrap().status().as_u16(), 403);
    assert_eq!(
        relay.connections(),
        1,
        "the drained body kept the connection alive"
    );
    assert_eq!(s.stats().http_body_bytes, big.len() as u64);

    s.inject(Fault::new(Op::PutObject, FaultKind::DropConnection));
    assert!(a.put(&url).send(&big[..]).is_err());
}

// ------------------------------------------------------------------- sink --

#[test]
fn sink_answers_the_multipart_protocol() {
    let sink = SinkServer::start();
    let a = agent();
    let base = format!("{}/bkt/some/key", sink.endpoint());
    let mut r = a.post(format!("{base}?uploads")).send(&b""[..]).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc = r.body_mut().read_to_string().unwrap();
    assert_eq!(xml_tag(&doc, "Key"), Some("some/key"));
    let id = xml_tag(&doc, "UploadId").unwrap().to_owned();

    let part = vec![3u8; 3 << 20];
    for n in 1..=2 {
        let r = a
            .put(format!("{base}?partNumber={n}&uploadId={id}"))
            .send(&part[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let etag = r.headers().get("etag").unwrap().to_str().unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
            "{etag}"
        );
    }
    let mut r = a
        .post(format!("{base}?uploadId={id}"))
        .send(&b"<CompleteMultipartUpload/>"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(xml_tag(&r.body_mut().read_to_string().unwrap(), "ETag").is_some());
    assert_eq!(
        a.put(&base).send(&part[..10]).unwrap().status().as_u16(),
        200
    );
    assert_eq!(
        a.delete(format!("{base}?uploadId={id}"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        204
    );

    let st = sink.stats();
    assert_eq!((st.requests, st.parts), (6, 2));
    assert_eq!(st.body_bytes, 2 * part.len() as u64 + 26 + 10);
}

#[test]
fn raw_sink_discards() {
    let (addr, sink) = raw_sink();
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&vec![1u8; 5 << 20]).unwrap();
    drop(c);
    let t0 = Instant::now();
    while sink.bytes() < 5 << 20 && t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.bytes(), 5 << 20);
}

/// Prints how fast the test server takes a big PutObject and UploadParts in
/// this build profile. `cargo test --test support_selftest -- --ignored --nocapture`
#[test]
#[ignore]
fn server_throughput() {
    let s = TestServer::start();
    s.create_bucket("bkt");
    let a = agent();
    let data = vec![9u8; 64 << 20];
    for (name, unsigned, crc) in [
        ("signed sha256", false, false),
        ("unsigned", true, false),
        ("unsigned+crc64", true, true),
    ] {
        let extra = if crc {
            vec![("x-amz-checksum-crc64nvme", crc64(&data))]
        } else {
            vec![]
        };
        let t0 = Instant::now();
        let (st, _, _) = signed(&a, &s, "PUT", "/bkt/big", "", &extra, &data, unsigned);
        assert_eq!(st, 200);
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "PutObject 64 MiB {name}: {:.0} MB/s",
            data.len() as f64 / secs / 1e6
        );
    }
}

// ---------------------------------------------------------------- hostile --

/// Sends `request` on `stream` and reads until `until` is in what came back
/// (or the server closes, or 5 s pass); what came.
fn hostile_exchange(stream: &mut TcpStream, request: &[u8], until: &[u8]) -> Vec<u8> {
    stream.write_all(request).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < end && !got.windows(until.len()).any(|w| w == until) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    got
}

/// Reads until the server closes (`true`) or `limit` passes (`false`).
fn hostile_closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let end = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    while Instant::now() < end {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn hostile_records_requests_and_keeps_the_connection() {
    let server = HostileServer::start(|req| {
        if req.has_query("uploads") {
            Reply::ok_xml(
                "<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
            )
        } else {
            Reply::status(200, &[("ETag", "\"e\"")], b"")
        }
    });
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let got = hostile_exchange(
        &mut s,
        b"POST /b/a%20key?uploads HTTP/1.1\r\nHost: x\r\nX-Thing: 1\r\nContent-Length: 0\r\n\r\n",
        b"</InitiateMultipartUploadResult>",
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("<UploadId>u1</UploadId>"), "{text}");
    // The same connection: a second request with a body.
    let got = hostile_exchange(
        &mut s,
        b"PUT /b/a%20key?partNumber=1&uploadId=u%2B1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"Content-Length: 0\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&got).contains("ETag: \"e\""));
    // And a chunked one.
    let got = hostile_exchange(
        &mut s,
        b"PUT /b/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        b"\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert_eq!(server.connections_accepted(), 1);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].target, "/b/a%20key?uploads");
    assert_eq!(reqs[0].path(), "/b/a%20key");
    assert_eq!(reqs[0].query("uploads").as_deref(), Some(""));
    assert_eq!(reqs[0].header("x-thing"), Some("1"));
    assert_eq!(reqs[1].body, b"hello");
    assert_eq!(reqs[1].query("uploadId").as_deref(), Some("u+1"));
    assert_eq!(reqs[1].query("partNumber").as_deref(), Some("1"));
    assert_eq!(reqs[1].query("missing"), None);
    assert_eq!(reqs[2].body, b"abcde");
    drop(s);
    assert!(server.wait_all_closed(Duration::from_secs(5)));
}

#[test]
fn hostile_expect_continue_is_answered_then_the_body_read() {
    let server = HostileServer::start(|req| Reply::status(200, &[], &req.body));
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let got = hostile_exchange(
        &mut s,
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"100 Continue\r\n\r\n",
    );
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    let got = hostile_exchange(&mut s, b"xyz", b"\r\n\r\nxyz");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(got.ends_with(b"\r\n\r\nxyz"));
    let reqs = server.requests();
    assert!(reqs[0].continue_sent);
    assert_eq!(reqs[0].body, b"xyz");

    // Withholding: the handler sees the head alone, no 100 Continue unless the script writes one.
    let server = HostileServer::start_withholding_continue(|req| {
        assert!(req.body.is_empty());
        Reply::step(Step::Sleep(Duration::from_millis(300))).then(Step::Write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ))
    });
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let start = Instant::now();
    let got = hostile_exchange(
        &mut s,
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"\r\n\r\n",
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(got, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    assert!(hostile_closed_within(&mut s, Duration::from_secs(5)));
    assert!(!server.requests()[0].continue_sent);
}

#[test]
fn hostile_trickles_closes_and_truncates() {
    let server = HostileServer::start(|req| match req.path() {
        "/trickle" => Reply::step(Step::Trickle {
            bytes: b"HTTP/1.1 200 OK\r\n".to_vec(),
            every: Duration::from_millis(10),
        })
        .then(Step::Close),
        // Says 100 bytes, sends 4, closes.
        _ => Reply::step(Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcd".to_vec(),
        ))
        .then(Step::Close),
    });
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let start = Instant::now();
    let got = hostile_exchange(
        &mut s,
        b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n",
        b"never",
    );
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n");
    // 17 bytes, 10 ms before each.
    assert!(
        start.elapsed() >= Duration::from_millis(170),
        "{:?}",
        start.elapsed()
    );
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let got = hostile_exchange(&mut s, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n", b"never");
    assert!(got.ends_with(b"\r\n\r\nabcd"));
    assert!(server.wait_all_closed(Duration::from_secs(5)));
}

#[test]
fn hostile_drop_ends_hangs_sleeps_and_trickles_promptly() {
    let server = HostileServer::start(|req| match req.path() {
        "/hang" => Reply::step(Step::Hang),
        "/sleep" => Reply::step(Step::Sleep(Duration::from_secs(3600))),
        _ => Reply::step(Step::Trickle {
            bytes: vec![b'x'; 1000],
            every: Duration::from_secs(60),
        }),
    });
    let mut clients: Vec<TcpStream> = ["/hang", "/sleep", "/trickle"]
        .iter()
        .map(|path| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(5);
    while server.request_count() < 3 && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.connections_open(), 3);
    // The hung connection leaves what the client sends next unread.
    clients[0].write_all(b"more").unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.request_count(), 3);

    let start = Instant::now();
    drop(server);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    for c in &mut clients {
        assert!(hostile_closed_within(c, Duration::from_secs(2)));
    }
}

#[test]
fn hostile_client_close_during_a_hang_is_noticed() {
    let server = HostileServer::start(|_| Reply::step(Step::Hang));
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while server.request_count() < 1 && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.connections_open(), 1);
    drop(s);
    assert!(server.wait_all_closed(Duration::from_secs(5)));
}
