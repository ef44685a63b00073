//! The "oci" personality: a minimal OCI distribution registry on loopback, enough for tgp to
//! pull provider modules published as OCI artifacts.
//!
//! Served: `GET /v2/` (the API check), `GET|HEAD /v2/<name>/manifests/<tag or digest>` and
//! `GET /v2/<name>/blobs/<digest>`, with `Docker-Content-Digest` headers and errors in the
//! distribution spec's envelope (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`). Optional
//! token auth the way registries do it: a `401` with a `WWW-Authenticate: Bearer realm=...`
//! challenge, a `/token` endpoint that trades HTTP Basic credentials for a bearer token.
//!
//! An artifact is an image manifest with an empty config and one layer, the module
//! ([`OciRegistry::push_module`]). Tests can also push arbitrary manifests and blobs (an artifact
//! without a module layer, a layer whose blob is not what its descriptor says) and break blob
//! transfers off mid-way ([`OciRegistry::truncate_blob`]).
//!
//! Two transports, the same API on both:
//! - plain HTTP ([`OciRegistry::start`], the default): tgp reaches it only when the resource
//!   says `spec.module.oci.plainHttp: true` (loopback registries only);
//! - HTTPS ([`OciRegistry::start_tls`]): the files personality's TLS mode, a test CA and a
//!   server certificate for `127.0.0.1` and `localhost` generated at start-up. The CA's PEM
//!   ([`OciRegistry::ca_pem`]) is what a test writes to a file for `tgp run --module-ca-file`;
//!   [`TlsOptions`] can make the certificate wrong on purpose. An internal registry signed by a
//!   company CA, on loopback.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::files::{RequestLog, ServedRequest, TlsOptions, truncated_response};
use crate::server::SimServer;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the empty config blob (`{}`) of an artifact.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Media type of a tgp provider module layer.
pub const TGP_MODULE_MEDIA_TYPE: &str = "application/vnd.tgp.provider.wasm.v1";
/// The generic wasm layer media type (`oci-client`, Kubewarden).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Registry settings.
#[derive(Debug, Clone, Default)]
pub struct OciRegistryConfig {
    /// When set, every `/v2/` call needs a bearer token obtained from `/token` with these
    /// HTTP Basic credentials (user, password).
    pub credentials: Option<(String, String)>,
}

/// What [`OciRegistry::push_module`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedArtifact {
    /// `registry/repository:tag`.
    pub reference: String,
    /// `registry/repository@sha256:<manifest digest>`.
    pub pinned_reference: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Digest of the module layer (= sha256 of the module).
    pub layer_digest: String,
}

#[derive(Default)]
struct Repo {
    /// Manifests by digest.
    manifests: HashMap<String, Vec<u8>>,
    /// Tag -> manifest digest.
    tags: BTreeMap<String, String>,
}

struct Shared {
    repos: Mutex<HashMap<String, Repo>>,
    /// Blobs by digest (shared across repositories, like a real registry's storage).
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Blobs served truncated after this many bytes.
    truncated: Mutex<HashMap<String, usize>>,
    tokens: Mutex<HashSet<String>>,
    cfg: OciRegistryConfig,
    calls: RequestLog,
    base_url: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running registry. Dropping it stops the server.
pub struct OciRegistry {
    server: SimServer,
    /// The PEM of the CA that signed the server's certificate; `None` for plain HTTP.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistry")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl OciRegistry {
    /// Starts plain HTTP on `127.0.0.1` with an ephemeral port, empty.
    pub async fn start(cfg: OciRegistryConfig) -> anyhow::Result<OciRegistry> {
        let (shared, app) = Self::app(cfg);
        let server = SimServer::serve(SocketAddr::from(([127, 0, 0, 1], 0)), app).await?;
        Ok(Self::running(server, None, shared))
    }

    /// Starts HTTPS on `127.0.0.1` with an ephemeral port, empty: a new test CA, and a
    /// certificate it signs for `127.0.0.1` and `localhost`. [`OciRegistry::ca_pem`] is the CA a
    /// client must trust.
    pub async fn start_tls(cfg: OciRegistryConfig) -> anyhow::Result<OciRegistry> {
        Self::start_tls_with(cfg, TlsOptions::default()).await
    }

