//! TLS for the file server: a test certificate authority generated at start-up, a leaf
//! certificate it signs for the server, and a listener that completes TLS handshakes before
//! axum sees a connection.
//!
//! Nothing here is trusted by anyone but the test that asks for it: the CA exists only in the
//! memory of the process that generated it, and its PEM ([`TestCa::pem`]) is what a test hands
//! to the client (`tgp run --module-ca-file`). Keys are ECDSA P-256, generated with ring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::server::SimServer;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// A certificate authority made up for one test run.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA whose subject is `common_name`.
    pub fn generate(common_name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the test CA's key")?;
        let cert = params
            .self_signed(&key)
            .context("self-signing the test CA")?;
        Ok(TestCa { cert, key })
    }

    /// The CA certificate, PEM-encoded (what a client adds to its trusted roots).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate signed by this CA, and its private key.
    fn issue(
        &self,
        leaf: &LeafCert,
    ) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params = CertificateParams::new(leaf.names.clone())
            .with_context(|| format!("server certificate names {:?}", leaf.names))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            leaf.names
                .first()
                .map(String::as_str)
                .unwrap_or("tgp test server"),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        match leaf.validity {
            Validity::Current => {}
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            Validity::NotYetValid => {
                params.not_before = rcgen::date_time_ymd(2090, 1, 1);
                params.not_after = rcgen::date_time_ymd(2091, 1, 1);
            }
        }
        let key = KeyPair::generate().context("generating the server key")?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing the server certificate")?;
        Ok((
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }
}

/// When the server certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validity {
    /// From 1975 to 4096 (always, for a test).
    #[default]
    Current,
    /// During 2020 only: expired.
    Expired,
    /// From 2090 on: not valid yet.
    NotYetValid,
}

/// The server certificate the file server presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafCert {
    /// Subject alternative names: IP addresses become IP SANs, anything else a DNS name.
    pub names: Vec<String>,
    /// Its validity period.
    pub validity: Validity,
}

impl Default for LeafCert {
    /// Valid now, for `127.0.0.1` and `localhost`.
    fn default() -> Self {
        LeafCert {
            names: vec!["127.0.0.1".into(), "localhost".into()],
            validity: Validity::Current,
        }
    }
}

/// How the file server speaks TLS.
#[derive(Debug, Default)]
pub struct TlsOptions {
    /// The certificate the server presents (signed by `ca`).
    pub leaf: LeafCert,
    /// The CA that signs it; `None`: a new one named "tgp test CA".
    pub ca: Option<TestCa>,
}

/// Handshakes that take longer than this are dropped (a client that connects and says
/// nothing does not hold anything up: handshakes run concurrently).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS connections, handshake done, for axum.
struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The accepting task is gone (only when the listener is being dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections on `tcp` and completes each handshake on its own task.
fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    out: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match tcp.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "file server: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let out = out.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = out.send((tls, peer)).await;
                    }
                    // A client that does not trust the certificate ends the handshake: expected
                    // in the tests that check exactly that.
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    })
}

/// Binds `addr` (loopback only), generates the certificates `options` ask for and serves `app`
/// over TLS until the returned server is shut down or dropped. Also returns the PEM of the CA
/// that signed the server's certificate (what a client must trust).
pub(crate) async fn serve(
    addr: SocketAddr,
    app: Router,
    options: TlsOptions,
) -> anyhow::Result<(SimServer, String)> {
    if !addr.ip().is_loopback() {
        bail!("the simulator only binds loopback addresses, not {addr}");
    }
    let ca = match options.ca {
        Some(ca) => ca,
        None => TestCa::generate("tgp test CA")?,
    };
    let (leaf, key) = ca.issue(&options.leaf)?;
    let ca_der = ca.cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![leaf, ca_der], key)
        .context("the server certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = tcp.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let listener = TlsListener {
        incoming: rx,
        local: addr,
        acceptor_task: accept_loop(tcp, acceptor, tx),
    };
    let ca_pem = ca.pem();
    Ok((SimServer::serve_listener(listener, addr, app), ca_pem))
}

impl TlsOptions {
    /// Serves `app` over TLS on `addr` (loopback only) with the certificates these options ask
    /// for, as [`FileServer::start_tls_with`](super::FileServer::start_tls_with) does; returns
    /// the server and the PEM of the CA a client must trust. For the other loopback servers
    /// that speak TLS (the OCI registry).
    pub(crate) async fn serve(
        self,
        addr: SocketAddr,
        app: Router,
    ) -> anyhow::Result<(SimServer, String)> {
        serve(addr, app, self).await
    }
}
