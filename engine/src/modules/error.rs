//! Why a module could not be obtained. Each error says which source and, where it helps, what
//! to do; [`FetchError::reason`] is the CamelCase word for the GPUProvider's `Loaded` condition.

use std::time::Duration;

/// Why a server's TLS certificate was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// Signed by no certificate authority the operator trusts (an internal CA, a self-signed
    /// certificate).
    UnknownIssuer,
    /// Not issued for the host in the URL or OCI reference.
    WrongName,
    /// Past its validity period.
    Expired,
    /// Before its validity period.
    NotYetValid,
    /// Refused for another reason (revoked, a bad signature, not a server certificate).
    Other,
}

/// Where the chart takes the bundle from, for messages.
const CHART_VALUES: &str = "Helm chart: moduleCA.configMap or moduleCA.secret";

fn tls_untrusted_message(
    source_desc: &str,
    host_field: &str,
    problem: TlsProblem,
    detail: &str,
    extra_roots: Option<&str>,
) -> String {
    let what = format!("the TLS certificate of {source_desc}");
    match (problem, extra_roots) {
        (TlsProblem::UnknownIssuer, None) => format!(
            "{what} is not signed by a certificate authority tgp trusts ({detail}); if an \
             internal CA signed it, give the operator that CA: tgp run --module-ca-file \
             <PEM file> ({CHART_VALUES})"
        ),
        (TlsProblem::UnknownIssuer, Some(bundle)) => format!(
            "{what} is signed neither by a public root nor by {bundle} ({detail}); add the CA \
             that signed the server's certificate to that file ({CHART_VALUES})"
        ),
        (TlsProblem::WrongName, _) => format!(
            "{what} is not valid for the host in {host_field} ({detail}); use a host name \
             the certificate is issued for, or have the server present a certificate for this \
             host"
        ),
        (TlsProblem::Expired, _) => {
            format!("{what} has expired ({detail}); renew the server's certificate")
        }
        (TlsProblem::NotYetValid, _) => format!(
            "{what} is not valid yet ({detail}); check the certificate's dates and the clocks \
             of the server and of the operator's node"
        ),
        (TlsProblem::Other, _) => format!(
            "{what} was refused ({detail}); check the server's certificate chain, and that its \
             CA is trusted: the public roots or tgp run --module-ca-file ({CHART_VALUES})"
        ),
    }
}

/// Getting a module's bytes failed; nothing was compiled or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("spec.module: set exactly one of path, configMap, url or oci")]
    NoSource,
    #[error("{field}: {message}")]
    InvalidSource {
        field: &'static str,
        message: String,
    },
    #[error(
        "spec.module.digest is required for a {field} source: pin the module with \
         sha256:<hex> (the output of `sha256sum module.wasm`)"
    )]
    DigestRequired { field: &'static str },
    #[error(
        "the module from {source_desc} ({size} bytes) is {actual}, but spec.module.digest pins \
         {expected}; refusing it (publish the pinned module, or pin the new one's digest)"
    )]
    DigestMismatch {
        expected: String,
        actual: String,
        source_desc: String,
        size: u64,
    },
    #[error(
        "the module from {source_desc} is larger than the limit of {limit} bytes{}; raise \
         spec.module.maxSizeMib if it is legitimate",
        size.map(|s| format!(" ({s} bytes announced)")).unwrap_or_default()
    )]
    TooLarge {
        limit: u64,
        size: Option<u64>,
        source_desc: String,
    },
    #[error(
        "fetching the module from {source_desc} did not finish within {after:?}; check the \
         server, or raise spec.module.timeoutSeconds"
    )]
    Timeout {
        after: Duration,
        source_desc: String,
    },
    #[error(
        "the transfer of the module from {source_desc} ended after {received} bytes{}: the \
         module is truncated; refusing it",
        expected.map(|e| format!(" of the {e} announced")).unwrap_or_default()
    )]
    Truncated {
        received: u64,
        expected: Option<u64>,
        source_desc: String,
    },
    #[error("fetching the module from {source_desc} failed: HTTP {status}")]
    HttpStatus { status: u16, source_desc: String },
    #[error("{source_desc} refused the credentials ({detail}); check spec.module.oci.pullSecret")]
    Unauthorized { source_desc: String, detail: String },
    #[error("fetching the module from {source_desc} failed: {detail}")]
    Transport { source_desc: String, detail: String },
    #[error(
        "{}",
        tls_untrusted_message(source_desc, host_field, *problem, detail, extra_roots.as_deref())
    )]
    TlsUntrusted {
        source_desc: String,
        /// The spec field naming the server's host (`spec.module.url`,
        /// `spec.module.oci.reference`).
        host_field: &'static str,
        problem: TlsProblem,
        /// The TLS library's words.
        detail: String,
        /// The extra CA bundle the fetch trusted, described ("the 2 CA certificates of
        /// --module-ca-file PATH"); `None` when there is none.
        extra_roots: Option<String>,
    },
    #[error("spec.module.configMap.name: ConfigMap {namespace}/{name} does not exist")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error(
        "spec.module.configMap.key: ConfigMap {namespace}/{name} has no binaryData key {key}{note}"
    )]
    ConfigMapKeyMissing {
        namespace: String,
        name: String,
        key: String,
        note: String,
    },
    #[error("spec.module.oci.pullSecret: Secret {namespace}/{name} does not exist")]
    PullSecretNotFound { namespace: String, name: String },
    #[error("spec.module.oci.pullSecret: Secret {namespace}/{name} is not usable: {detail}")]
    PullSecretInvalid {
        namespace: String,
        name: String,
        detail: String,
    },
    #[error("the OCI artifact {reference} is not a tgp plugin module: {detail}")]
    InvalidArtifact { reference: String, detail: String },
    #[error("spec.module.path: cannot read {path}: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("cannot read {what} from the Kubernetes API: {detail}")]
    Api { what: String, detail: String },
}

impl FetchError {
    /// A one-word reason for the GPUProvider's `Loaded` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::NoSource => "NoModuleSource",
            FetchError::InvalidSource { .. } => "InvalidModuleSource",
            FetchError::DigestRequired { .. } => "DigestRequired",
            FetchError::DigestMismatch { .. } => "DigestMismatch",
            FetchError::TooLarge { .. } => "ModuleTooLarge",
            FetchError::Timeout { .. } => "FetchTimeout",
            FetchError::Truncated { .. } => "TruncatedModule",
            FetchError::HttpStatus { .. } | FetchError::Transport { .. } => "FetchFailed",
            FetchError::Unauthorized { .. } => "FetchUnauthorized",
            FetchError::TlsUntrusted { .. } => "TlsUntrusted",
            FetchError::ConfigMapNotFound { .. } => "ConfigMapNotFound",
            FetchError::ConfigMapKeyMissing { .. } => "ConfigMapKeyMissing",
            FetchError::PullSecretNotFound { .. } => "PullSecretNotFound",
            FetchError::PullSecretInvalid { .. } => "PullSecretInvalid",
            FetchError::InvalidArtifact { .. } => "InvalidArtifact",
            FetchError::Unreadable { .. } => "ModuleUnreadable",
            FetchError::Api { .. } => "ApiError",
        }
    }
}
