//! The "files" personality: a static file server on loopback that serves provider modules to
//! the operator's URL source, with the ways a real server goes wrong.
//!
//! tgp fetches plugin modules from `https://` URLs and must refuse what does not match the
//! pinned digest, a transfer that breaks off, a module that is too large, and a server that
//! never finishes. Each file can be served normally or with a [`Serve`] knob: truncated (the
//! whole length announced, part of the body sent, then the connection breaks), slow (the answer
//! comes after a delay), different bytes than published, or an error status.
//!
//! Two transports, the same files and knobs on both:
//! - plain HTTP ([`FileServer::start`], the default): loopback `http://` is accepted by tgp for
//!   tests and development (see `docs/hot-swap.md`);
//! - HTTPS ([`FileServer::start_tls`]): a test CA and a server certificate for `127.0.0.1` (IP
//!   SAN) and `localhost` signed by it, both generated at start-up. The CA's PEM
//!   ([`FileServer::ca_pem`]) is what a test writes to a file for `tgp run --module-ca-file`.
//!   [`TlsOptions`] can make the certificate wrong on purpose (other names, expired, not yet
//!   valid) or signed by a CA the test made ([`TestCa`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::server::SimServer;

mod tls;

pub use tls::{LeafCert, TestCa, TlsOptions, Validity};

/// How a file is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Serve {
    /// The bytes, whole.
    #[default]
    Normal,
    /// `Content-Length` of the whole file, the first `after` bytes, then the connection breaks.
    Truncated { after: usize },
    /// The answer is sent after `delay`.
    Slow { delay: Duration },
    /// These bytes instead of the published ones (a replaced or tampered file).
    Replaced(Vec<u8>),
    /// This status and no body.
    Status(u16),
}

/// One request a loopback server of this kind answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    /// What the request was for (`get` here; `ping`, `token`, `manifest`, `blob` for the
    /// registry).
    pub endpoint: &'static str,
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Status answered.
    pub status: u16,
}

/// An append-only, thread-safe log of [`ServedRequest`]s.
#[derive(Debug, Default)]
pub(crate) struct RequestLog(Mutex<Vec<ServedRequest>>);

impl RequestLog {
    pub(crate) fn push(&self, r: ServedRequest) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    pub(crate) fn all(&self) -> Vec<ServedRequest> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct FileEntry {
    bytes: Arc<Vec<u8>>,
    serve: Serve,
}

struct Shared {
    files: Mutex<BTreeMap<String, FileEntry>>,
    calls: RequestLog,
}

impl Shared {
    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FileEntry>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running file server. Dropping it stops the server.
pub struct FileServer {
    server: SimServer,
    /// The PEM of the CA that signed the server's certificate; `None` for plain HTTP.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileServer")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FileServer {
    /// Starts plain HTTP on `127.0.0.1` with an ephemeral port, serving nothing yet.
    pub async fn start() -> anyhow::Result<FileServer> {
        let (shared, app) = Self::app();
        let server = SimServer::serve(SocketAddr::from(([127, 0, 0, 1], 0)), app).await?;
        Ok(FileServer {
            server,
            ca_pem: None,
            shared,
        })
    }

    /// Starts HTTPS on `127.0.0.1` with an ephemeral port, serving nothing yet: a new test CA,
    /// and a certificate it signs for `127.0.0.1` and `localhost`. [`FileServer::ca_pem`] is
    /// the CA a client must trust.
    pub async fn start_tls() -> anyhow::Result<FileServer> {
        Self::start_tls_with(TlsOptions::default()).await
    }

    /// Starts HTTPS with the certificate `options` describe.
    pub async fn start_tls_with(options: TlsOptions) -> anyhow::Result<FileServer> {
        let (shared, app) = Self::app();
        let (server, ca_pem) =
            tls::serve(SocketAddr::from(([127, 0, 0, 1], 0)), app, options).await?;
        Ok(FileServer {
            server,
            ca_pem: Some(ca_pem),
            shared,
        })
    }

    fn app() -> (Arc<Shared>, Router) {
        let shared = Arc::new(Shared {
            files: Mutex::new(BTreeMap::new()),
            calls: RequestLog::default(),
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        (shared, app)
    }

    /// The PEM of the CA that signed the server's certificate (HTTPS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Publishes `bytes` at `path` (e.g. `/mock-0.2.0.wasm`), served normally.
    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.shared.files().insert(
            normalise(path),
            FileEntry {
                bytes: Arc::new(bytes.into()),
                serve: Serve::Normal,
            },
        );
    }

    /// Changes how `path` is served (it must have been published).
    pub fn set_serve(&self, path: &str, serve: Serve) {
        if let Some(f) = self.shared.files().get_mut(&normalise(path)) {
            f.serve = serve;
        }
    }

    /// Removes `path`; it then answers 404.
    pub fn remove(&self, path: &str) {
        self.shared.files().remove(&normalise(path));
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` over TLS.
    pub fn base_url(&self) -> String {
        match self.ca_pem {
            None => self.server.base_url(),
            Some(_) => format!("https://{}", self.server.addr()),
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), normalise(path))
    }

    /// Every request received, in order (status as answered).
    pub fn calls(&self) -> Vec<ServedRequest> {
        self.shared.calls.all()
    }

    /// Requests received for `path`.
    pub fn requests_for(&self, path: &str) -> usize {
        let path = normalise(path);
        self.shared
            .calls
            .all()
            .iter()
            .filter(|c| c.path == path)
            .count()
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

fn normalise(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

async fn serve(State(s): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let path = uri.path().to_string();
    let found = s
        .files()
        .get(&path)
        .map(|f| (f.bytes.clone(), f.serve.clone()));
    let response = match (method.clone(), found) {
        (Method::GET | Method::HEAD, Some((bytes, serve))) => respond(&method, bytes, serve).await,
        (Method::GET | Method::HEAD, None) => StatusCode::NOT_FOUND.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    s.calls.push(ServedRequest {
        endpoint: "get",
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn respond(method: &Method, bytes: Arc<Vec<u8>>, serve: Serve) -> Response {
    let ok = |body: Vec<u8>| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/wasm")
            .header(header::CONTENT_LENGTH, body.len())
            .body(if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(body)
            })
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match serve {
        Serve::Normal => ok(bytes.to_vec()),
        Serve::Replaced(other) => ok(other),
        Serve::Slow { delay } => {
            tokio::time::sleep(delay).await;
            ok(bytes.to_vec())
        }
        Serve::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Serve::Truncated { after } => truncated_response(&bytes, after, "application/wasm"),
    }
}

/// A response announcing all of `bytes` that sends the first `after` and then breaks the
/// connection (the body stream fails once the first part has gone out).
pub(crate) fn truncated_response(bytes: &[u8], after: usize, content_type: &str) -> Response {
    let head = bytes[..after.min(bytes.len())].to_vec();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(head),
        Err(std::io::Error::other("simulated connection break")),
    ];
    let paced = futures::StreamExt::then(futures::stream::iter(parts), |part| async move {
        if part.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        part
    });
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from_stream(paced))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
