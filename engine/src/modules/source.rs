//! A GPUProvider's `spec.module` checked and resolved into a [`ModuleRequest`]: exactly one
//! source, a well-formed digest, and a digest present for every remote source. Bad input gives
//! an error naming the field, before any connection is made.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::crd::gpuprovider::ModuleSource;

use super::digest::ModuleDigest;
use super::error::FetchError;

/// Where a module's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleLocation {
    /// A file on the operator's filesystem (development, images that ship plugins).
    Path(PathBuf),
    /// `binaryData[key]` of a ConfigMap in the operator's namespace.
    ConfigMap {
        namespace: String,
        name: String,
        key: String,
    },
    /// An `https://` URL (`http://` only for loopback hosts, in tests and development).
    Url(url::Url),
    /// An OCI artifact whose single module layer is the component.
    Oci {
        reference: String,
        /// `namespace/name` of a `kubernetes.io/dockerconfigjson` Secret.
        pull_secret: Option<(String, String)>,
        /// Reach the registry over plain http (`spec.module.oci.plainHttp`; loopback
        /// registries only); https otherwise.
        plain_http: bool,
    },
}

impl ModuleLocation {
    /// Whether the module comes from somewhere other than the operator's own filesystem, and so
    /// must be pinned by digest.
    pub fn is_remote(&self) -> bool {
        !matches!(self, ModuleLocation::Path(_))
    }

    /// A short description for status and messages (never carries credentials).
    pub fn describe(&self) -> String {
        match self {
            ModuleLocation::Path(p) => format!("path {}", p.display()),
            ModuleLocation::ConfigMap {
                namespace,
                name,
                key,
            } => format!("configMap {namespace}/{name} key {key}"),
            ModuleLocation::Url(u) => u.to_string(),
            ModuleLocation::Oci { reference, .. } => format!("oci://{reference}"),
        }
    }
}

/// A module to obtain: where, and the digest that pins it (always present for remote sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRequest {
    pub location: ModuleLocation,
    pub digest: Option<ModuleDigest>,
}

