//! [`Fetcher`]: one entry point for every source, with the deadline, the size cap and the digest
//! check applied the same way to all of them.

use std::time::Duration;

use super::ca::ModuleCaBundle;
use super::configmap;
use super::digest::ModuleDigest;
use super::error::FetchError;
use super::http;
use super::oci;
use super::source::{ModuleLocation, ModuleRequest};

/// Bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest module accepted, in bytes.
    pub max_bytes: u64,
    /// Deadline of the whole fetch (connection, redirects, registry round trips, body).
    pub timeout: Duration,
    /// Deadline of each connection attempt.
    pub connect_timeout: Duration,
}

impl FetchLimits {
    /// Default size cap: 32 MiB (a Rust provider is a few hundred KiB; components built from
    /// Go or JavaScript reach tens of MiB).
    pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;
    /// Default deadline of a fetch.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Verified module bytes.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The digest of `bytes` (equal to the requested one, when one was given).
    pub digest: ModuleDigest,
}

/// Fetches modules. Cheap to share; holds the HTTP client for URL sources.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// The CA certificates URL sources trust besides the public roots.
    extra_roots: Option<ModuleCaBundle>,
    connect_timeout: Duration,
}

impl Fetcher {
    /// A fetcher whose connections give up after `connect_timeout`, trusting the public roots.
    pub fn new(connect_timeout: Duration) -> Result<Self, FetchError> {
        Self::with_ca_bundle(connect_timeout, None)
    }

