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

/// Fetches modules. Cheap to share; holds the HTTP client for URL sources (the OCI client is
/// built per pull, with the same extra roots).
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// The CA certificates URL and OCI sources trust besides the public roots.
    extra_roots: Option<ModuleCaBundle>,
    connect_timeout: Duration,
}

impl Fetcher {
    /// A fetcher whose connections give up after `connect_timeout`, trusting the public roots.
    pub fn new(connect_timeout: Duration) -> Result<Self, FetchError> {
        Self::with_ca_bundle(connect_timeout, None)
    }

    /// A fetcher whose URL sources and OCI registries also trust the CA certificates of
    /// `ca_bundle` (`tgp run --module-ca-file`).
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
                plain_http,
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
                let transport = oci::RegistryTransport {
                    plain_http: *plain_http,
                    extra_roots: self.extra_roots.as_ref(),
                    connect_timeout: self.connect_timeout.min(limits.connect_timeout),
                };
                oci::fetch(reference, &transport, auth, expected, limits.max_bytes).await
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
    use tgp_cloudsim::oci::{OciRegistry, OciRegistryConfig};

    use super::*;
    use crate::modules::{TGP_LAYER_MEDIA_TYPE, TlsProblem};

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

    /// `err` is a refused certificate for `problem`, and its message says `says`.
    fn assert_tls_problem(err: &FetchError, problem: TlsProblem, says: &str) {
        match err {
            FetchError::TlsUntrusted { problem: p, .. } => assert_eq!(*p, problem, "{err}"),
            other => panic!("expected {problem:?}, got {other:?}"),
        }
        assert!(err.to_string().contains(says), "{says:?} in {err}");
    }

