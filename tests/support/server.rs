//! [`TestServer`]: an in-process S3 server (s3s + s3s-fs over a temp dir) with
//! SigV4 auth, request statistics, fault injection and an RDMA emulation.
//!
//! Layers, outermost first:
//! 1. an HTTP layer (this file, a hyper service in front of the s3s service):
//!    classifies requests into [`Op`]s, counts them ([`Stats`]), fires injected
//!    [`Fault`]s, holds UploadParts for the part delay and implements the
//!    `x-amz-rdma-token` emulation ([`RdmaMode`]);
//! 2. s3s's `S3Service`: SigV4 verification (s3s `SimpleAuth` with
//!    [`ACCESS_KEY`] / [`SECRET_KEY`]), routing, XML;
//! 3. `tracked::Tracked`: tracks open multipart uploads, verifies checksums,
//!    delegates everything to s3s-fs's `FileSystem` (see `tracked.rs` for what
//!    s3s-fs does and does not check).
//!
//! Status codes s3s 0.14 answers (useful when writing client tests): an
//! unsigned request → 403 `AccessDenied` ("Signature is required"); a bad
//! signature → 403 `SignatureDoesNotMatch`; an unknown access key → 403
//! `NotSignedUp`; a clock skew > 15 min → 403 `RequestTimeTooSkewed`; a missing
//! `x-amz-content-sha256` → 400 `InvalidRequest`; `UNSIGNED-PAYLOAD` without
//! `Content-Length` → 411 `MissingContentLength`. The region in the credential
//! scope is NOT checked against [`REGION`] (any region verifies, as long as the
//! client signed with the same one it sent). Bucket names are validated with
//! AWS rules (`"b"` is 400 `InvalidBucketName`; use 3+ characters).
//!
//! A successful CompleteMultipartUpload reply is `200`, `Transfer-Encoding:
//! chunked`: s3s sends the XML declaration at once and the result when ready
//! (whitespace every 100 ms meanwhile), like S3's keep-alive Complete; errors
//! found while processing would also arrive that way, as a 200 `<Error>` body.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use s3s::Body;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};

pub use super::tracked::OpenUpload;
use super::tracked::{Tracked, UploadTracker};

/// Access key the test server accepts.
pub const ACCESS_KEY: &str = "s3pumptestaccesskey";
/// Secret key of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "s3pump/test/secret/key+0123456789abcdef";
/// Region clients should sign with (the server does not enforce it).
pub const REGION: &str = "us-east-1";

/// Request header carrying an RDMA token (docs/RDMA.md).
pub const RDMA_TOKEN_HEADER: &str = "x-amz-rdma-token";
/// Reply header telling the client its RDMA token was honoured.
pub const RDMA_REPLY_HEADER: &str = "x-amz-rdma-reply";
/// Reply header on an RDMA GetObject: how many bytes were written into the
/// client's memory (the reply's own `Content-Length` is 0).
pub const RDMA_LENGTH_HEADER: &str = "x-amz-rdma-length";

/// The S3 operations the HTTP layer recognises (for [`Fault`]s and [`Stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /bucket/key?uploads`
    CreateMultipartUpload,
    /// `PUT /bucket/key?partNumber=N&uploadId=ID`
    UploadPart,
    /// `POST /bucket/key?uploadId=ID`
    CompleteMultipartUpload,
    /// `DELETE /bucket/key?uploadId=ID`
    AbortMultipartUpload,
    /// `PUT /bucket/key` (no sub-resource, no `x-amz-copy-source`)
    PutObject,
    /// `HEAD /bucket/key`
    HeadObject,
    /// `GET /bucket/key` (no sub-resource)
    GetObject,
    /// `GET /bucket?list-type=2`
    ListObjectsV2,
    /// `POST /bucket?delete`
    DeleteObjects,
}

