//! AWS Signature Version 4 for S3 (header-based authentication, payload in a
//! single chunk).
//!
//! A pure module: no I/O and no clock reads; the caller passes the time. It runs
//! once per request on the worker threads, so it builds the canonical request in
//! one buffer and borrows whatever does not need rewriting.
//!
//! Over 600 lines only with its unit tests: AWS's published signing examples,
//! reproduced character for character, canonical request included.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::auth::credentials::Credentials;

/// The `x-amz-content-sha256` value of a request whose body is not hashed.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty string: the payload hash of a request without a body.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The signing algorithm (also a presigned URL's `X-Amz-Algorithm`).
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name of S3 in the credential scope.
pub(crate) const SERVICE: &str = "s3";

type HmacSha256 = Hmac<Sha256>;

/// S3's URI encoding: unreserved chars A-Z a-z 0-9 - . _ ~ kept, everything
/// else %XX uppercase (UTF-8 bytes); '/' kept when `keep_slash`.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    encode_cow(s, keep_slash).into_owned()
}

/// Hex (lowercase) SHA-256 of `data`.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Sha256::digest(data));
    out
}

/// What the signer needs to know about one request.
pub(crate) struct SigningRequest<'a> {
    /// HTTP method, upper case (`GET`, `PUT`, …).
    pub method: &'a str,
    /// Already-encoded path as sent on the wire, e.g. "/bucket/my%20key"
    /// (built with uri_encode(.., true)). S3 does NOT double-encode.
    pub canonical_uri: &'a str,
    /// Raw (not encoded) query parameters; the signer encodes and sorts them.
    /// A flag parameter like `uploads` has value "".
    pub query: &'a [(String, String)],
    /// Headers to sign, including `host`; any case; values are trimmed and
    /// inner spaces collapsed per SigV4.
    pub headers: &'a [(String, String)],
    /// hex SHA-256 of the body, or UNSIGNED_PAYLOAD.
    pub payload_hash: &'a str,
}

/// Signs `req` for S3 in `region` at `time`.
///
/// Returns the headers the caller must add to the request: `x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` (only with a session token)
/// and `authorization`, all with lower-case names. These are also included in
/// the signature. A header of these (other than `authorization`) that is
/// already in `req.headers` (as in AWS's examples) is signed with the caller's
/// value and is not returned again; an `x-amz-date` given that way also sets
/// the date of the credential scope.
pub(crate) fn sign(
    creds: &Credentials,
    region: &str,
    time: SystemTime,
    req: &SigningRequest,
) -> Vec<(String, String)> {
    sign_detailed(creds, SERVICE, region, time, req).0
}

/// [`sign`] for another AWS service (`sts` for AssumeRole).
pub(crate) fn sign_service(
    creds: &Credentials,
    service: &str,
    region: &str,
    time: SystemTime,
    req: &SigningRequest,
) -> Vec<(String, String)> {
    sign_detailed(creds, service, region, time, req).0
}

/// Builds the query string as sent on the wire, in the same canonical
/// encoding/order used for signing ("a=b&uploads=").
pub(crate) fn canonical_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    write_canonical_query(&mut out, query);
    out
}

/// The SigV4 timestamp of `time`, in UTC: `20130524T000000Z`.
pub(crate) fn amz_date(time: SystemTime) -> String {
    let secs: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Before 1970: round down to the whole second.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(16);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    out
}

