//! [`TlsFront`]: a TLS terminator on loopback in front of a plain-TCP server
//! (the in-process S3 server), with certificates made at test time by
//! [`TestCa`] (rcgen; tokio-rustls with the `ring` provider). It counts
//! connections and handshakes, so a test can tell whether a client retried.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

/// A certificate authority made at test time.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// When a server certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From 2000 to 2200.
    Current,
    /// From 2000 to 2001.
    Expired,
    /// From 2200 to 2201.
    NotYetValid,
}

/// A server certificate (chain: the leaf) and its key.
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str], validity: Validity) -> ServerCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        let ymd = rcgen::date_time_ymd;
        let (from, to) = match validity {
            Validity::Current => (ymd(2000, 1, 1), ymd(2200, 1, 1)),
            Validity::Expired => (ymd(2000, 1, 1), ymd(2001, 1, 1)),
            Validity::NotYetValid => (ymd(2200, 1, 1), ymd(2201, 1, 1)),
        };
        params.not_before = from;
        params.not_after = to;
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        ServerCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
}

/// A TLS terminator on `127.0.0.1`: each accepted connection's handshake,
/// then its bytes relayed to `upstream` in plain TCP. Dropping it stops it.
pub struct TlsFront {
    addr: SocketAddr,
    counters: Arc<Counters>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TlsFront {
    /// Serves `cert` on an ephemeral port, relaying to `upstream`.
    pub fn start(upstream: SocketAddr, cert: &ServerCert) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(cert.chain.clone(), cert.key.clone_key())
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3pump-test-tls")
            .enable_all()
            .build()
            .expect("tokio runtime");
        let std_listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("local_addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("tokio listener")
        };
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, c) = (acceptor.clone(), Arc::clone(&c));
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(sock).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            c.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    c.handshakes.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        TlsFront {
            addr,
            counters,
            rt: Some(rt),
        }
    }

    /// `https://HOST:PORT`, HOST as given (it must resolve to 127.0.0.1).
    pub fn endpoint(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.counters.handshakes.load(Ordering::SeqCst)
    }

    /// Handshakes that failed (the client rejected the certificate, or left).
    pub fn failed_handshakes(&self) -> u64 {
        self.counters.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
