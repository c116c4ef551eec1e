//! Emulations of the AWS credential services on 127.0.0.1, speaking their
//! documented wire formats (README.md, "Credentials"): EC2 instance metadata (IMDSv2),
//! the container credentials endpoint, STS (`AssumeRole` with its SigV4
//! signature verified, `AssumeRoleWithWebIdentity`) and the SSO portal.
//!
//! Each is an [`HttpEmu`]: a small blocking HTTP/1.1 server (one thread per
//! connection, `Connection: close`) that records every request. Credentials
//! they hand out are issued by an [`Issuer`], which can also register them
//! with the test S3 server so that they are accepted there until they expire.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The value of query (or form body) parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let body = String::from_utf8_lossy(&self.body).to_string();
        for part in query.split('&').chain(body.split('&')) {
            if let Some((k, v)) = part.split_once('=')
                && k == name
            {
                return Some(percent_decode(v));
            }
        }
        None
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A reply: status, extra headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A small HTTP server on 127.0.0.1 answering with `handler`.
pub struct HttpEmu {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpEmu {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> HttpEmu {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let (st, lg) = (Arc::clone(&stop), Arc::clone(&log));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, lg) = (Arc::clone(&handler), Arc::clone(&lg));
                std::thread::spawn(move || serve(conn, &h, &lg));
            }
        });
        HttpEmu {
            addr,
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().clone()
    }
}

impl Drop for HttpEmu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Recorded>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (req, body_start) = loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let rec = Recorded {
                    method: r.method.unwrap_or("").to_owned(),
                    target: r.path.unwrap_or("").to_owned(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                break (rec, len);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return,
        }
    };
    let mut req = req;
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[body_start..].to_vec();
    while body.len() < len {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    log.lock().push(req.clone());
    let reply = handler(&req);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let _ = conn.write_all(out.as_bytes());
}

/// RFC 3339 UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// One set of temporary credentials.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_key: String,
    pub secret: String,
    pub token: String,
    pub expiry: SystemTime,
}

/// A callback told of every issued key.
type Register = Arc<dyn Fn(&Issued) + Send + Sync>;

/// Issues numbered temporary credentials valid for `lifetime`, optionally
/// registering each with the test S3 server.
#[derive(Clone)]
pub struct Issuer {
    prefix: String,
    lifetime: Duration,
    seq: Arc<AtomicU64>,
    issued: Arc<Mutex<Vec<Issued>>>,
    server: Option<Register>,
}

impl Issuer {
    pub fn new(prefix: &str, lifetime: Duration) -> Issuer {
        Issuer {
            prefix: prefix.to_owned(),
            lifetime,
            seq: Arc::new(AtomicU64::new(1)),
            issued: Arc::new(Mutex::new(Vec::new())),
            server: None,
        }
    }

    /// Registers every issued key with `register` (e.g. the test S3 server).
    pub fn registering(mut self, register: impl Fn(&Issued) + Send + Sync + 'static) -> Issuer {
        self.server = Some(Arc::new(register));
        self
    }

    pub fn issue(&self) -> Issued {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let i = Issued {
            access_key: format!("{}{n:04}", self.prefix),
            // Longer than a row of ureq's TRACE hex dump (16 bytes).
            secret: format!("secret/{}+{n}/0123456789abcdefghij", self.prefix),
            token: format!("session-token-{}-{n}-0123456789abcdefghij", self.prefix),
            expiry: SystemTime::now() + self.lifetime,
        };
        if let Some(r) = &self.server {
            r(&i);
        }
        self.issued.lock().push(i.clone());
        i
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.issued.lock().clone()
    }
}

/// The JSON of instance metadata and container credentials.
fn creds_json(i: &Issued) -> String {
    format!(
        r#"{{"Code":"Success","LastUpdated":"{}","Type":"AWS-HMAC","AccessKeyId":"{}","SecretAccessKey":"{}","Token":"{}","Expiration":"{}"}}"#,
        rfc3339(SystemTime::now()),
        i.access_key,
        i.secret,
        i.token,
        rfc3339(i.expiry)
    )
}

/// IMDSv2: `PUT /latest/api/token` (needs the TTL header) gives a token;
/// without it every GET is 401.
pub fn imds(role: &str, issuer: Issuer) -> HttpEmu {
    let role = role.to_owned();
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    HttpEmu::start(move |r| {
        let list = "/latest/meta-data/iam/security-credentials/";
        if r.method == "PUT" && r.path() == "/latest/api/token" {
            let Some(ttl) = r.header("x-aws-ec2-metadata-token-ttl-seconds") else {
                return Reply::new(400, "missing TTL");
            };
            let token = format!("imds-session-token-{}", tokens.lock().len() + 1);
            tokens.lock().push(token.clone());
            return Reply::new(200, token).header("x-aws-ec2-metadata-token-ttl-seconds", ttl);
        }
        let ok = r
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|t| tokens.lock().iter().any(|k| k == t));
        if !ok {
            return Reply::new(401, "");
        }
        if r.method != "GET" {
            return Reply::new(405, "");
        }
        if r.path() == list {
            return Reply::new(200, role.clone());
        }
        if r.path() == format!("{list}{role}") {
            return Reply::new(200, creds_json(&issuer.issue()));
        }
        Reply::new(404, "")
    })
}