/// Year, month (1-12) and day (1-31) of the day `days` after 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// [`sign`], also returning the canonical request (for the tests).
fn sign_detailed(
    creds: &Credentials,
    service: &str,
    region: &str,
    time: SystemTime,
    req: &SigningRequest,
) -> (Vec<(String, String)>, String) {
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let caller_date = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
        .map(|(_, v)| v.trim());
    let token = creds
        .session_token()
        .filter(|_| !has("x-amz-security-token"));
    let add_content_sha = !has("x-amz-content-sha256");
    debug_assert!(
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256"))
            .all(|(_, v)| v.trim() == req.payload_hash),
        "x-amz-content-sha256 header differs from the signed payload hash"
    );

    let generated_date: String;
    let date_time: &str = match caller_date {
        Some(v) => v,
        None => {
            generated_date = amz_date(time);
            &generated_date
        }
    };

    // The headers added here, in the order they are returned.
    let mut added: Vec<(&'static str, &str)> = Vec::with_capacity(4);
    if caller_date.is_none() {
        added.push(("x-amz-date", date_time));
    }
    if add_content_sha {
        added.push(("x-amz-content-sha256", req.payload_hash));
    }
    if let Some(token) = token {
        added.push(("x-amz-security-token", token));
    }

    let (header_lines, signed_headers) = canonical_headers(req.headers, &added);
    let canonical = canonical_request(req, &header_lines, &signed_headers, None);
    let (scope, signature) = signature(creds, service, region, date_time, &canonical);

    let access_key_id = creds.access_key_id();
    let mut authorization = String::with_capacity(
        ALGORITHM.len() + access_key_id.len() + scope.len() + signed_headers.len() + 64 + 40,
    );
    authorization.push_str(ALGORITHM);
    authorization.push_str(" Credential=");
    authorization.push_str(access_key_id);
    authorization.push('/');
    authorization.push_str(&scope);
    authorization.push_str(",SignedHeaders=");
    authorization.push_str(&signed_headers);
    authorization.push_str(",Signature=");
    authorization.push_str(&signature);

    let mut out: Vec<(String, String)> = Vec::with_capacity(added.len() + 1);
    out.extend(added.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())));
    out.push(("authorization".to_owned(), authorization));
    (out, canonical)
}

/// The canonical header lines (`name:value\n`, sorted by name, repeated
/// headers joined by commas) of `headers` and `added`, and the
/// `SignedHeaders` list (`host;x-amz-date`).
pub(crate) fn canonical_headers(
    headers: &[(String, String)],
    added: &[(&str, &str)],
) -> (String, String) {
    let mut all: Vec<(Cow<str>, Cow<str>)> = Vec::with_capacity(headers.len() + added.len());
    all.extend(
        headers
            .iter()
            .map(|(n, v)| (lowercase(n), normalize_value(v))),
    );
    all.extend(
        added
            .iter()
            .map(|&(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v))),
    );
    // Stable: repeated headers keep their order when joined with commas.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut signed = String::with_capacity(all.len() * 16);
    let mut lines = String::with_capacity(
        all.iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>(),
    );
    let mut prev: Option<&str> = None;
    for (name, value) in &all {
        if prev == Some(name.as_ref()) {
            // A repeated header: one line, values joined by commas. Undo the
            // newline of the previous value.
            lines.pop();
            lines.push(',');
        } else {
            if prev.is_some() {
                signed.push(';');
            }
            signed.push_str(name);
            lines.push_str(name);
            lines.push(':');
        }
        lines.push_str(value);
        lines.push('\n');
        prev = Some(name);
    }
    (lines, signed)
}

/// The canonical request of `req` with its header lines and signed-header
/// list from [`canonical_headers`]; `query`, when given, replaces
/// `req.query` as the canonical query string (already encoded and sorted).
pub(crate) fn canonical_request(
    req: &SigningRequest,
    header_lines: &str,
    signed_headers: &str,
    query: Option<&str>,
) -> String {
    let mut canonical = String::with_capacity(
        256 + req.canonical_uri.len() + header_lines.len() + query.map_or(0, str::len),
    );
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical.push_str(if req.canonical_uri.is_empty() {
        "/"
    } else {
        req.canonical_uri
    });
    canonical.push('\n');
    match query {
        Some(q) => canonical.push_str(q),
        None => write_canonical_query(&mut canonical, req.query),
    }
    canonical.push('\n');
    canonical.push_str(header_lines);
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    canonical.push_str(req.payload_hash);
    canonical
}