/// What an injected fault does to the request it fires on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Reply with this status and an S3 XML `<Error>` with this code, without
    /// processing the request (its body is drained first so keep-alive works).
    Status {
        /// HTTP status, e.g. 503. An invalid one is sent as 500.
        status: u16,
        /// S3 error code, e.g. `SlowDown`.
        code: String,
    },
    /// Reply 200 with an `<Error>` document, without processing the request.
    ErrorIn200 {
        /// S3 error code, e.g. `InternalError`.
        code: String,
    },
    /// Process the request for real, then throw the reply away and answer 200
    /// with an `<Error>` document (a Complete that succeeded but whose reply was
    /// lost).
    ErrorIn200AfterProcessing {
        /// S3 error code, e.g. `InternalError`.
        code: String,
    },
    /// Wait this long, then process the request normally.
    Delay(Duration),
    /// Close the TCP connection without answering (nothing is processed).
    DropConnection,
    /// Process the request for real, send the reply's head (with its full
    /// `Content-Length`) and only this many bytes of its body, then close the
    /// connection: a reply cut short mid-body.
    CutBody(usize),
}

/// A one-shot fault, armed with [`TestServer::inject`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which operation it applies to.
    pub op: Op,
    /// For [`Op::UploadPart`]: only requests for this part number; `None` = any
    /// part. Ignored for other operations.
    pub part_number: Option<u32>,
    /// Fires on the `attempt`-th matching request counted since injection
    /// (1 = the first). If that request was already taken by another fault
    /// queued earlier, it fires on the next matching one instead, so two faults
    /// queued with `attempt: 1` fail two consecutive requests.
    pub attempt: u32,
    /// What it does.
    pub kind: FaultKind,
}

impl Fault {
    /// A fault on the first matching request of `op` (any part).
    pub fn new(op: Op, kind: FaultKind) -> Fault {
        Fault {
            op,
            part_number: None,
            attempt: 1,
            kind,
        }
    }

    /// Restricts the fault to UploadParts of this part number.
    pub fn part(mut self, part_number: u32) -> Fault {
        self.part_number = Some(part_number);
        self
    }

    /// Makes the fault fire on the `n`-th matching request (1-based).
    pub fn attempt(mut self, n: u32) -> Fault {
        self.attempt = n;
        self
    }
}

impl FaultKind {
    /// Shorthand for [`FaultKind::Status`].
    pub fn status(status: u16, code: &str) -> FaultKind {
        FaultKind::Status {
            status,
            code: code.to_owned(),
        }
    }

    /// Shorthand for [`FaultKind::ErrorIn200`].
    pub fn error_in_200(code: &str) -> FaultKind {
        FaultKind::ErrorIn200 {
            code: code.to_owned(),
        }
    }

    /// Shorthand for [`FaultKind::ErrorIn200AfterProcessing`].
    pub fn error_in_200_after_processing(code: &str) -> FaultKind {
        FaultKind::ErrorIn200AfterProcessing {
            code: code.to_owned(),
        }
    }
}

/// How the server treats `x-amz-rdma-token` (docs/RDMA.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RdmaMode {
    /// The header is passed through and ignored: a tokened UploadPart with an
    /// empty body stores an empty part; no reply header.
    #[default]
    Off,
    /// UploadPart / PutObject take their body from the memory the token names;
    /// GetObject writes the object into it. Replies carry `x-amz-rdma-reply: ok`.
    Honour,
    /// Any request carrying the header is answered 501 `NotImplemented`.
    Refuse501,
}

/// Request statistics since start or the last [`TestServer::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// CreateMultipartUpload requests received (faulted ones included).
    pub create_multipart_calls: u64,
    /// UploadPart requests received (faulted ones included).
    pub upload_part_calls: u64,
    /// CompleteMultipartUpload requests received (faulted ones included).
    pub complete_calls: u64,
    /// AbortMultipartUpload requests received (faulted ones included).
    pub abort_calls: u64,
    /// PutObject requests received (faulted ones included).
    pub put_object_calls: u64,
    /// HeadObject requests received (faulted ones included).
    pub head_object_calls: u64,
    /// GetObject requests received (faulted ones included).
    pub get_object_calls: u64,
    /// ListObjectsV2 requests received (faulted ones included).
    pub list_objects_calls: u64,
    /// DeleteObjects requests received (faulted ones included).
    pub delete_objects_calls: u64,
    /// Most UploadPart requests in process at once (arrival to response head).
    pub peak_upload_parts_in_flight: u64,
    /// Most GetObject requests in process at once (arrival to response head).
    pub peak_get_objects_in_flight: u64,
    /// Body bytes of successful GetObject replies sent over HTTP (their
    /// `Content-Length`; an RDMA reply's empty body counts 0).
    pub get_body_bytes: u64,
    /// Request body bytes received over HTTP in UploadPart and PutObject
    /// requests (drained bodies of faulted requests included).
    pub http_body_bytes: u64,
    /// Bytes moved through the RDMA emulation (both directions).
    pub rdma_bytes: u64,
    /// Requests whose RDMA token was honoured.
    pub rdma_requests: u64,
    /// UploadPart and PutObject requests sent with
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the rest signed the SHA-256).
    pub unsigned_payload_calls: u64,
}