    /// `err` refuses `source` for a certificate signed by a CA the fetcher was not given (no
    /// bundle), naming the field of the host and saying how to give the CA.
    fn assert_unknown_ca(err: &FetchError, source: &str, field: &str) {
        assert_eq!(err.reason(), "TlsUntrusted", "{err}");
        assert!(
            matches!(
                err,
                FetchError::TlsUntrusted {
                    problem: TlsProblem::UnknownIssuer,
                    extra_roots: None,
                    host_field,
                    ..
                } if *host_field == field
            ),
            "{err:?}"
        );
        let text = err.to_string();
        for needle in [
            source,
            "UnknownIssuer",
            "--module-ca-file",
            "moduleCA.configMap",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
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
        assert_unknown_ca(&err, &files.url("/m.wasm"), "spec.module.url");

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
            assert_tls_problem(&err, problem, says);
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

    fn oci_req(reference: &str, digest: &ModuleDigest, plain_http: bool) -> ModuleRequest {
        ModuleRequest {
            location: ModuleLocation::Oci {
                reference: reference.to_string(),
                pull_secret: None,
                plain_http,
            },
            digest: Some(digest.clone()),
        }
    }

    /// An OCI registry on https whose certificate a test CA signed: pulled with that CA in the
    /// bundle, refused as untrusted without it or with another CA (no request gets past the
    /// handshake), and the other checks apply over TLS as over plain http.
    #[tokio::test]
    async fn oci_registries_over_https_trust_the_module_ca_bundle() {
        let reg = OciRegistry::start_tls(OciRegistryConfig::default())
            .await
            .unwrap();
        let ca = reg.ca_pem().unwrap().to_string();
        let m = module();
        let digest = ModuleDigest::of(&m);
        let pushed = reg.push_module("tgp/mock", "v1", &m, TGP_LAYER_MEDIA_TYPE);
        let limits = FetchLimits {
            timeout: Duration::from_secs(5),
            ..FetchLimits::default()
        };
        let req = oci_req(&pushed.reference, &digest, false);
        assert!(
            pushed.reference.starts_with("127.0.0.1:"),
            "a loopback registry"
        );

        // Two CAs in the bundle, the registry's second: every certificate is handed over.
        let other = tgp_cloudsim::files::TestCa::generate("another CA").unwrap();
        let two = format!("{}{ca}", other.pem());
        let trusting = Fetcher::with_ca_bundle(
            Duration::from_secs(2),
            Some(&bundle(&two, "/etc/tgp/ca.pem")),
        )
        .unwrap();
        let got = trusting.fetch(&req, &limits, None).await.expect("pulled");
        assert_eq!(got.bytes, m);
        assert_eq!(got.digest, digest);
        let by_manifest = oci_req(&pushed.pinned_reference, &digest, false);
        let got = trusting.fetch(&by_manifest, &limits, None).await.unwrap();
        assert_eq!(got.bytes, m);
        let answered = reg.calls().len();
        assert!(reg.call_count("blob") >= 2, "{:?}", reg.calls());

        // No bundle: the public roots do not know the test CA.
        let public = Fetcher::new(Duration::from_secs(2)).unwrap();
        let err = public.fetch(&req, &limits, None).await.unwrap_err();
        assert_unknown_ca(
            &err,
            &format!("oci://{}", pushed.reference),
            "spec.module.oci.reference",
        );

        // A bundle with another CA only: refused the same way, naming the bundle tried.
        let wrong = Fetcher::with_ca_bundle(
            Duration::from_secs(2),
            Some(&bundle(&other.pem(), "/x.pem")),
        )
        .unwrap();
        let err = wrong.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "TlsUntrusted", "{err}");
        assert!(
            err.to_string().contains(
                "signed neither by a public root nor by the 1 CA certificate of \
                           --module-ca-file /x.pem"
            ),
            "{err}"
        );
        assert_eq!(
            reg.calls().len(),
            answered,
            "no untrusted pull got past the handshake: {:?}",
            &reg.calls()[answered..]
        );

        // The other checks, over TLS: a tag moved to another module, a broken transfer.
        let err = trusting
            .fetch(
                &oci_req(&pushed.reference, &ModuleDigest::of(b"x"), false),
                &limits,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch", "{err}");
        reg.truncate_blob(&pushed.layer_digest, 1000);
        let err = trusting.fetch(&req, &limits, None).await.unwrap_err();
        assert_eq!(err.reason(), "TruncatedModule", "{err}");

        // Plain http to a TLS registry is a transport failure, not a certificate problem.
        let err = trusting
            .fetch(&oci_req(&pushed.reference, &digest, true), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        reg.shutdown().await;
    }

    /// A wrong name and an expired certificate: refused as untrusted even with the right CA,
    /// saying which field names the host.
    #[tokio::test]
    async fn oci_certificate_problems_are_told_apart() {
        for (leaf, problem, says) in [
            (
                LeafCert {
                    names: vec!["registry.example.invalid".into()],
                    validity: Validity::Current,
                },
                TlsProblem::WrongName,
                "not valid for the host in spec.module.oci.reference",
            ),
            (
                LeafCert {
                    validity: Validity::Expired,
                    ..LeafCert::default()
                },
                TlsProblem::Expired,
                "has expired",
            ),
        ] {
            let reg = OciRegistry::start_tls_with(
                OciRegistryConfig::default(),
                TlsOptions { leaf, ca: None },
            )
            .await
            .unwrap();
            let pushed = reg.push_module("tgp/mock", "v1", &module(), TGP_LAYER_MEDIA_TYPE);
            let fetcher = Fetcher::with_ca_bundle(
                Duration::from_secs(2),
                Some(&bundle(reg.ca_pem().unwrap(), "/ca.pem")),
            )
            .unwrap();
            let req = oci_req(&pushed.reference, &ModuleDigest::of(&module()), false);
            let err = fetcher
                .fetch(&req, &FetchLimits::default(), None)
                .await
                .unwrap_err();
            assert_tls_problem(&err, problem, says);
            reg.shutdown().await;
        }
    }

    /// Plain http is the resource's choice, for loopback registries only; without it a local
    /// plain-http registry fails with a hint to set it.
    #[tokio::test]
    async fn oci_plain_http_only_when_asked_and_only_to_loopback() {
        let reg = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        let m = module();
        let digest = ModuleDigest::of(&m);
        let pushed = reg.push_module("tgp/mock", "v1", &m, TGP_LAYER_MEDIA_TYPE);
        let fetcher = Fetcher::new(Duration::from_secs(2)).unwrap();
        let limits = FetchLimits {
            timeout: Duration::from_secs(5),
            ..FetchLimits::default()
        };
        let got = fetcher
            .fetch(&oci_req(&pushed.reference, &digest, true), &limits, None)
            .await
            .expect("plainHttp on loopback");
        assert_eq!(got.bytes, m);

        // https (the default) to the plain registry.
        let err = fetcher
            .fetch(&oci_req(&pushed.reference, &digest, false), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        assert!(
            err.to_string().contains(
                "if this loopback registry serves plain http, set \
                           spec.module.oci.plainHttp: true"
            ),
            "{err}"
        );

        // A registry that is not there: no such hint.
        let gone = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        let closed = gone.reference("tgp/mock", "v1");
        gone.shutdown().await;
        let err = fetcher
            .fetch(&oci_req(&closed, &digest, false), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        assert!(!err.to_string().contains("plainHttp"), "{err}");

        // plainHttp to a registry elsewhere: refused before any connection, naming the field
        // (the resource check refuses it too; this is the fetcher's own).
        for reference in ["ghcr.io/acme/p:1", "10.1.2.3:5000/acme/p:1", "acme/p:1"] {
            let err = fetcher
                .fetch(&oci_req(reference, &digest, true), &limits, None)
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "InvalidModuleSource", "{err}");
            assert!(
                err.to_string().starts_with("spec.module.oci.plainHttp: "),
                "{err}"
            );
        }
        reg.shutdown().await;
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