/// Whether `host` (as written in a URL or an OCI reference, without port) is a loopback name or
/// address. Plain HTTP is allowed only there.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `registry[:port]` (IPv6 literals in brackets kept whole).
pub(crate) fn registry_host(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .find(']')
            .map(|end| &registry[..=end])
            .unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Refuses plain http to `registry` (`host[:port]`) unless it is on loopback: anywhere else
/// the module and the pull credentials would cross a network in clear.
pub(crate) fn check_plain_http_registry(registry: &str) -> Result<(), FetchError> {
    if is_loopback_host(registry_host(registry)) {
        return Ok(());
    }
    Err(FetchError::InvalidSource {
        field: "spec.module.oci.plainHttp",
        message: format!(
            "plain http is allowed only for loopback registries (127.0.0.0/8, localhost: \
             tests, local development), not {registry}; remove plainHttp to reach it over https"
        ),
    })
}

impl ModuleRequest {
    /// Checks `spec.module` and resolves it; `namespace` is where ConfigMaps and pull secrets
    /// live (the operator's namespace).
    pub fn from_spec(spec: &ModuleSource, namespace: &str) -> Result<Self, FetchError> {
        let set: Vec<&'static str> = [
            ("path", spec.path.is_some()),
            ("configMap", spec.config_map.is_some()),
            ("url", spec.url.is_some()),
            ("oci", spec.oci.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        let location = match set.as_slice() {
            [] => return Err(FetchError::NoSource),
            [_] => Self::location(spec, namespace)?,
            several => {
                return Err(FetchError::InvalidSource {
                    field: "spec.module",
                    message: format!("{} are all set; set exactly one source", several.join(", ")),
                });
            }
        };
        let digest = spec
            .digest
            .as_deref()
            .map(|d| ModuleDigest::parse(d, "spec.module.digest"))
            .transpose()?;
        if digest.is_none() && location.is_remote() {
            return Err(FetchError::DigestRequired { field: set[0] });
        }
        Ok(Self { location, digest })
    }

    fn location(spec: &ModuleSource, namespace: &str) -> Result<ModuleLocation, FetchError> {
        if let Some(path) = &spec.path {
            if path.trim().is_empty() {
                return Err(FetchError::InvalidSource {
                    field: "spec.module.path",
                    message: "the path is empty".into(),
                });
            }
            return Ok(ModuleLocation::Path(PathBuf::from(path)));
        }
        if let Some(cm) = &spec.config_map {
            for (field, value) in [
                ("spec.module.configMap.name", &cm.name),
                ("spec.module.configMap.key", &cm.key),
            ] {
                if value.trim().is_empty() {
                    return Err(FetchError::InvalidSource {
                        field,
                        message: "must not be empty".into(),
                    });
                }
            }
            return Ok(ModuleLocation::ConfigMap {
                namespace: namespace.to_string(),
                name: cm.name.clone(),
                key: cm.key.clone(),
            });
        }
        if let Some(text) = &spec.url {
            return parse_url(text).map(ModuleLocation::Url);
        }
        if let Some(oci) = &spec.oci {
            let reference = oci.reference.trim();
            let reference = reference.strip_prefix("oci://").unwrap_or(reference);
            let parsed = oci_client::Reference::try_from(reference).map_err(|e| {
                FetchError::InvalidSource {
                    field: "spec.module.oci.reference",
                    message: format!(
                        "{reference:?} is not an OCI reference ({e}); expected \
                         registry/repository:tag or registry/repository@sha256:<hex>"
                    ),
                }
            })?;
            if let Some(secret) = &oci.pull_secret
                && secret.trim().is_empty()
            {
                return Err(FetchError::InvalidSource {
                    field: "spec.module.oci.pullSecret",
                    message: "must not be empty (omit it for anonymous pulls)".into(),
                });
            }
            if oci.plain_http {
                check_plain_http_registry(parsed.resolve_registry())?;
            }
            return Ok(ModuleLocation::Oci {
                reference: parsed.whole(),
                pull_secret: oci
                    .pull_secret
                    .as_ref()
                    .map(|s| (namespace.to_string(), s.clone())),
                plain_http: oci.plain_http,
            });
        }
        Err(FetchError::NoSource)
    }
}

fn parse_url(text: &str) -> Result<url::Url, FetchError> {
    let invalid = |message: String| FetchError::InvalidSource {
        field: "spec.module.url",
        message,
    };
    let url = url::Url::parse(text.trim()).map_err(|e| invalid(format!("{text:?}: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not allowed; serve the module without them or use an \
             OCI source with a pull secret"
                .into(),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(host) => Ok(url),
        "http" => Err(invalid(format!(
            "{text}: plain http is allowed only for loopback hosts (tests, development); use \
             https"
        ))),
        other => Err(invalid(format!(
            "{text}: unsupported scheme {other}; use https"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::gpuprovider::{ConfigMapModule, OciModule};

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn spec() -> ModuleSource {
        ModuleSource::default()
    }

    #[test]
    fn exactly_one_source() {
        assert_eq!(
            ModuleRequest::from_spec(&spec(), "ns").unwrap_err(),
            FetchError::NoSource
        );
        let two = ModuleSource {
            path: Some("/a.wasm".into()),
            url: Some("https://example.com/a.wasm".into()),
            digest: Some(D.into()),
            ..spec()
        };
        let err = ModuleRequest::from_spec(&two, "ns").unwrap_err();
        assert_eq!(err.reason(), "InvalidModuleSource");
        assert!(err.to_string().contains("path, url"), "{err}");
    }

    #[test]
    fn remote_sources_need_a_digest_local_paths_do_not() {
        let path = ModuleSource {
            path: Some("/a.wasm".into()),
            ..spec()
        };
        let req = ModuleRequest::from_spec(&path, "ns").unwrap();
        assert_eq!(req.location, ModuleLocation::Path("/a.wasm".into()));
        assert_eq!(req.digest, None);
        for s in [
            ModuleSource {
                url: Some("https://example.com/a.wasm".into()),
                ..spec()
            },
            ModuleSource {
                config_map: Some(ConfigMapModule {
                    name: "m".into(),
                    key: "k".into(),
                }),
                ..spec()
            },
            ModuleSource {
                oci: Some(OciModule {
                    reference: "ghcr.io/acme/p:1".into(),
                    ..OciModule::default()
                }),
                ..spec()
            },
        ] {
            let err = ModuleRequest::from_spec(&s, "ns").unwrap_err();
            assert_eq!(err.reason(), "DigestRequired", "{s:?}");
            let pinned = ModuleSource {
                digest: Some(D.into()),
                ..s
            };
            let req = ModuleRequest::from_spec(&pinned, "ns").unwrap();
            assert!(req.location.is_remote());
            assert_eq!(req.digest.unwrap().to_string(), D);
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080/m.wasm",
            "http://localhost/m.wasm",
            "http://[::1]:9/m.wasm",
            "https://plugins.example.com/m.wasm",
        ] {
            let s = ModuleSource {
                url: Some(ok.into()),
                digest: Some(D.into()),
                ..spec()
            };
            assert!(ModuleRequest::from_spec(&s, "ns").is_ok(), "{ok}");
        }
        for bad in [
            "http://plugins.example.com/m.wasm",
            "http://10.0.0.1/m.wasm",
            "ftp://127.0.0.1/m.wasm",
            "https://user:pw@example.com/m.wasm",
            "not a url",
        ] {
            let s = ModuleSource {
                url: Some(bad.into()),
                digest: Some(D.into()),
                ..spec()
            };
            let err = ModuleRequest::from_spec(&s, "ns").unwrap_err();
            assert_eq!(err.reason(), "InvalidModuleSource", "{bad}");
            assert!(err.to_string().starts_with("spec.module.url"), "{err}");
        }
    }

    #[test]
    fn oci_reference_is_parsed_and_the_pull_secret_is_namespaced() {
        let s = ModuleSource {
            oci: Some(OciModule {
                reference: "oci://127.0.0.1:5000/tgp/mock:v2".into(),
                pull_secret: Some("regcred".into()),
                plain_http: false,
            }),
            digest: Some(D.into()),
            ..spec()
        };
        let req = ModuleRequest::from_spec(&s, "tgp-system").unwrap();
        assert_eq!(
            req.location,
            ModuleLocation::Oci {
                reference: "127.0.0.1:5000/tgp/mock:v2".into(),
                pull_secret: Some(("tgp-system".into(), "regcred".into())),
                plain_http: false,
            }
        );
        assert_eq!(req.location.describe(), "oci://127.0.0.1:5000/tgp/mock:v2");
        let bad = ModuleSource {
            oci: Some(OciModule {
                reference: "UPPER/Case:tag".into(),
                ..OciModule::default()
            }),
            digest: Some(D.into()),
            ..spec()
        };
        let err = ModuleRequest::from_spec(&bad, "ns").unwrap_err();
        assert!(
            err.to_string().starts_with("spec.module.oci.reference"),
            "{err}"
        );
    }

    #[test]
    fn oci_plain_http_only_for_loopback_registries() {
        let oci = |reference: &str| ModuleSource {
            oci: Some(OciModule {
                reference: reference.into(),
                plain_http: true,
                ..OciModule::default()
            }),
            digest: Some(D.into()),
            ..spec()
        };
        for ok in [
            "127.0.0.1:5000/tgp/mock:v2",
            "oci://localhost:5000/tgp/mock:v2",
            "127.8.9.10:5000/tgp/mock:v2",
        ] {
            let req = ModuleRequest::from_spec(&oci(ok), "ns").unwrap();
            assert!(
                matches!(
                    req.location,
                    ModuleLocation::Oci {
                        plain_http: true,
                        ..
                    }
                ),
                "{ok}: {req:?}"
            );
        }
        for bad in [
            "ghcr.io/acme/p:1",
            "10.0.0.1:5000/acme/p:1",
            "registry.internal:5000/acme/p:1",
            // No registry: Docker Hub.
            "acme/p:1",
        ] {
            let err = ModuleRequest::from_spec(&oci(bad), "ns").unwrap_err();
            assert_eq!(err.reason(), "InvalidModuleSource", "{bad}");
            let text = err.to_string();
            assert!(
                text.starts_with(
                    "spec.module.oci.plainHttp: plain http is allowed only for \
                                  loopback registries"
                ),
                "{text}"
            );
            assert!(text.contains("remove plainHttp"), "{text}");
        }
        // Without plainHttp, any registry (https).
        let https = ModuleSource {
            oci: Some(OciModule {
                reference: "ghcr.io/acme/p:1".into(),
                ..OciModule::default()
            }),
            digest: Some(D.into()),
            ..spec()
        };
        let req = ModuleRequest::from_spec(&https, "ns").unwrap();
        assert!(matches!(
            req.location,
            ModuleLocation::Oci {
                plain_http: false,
                ..
            }
        ));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("127.8.9.10"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("example.com"));
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(registry_host("[::1]:5000"), "[::1]");
        assert_eq!(registry_host("ghcr.io"), "ghcr.io");
    }
}