struct ArmedFault {
    fault: Fault,
    seen: u32,
}

struct Shared {
    stats: Mutex<Stats>,
    parts_in_flight: Mutex<u64>,
    gets_in_flight: Mutex<u64>,
    part_delay: Mutex<Duration>,
    faults: Mutex<Vec<ArmedFault>>,
    rdma_mode: Mutex<RdmaMode>,
    request_seq: AtomicU64,
    /// Temporary access keys: secret and expiry (see [`TestServer::add_temporary_key`]).
    temp_keys: KeyRing,
    /// Every request's access key (after the expiry check), in arrival order.
    keys_used: Mutex<Vec<String>>,
    /// Requests refused with `ExpiredToken`.
    expired_rejections: AtomicU64,
    /// The region buckets live in, and how a request signed for another is refused.
    region: Mutex<Option<(String, WrongRegion)>>,
    /// Requests refused for their region.
    region_rejections: AtomicU64,
}

/// How the server answers a request signed for the wrong region, as AWS does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrongRegion {
    /// `400 AuthorizationHeaderMalformed` with `<Region>` in the error body.
    AuthorizationHeaderMalformed,
    /// `301 PermanentRedirect` with the `x-amz-bucket-region` header.
    PermanentRedirect,
}

/// The static key pair plus temporary ones (secret, expiry).
#[derive(Clone, Default)]
struct KeyRing(Arc<Mutex<std::collections::HashMap<String, (String, std::time::SystemTime)>>>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        if access_key == ACCESS_KEY {
            return Ok(SECRET_KEY.into());
        }
        match self.0.lock().get(access_key) {
            Some((secret, _)) => Ok(secret.clone().into()),
            None => Err(s3s::s3_error!(NotSignedUp, "Your account is not signed up")),
        }
    }
}

/// The access key and the region of a SigV4 `Authorization` header.
fn credential_scope(headers: &http::HeaderMap) -> Option<(String, String)> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut it = cred.split('/');
    let key = it.next()?.to_owned();
    let _date = it.next()?;
    let region = it.next()?.to_owned();
    Some((key, region))
}

impl Shared {
    fn take_fault(&self, op: Op, part: Option<u32>) -> Option<FaultKind> {
        let mut faults = self.faults.lock();
        let mut fired = None;
        for (i, a) in faults.iter_mut().enumerate() {
            let matches = a.fault.op == op
                && (op != Op::UploadPart
                    || a.fault.part_number.is_none()
                    || a.fault.part_number == part);
            if !matches {
                continue;
            }
            a.seen = a.seen.saturating_add(1);
            if fired.is_none() && a.seen >= a.fault.attempt {
                fired = Some(i);
            }
        }
        fired.map(|i| faults.remove(i).fault.kind)
    }