/// The container endpoint: `GET path` with `Authorization: <token>` (when
/// `token` is given) answers credentials; anything else 401/404.
pub fn container(path: &str, token: Option<Arc<Mutex<String>>>, issuer: Issuer) -> HttpEmu {
    let path = path.to_owned();
    HttpEmu::start(move |r| {
        if let Some(t) = &token
            && r.header("authorization") != Some(t.lock().as_str())
        {
            return Reply::new(401, r#"{"message":"bad token"}"#);
        }
        if r.method == "GET" && r.target == path {
            return Reply::new(200, creds_json(&issuer.issue()));
        }
        Reply::new(404, "")
    })
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies a SigV4-signed request (POST with a body, empty query) against
/// `secret` for `service`: rebuilds the canonical request from what arrived,
/// independently of s3pump's signer. Returns the access key and the region on
/// success, or why it fails.
pub fn verify_sigv4(
    r: &Recorded,
    keys: &HashMap<String, String>,
    service: &str,
) -> Result<(String, String), String> {
    let auth = r.header("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut cred = None;
    let mut signed = None;
    let mut sig = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let (cred, signed, sig) = (
        cred.ok_or("no Credential")?,
        signed.ok_or("no SignedHeaders")?,
        sig.ok_or("no Signature")?,
    );
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts[3] != service || parts[4] != "aws4_request" {
        return Err(format!(
            "bad credential scope {cred} (want service {service})"
        ));
    }
    let (key, date, region) = (parts[0], parts[1], parts[2]);
    let secret = keys
        .get(key)
        .ok_or_else(|| format!("unknown access key {key}"))?;
    let amz_date = r.header("x-amz-date").ok_or("no x-amz-date")?;
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let v = r
            .header(name)
            .ok_or_else(|| format!("signed header {name} missing"))?;
        canonical_headers.push_str(&format!(
            "{name}:{}\n",
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    let payload = hex(&Sha256::digest(&r.body));
    let canonical = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed}\n{payload}",
        r.method,
        r.path()
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    let want = hex(&hmac(&k, sts.as_bytes()));
    if want != sig {
        return Err("signature does not match".into());
    }
    Ok((key.to_owned(), region.to_owned()))
}

fn sts_creds_xml(action: &str, i: &Issued) -> String {
    format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
         <SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/x/y</Arn></AssumedRoleUser>\
         </{action}Result></{action}Response>",
        i.access_key,
        i.secret,
        i.token,
        rfc3339(i.expiry)
    )
}

fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::new(
        status,
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
        ),
    )
}

/// STS: `AssumeRole` signed (service `sts`) by one of `keys` (access key →
/// secret; the keys of `issuer`'s credentials are added as they are issued,
/// so chains work), and `AssumeRoleWithWebIdentity` with `web_token`.
pub struct Sts {
    pub emu: HttpEmu,
    pub keys: Arc<Mutex<HashMap<String, String>>>,
}

pub fn sts(keys: HashMap<String, String>, web_token: Option<String>, issuer: Issuer) -> Sts {
    let keys = Arc::new(Mutex::new(keys));
    let k = Arc::clone(&keys);
    let emu = HttpEmu::start(move |r| {
        if r.method != "POST" || r.path() != "/" {
            return sts_error(404, "NotFound", "no such resource");
        }
        if r.param("Version").as_deref() != Some("2011-06-15") {
            return sts_error(400, "InvalidParameter", "Version");
        }
        let Some(role) = r.param("RoleArn") else {
            return sts_error(400, "MissingParameter", "RoleArn");
        };
        if r.param("RoleSessionName").is_none_or(|s| s.is_empty()) {
            return sts_error(400, "MissingParameter", "RoleSessionName");
        }
        let action = r.param("Action").unwrap_or_default();
        let issued = match action.as_str() {
            "AssumeRole" => {
                let snapshot = k.lock().clone();
                if let Err(e) = verify_sigv4(r, &snapshot, "sts") {
                    return sts_error(403, "SignatureDoesNotMatch", &e);
                }
                if role.contains("needs-external-id")
                    && r.param("ExternalId").as_deref() != Some("ext-42")
                {
                    return sts_error(403, "AccessDenied", "external id");
                }
                issuer.issue()
            }
            "AssumeRoleWithWebIdentity" => {
                if r.header("authorization").is_some() {
                    return sts_error(
                        400,
                        "InvalidRequest",
                        "AssumeRoleWithWebIdentity is not signed",
                    );
                }
                if web_token.is_none() || r.param("WebIdentityToken") != web_token {
                    return sts_error(400, "InvalidIdentityToken", "bad token");
                }
                issuer.issue()
            }
            _ => return sts_error(400, "InvalidAction", "action"),
        };
        k.lock()
            .insert(issued.access_key.clone(), issued.secret.clone());
        Reply::new(200, sts_creds_xml(&action, &issued))
    });
    Sts { emu, keys }
}

/// The SSO portal: `GET /federation/credentials?account_id&role_name` with
/// `x-amz-sso_bearer_token: <token>`.
pub fn sso_portal(token: &str, account: &str, role: &str, issuer: Issuer) -> HttpEmu {
    let (token, account, role) = (token.to_owned(), account.to_owned(), role.to_owned());
    HttpEmu::start(move |r| {
        if r.header("x-amz-sso_bearer_token") != Some(token.as_str()) {
            return Reply::new(401, r#"{"message":"Session token not found or invalid"}"#);
        }
        if r.path() != "/federation/credentials"
            || r.param("account_id").as_deref() != Some(account.as_str())
            || r.param("role_name").as_deref() != Some(role.as_str())
        {
            return Reply::new(403, r#"{"message":"No access"}"#);
        }
        let i = issuer.issue();
        let ms = i.expiry.duration_since(UNIX_EPOCH).unwrap().as_millis();
        Reply::new(
            200,
            format!(
                r#"{{"roleCredentials":{{"accessKeyId":"{}","secretAccessKey":"{}","sessionToken":"{}","expiration":{ms}}}}}"#,
                i.access_key, i.secret, i.token
            ),
        )
    })
}

/// A loopback port with nothing listening.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
