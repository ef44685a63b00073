//! Modules as OCI artifacts, pulled with `oci-client` (the ORAS project's client, also used by
//! Kubewarden).
//!
//! The artifact is an image manifest whose single module layer is the component, with media
//! type [`TGP_LAYER_MEDIA_TYPE`] (or the generic `application/vnd.wasm.content.layer.v1+wasm`).
//! `spec.module.digest` pins the module bytes, which are exactly that layer's blob: the layer's
//! descriptor digest is compared with it before the blob is downloaded (a moved tag is refused
//! without pulling anything), its announced size with the size cap, and the downloaded bytes
//! are hashed again by the caller. A reference pinned by manifest digest
//! (`repo@sha256:...`) is also checked by the client against the manifest it receives.
//!
//! Registries are reached over https, the certificate checked against the public roots plus
//! the CA certificates of `tgp run --module-ca-file` (handed to `oci-client` as extra roots); a
//! certificate that is not accepted is [`FetchError::TlsUntrusted`], found in the error chain
//! the same way as for URL sources. Plain http only when the resource asks for it
//! (`spec.module.oci.plainHttp`), and only for a loopback registry: which protocol a registry
//! speaks is the user's to say, not guessed from its address, so that an https registry on
//! loopback (a local mirror, a test) is reached over TLS like any other.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciManifest, WASM_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::ca::ModuleCaBundle;
use super::digest::ModuleDigest;
use super::error::FetchError;
use super::source::{check_plain_http_registry, is_loopback_host, registry_host};
use super::tls::{TlsPeer, error_chain, error_chain_text, refused_certificate};

/// The media type of a tgp provider module layer.
pub const TGP_LAYER_MEDIA_TYPE: &str = "application/vnd.tgp.provider.wasm.v1";

/// Layer media types taken as the module.
pub const ACCEPTED_LAYER_MEDIA_TYPES: &[&str] = &[TGP_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE];

/// How a registry is reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegistryTransport<'a> {
    /// Plain http instead of https (`spec.module.oci.plainHttp`; loopback registries only).
    pub plain_http: bool,
    /// CA certificates trusted besides the public roots (`--module-ca-file`).
    pub extra_roots: Option<&'a ModuleCaBundle>,
    /// Deadline of each connection attempt.
    pub connect_timeout: Duration,
}