    fn request_id(&self) -> String {
        format!(
            "S3PUMPTEST{:010}",
            self.request_seq.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Counts UploadParts in process; decrements on drop (also when the
/// connection dies mid-request).
struct InFlightGuard(Arc<Shared>);

impl InFlightGuard {
    fn new(shared: &Arc<Shared>) -> InFlightGuard {
        let mut n = shared.parts_in_flight.lock();
        *n += 1;
        let mut s = shared.stats.lock();
        s.peak_upload_parts_in_flight = s.peak_upload_parts_in_flight.max(*n);
        InFlightGuard(Arc::clone(shared))
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        *self.0.parts_in_flight.lock() -= 1;
    }
}

/// Counts GetObjects in process, like [`InFlightGuard`] does UploadParts.
struct GetInFlightGuard(Arc<Shared>);

impl GetInFlightGuard {
    fn new(shared: &Arc<Shared>) -> GetInFlightGuard {
        let mut n = shared.gets_in_flight.lock();
        *n += 1;
        let mut s = shared.stats.lock();
        s.peak_get_objects_in_flight = s.peak_get_objects_in_flight.max(*n);
        GetInFlightGuard(Arc::clone(shared))
    }
}

impl Drop for GetInFlightGuard {
    fn drop(&mut self) {
        *self.0.gets_in_flight.lock() -= 1;
    }
}

/// An in-process S3 server on 127.0.0.1 (path-style, SigV4 with [`ACCESS_KEY`]
/// / [`SECRET_KEY`]), on its own tokio runtime. Dropping it stops the server
/// and deletes its data.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    uploads: Arc<UploadTracker>,
    root: PathBuf,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server over a fresh temp dir on an ephemeral port.
    pub fn start() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("s3pump-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().canonicalize().expect("canonicalize temp dir");
        let uploads = Arc::new(UploadTracker::default());
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats::default()),
            parts_in_flight: Mutex::new(0),
            gets_in_flight: Mutex::new(0),
            part_delay: Mutex::new(Duration::ZERO),
            faults: Mutex::new(Vec::new()),
            rdma_mode: Mutex::new(RdmaMode::Off),
            request_seq: AtomicU64::new(1),
            temp_keys: KeyRing::default(),
            keys_used: Mutex::new(Vec::new()),
            expired_rejections: AtomicU64::new(0),
            region: Mutex::new(None),
            region_rejections: AtomicU64::new(0),
        });

        let s3 = {
            let mut b = S3ServiceBuilder::new(Tracked::new(root.clone(), Arc::clone(&uploads)));
            b.set_auth(shared.temp_keys.clone());
            b.build()
        };

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3pump-test-server")
            .enable_all()
            .build()
            .expect("tokio runtime");

        let std_listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = std_listener.local_addr().expect("local_addr");
        std_listener.set_nonblocking(true).expect("set_nonblocking");
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("tokio listener")
        };

        let sh = Arc::clone(&shared);
        rt.spawn(accept_loop(listener, sh, s3));

