//! SigV4 in the query string: the signature of a presigned URL.
//!
//! A pure module like `sigv4` (whose canonical request and signature it
//! reuses): no I/O, no clock; the caller passes the time. The request's
//! headers (at least `host`) are signed; the payload is `UNSIGNED-PAYLOAD`,
//! as S3 requires of presigned URLs.

use std::time::SystemTime;

use crate::auth::credentials::Credentials;
use crate::auth::sigv4::{self, SigningRequest};

/// The query string (encoded, sorted, `X-Amz-Signature` last) that
/// authenticates `req` for `expires_in` seconds from `time`, signed for S3
/// in `region`.
///
/// `req.query` holds the request's own parameters (`partNumber`,
/// `uploadId`, `versionId`); the `X-Amz-*` ones are added here, with
/// `X-Amz-Security-Token` when the credentials carry a session token.
/// `req.payload_hash` should be [`sigv4::UNSIGNED_PAYLOAD`].
pub(crate) fn presign_query(
    creds: &Credentials,
    region: &str,
    time: SystemTime,
    expires_in: u64,
    req: &SigningRequest,
) -> String {
    let date_time = sigv4::amz_date(time);
    let (header_lines, signed_headers) = sigv4::canonical_headers(req.headers, &[]);
    let date = date_time.get(..8).unwrap_or(&date_time);
    let mut query = req.query.to_vec();
    query.extend([
        ("X-Amz-Algorithm".to_owned(), sigv4::ALGORITHM.to_owned()),
        (
            "X-Amz-Credential".to_owned(),
            format!(
                "{}/{date}/{region}/{}/aws4_request",
                creds.access_key_id(),
                sigv4::SERVICE
            ),
        ),
        ("X-Amz-Date".to_owned(), date_time.clone()),
        ("X-Amz-Expires".to_owned(), expires_in.to_string()),
        ("X-Amz-SignedHeaders".to_owned(), signed_headers.clone()),
    ]);
    if let Some(token) = creds.session_token() {
        query.push(("X-Amz-Security-Token".to_owned(), token.to_owned()));
    }
    let mut canonical_query = sigv4::canonical_query(&query);
    let canonical =
        sigv4::canonical_request(req, &header_lines, &signed_headers, Some(&canonical_query));
    let (_, signature) = sigv4::signature(creds, sigv4::SERVICE, region, &date_time, &canonical);
    canonical_query.push_str("&X-Amz-Signature=");
    canonical_query.push_str(&signature);
    canonical_query
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn hdrs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// AWS's published example ("Authenticating Requests: Using Query
    /// Parameters", Example: presigned URL): GET of examplebucket/test.txt,
    /// 2013-05-24T00:00:00Z, 86400 s.
    #[test]
    fn aws_example_presigned_url() {
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
        );
        let headers = hdrs(&[("Host", "examplebucket.s3.amazonaws.com")]);
        let req = SigningRequest {
            method: "GET",
            canonical_uri: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: sigv4::UNSIGNED_PAYLOAD,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let query = presign_query(&creds, "us-east-1", at, 86_400, &req);
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z\
             &X-Amz-Expires=86400\
             &X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// A session token goes into the query and is signed; the request's own
    /// parameters sort among the `X-Amz-*` ones; extra headers are signed.
    #[test]
    fn token_parameters_and_headers_are_signed() {
        let plain = Credentials::new("AKID", "secret", None);
        let with_token = Credentials::new("AKID", "secret", Some("TOKEN/+=".to_owned()));
        let headers = hdrs(&[("host", "h:9000"), ("Content-Type", "text/plain")]);
        let query = hdrs(&[("uploadId", "u/1"), ("partNumber", "3")]);
        let req = SigningRequest {
            method: "PUT",
            canonical_uri: "/b/k",
            query: &query,
            headers: &headers,
            payload_hash: sigv4::UNSIGNED_PAYLOAD,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let a = presign_query(&plain, "eu-west-1", at, 60, &req);
        let b = presign_query(&with_token, "eu-west-1", at, 60, &req);
        assert!(
            a.starts_with(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20130524%2Feu-west-1%2Fs3%2Faws4_request\
                 &X-Amz-Date=20130524T000000Z&X-Amz-Expires=60\
                 &X-Amz-SignedHeaders=content-type%3Bhost&partNumber=3&uploadId=u%2F1&X-Amz-Signature="
            ),
            "{a}"
        );
        assert!(!a.contains("Security-Token"), "{a}");
        assert!(
            b.contains("&X-Amz-Security-Token=TOKEN%2F%2B%3D&X-Amz-SignedHeaders="),
            "{b}"
        );
        let sig = |q: &str| q.rsplit_once("X-Amz-Signature=").unwrap().1.to_owned();
        assert_ne!(sig(&a), sig(&b));
        assert_eq!(sig(&a).len(), 64);
    }
}