/// Pulls the module layer of `reference`, refusing a layer whose descriptor is not `expected`
/// or is larger than `max_bytes`. The caller bounds the whole call with its deadline and checks
/// the returned bytes against `expected` again.
pub(crate) async fn fetch(
    reference: &str,
    transport: &RegistryTransport<'_>,
    auth: RegistryAuth,
    expected: &ModuleDigest,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let source_desc = format!("oci://{reference}");
    let image: Reference = reference.parse().map_err(|e| FetchError::InvalidSource {
        field: "spec.module.oci.reference",
        message: format!("{reference:?}: {e}"),
    })?;
    let registry = image.resolve_registry().to_string();
    let protocol = if transport.plain_http {
        check_plain_http_registry(&registry)?;
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let client = Client::try_from(ClientConfig {
        protocol,
        connect_timeout: Some(transport.connect_timeout),
        extra_root_certificates: transport
            .extra_roots
            .map(extra_root_certificates)
            .unwrap_or_default(),
        // A module is one artifact, not a multi-platform image.
        platform_resolver: None,
        ..ClientConfig::default()
    })
    .map_err(|e| FetchError::Transport {
        source_desc: source_desc.clone(),
        detail: format!("cannot set up the OCI client: {}", error_chain_text(&e)),
    })?;
    let failed = |e| oci_error(e, &source_desc, &registry, transport);

    let (manifest, manifest_digest) = client.pull_manifest(&image, &auth).await.map_err(failed)?;
    let manifest = match manifest {
        OciManifest::Image(m) => m,
        OciManifest::ImageIndex(_) => {
            return Err(FetchError::InvalidArtifact {
                reference: reference.to_string(),
                detail: "it is an image index; point at the module's own manifest".into(),
            });
        }
    };
    let modules: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| ACCEPTED_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .collect();
    let layer = match modules.as_slice() {
        [one] => *one,
        [] => {
            let found: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            return Err(FetchError::InvalidArtifact {
                reference: reference.to_string(),
                detail: format!(
                    "manifest {manifest_digest} has no layer of media type {} (layers: {})",
                    ACCEPTED_LAYER_MEDIA_TYPES.join(" or "),
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ),
            });
        }
        several => {
            return Err(FetchError::InvalidArtifact {
                reference: reference.to_string(),
                detail: format!(
                    "manifest {manifest_digest} has {} module layers; a plugin artifact has one",
                    several.len()
                ),
            });
        }
    };
    let layer_digest = ModuleDigest::parse(&layer.digest, "layer digest").map_err(|_| {
        FetchError::InvalidArtifact {
            reference: reference.to_string(),
            detail: format!("the module layer's digest {:?} is not sha256", layer.digest),
        }
    })?;
    if layer_digest != *expected {
        return Err(FetchError::DigestMismatch {
            expected: expected.to_string(),
            actual: layer_digest.to_string(),
            source_desc: format!("{source_desc} (manifest {manifest_digest})"),
            size: layer.size.max(0) as u64,
        });
    }
    if layer.size < 0 || layer.size as u64 > max_bytes {
        return Err(FetchError::TooLarge {
            limit: max_bytes,
            size: Some(layer.size.max(0) as u64),
            source_desc,
        });
    }
    let mut sink = CappedSink::new(max_bytes, layer.size as u64);
    let pulled = client.pull_blob(&image, layer, &mut sink).await;
    match pulled {
        Ok(()) => {}
        Err(_) if sink.exceeded => {
            return Err(FetchError::TooLarge {
                limit: max_bytes,
                size: Some(layer.size as u64),
                source_desc,
            });
        }
        Err(OciDistributionError::DigestError(e)) => {
            // The blob's bytes do not hash to the layer digest (which is the pinned one).
            tracing::debug!(source = %source_desc, error = %e, "blob does not match its digest");
            let actual = ModuleDigest::of(&sink.buf).to_string();
            return Err(FetchError::DigestMismatch {
                expected: expected.to_string(),
                actual,
                source_desc,
                size: sink.buf.len() as u64,
            });
        }
        Err(OciDistributionError::RequestError(e)) if e.is_body() || e.is_decode() => {
            return Err(FetchError::Truncated {
                received: sink.buf.len() as u64,
                expected: Some(layer.size as u64),
                source_desc,
            });
        }
        Err(e) => return Err(failed(e)),
    }
    if (sink.buf.len() as u64) < layer.size as u64 {
        return Err(FetchError::Truncated {
            received: sink.buf.len() as u64,
            expected: Some(layer.size as u64),
            source_desc,
        });
    }
    Ok(sink.buf)
}

/// An in-memory writer that refuses to grow past its cap.
struct CappedSink {
    buf: Vec<u8>,
    max: u64,
    exceeded: bool,
}

impl CappedSink {
    fn new(max: u64, expected: u64) -> Self {
        Self {
            buf: Vec::with_capacity(expected.min(max) as usize),
            max,
            exceeded: false,
        }
    }
}

impl tokio::io::AsyncWrite for CappedSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() as u64 + data.len() as u64 > self.max {
            self.exceeded = true;
            return Poll::Ready(Err(std::io::Error::other("module size limit exceeded")));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The extra roots as the OCI client takes them: one PEM certificate each.
fn extra_root_certificates(bundle: &ModuleCaBundle) -> Vec<Certificate> {
    bundle
        .pem_blocks()
        .map(|pem| Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.to_vec(),
        })
        .collect()
}

fn oci_error(
    e: OciDistributionError,
    source_desc: &str,
    registry: &str,
    transport: &RegistryTransport<'_>,
) -> FetchError {
    let source_desc = source_desc.to_string();
    match e {
        OciDistributionError::AuthenticationFailure(detail) => FetchError::Unauthorized {
            source_desc,
            detail: format!("token request refused: {}", detail.trim()),
        },
        OciDistributionError::UnauthorizedError { .. } => FetchError::Unauthorized {
            source_desc,
            detail: "HTTP 401".into(),
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
        {
            FetchError::Unauthorized {
                source_desc,
                detail: envelope.to_string(),
            }
        }
        OciDistributionError::RegistryError { envelope, .. } => FetchError::Transport {
            source_desc,
            detail: format!("the registry answered: {envelope}"),
        },
        OciDistributionError::ServerError { code, message, .. } if code == 401 || code == 403 => {
            FetchError::Unauthorized {
                source_desc,
                detail: format!("HTTP {code}: {}", message.trim()),
            }
        }
        OciDistributionError::ServerError { code, .. } => FetchError::HttpStatus {
            status: code,
            source_desc,
        },
        OciDistributionError::RequestError(e) => {
            let peer = TlsPeer {
                source_desc: &source_desc,
                host_field: "spec.module.oci.reference",
                extra_roots: transport.extra_roots,
            };
            if let Some(untrusted) = refused_certificate(&e, &peer) {
                return untrusted;
            }
            let chain = error_chain(&e);
            let mut detail = chain.join(": ");
            // A connect error that is not hyper's "tcp connect error" (refused, unreachable):
            // the TCP connection was made and the TLS handshake failed. Since https is the
            // default, that is what a local registry speaking plain http looks like (the
            // fetch tests hold both cases to real connections).
            let handshake_failed =
                e.is_connect() && !chain.iter().any(|m| m.starts_with("tcp connect error"));
            if handshake_failed
                && !transport.plain_http
                && is_loopback_host(registry_host(registry))
            {
                detail.push_str(
                    " (if this loopback registry serves plain http, set \
                     spec.module.oci.plainHttp: true)",
                );
            }
            FetchError::Transport {
                source_desc,
                detail,
            }
        }
        other => FetchError::Transport {
            source_desc,
            detail: other.to_string(),
        },
    }
}

/// The credentials for `registry` (`host[:port]`) in a Docker config
/// (`.dockerconfigjson`: `{"auths": {...}}`, or the legacy `.dockercfg` map itself). Entries
/// carry `username`/`password`, or `auth` (base64 of `user:password`), or a `registrytoken`.
pub fn registry_auth_from_docker_config(
    json: &[u8],
    registry: &str,
) -> Result<RegistryAuth, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not a Docker config (JSON): {e}"))?;
    let auths = value
        .get("auths")
        .unwrap_or(&value)
        .as_object()
        .ok_or("not a Docker config: no \"auths\" object")?;
    let wanted = normalise_registry(registry);
    let mut known = Vec::new();
    for (key, entry) in auths {
        let name = normalise_registry(key);
        if name != wanted {
            known.push(key.clone());
            continue;
        }
        let field = |f: &str| entry.get(f).and_then(|v| v.as_str()).unwrap_or_default();
        if !field("username").is_empty() {
            return Ok(RegistryAuth::Basic(
                field("username").to_string(),
                field("password").to_string(),
            ));
        }
        if !field("auth").is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(field("auth").trim())
                .map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
            let text =
                String::from_utf8(decoded).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
            let (user, password) = text
                .split_once(':')
                .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
            return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
        }
        if !field("registrytoken").is_empty() {
            return Ok(RegistryAuth::Bearer(field("registrytoken").to_string()));
        }
        return Err(format!(
            "auths.{key} has neither username/password, auth nor registrytoken"
        ));
    }
    Err(format!(
        "it has no credentials for registry {registry} (it has: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// `https://index.docker.io/v1/` and `docker.io` name the same registry; so do
/// `https://host:port` and `host:port`.
fn normalise_registry(name: &str) -> String {
    let name = name
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = name.split('/').next().unwrap_or(name).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_cloudsim::oci::{OciRegistry, OciRegistryConfig};

    const MAX: u64 = 1024 * 1024;
    /// The simulator over plain http, as `plainHttp: true` asks for.
    const PLAIN: RegistryTransport<'static> = RegistryTransport {
        plain_http: true,
        extra_roots: None,
        connect_timeout: Duration::from_secs(2),
    };

    async fn pull(
        reference: &str,
        auth: RegistryAuth,
        expected: &ModuleDigest,
        max_bytes: u64,
    ) -> Result<Vec<u8>, FetchError> {
        fetch(reference, &PLAIN, auth, expected, max_bytes).await
    }

    fn module(tag: u8) -> Vec<u8> {
        let mut m = b"\0asm".to_vec();
        m.extend(std::iter::repeat_n(tag, 20_000));
        m
    }

    #[tokio::test]
    async fn pulls_the_pinned_module_layer() {
        let reg = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        let v1 = reg.push_module("tgp/mock", "v1", &module(1), TGP_LAYER_MEDIA_TYPE);
        let d1 = ModuleDigest::of(&module(1));
        let got = pull(&v1.reference, RegistryAuth::Anonymous, &d1, MAX)
            .await
            .expect("pull by tag");
        assert_eq!(got, module(1));
        let got = pull(&v1.pinned_reference, RegistryAuth::Anonymous, &d1, MAX)
            .await
            .expect("pull by manifest digest");
        assert_eq!(got, module(1));
        // The generic wasm layer media type is accepted too.
        let w = reg.push_module("tgp/wasm", "1", &module(2), WASM_LAYER_MEDIA_TYPE);
        let got = pull(
            &w.reference,
            RegistryAuth::Anonymous,
            &ModuleDigest::of(&module(2)),
            MAX,
        )
        .await
        .unwrap();
        assert_eq!(got, module(2));
    }

    #[tokio::test]
    async fn a_moved_tag_or_an_oversized_layer_is_refused_before_the_blob_is_pulled() {
        let reg = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        reg.push_module("tgp/mock", "latest", &module(1), TGP_LAYER_MEDIA_TYPE);
        let pinned = ModuleDigest::of(&module(1));
        // The tag now points at another module.
        let moved = reg.push_module("tgp/mock", "latest", &module(9), TGP_LAYER_MEDIA_TYPE);
        let err = pull(&moved.reference, RegistryAuth::Anonymous, &pinned, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch", "{err}");
        assert!(err.to_string().contains(&moved.layer_digest), "{err}");
        let err = pull(
            &moved.reference,
            RegistryAuth::Anonymous,
            &ModuleDigest::of(&module(9)),
            100,
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "ModuleTooLarge", "{err}");
        assert_eq!(reg.call_count("blob"), 0, "no blob was downloaded");
    }

    #[tokio::test]
    async fn broken_artifacts_and_transfers_are_refused_with_their_reason() {
        let reg = OciRegistry::start(OciRegistryConfig::default())
            .await
            .unwrap();
        let m = module(3);
        let d = ModuleDigest::of(&m);
        // Not a module layer.
        let other = reg.push_module(
            "tgp/image",
            "1",
            &m,
            "application/vnd.oci.image.layer.v1.tar",
        );
        let err = pull(&other.reference, RegistryAuth::Anonymous, &d, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidArtifact", "{err}");
        assert!(
            err.to_string()
                .contains("application/vnd.oci.image.layer.v1.tar"),
            "{err}"
        );
        // A blob whose transfer breaks off.
        let good = reg.push_module("tgp/mock", "t", &m, TGP_LAYER_MEDIA_TYPE);
        reg.truncate_blob(&good.layer_digest, 1000);
        let err = pull(&good.reference, RegistryAuth::Anonymous, &d, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "TruncatedModule", "{err}");
        reg.restore_blob(&good.layer_digest);
        // A descriptor that lies about its blob.
        let lying_layer = ModuleDigest::of(b"what the descriptor claims");
        let config = reg.push_blob(b"{}".to_vec());
        reg.push_blob(m.clone());
        let manifest = tgp_cloudsim::oci::artifact_manifest(
            &[(TGP_LAYER_MEDIA_TYPE, &lying_layer.to_string(), m.len())],
            &config,
        );
        reg.push_manifest("tgp/liar", "1", manifest);
        let err = pull(
            &reg.reference("tgp/liar", "1"),
            RegistryAuth::Anonymous,
            &lying_layer,
            MAX,
        )
        .await
        .unwrap_err();
        // The registry has no blob under the claimed digest.
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        // Unknown tag.
        let err = pull(
            &reg.reference("tgp/mock", "nope"),
            RegistryAuth::Anonymous,
            &d,
            MAX,
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "FetchFailed", "{err}");
        assert!(
            err.to_string().contains("MANIFEST_UNKNOWN")
                || err.to_string().contains("manifest unknown"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn token_auth_with_pull_credentials() {
        let reg = OciRegistry::start(OciRegistryConfig {
            credentials: Some(("puller".into(), "s3cret".into())),
        })
        .await
        .unwrap();
        let m = module(4);
        let d = ModuleDigest::of(&m);
        let a = reg.push_module("private/mock", "1", &m, TGP_LAYER_MEDIA_TYPE);
        let got = pull(
            &a.reference,
            RegistryAuth::Basic("puller".into(), "s3cret".into()),
            &d,
            MAX,
        )
        .await
        .expect("pull with credentials");
        assert_eq!(got, m);
        for auth in [
            RegistryAuth::Anonymous,
            RegistryAuth::Basic("puller".into(), "wrong".into()),
        ] {
            let err = pull(&a.reference, auth.clone(), &d, MAX).await.unwrap_err();
            assert_eq!(err.reason(), "FetchUnauthorized", "{auth:?}: {err}");
        }
    }

    /// Over https, the token endpoint the challenge names is reached with the same extra roots
    /// as the registry.
    #[tokio::test]
    async fn token_auth_over_tls_with_the_extra_roots() {
        let reg = OciRegistry::start_tls(OciRegistryConfig {
            credentials: Some(("puller".into(), "s3cret".into())),
        })
        .await
        .unwrap();
        let bundle = ModuleCaBundle::from_pem(
            reg.ca_pem().unwrap().as_bytes(),
            std::path::Path::new("/ca.pem"),
        )
        .unwrap();
        let tls = RegistryTransport {
            plain_http: false,
            extra_roots: Some(&bundle),
            ..PLAIN
        };
        let m = module(5);
        let d = ModuleDigest::of(&m);
        let a = reg.push_module("private/mock", "1", &m, TGP_LAYER_MEDIA_TYPE);
        let creds = RegistryAuth::Basic("puller".into(), "s3cret".into());
        let got = fetch(&a.reference, &tls, creds, &d, MAX)
            .await
            .expect("pull with credentials over https");
        assert_eq!(got, m);
        assert!(reg.call_count("token") >= 1, "{:?}", reg.calls());
        let err = fetch(&a.reference, &tls, RegistryAuth::Anonymous, &d, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FetchUnauthorized", "{err}");
    }

    #[test]
    fn docker_config_credentials() {
        let json = br#"{"auths": {
            "https://127.0.0.1:5000": {"username": "u", "password": "p"},
            "ghcr.io": {"auth": "YWxpY2U6czNjcjN0"},
            "https://index.docker.io/v1/": {"registrytoken": "tok"},
            "empty.example": {}
        }}"#;
        assert_eq!(
            registry_auth_from_docker_config(json, "127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            registry_auth_from_docker_config(json, "ghcr.io").unwrap(),
            RegistryAuth::Basic("alice".into(), "s3cr3t".into())
        );
        assert_eq!(
            registry_auth_from_docker_config(json, "index.docker.io").unwrap(),
            RegistryAuth::Bearer("tok".into())
        );
        let none = registry_auth_from_docker_config(json, "quay.io").unwrap_err();
        assert!(
            none.contains("quay.io") && none.contains("ghcr.io"),
            "{none}"
        );
        let empty = registry_auth_from_docker_config(json, "empty.example").unwrap_err();
        assert!(empty.contains("neither"), "{empty}");
        // The legacy .dockercfg shape: the map itself.
        let legacy = br#"{"127.0.0.1:5000": {"auth": "dTpw"}}"#;
        assert_eq!(
            registry_auth_from_docker_config(legacy, "127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert!(registry_auth_from_docker_config(b"nope", "x").is_err());
    }
}