        TestServer {
            addr,
            shared,
            uploads,
            root,
            rt: Some(rt),
            _dir: dir,
        }
    }

    /// Accepts `access_key` (signed with `secret`) until `expiry`; after it,
    /// every request signed with it is refused with `400 ExpiredToken`, as
    /// AWS refuses expired temporary credentials.
    pub fn add_temporary_key(&self, access_key: &str, secret: &str, expiry: std::time::SystemTime) {
        self.shared
            .temp_keys
            .0
            .lock()
            .insert(access_key.to_owned(), (secret.to_owned(), expiry));
    }

    /// [`add_temporary_key`](Self::add_temporary_key) as a callback that
    /// other threads (a credential service emulation) can keep.
    pub fn key_registrar(
        &self,
    ) -> impl Fn(&str, &str, std::time::SystemTime) + Send + Sync + 'static {
        let ring = self.shared.temp_keys.clone();
        move |key: &str, secret: &str, expiry: std::time::SystemTime| {
            ring.0
                .lock()
                .insert(key.to_owned(), (secret.to_owned(), expiry));
        }
    }

    /// The access key of every request that got past the expiry check.
    pub fn access_keys_used(&self) -> Vec<String> {
        self.shared.keys_used.lock().clone()
    }

    /// Requests refused with `ExpiredToken`.
    pub fn expired_rejections(&self) -> u64 {
        self.shared.expired_rejections.load(Ordering::Relaxed)
    }

    /// From now on buckets live in `region`: a request signed for another
    /// region is refused the way `reply` says.
    pub fn set_bucket_region(&self, region: &str, reply: WrongRegion) {
        *self.shared.region.lock() = Some((region.to_owned(), reply));
    }

    /// Requests refused because they were signed for the wrong region.
    pub fn region_rejections(&self) -> u64 {
        self.shared.region_rejections.load(Ordering::Relaxed)
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory s3s-fs stores into (bucket `b`, key `k` is `root/b/k`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a bucket (directly in the file system).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).expect("create bucket dir");
    }

    /// The stored bytes of an object, read directly from the file system, or
    /// `None` if it does not exist.
    pub fn object_bytes(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let p = self.root.join(bucket).join(key);
        if !p.is_file() {
            return None;
        }
        std::fs::read(p).ok()
    }

    /// Stores an object directly in the file system (for download tests). Its
    /// ETag is then the hex MD5 of `data` (s3s-fs computes it on demand),
    /// unless s3s-fs has metadata of an object stored at that key through
    /// S3 before: then it keeps reporting that object's ETag and checksum
    /// (a way to serve corrupted bytes). An existing object is replaced
    /// atomically (a new file renamed over it), as S3 does: GETs already
    /// reading it go on reading the old bytes.
    pub fn put_object_bytes(&self, bucket: &str, key: &str, data: &[u8]) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let p = self.root.join(bucket).join(key);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create object dir");
        }
        // Outside every bucket, so that no listing ever shows it.
        let tmp = self.root.join(format!(
            ".put-object-bytes-{}.tmp",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, data).expect("write object");
        std::fs::rename(&tmp, p).expect("rename object into place");
    }

    /// Multipart uploads created and neither completed nor aborted, in creation
    /// order.
    pub fn open_uploads(&self) -> Vec<OpenUpload> {
        self.uploads.open_uploads()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().clone()
    }

    /// Zeroes the statistics (the in-flight peak restarts from the parts in
    /// flight right now).
    pub fn reset_stats(&self) {
        let n = *self.shared.parts_in_flight.lock();
        let gets = *self.shared.gets_in_flight.lock();
        *self.shared.stats.lock() = Stats {
            peak_upload_parts_in_flight: n,
            peak_get_objects_in_flight: gets,
            ..Stats::default()
        };
    }

    /// Holds every UploadPart for `d` before processing it. `Duration::ZERO`
    /// (the default) turns it off.
    pub fn set_part_delay(&self, d: Duration) {
        *self.shared.part_delay.lock() = d;
    }

    /// Queues a one-shot fault.
    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .push(ArmedFault { fault, seen: 0 });
    }

    /// Faults queued and not fired yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().len()
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().clear();
    }

    /// Sets how `x-amz-rdma-token` is treated. Defaults to [`RdmaMode::Off`].
    pub fn set_rdma_mode(&self, mode: RdmaMode) {
        *self.shared.rdma_mode.lock() = mode;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Drops every task (the listener and all connections) and waits a
            // little for s3s-fs's blocking file operations before the temp dir goes.
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>, s3: S3Service) {
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let s3 = s3.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&shared), s3.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}

/// The error a request handler returns to make hyper close the connection
/// without writing a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injection: drop connection")
    }
}

impl std::error::Error for DropConnection {}

/// Classifies a request into an [`Op`] and, for UploadPart, its part number.
fn classify(
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> (Option<Op>, Option<u32>) {
    let path = uri.path().trim_start_matches('/');
    let is_object = matches!(path.split_once('/'), Some((b, k)) if !b.is_empty() && !k.is_empty());
    if !is_object {
        let bucket = !path.is_empty() && !path.contains('/');
        let has = |name: &str| {
            uri.query()
                .unwrap_or("")
                .split('&')
                .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == name)
        };
        let op = match *method {
            Method::GET
                if bucket
                    && uri
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .any(|p| p == "list-type=2") =>
            {
                Some(Op::ListObjectsV2)
            }
            Method::POST if bucket && has("delete") => Some(Op::DeleteObjects),
            _ => None,
        };
        return (op, None);
    }
    let mut has_uploads = false;
    let mut upload_id = false;
    let mut part_number: Option<Option<u32>> = None;
    let mut other_subresource = false;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "uploads" => has_uploads = true,
            "uploadId" => upload_id = true,
            "partNumber" => part_number = Some(v.parse().ok()),
            "versionId" | "x-id" => {}
            k if k.starts_with("response-")
                || k.starts_with("X-Amz-")
                || k.starts_with("x-amz-") => {}
            _ => other_subresource = true,
        }
    }
    let copy = headers.contains_key("x-amz-copy-source");
    let op = match *method {
        Method::POST if has_uploads => Some(Op::CreateMultipartUpload),
        Method::POST if upload_id => Some(Op::CompleteMultipartUpload),
        Method::PUT if upload_id && part_number.is_some() && !copy => Some(Op::UploadPart),
        Method::PUT if !upload_id && part_number.is_none() && !other_subresource && !copy => {
            Some(Op::PutObject)
        }
        Method::DELETE if upload_id => Some(Op::AbortMultipartUpload),
        Method::HEAD if !upload_id && !other_subresource => Some(Op::HeadObject),
        Method::GET if !upload_id && !other_subresource => Some(Op::GetObject),
        _ => None,
    };
    (op, part_number.flatten())
}