    /// A fetcher whose URL sources also trust the CA certificates of `ca_bundle`
    /// (`tgp run --module-ca-file`). OCI sources are not affected.
    pub fn with_ca_bundle(
        connect_timeout: Duration,
        ca_bundle: Option<&ModuleCaBundle>,
    ) -> Result<Self, FetchError> {
        let http = http::client(connect_timeout, ca_bundle).map_err(|e| FetchError::Transport {
            source_desc: "(HTTP client set-up)".into(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            http,
            extra_roots: ca_bundle.cloned(),
            connect_timeout,
        })
    }

    /// Gets the module `req` names, within `limits`, and checks its digest before returning
    /// it. `kube` reads ConfigMaps and pull secrets (required for those sources).
    pub async fn fetch(
        &self,
        req: &ModuleRequest,
        limits: &FetchLimits,
        kube: Option<&kube::Client>,
    ) -> Result<Fetched, FetchError> {
        let source_desc = req.location.describe();
        let bytes = tokio::time::timeout(limits.timeout, self.read(req, limits, kube))
            .await
            .map_err(|_| FetchError::Timeout {
                after: limits.timeout,
                source_desc: source_desc.clone(),
            })??;
        // The check every source goes through, before anything else sees the bytes.
        if let Some(expected) = &req.digest {
            expected.verify(&bytes, &source_desc)?;
        }
        let digest = ModuleDigest::of(&bytes);
        Ok(Fetched { bytes, digest })
    }

    async fn read(
        &self,
        req: &ModuleRequest,
        limits: &FetchLimits,
        kube: Option<&kube::Client>,
    ) -> Result<Vec<u8>, FetchError> {
        let need_kube = |what: &str| FetchError::Api {
            what: what.to_string(),
            detail: "no Kubernetes client was given to the fetcher".into(),
        };
        match &req.location {
            ModuleLocation::Path(path) => read_path(path, limits.max_bytes).await,
            ModuleLocation::ConfigMap {
                namespace,
                name,
                key,
            } => {
                let client = kube.ok_or_else(|| need_kube("a ConfigMap"))?;
                configmap::read_config_map(client, namespace, name, key, limits.max_bytes).await
            }
            ModuleLocation::Url(url) => {
                http::fetch(&self.http, self.extra_roots.as_ref(), url, limits.max_bytes).await
            }
            ModuleLocation::Oci {
                reference,
                pull_secret,
            } => {
                let expected = req
                    .digest
                    .as_ref()
                    .ok_or(FetchError::DigestRequired { field: "oci" })?;
                let auth = match pull_secret {
                    None => oci_client::secrets::RegistryAuth::Anonymous,
                    Some((namespace, name)) => {
                        let client = kube.ok_or_else(|| need_kube("a pull secret"))?;
                        let registry = reference
                            .parse::<oci_client::Reference>()
                            .map(|r| r.resolve_registry().to_string())
                            .unwrap_or_default();
                        configmap::read_pull_secret(client, namespace, name, &registry).await?
                    }
                };
                oci::fetch(
                    reference,
                    auth,
                    expected,
                    limits.max_bytes,
                    self.connect_timeout.min(limits.connect_timeout),
                )
                .await
            }
        }
    }
}

async fn read_path(path: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let unreadable = |e: std::io::Error| FetchError::Unreadable {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if meta.len() > max_bytes {
        return Err(FetchError::TooLarge {
            limit: max_bytes,
            size: Some(meta.len()),
            source_desc: format!("path {}", path.display()),
        });
    }
    tokio::fs::read(path).await.map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::response::Response;
    use axum::routing::get;
    use tgp_cloudsim::files::{FileServer, LeafCert, Serve, TlsOptions, Validity};

    use super::*;
    use crate::modules::TlsProblem;

    async fn serve(app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn module() -> Vec<u8> {
        (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect()
    }

    fn url_req(addr: SocketAddr, path: &str, digest: &ModuleDigest) -> ModuleRequest {
        ModuleRequest {
            location: ModuleLocation::Url(
                url::Url::parse(&format!("http://{addr}{path}")).unwrap(),
            ),
            digest: Some(digest.clone()),
        }
    }

    async fn app() -> SocketAddr {
        let good = module();
        let half = good.len() / 2;
        let full_len = good.len();
        let truncated = good.clone();
        let slow = good.clone();
        serve(
            Router::new()
                .route("/good.wasm", get(move || async move { good.clone() }))
                .route(
                    "/truncated.wasm",
                    get(move || {
                        let bytes = truncated[..half].to_vec();
                        async move {
                            // Announces the whole module, sends half, then the stream fails.
                            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                                vec![Ok(bytes), Err(std::io::Error::other("connection reset"))];
                            // The break comes after the first half has reached the client.
                            let paced = futures::StreamExt::then(
                                futures::stream::iter(chunks),
                                |c| async move {
                                    if c.is_err() {
                                        tokio::time::sleep(Duration::from_millis(100)).await;
                                    }
                                    c
                                },
                            );
                            Response::builder()
                                .header(header::CONTENT_LENGTH, full_len)
                                .body(Body::from_stream(paced))
                                .unwrap()
                        }
                    }),
                )
                .route(
                    "/slow.wasm",
                    get(move || {
                        let bytes = slow.clone();
                        async move {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            bytes
                        }
                    }),
                )
                .route(
                    "/redirect.wasm",
                    get(|| async {
                        Response::builder()
                            .status(StatusCode::FOUND)
                            .header(header::LOCATION, "http://example.com/x.wasm")
                            .body(Body::empty())
                            .unwrap()
                    }),
                )
                .route("/secret.wasm", get(|| async { StatusCode::FORBIDDEN })),
        )
        .await
    }

    #[tokio::test]
    async fn url_sources_are_verified_capped_and_bounded() {
        let addr = app().await;
        let fetcher = Fetcher::new(Duration::from_secs(2)).unwrap();
        let digest = ModuleDigest::of(&module());
        let limits = FetchLimits {
            timeout: Duration::from_secs(2),
            ..FetchLimits::default()
        };
        let ok = fetcher
            .fetch(&url_req(addr, "/good.wasm", &digest), &limits, None)
            .await
            .expect("the pinned module is fetched");
        assert_eq!(ok.bytes, module());
        assert_eq!(ok.digest, digest);

        let wrong = ModuleDigest::of(b"another module");
        let err = fetcher
            .fetch(&url_req(addr, "/good.wasm", &wrong), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch", "{err}");

        let err = fetcher
            .fetch(&url_req(addr, "/truncated.wasm", &digest), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "TruncatedModule", "{err}");

        let small = FetchLimits {
            max_bytes: 1000,
            ..limits
        };
        let err = fetcher
            .fetch(&url_req(addr, "/good.wasm", &digest), &small, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "ModuleTooLarge", "{err}");

        let quick = FetchLimits {
            timeout: Duration::from_millis(300),
            ..limits
        };
        let err = fetcher
            .fetch(&url_req(addr, "/slow.wasm", &digest), &quick, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchTimeout", "{err}");

        let err = fetcher
            .fetch(&url_req(addr, "/redirect.wasm", &digest), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        assert!(err.to_string().contains("https only"), "{err}");

        let err = fetcher
            .fetch(&url_req(addr, "/secret.wasm", &digest), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchUnauthorized", "{err}");

        let err = fetcher
            .fetch(&url_req(addr, "/missing.wasm", &digest), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::HttpStatus {
                status: 404,
                source_desc: format!("http://{addr}/missing.wasm")
            }
        );
    }

    fn bundle(pem: &str, name: &str) -> ModuleCaBundle {
        ModuleCaBundle::from_pem(pem.as_bytes(), std::path::Path::new(name)).unwrap()
    }

    fn url_of(files: &FileServer, path: &str, digest: &ModuleDigest) -> ModuleRequest {
        ModuleRequest {
            location: ModuleLocation::Url(url::Url::parse(&files.url(path)).unwrap()),
            digest: Some(digest.clone()),
        }
    }

    /// An https source on a server whose certificate a test CA signed: fetched with that CA in
    /// the bundle, refused as untrusted without it or with another CA, and every other check
    /// (digest, truncation, status, deadline) applies over TLS as over plain HTTP.
    #[tokio::test]
    async fn https_sources_trust_the_module_ca_bundle() {
        let files = FileServer::start_tls().await.unwrap();
        let ca = files.ca_pem().unwrap().to_string();
        files.put("/m.wasm", module());
        let digest = ModuleDigest::of(&module());
        let limits = FetchLimits {
            timeout: Duration::from_secs(5),
            ..FetchLimits::default()
        };
        let req = url_of(&files, "/m.wasm", &digest);
        assert!(req.location.describe().starts_with("https://127.0.0.1:"));

        let trusting = Fetcher::with_ca_bundle(
            Duration::from_secs(2),
            Some(&bundle(&ca, "/etc/tgp/ca.pem")),
        )
        .unwrap();
        let got = trusting.fetch(&req, &limits, None).await.expect("fetched");
        assert_eq!(got.bytes, module());
        assert_eq!(got.digest, digest);

        // No bundle: the public roots do not know the test CA.
        let public = Fetcher::new(Duration::from_secs(2)).unwrap();
        let err = public.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "TlsUntrusted", "{err}");
        assert!(
            matches!(
                &err,
                FetchError::TlsUntrusted {
                    problem: TlsProblem::UnknownIssuer,
                    extra_roots: None,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        for needle in [
            files.url("/m.wasm").as_str(),
            "UnknownIssuer",
            "--module-ca-file",
            "moduleCA.configMap",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }

        // A bundle with another CA: refused the same way, naming the bundle that was tried.
        let other = tgp_cloudsim::files::TestCa::generate("another CA").unwrap();
        let wrong = Fetcher::with_ca_bundle(
            Duration::from_secs(2),
            Some(&bundle(&other.pem(), "/x.pem")),
        )
        .unwrap();
        let err = wrong.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "TlsUntrusted", "{err}");
        assert!(
            err.to_string()
                .contains("the 1 CA certificate of --module-ca-file /x.pem"),
            "{err}"
        );
        assert_eq!(
            files.requests_for("/m.wasm"),
            1,
            "only the trusted fetch got through"
        );

        // The other checks, over TLS.
        let err = trusting
            .fetch(
                &url_of(&files, "/m.wasm", &ModuleDigest::of(b"x")),
                &limits,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch", "{err}");
        files.set_serve(
            "/m.wasm",
            Serve::Truncated {
                after: module().len() / 2,
            },
        );
        let err = trusting.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "TruncatedModule", "{err}");
        files.set_serve("/m.wasm", Serve::Status(404));
        let err = trusting.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        files.set_serve(
            "/m.wasm",
            Serve::Slow {
                delay: Duration::from_secs(3),
            },
        );
        let quick = FetchLimits {
            timeout: Duration::from_millis(300),
            ..limits
        };
        let err = trusting.fetch(&req, &quick, None).await.unwrap_err();
        assert_eq!(err.reason(), "FetchTimeout", "{err}");
        files.shutdown().await;
    }

    /// A certificate for another name, an expired one, one not valid yet: each refused as
    /// untrusted, with what is wrong and what to do, even with the right CA in the bundle.
    #[tokio::test]
    async fn certificate_problems_are_told_apart() {
        for (names, validity, problem, says) in [
            (
                vec!["modules.example.invalid".to_string()],
                Validity::Current,
                TlsProblem::WrongName,
                "not valid for the host",
            ),
            (
                LeafCert::default().names,
                Validity::Expired,
                TlsProblem::Expired,
                "renew",
            ),
            (
                LeafCert::default().names,
                Validity::NotYetValid,
                TlsProblem::NotYetValid,
                "not valid yet",
            ),
        ] {
            let files = FileServer::start_tls_with(TlsOptions {
                leaf: LeafCert { names, validity },
                ca: None,
            })
            .await
            .unwrap();
            files.put("/m.wasm", module());
            let fetcher = Fetcher::with_ca_bundle(
                Duration::from_secs(2),
                Some(&bundle(files.ca_pem().unwrap(), "/ca.pem")),
            )
            .unwrap();
            let req = url_of(&files, "/m.wasm", &ModuleDigest::of(&module()));
            let err = fetcher
                .fetch(&req, &FetchLimits::default(), None)
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "TlsUntrusted", "{validity:?}: {err}");
            match &err {
                FetchError::TlsUntrusted { problem: p, .. } => {
                    assert_eq!(*p, problem, "{validity:?}: {err}")
                }
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().contains(says), "{err}");
            files.shutdown().await;
        }
    }

    /// Plain http to a TLS server, https to a plain one: transport failures, not certificate
    /// problems.
    #[tokio::test]
    async fn protocol_mix_ups_are_not_certificate_problems() {
        let tls = FileServer::start_tls().await.unwrap();
        let plain = FileServer::start().await.unwrap();
        let digest = ModuleDigest::of(&module());
        let fetcher = Fetcher::new(Duration::from_secs(2)).unwrap();
        let limits = FetchLimits {
            timeout: Duration::from_secs(5),
            ..FetchLimits::default()
        };
        let https_to_plain = ModuleRequest {
            location: ModuleLocation::Url(
                url::Url::parse(&format!("https://{}/m.wasm", plain.addr())).unwrap(),
            ),
            digest: Some(digest.clone()),
        };
        let err = fetcher
            .fetch(&https_to_plain, &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        let http_to_tls = ModuleRequest {
            location: ModuleLocation::Url(
                url::Url::parse(&format!("http://{}/m.wasm", tls.addr())).unwrap(),
            ),
            digest: Some(digest),
        };
        let err = fetcher
            .fetch(&http_to_tls, &limits, None)
            .await
            .unwrap_err();
        assert_ne!(err.reason(), "TlsUntrusted", "{err}");
    }

    #[tokio::test]
    async fn local_paths_are_capped_and_checked_when_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wasm");
        std::fs::write(&path, module()).unwrap();
        let fetcher = Fetcher::new(Duration::from_secs(1)).unwrap();
        let unpinned = ModuleRequest {
            location: ModuleLocation::Path(path.clone()),
            digest: None,
        };
        let got = fetcher
            .fetch(&unpinned, &FetchLimits::default(), None)
            .await
            .unwrap();
        assert_eq!(got.digest, ModuleDigest::of(&module()));
        let pinned_wrong = ModuleRequest {
            digest: Some(ModuleDigest::of(b"x")),
            ..unpinned.clone()
        };
        let err = fetcher
            .fetch(&pinned_wrong, &FetchLimits::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch");
        let small = FetchLimits {
            max_bytes: 10,
            ..FetchLimits::default()
        };
        let err = fetcher.fetch(&unpinned, &small, None).await.unwrap_err();
        assert_eq!(err.reason(), "ModuleTooLarge");
        let missing = ModuleRequest {
            location: ModuleLocation::Path(dir.path().join("nope.wasm")),
            digest: None,
        };
        let err = fetcher
            .fetch(&missing, &FetchLimits::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "ModuleUnreadable");
        assert!(err.to_string().starts_with("spec.module.path"), "{err}");
    }
}