/// The credential scope (`20130524/us-east-1/s3/aws4_request`) and the hex
/// signature of `canonical` at `date_time` (`20130524T000000Z`).
pub(crate) fn signature(
    creds: &Credentials,
    service: &str,
    region: &str,
    date_time: &str,
    canonical: &str,
) -> (String, String) {
    let date = date_time.get(..8).unwrap_or(date_time);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let mut string_to_sign =
        String::with_capacity(ALGORITHM.len() + date_time.len() + scope.len() + 64 + 3);
    string_to_sign.push_str(ALGORITHM);
    string_to_sign.push('\n');
    string_to_sign.push_str(date_time);
    string_to_sign.push('\n');
    string_to_sign.push_str(&scope);
    string_to_sign.push('\n');
    push_hex(&mut string_to_sign, &Sha256::digest(canonical.as_bytes()));
    let key = signing_key(creds.secret_access_key(), date, region, service);
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, &hmac(&key, string_to_sign.as_bytes()));
    (scope, hex)
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "s3"), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&k_secret, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// [`uri_encode`] that borrows when nothing needs encoding.
fn encode_cow(s: &str, keep_slash: bool) -> Cow<'_, str> {
    let keep = |b: u8| is_unreserved(b) || (keep_slash && b == b'/');
    match s.bytes().position(|b| !keep(b)) {
        None => Cow::Borrowed(s),
        Some(first) => {
            let mut out = String::with_capacity(s.len() + 16);
            out.push_str(&s[..first]);
            encode_into(&mut out, &s.as_bytes()[first..], keep);
            Cow::Owned(out)
        }
    }
}

/// Appends `bytes` to `out`, percent-encoding every byte `keep` rejects.
fn encode_into(out: &mut String, bytes: &[u8], keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if keep(b) {
            // Kept bytes are all ASCII.
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

fn write_canonical_query(out: &mut String, query: &[(String, String)]) {
    match query {
        [] => {}
        [(k, v)] => {
            out.push_str(&encode_cow(k, false));
            out.push('=');
            out.push_str(&encode_cow(v, false));
        }
        _ => {
            let mut pairs: Vec<(Cow<str>, Cow<str>)> = query
                .iter()
                .map(|(k, v)| (encode_cow(k, false), encode_cow(v, false)))
                .collect();
            // Sorted by encoded name, then by encoded value (byte order).
            pairs.sort_unstable();
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push('&');
                }
                out.push_str(k);
                out.push('=');
                out.push_str(v);
            }
        }
    }
}