/// An S3 XML error document.
fn error_xml(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_response(status: u16, xml: String, request_id: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(xml.clone()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(xml.len()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v);
    }
    resp
}

fn error_response(shared: &Shared, status: u16, code: &str, message: &str) -> Response<Body> {
    let id = shared.request_id();
    xml_response(status, error_xml(code, message, &id), &id)
}

/// Reads and discards a request body, counting it if `count`. Returns whether
/// it was empty; errors (the client went away) count as empty.
async fn drain(shared: &Shared, mut body: Incoming, count: bool) -> bool {
    let mut empty = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            if !data.is_empty() {
                empty = false;
            }
            if count {
                shared.stats.lock().http_body_bytes += data.len() as u64;
            }
        }
    }
    empty
}

/// A request body that adds what passes through to `Stats::http_body_bytes`.
struct CountingBody {
    inner: Incoming,
    shared: Arc<Shared>,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.shared.stats.lock().http_body_bytes += d.len() as u64;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Parses an emulation RDMA token `emu:<addr: 16 lowercase hex>:<len: decimal>`.
/// Returns `None` for anything else (including a null address with a non-zero
/// length, or a range that would wrap around).
pub fn parse_rdma_token(token: &str) -> Option<(usize, usize)> {
    let rest = token.strip_prefix("emu:")?;
    let (addr, len) = rest.split_once(':')?;
    if addr.len() != 16
        || !addr
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    if len.is_empty() || len.len() > 20 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let addr = usize::try_from(u64::from_str_radix(addr, 16).ok()?).ok()?;
    let len = usize::try_from(len.parse::<u64>().ok()?).ok()?;
    if len > isize::MAX as usize || addr.checked_add(len).is_none() || (addr == 0 && len > 0) {
        return None;
    }
    Some((addr, len))
}

/// Formats an emulation RDMA token for `len` bytes at `ptr`, the format the
/// emulation C library mints (for tests that bypass it).
pub fn make_rdma_token(ptr: *const u8, len: usize) -> String {
    format!("emu:{:016x}:{}", ptr as usize, len)
}

/// Copies the `len` bytes at `addr` out of this process's memory.
fn read_rdma_memory(addr: usize, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the token was minted by the emulation library (or a test) for a
    // range the client registered and keeps alive, unmodified, until this
    // request completes; `parse_rdma_token` rejected null and wrapping ranges.
    // The bytes are copied out at once and the slice does not outlive this line.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

/// Copies `data` into this process's memory at `addr` (`data.len()` must not
/// exceed the token's length).
fn write_rdma_memory(addr: usize, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // SAFETY: as for `read_rdma_memory`: the range [addr, addr + token len) is a
    // live buffer the client registered for this GET and does not touch until the
    // request completes; the caller checked data.len() <= token len, and `data`
    // (a fresh server-side buffer) cannot overlap it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
}

/// Whether `content-length` is among the SigV4 signed headers of the request.
fn content_length_signed(headers: &http::HeaderMap) -> bool {
    let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    auth.split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .is_some_and(|list| {
            list.split(';')
                .any(|h| h.eq_ignore_ascii_case("content-length"))
        })
}

async fn handle(
    shared: Arc<Shared>,
    s3: S3Service,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let (op, part) = classify(req.method(), req.uri(), req.headers());
    let _in_flight = (op == Some(Op::UploadPart)).then(|| InFlightGuard::new(&shared));
    let _gets_in_flight = (op == Some(Op::GetObject)).then(|| GetInFlightGuard::new(&shared));
    let if_match = req.headers().get(http::header::IF_MATCH).cloned();
    if let Some(op) = op {
        let mut s = shared.stats.lock();
        match op {
            Op::CreateMultipartUpload => s.create_multipart_calls += 1,
            Op::UploadPart => s.upload_part_calls += 1,
            Op::CompleteMultipartUpload => s.complete_calls += 1,
            Op::AbortMultipartUpload => s.abort_calls += 1,
            Op::PutObject => s.put_object_calls += 1,
            Op::HeadObject => s.head_object_calls += 1,
            Op::GetObject => s.get_object_calls += 1,
            Op::ListObjectsV2 => s.list_objects_calls += 1,
            Op::DeleteObjects => s.delete_objects_calls += 1,
        }
        let unsigned = req
            .headers()
            .get("x-amz-content-sha256")
            .is_some_and(|v| v == "UNSIGNED-PAYLOAD");
        if matches!(op, Op::UploadPart | Op::PutObject) && unsigned {
            s.unsigned_payload_calls += 1;
        }
    }
    let counts_body = matches!(op, Some(Op::UploadPart | Op::PutObject));
    if let Some((key, signed_region)) = credential_scope(req.headers()) {
        let expired = shared
            .temp_keys
            .0
            .lock()
            .get(&key)
            .is_some_and(|(_, expiry)| std::time::SystemTime::now() >= *expiry);
        if expired {
            shared.expired_rejections.fetch_add(1, Ordering::Relaxed);
            let (_, body) = req.into_parts();
            drain(&shared, body, false).await;
            return Ok(error_response(
                &shared,
                400,
                "ExpiredToken",
                "The provided token has expired.",
            ));
        }
        shared.keys_used.lock().push(key);
        let region = shared.region.lock().clone();
        if let Some((region, reply)) = region
            && region != signed_region
        {
            shared.region_rejections.fetch_add(1, Ordering::Relaxed);
            let head = req.method() == Method::HEAD;
            let (_, body) = req.into_parts();
            drain(&shared, body, false).await;
            let id = shared.request_id();
            let (status, xml) = match reply {
                WrongRegion::AuthorizationHeaderMalformed => (
                    400,
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
                         <Message>The authorization header is malformed; the region '{signed_region}' is wrong; \
                         expecting '{region}'</Message><Region>{region}</Region><RequestId>{id}</RequestId></Error>"
                    ),
                ),
                WrongRegion::PermanentRedirect => (
                    301,
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>\
                         <Message>The bucket you are attempting to access must be addressed using the specified \
                         endpoint. Please send all future requests to this endpoint.</Message>\
                         <RequestId>{id}</RequestId></Error>"
                    ),
                ),
            };
            let mut resp = xml_response(status, if head { String::new() } else { xml }, &id);
            resp.headers_mut().insert(
                "x-amz-bucket-region",
                HeaderValue::from_str(&region).expect("region header"),
            );
            return Ok(resp);
        }
    }
    let mode = *shared.rdma_mode.lock();
    let token = req.headers().get(RDMA_TOKEN_HEADER).cloned();

