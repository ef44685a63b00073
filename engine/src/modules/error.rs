//! Why a module could not be obtained. Each error says which source and, where it helps, what
//! to do; [`FetchError::reason`] is the CamelCase word for the GPUProvider's `Loaded` condition.

use std::time::Duration;

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
