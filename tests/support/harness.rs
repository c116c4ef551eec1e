//! What every integration test needs: an S3 server (the in-process one, or
//! an external one named by `S3PUMP_TEST_ENDPOINT`), a client for it, a
//! bucket, and test data.

use std::sync::atomic::{AtomicU64, Ordering};

use s3pump::{Client, ClientBuilder, Credentials};

use super::server::{ACCESS_KEY, REGION, SECRET_KEY, TestServer};

/// A server to test against, with a client and a bucket of its own.
pub struct Harness {
    /// The in-process server; `None` when testing an external S3.
    pub server: Option<TestServer>,
    /// The bucket the test uses.
    pub bucket: String,
    /// Prefix of every key the test makes (unique per test on external S3).
    pub prefix: String,
    endpoint: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Harness {
    /// The external S3 when `S3PUMP_TEST_ENDPOINT` is set (with
    /// `S3PUMP_TEST_BUCKET` and the usual `AWS_*` credentials), else a fresh
    /// in-process server with a fresh bucket.
    pub fn new() -> Harness {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        if let Ok(endpoint) = std::env::var("S3PUMP_TEST_ENDPOINT") {
            let bucket = std::env::var("S3PUMP_TEST_BUCKET")
                .expect("S3PUMP_TEST_BUCKET must be set with S3PUMP_TEST_ENDPOINT");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            return Harness {
                server: None,
                bucket,
                prefix: format!("s3pump-test/{}-{nanos}-{n}/", std::process::id()),
                endpoint,
            };
        }
        let server = TestServer::start();
        let bucket = format!("test-bucket-{n}");
        server.create_bucket(&bucket);
        Harness {
            endpoint: server.endpoint(),
            server: Some(server),
            bucket,
            prefix: String::new(),
        }
    }

    /// The in-process server, for tests that need its instruments or faults.
    /// Returns `None` (and the test should return early) on external S3.
    pub fn local(&self) -> Option<&TestServer> {
        self.server.as_ref()
    }

    /// The endpoint URL of the server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A builder preset for this server (endpoint, region, credentials).
    pub fn builder(&self) -> ClientBuilder {
        match &self.server {
            Some(_) => Client::builder()
                .endpoint(&self.endpoint)
                .region(REGION)
                .credentials(Credentials::new(ACCESS_KEY, SECRET_KEY, None)),
            // External S3: region and credentials as the AWS CLI finds them.
            None => ClientBuilder::from_env().endpoint(&self.endpoint),
        }
    }

    /// A client for this server with default settings.
    pub fn client(&self) -> Client {
        self.builder().build().expect("client")
    }

    /// The test's key for `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Multipart uploads still open under this test's keys.
    pub fn open_uploads(&self) -> Vec<String> {
        match &self.server {
            Some(s) => s
                .open_uploads()
                .into_iter()
                .filter(|u| u.bucket == self.bucket)
                .map(|u| u.upload_id)
                .collect(),
            None => self
                .client()
                .list_multipart_uploads(&self.bucket)
                .expect("ListMultipartUploads")
                .into_iter()
                .filter(|u| u.key.starts_with(&self.prefix))
                .map(|u| u.upload_id)
                .collect(),
        }
    }

    /// The object's bytes, read back through the client.
    pub fn read_back(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.client()
            .get_object(&self.bucket, key, &mut out)
            .expect("GetObject");
        out
    }
}

/// `len` bytes of deterministic pseudo-random data (xorshift64*).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The retry policy of the fault tests: 4 attempts, 10-50 ms backoff, so a
/// retried fault costs milliseconds.
pub fn fast_retries() -> s3pump::RetryPolicy {
    s3pump::RetryPolicy::default()
        .max_attempts(4)
        .base_backoff(std::time::Duration::from_millis(10))
        .max_backoff(std::time::Duration::from_millis(50))
}

/// Hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The multipart ETag S3 gives `data` uploaded in parts of `part_size`:
/// `"md5(md5(p1)‖…‖md5(pn))-n"`, quotes included.
pub fn multipart_etag(data: &[u8], part_size: usize) -> String {
    use md5::{Digest, Md5};
    let mut all = Md5::new();
    let mut n = 0;
    for chunk in data.chunks(part_size) {
        all.update(Md5::digest(chunk));
        n += 1;
    }
    let hex: String = all.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}-{n}\"")
}

/// A reader that hands out `data` in small uneven reads and cannot seek,
/// like a pipe.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(self.data.len() - self.pos)
            .min(self.step + self.pos % 7);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