    if token.is_some() && mode == RdmaMode::Refuse501 {
        let (_, body) = req.into_parts();
        drain(&shared, body, counts_body).await;
        return Ok(error_response(
            &shared,
            501,
            "NotImplemented",
            "RDMA transfers are not implemented.",
        ));
    }

    let mut error_after = None;
    let mut cut_body = None;
    if let Some(op) = op
        && let Some(kind) = shared.take_fault(op, part)
    {
        match kind {
            FaultKind::Status { status, code } => {
                let (_, body) = req.into_parts();
                drain(&shared, body, counts_body).await;
                return Ok(error_response(&shared, status, &code, "Injected fault."));
            }
            FaultKind::ErrorIn200 { code } => {
                let (_, body) = req.into_parts();
                drain(&shared, body, counts_body).await;
                return Ok(error_response(&shared, 200, &code, "Injected fault."));
            }
            FaultKind::DropConnection => return Err(DropConnection),
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
            FaultKind::ErrorIn200AfterProcessing { code } => error_after = Some(code),
            FaultKind::CutBody(n) => cut_body = Some(n),
        }
    }

    if op == Some(Op::UploadPart) {
        let d = *shared.part_delay.lock();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    let rdma_op = mode == RdmaMode::Honour
        && token.is_some()
        && matches!(op, Some(Op::UploadPart | Op::PutObject | Op::GetObject));
    let rdma_range = if rdma_op {
        let parsed = token
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(parse_rdma_token);
        match parsed {
            Some(r) => Some(r),
            None => {
                let (_, body) = req.into_parts();
                drain(&shared, body, counts_body).await;
                return Ok(error_response(
                    &shared,
                    400,
                    "InvalidArgument",
                    "Malformed x-amz-rdma-token.",
                ));
            }
        }
    } else {
        None
    };

    let (mut parts, incoming) = req.into_parts();
    let body = match (rdma_range, op) {
        (Some((addr, len)), Some(Op::UploadPart | Op::PutObject)) => {
            if !drain(&shared, incoming, true).await {
                return Ok(error_response(
                    &shared,
                    400,
                    "InvalidRequest",
                    "A request with x-amz-rdma-token must have an empty body.",
                ));
            }
            let data = read_rdma_memory(addr, len);
            {
                let mut s = shared.stats.lock();
                s.rdma_bytes += data.len() as u64;
                s.rdma_requests += 1;
            }
            // The client signed Content-Length: 0 (if it signed it at all); fix
            // it up only when it is not part of the signature.
            if !content_length_signed(&parts.headers) {
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
            }
            Body::from(Bytes::from(data))
        }
        _ if counts_body => Body::http_body_unsync(CountingBody {
            inner: incoming,
            shared: Arc::clone(&shared),
        }),
        _ => Body::from(incoming),
    };

    let resp = match s3.call(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(error_response(
                &shared,
                500,
                "InternalError",
                &format!("s3s: {:?}", e),
            ));
        }
    };