fn lowercase(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// SigV4's `Trimall`: leading and trailing blanks removed, inner runs of blanks
/// turned into one space.
fn normalize_value(value: &str) -> Cow<'_, str> {
    let is_blank = |c: char| c == ' ' || c == '\t';
    let v = value.trim_matches(is_blank);
    let b = v.as_bytes();
    let needs_work = b
        .iter()
        .enumerate()
        .any(|(i, &c)| c == b'\t' || (c == b' ' && b.get(i + 1) == Some(&b' ')));
    if !needs_work {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len());
    let mut in_blank = false;
    for c in v.chars() {
        if is_blank(c) {
            if !in_blank {
                out.push(' ');
            }
            in_blank = true;
        } else {
            out.push(c);
            in_blank = false;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOST: &str = "examplebucket.s3.amazonaws.com";

    fn creds() -> Credentials {
        Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
        )
    }

    /// 2013-05-24T00:00:00Z, the time of all of AWS's examples.
    fn may24() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn hdrs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn signature_of(headers: &[(String, String)]) -> &str {
        let auth = get(headers, "authorization").expect("authorization header");
        auth.rsplit_once("Signature=").expect("Signature=").1
    }

    #[test]
    fn empty_sha256_is_the_hash_of_nothing() {
        assert_eq!(hex_sha256(b""), EMPTY_SHA256);
    }

    /// AWS example "GET Object": Range header, empty payload. The signer adds
    /// x-amz-date and x-amz-content-sha256 itself.
    #[test]
    fn aws_example_get_object() {
        let headers = hdrs(&[("Host", HOST), ("Range", "bytes=0-9")]);
        let req = SigningRequest {
            method: "GET",
            canonical_uri: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
        };
        let (added, canonical) = sign_detailed(&creds(), SERVICE, "us-east-1", may24(), &req);
        assert_eq!(
            canonical,
            "GET\n\
             /test.txt\n\
             \n\
             host:examplebucket.s3.amazonaws.com\n\
             range:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\
             \n\
             host;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            added,
            hdrs(&[
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 \
                     Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
                     Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                ),
            ])
        );
        // `sign` returns the same as `sign_detailed`.
        assert_eq!(sign(&creds(), "us-east-1", may24(), &req), added);
    }

    /// AWS example "PUT Object": a key needing encoding, a Date header and a
    /// signed payload. x-amz-date and x-amz-content-sha256 are given by the
    /// caller, as in AWS's request, and must not be returned again.
    #[test]
    fn aws_example_put_object() {
        let body = b"Welcome to Amazon S3.";
        let hash = hex_sha256(body);
        assert_eq!(
            hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let uri = format!("/{}", uri_encode("test$file.text", true));
        assert_eq!(uri, "/test%24file.text");
        let headers = hdrs(&[
            ("Host", HOST),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", &hash),
        ]);
        let req = SigningRequest {
            method: "PUT",
            canonical_uri: &uri,
            query: &[],
            headers: &headers,
            payload_hash: &hash,
        };
        // The clock is ignored when the caller's x-amz-date is there.
        let (added, canonical) = sign_detailed(&creds(), SERVICE, "us-east-1", UNIX_EPOCH, &req);
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
        );
        assert_eq!(added.len(), 1, "only authorization is new: {added:?}");
        assert_eq!(
            get(&added, "authorization").unwrap(),
            "AWS4-HMAC-SHA256 \
             Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    /// The same PUT with the signer adding the two headers itself.
    #[test]
    fn aws_example_put_object_signer_adds_headers() {
        let hash = hex_sha256(b"Welcome to Amazon S3.");
        let headers = hdrs(&[
            ("host", HOST),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        let req = SigningRequest {
            method: "PUT",
            canonical_uri: "/test%24file.text",
            query: &[],
            headers: &headers,
            payload_hash: &hash,
        };
        let added = sign(&creds(), "us-east-1", may24(), &req);
        assert_eq!(get(&added, "x-amz-content-sha256"), Some(hash.as_str()));
        assert_eq!(
            signature_of(&added),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    /// AWS example "GET Bucket Lifecycle": a flag query parameter.
    #[test]
    fn aws_example_get_bucket_lifecycle() {
        let headers = hdrs(&[("Host", HOST)]);
        let query = hdrs(&[("lifecycle", "")]);
        let req = SigningRequest {
            method: "GET",
            canonical_uri: "/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
        };
        assert_eq!(canonical_query(&query), "lifecycle=");
        let (added, canonical) = sign_detailed(&creds(), SERVICE, "us-east-1", may24(), &req);
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca"
        );
        assert_eq!(
            get(&added, "authorization").unwrap(),
            "AWS4-HMAC-SHA256 \
             Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    /// AWS example "GET Bucket (List Objects)": query parameters, given out of
    /// order; the signer sorts them.
    #[test]
    fn aws_example_list_objects() {
        let headers = hdrs(&[("Host", HOST)]);
        let query = hdrs(&[("prefix", "J"), ("max-keys", "2")]);
        let req = SigningRequest {
            method: "GET",
            canonical_uri: "/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
        };
        assert_eq!(canonical_query(&query), "max-keys=2&prefix=J");
        let (added, canonical) = sign_detailed(&creds(), SERVICE, "us-east-1", may24(), &req);
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7"
        );
        assert_eq!(
            signature_of(&added),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn signing_key_matches_aws() {
        // The derived key for 20130524/us-east-1/s3 with AWS's example secret.
        let mut hex = String::new();
        push_hex(
            &mut hex,
            &signing_key(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524",
                "us-east-1",
                SERVICE,
            ),
        );
        assert_eq!(
            hex,
            "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378"
        );
    }

    #[test]
    fn session_token_is_returned_and_signed() {
        let with_token = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Some("FQoGZXIvYXdzEXAMPLETOKEN".to_owned()),
        );
        let headers = hdrs(&[("Host", HOST)]);
        let req = SigningRequest {
            method: "GET",
            canonical_uri: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: UNSIGNED_PAYLOAD,
        };
        let (added, canonical) = sign_detailed(&with_token, SERVICE, "eu-west-1", may24(), &req);
        assert_eq!(
            get(&added, "x-amz-security-token"),
            Some("FQoGZXIvYXdzEXAMPLETOKEN")
        );
        assert_eq!(get(&added, "x-amz-content-sha256"), Some(UNSIGNED_PAYLOAD));
        assert!(canonical.contains("\nx-amz-security-token:FQoGZXIvYXdzEXAMPLETOKEN\n"));
        assert!(canonical.ends_with(
            "\nhost;x-amz-content-sha256;x-amz-date;x-amz-security-token\nUNSIGNED-PAYLOAD"
        ));
        let auth = get(&added, "authorization").unwrap();
        assert!(auth.contains("/20130524/eu-west-1/s3/aws4_request,"));
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            )
        );
        // The token changes the signature.
        let without = sign(&creds(), "eu-west-1", may24(), &req);
        assert_ne!(signature_of(&added), signature_of(&without));
        assert_eq!(get(&without, "x-amz-security-token"), None);
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed_and_repeats_joined() {
        let headers = hdrs(&[
            ("Host", HOST),
            ("X-Amz-Meta-A", "  one   two\tthree  "),
            ("x-amz-meta-b", "x"),
            ("X-AMZ-META-B", "y"),
        ]);
        let req = SigningRequest {
            method: "PUT",
            canonical_uri: "/k",
            query: &[],
            headers: &headers,
            payload_hash: UNSIGNED_PAYLOAD,
        };
        let (added, canonical) = sign_detailed(&creds(), SERVICE, "us-east-1", may24(), &req);
        assert!(canonical.contains("\nx-amz-meta-a:one two three\nx-amz-meta-b:x,y\n"));
        assert!(get(&added, "authorization").unwrap().contains(
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b,"
        ));
    }

    #[test]
    fn uri_encoding() {
        assert_eq!(uri_encode("a b", true), "a%20b");
        assert_eq!(uri_encode("a+b", true), "a%2Bb");
        assert_eq!(uri_encode("a~b", false), "a~b");
        assert_eq!(uri_encode("100%", true), "100%25");
        assert_eq!(uri_encode("é", true), "%C3%A9");
        assert_eq!(uri_encode("a/b", true), "a/b");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("AZaz09-._~", false), "AZaz09-._~");
        assert_eq!(uri_encode("", false), "");
        assert_eq!(
            uri_encode("dir/naïve file=1&x*(y)!", true),
            "dir/na%C3%AFve%20file%3D1%26x%2A%28y%29%21"
        );
        assert_eq!(uri_encode("日本", false), "%E6%97%A5%E6%9C%AC");
        assert_eq!(uri_encode("€/", false), "%E2%82%AC%2F");
    }

    #[test]
    fn canonical_query_encodes_and_sorts() {
        assert_eq!(canonical_query(&[]), "");
        assert_eq!(canonical_query(&hdrs(&[("uploads", "")])), "uploads=");
        assert_eq!(
            canonical_query(&hdrs(&[("uploadId", "a/b+c=="), ("partNumber", "2")])),
            "partNumber=2&uploadId=a%2Fb%2Bc%3D%3D"
        );
        // Sorted by name first, then value; upper case sorts before lower case.
        assert_eq!(
            canonical_query(&hdrs(&[
                ("b", "2"),
                ("a-b", "z"),
                ("a", "y"),
                ("a", "x"),
                ("B", ""),
            ])),
            "B=&a=x&a=y&a-b=z&b=2"
        );
        assert_eq!(
            canonical_query(&hdrs(&[("prefix", "dir/a b~é")])),
            "prefix=dir%2Fa%20b~%C3%A9"
        );
    }

    #[test]
    fn amz_date_formats_utc() {
        let at = |secs: u64| amz_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(1_369_353_600), "20130524T000000Z");
        // 2000 is a leap year (divisible by 400).
        assert_eq!(at(951_782_399), "20000228T235959Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(951_868_800), "20000301T000000Z");
        // 2024: a leap day, then the day boundary into March.
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(1_709_251_200), "20240301T000000Z");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_399), "21000228T235959Z");
        assert_eq!(at(4_107_542_400), "21000301T000000Z");
        assert_eq!(at(253_402_300_799), "99991231T235959Z");
        // Sub-second parts are dropped.
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_millis(1_369_353_600_999)),
            "20130524T000000Z"
        );
        // Before the epoch (1900 is not a leap year either).
        let before = |secs: u64| amz_date(UNIX_EPOCH - Duration::from_secs(secs));
        assert_eq!(before(1), "19691231T235959Z");
        assert_eq!(before(2_203_891_201), "19000228T235959Z");
        assert_eq!(before(2_203_891_200), "19000301T000000Z");
        assert_eq!(
            amz_date(UNIX_EPOCH - Duration::from_millis(500)),
            "19691231T235959Z"
        );
    }
}