    /// Starts HTTPS with the certificate `options` describe.
    pub async fn start_tls_with(
        cfg: OciRegistryConfig,
        options: TlsOptions,
    ) -> anyhow::Result<OciRegistry> {
        let (shared, app) = Self::app(cfg);
        let (server, ca_pem) = options
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)), app)
            .await?;
        Ok(Self::running(server, Some(ca_pem), shared))
    }

    fn running(server: SimServer, ca_pem: Option<String>, shared: Arc<Shared>) -> OciRegistry {
        let registry = OciRegistry {
            server,
            ca_pem,
            shared,
        };
        // The token realm of auth challenges.
        *lock(&registry.shared.base_url) = registry.base_url();
        registry
    }

    fn app(cfg: OciRegistryConfig) -> (Arc<Shared>, Router) {
        let shared = Arc::new(Shared {
            repos: Mutex::new(HashMap::new()),
            blobs: Mutex::new(HashMap::new()),
            truncated: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashSet::new()),
            cfg,
            calls: RequestLog::default(),
            base_url: Mutex::new(String::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        (shared, app)
    }

    /// The PEM of the CA that signed the server's certificate (HTTPS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` over TLS.
    pub fn base_url(&self) -> String {
        match self.ca_pem {
            None => self.server.base_url(),
            Some(_) => format!("https://{}", self.server.addr()),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn registry(&self) -> String {
        self.server.addr().to_string()
    }

    /// `registry/repository:tag`.
    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.registry())
    }

    /// Stores a blob; returns its digest.
    pub fn push_blob(&self, bytes: impl Into<Vec<u8>>) -> String {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        lock(&self.shared.blobs).insert(digest.clone(), Arc::new(bytes));
        digest
    }

    /// Stores a manifest in `repository` and points `tag` at it; returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: impl Into<Vec<u8>>,
    ) -> String {
        let manifest = manifest.into();
        let digest = sha256_digest(&manifest);
        let mut repos = lock(&self.shared.repos);
        let repo = repos.entry(repository.to_string()).or_default();
        repo.manifests.insert(digest.clone(), manifest);
        repo.tags.insert(tag.to_string(), digest.clone());
        digest
    }

    /// Publishes `module` as an artifact `repository:tag` whose single layer has `media_type`.
    pub fn push_module(
        &self,
        repository: &str,
        tag: &str,
        module: &[u8],
        media_type: &str,
    ) -> PushedArtifact {
        let layer_digest = self.push_blob(module.to_vec());
        let manifest = artifact_manifest(
            &[(media_type, layer_digest.as_str(), module.len())],
            self.push_blob(b"{}".to_vec()).as_str(),
        );
        let manifest_digest = self.push_manifest(repository, tag, manifest);
        PushedArtifact {
            reference: self.reference(repository, tag),
            pinned_reference: format!("{}/{repository}@{manifest_digest}", self.registry()),
            manifest_digest,
            layer_digest,
        }
    }

    /// Serves blob `digest` truncated: the whole length announced, `after` bytes sent, then the
    /// connection breaks.
    pub fn truncate_blob(&self, digest: &str, after: usize) {
        lock(&self.shared.truncated).insert(digest.to_string(), after);
    }

    /// Serves blob `digest` whole again.
    pub fn restore_blob(&self, digest: &str) {
        lock(&self.shared.truncated).remove(digest);
    }

    /// Every API call received, in order; endpoints `ping`, `token`, `manifest`, `blob`,
    /// `other`.
    pub fn calls(&self) -> Vec<ServedRequest> {
        self.shared.calls.all()
    }

    /// Calls classified as `endpoint`.
    pub fn call_count(&self, endpoint: &str) -> usize {
        self.shared
            .calls
            .all()
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .count()
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// An image manifest with config `config_digest` (the empty config) and `layers`
/// (media type, digest, size).
pub fn artifact_manifest(layers: &[(&str, &str, usize)], config_digest: &str) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(media_type, digest, size)| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.title": "module.wasm"}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": TGP_MODULE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": 2},
        "layers": layers,
    }))
    .unwrap_or_default()
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A parsed `/v2/...` path.
enum Route {
    Ping,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    Token,
    Other,
}

fn route(path: &str) -> Route {
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Other;
    };
    if rest.is_empty() {
        return Route::Ping;
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest {
            name: name.to_string(),
            reference: reference.to_string(),
        };
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob {
            name: name.to_string(),
            digest: digest.to_string(),
        };
    }
    Route::Other
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let r = route(&path);
    let endpoint = match &r {
        Route::Ping => "ping",
        Route::Token => "token",
        Route::Manifest { .. } => "manifest",
        Route::Blob { .. } => "blob",
        Route::Other => "other",
    };
    let response = answer(&s, &method, &uri, &headers, r);
    s.calls.push(ServedRequest {
        endpoint,
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or(path),
        status: response.status().as_u16(),
    });
    response
}