    // s3s-fs ignores If-Match on GetObject; S3 answers 412 when the object's
    // ETag differs (checked before anything is written into RDMA memory).
    if op == Some(Op::GetObject)
        && let Some(cond) = if_match.as_ref().and_then(|v| v.to_str().ok())
        && let Some(etag) = resp.headers().get(http::header::ETAG)
        && !if_match_holds(cond, etag.to_str().unwrap_or(""))
    {
        return Ok(error_response(
            &shared,
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        ));
    }

    if let Some(n) = cut_body {
        let (parts, body) = resp.into_parts();
        let mut data = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        data.truncate(n);
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(data)),
            Err(std::io::Error::other("fault injection: body cut short")),
        ];
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        return Ok(Response::from_parts(parts, Body::http_body_unsync(body)));
    }

    if let Some(code) = error_after {
        // Drive the reply to its end (s3s-fs's Complete sends its result through a
        // keep-alive body), then throw it away.
        let _ = resp.into_body().collect().await;
        return Ok(error_response(
            &shared,
            200,
            &code,
            "Injected fault after processing.",
        ));
    }

    match (rdma_range, op) {
        (Some(_), Some(Op::UploadPart | Op::PutObject)) => {
            let mut resp = resp;
            resp.headers_mut()
                .insert(RDMA_REPLY_HEADER, HeaderValue::from_static("ok"));
            Ok(resp)
        }
        (Some((addr, len)), Some(Op::GetObject)) if resp.status().is_success() => {
            let (mut parts, body) = resp.into_parts();
            let data = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return Ok(error_response(
                        &shared,
                        500,
                        "InternalError",
                        "Reading the object failed.",
                    ));
                }
            };
            if data.len() > len {
                return Ok(error_response(
                    &shared,
                    400,
                    "InvalidArgument",
                    &format!(
                        "The object ({} bytes) does not fit the RDMA buffer ({len} bytes).",
                        data.len()
                    ),
                ));
            }
            write_rdma_memory(addr, &data);
            {
                let mut s = shared.stats.lock();
                s.rdma_bytes += data.len() as u64;
                s.rdma_requests += 1;
            }
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            parts
                .headers
                .insert(RDMA_REPLY_HEADER, HeaderValue::from_static("ok"));
            parts
                .headers
                .insert(RDMA_LENGTH_HEADER, HeaderValue::from(data.len()));
            Ok(Response::from_parts(parts, Body::empty()))
        }
        _ => {
            if op == Some(Op::GetObject) && resp.status().is_success() {
                let len = resp
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                shared.stats.lock().get_body_bytes += len;
            }
            Ok(resp)
        }
    }
}

/// Whether an `If-Match` condition (`*` or a list of ETags) holds for `etag`
/// (weak prefixes and quotes ignored).
fn if_match_holds(cond: &str, etag: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let etag = bare(etag);
    cond.split(',').any(|c| c.trim() == "*" || bare(c) == etag)
}