fn answer(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, r: Route) -> Response {
    if let Route::Token = r {
        return token(s, headers);
    }
    if let Some((_, _)) = &s.cfg.credentials {
        let authorised = bearer(headers).is_some_and(|t| lock(&s.tokens).contains(t));
        if !authorised {
            let scope = match &r {
                Route::Manifest { name, .. } | Route::Blob { name, .. } => {
                    format!(",scope=\"repository:{name}:pull\"")
                }
                _ => String::new(),
            };
            let challenge = format!(
                "Bearer realm=\"{}/token\",service=\"tgp-sim-registry\"{scope}",
                lock(&s.base_url)
            );
            let mut response = oci_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            if let Ok(v) = challenge.parse() {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return response;
        }
    }
    let _ = uri;
    match r {
        Route::Ping => (
            [(header::CONTENT_TYPE, "application/json")],
            "{}".to_string(),
        )
            .into_response(),
        Route::Manifest { name, reference } => {
            if *method != Method::GET && *method != Method::HEAD {
                return oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "pull only");
            }
            let repos = lock(&s.repos);
            let found = repos.get(&name).and_then(|repo| {
                let digest = if reference.starts_with("sha256:") {
                    reference.clone()
                } else {
                    repo.tags.get(&reference)?.clone()
                };
                repo.manifests.get(&digest).map(|m| (digest, m.clone()))
            });
            let Some((digest, manifest)) = found else {
                return oci_error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!("manifest unknown: {name}:{reference}"),
                );
            };
            let len = manifest.len();
            Response::builder()
                .header(header::CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
                .header(header::CONTENT_LENGTH, len)
                .header("Docker-Content-Digest", digest)
                .body(if *method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(manifest)
                })
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Route::Blob { name: _, digest } => {
            if *method != Method::GET && *method != Method::HEAD {
                return oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "pull only");
            }
            let Some(blob) = lock(&s.blobs).get(&digest).cloned() else {
                return oci_error(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    &format!("blob unknown: {digest}"),
                );
            };
            if let Some(after) = lock(&s.truncated).get(&digest).copied() {
                return truncated_response(&blob, after, "application/octet-stream");
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, blob.len())
                .header("Docker-Content-Digest", digest)
                .body(if *method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(blob.to_vec())
                })
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Route::Token | Route::Other => {
            oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint")
        }
    }
}

fn token(s: &Shared, headers: &HeaderMap) -> Response {
    let Some((user, password)) = &s.cfg.credentials else {
        return oci_error(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this registry needs no token",
        );
    };
    let offered = basic(headers);
    if offered.as_ref() != Some(&(user.clone(), password.clone())) {
        return oci_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "invalid username or password",
        );
    }
    let token = format!("tok-{}", rand::random::<u64>());
    lock(&s.tokens).insert(token.clone());
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"token": token, "expires_in": 300}).to_string(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::auth::bearer(headers)
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_manifests_by_tag_and_digest_and_blobs() {
        let reg = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        let pushed = reg.push_module("tgp/mock", "v1", b"\0asm module", TGP_MODULE_MEDIA_TYPE);
        assert_eq!(pushed.layer_digest, sha256_digest(b"\0asm module"));
        let base = format!("http://{}", reg.registry());
        let client = reqwest::Client::new();
        let ping = client.get(format!("{base}/v2/")).send().await.unwrap();
        assert_eq!(ping.status(), 200);
        for reference in ["v1", pushed.manifest_digest.as_str()] {
            let m = client
                .get(format!("{base}/v2/tgp/mock/manifests/{reference}"))
                .send()
                .await
                .unwrap();
            assert_eq!(m.status(), 200);
            assert_eq!(
                m.headers()["docker-content-digest"].to_str().unwrap(),
                pushed.manifest_digest
            );
            let body = m.bytes().await.unwrap();
            assert_eq!(sha256_digest(&body), pushed.manifest_digest);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["layers"][0]["digest"], pushed.layer_digest);
        }
        let head = client
            .head(format!("{base}/v2/tgp/mock/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        let blob = client
            .get(format!("{base}/v2/tgp/mock/blobs/{}", pushed.layer_digest))
            .send()
            .await
            .unwrap();
        assert_eq!(blob.bytes().await.unwrap().as_ref(), b"\0asm module");
        let missing = client
            .get(format!("{base}/v2/tgp/mock/manifests/v9"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert!(missing.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
        assert_eq!(reg.call_count("manifest"), 4);
    }

    #[tokio::test]
    async fn token_auth_challenges_then_accepts_a_bearer_token() {
        let reg = OciRegistry::start(OciRegistryConfig {
            credentials: Some(("u".into(), "p".into())),
        })
        .await
        .unwrap();
        reg.push_module("m", "1", b"x", WASM_LAYER_MEDIA_TYPE);
        let base = format!("http://{}", reg.registry());
        let client = reqwest::Client::new();
        let denied = client
            .get(format!("{base}/v2/m/manifests/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 401);
        let challenge = denied.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");
        assert!(challenge.contains("repository:m:pull"), "{challenge}");
        let bad = client
            .get(format!("{base}/token"))
            .basic_auth("u", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);
        let tok: serde_json::Value = client
            .get(format!("{base}/token"))
            .basic_auth("u", Some("p"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ok = client
            .get(format!("{base}/v2/m/manifests/1"))
            .bearer_auth(tok["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
}
