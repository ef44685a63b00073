//! Typed errors of the plugin host: creating the host, loading a plugin, calling a plugin.
//!
//! Call errors are what the reconciler sees, so each says what happened and what to do about it,
//! and they serialize for status fields and events. None of them ever carries a secret value.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bindings::ProviderError;

/// Creating a [`crate::plugins::PluginHost`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot create the WebAssembly engine: {message}")]
    Engine { message: String },
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
    #[error("cannot build the HTTP client for plugins: {0}")]
    Http(#[source] reqwest::Error),
}

/// Loading a plugin failed; the plugin is not usable.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the plugin is not a valid WebAssembly component: {message}")]
    Compile { message: String },
    #[error(
        "plugin built for tgp:provider@{plugin}, this engine speaks tgp:provider@{host}; \
         rebuild the plugin against a compatible contract or upgrade the engine"
    )]
    Incompatible { plugin: String, host: String },
    #[error(
        "the component does not export `tgp:provider/provider` (exports: {exports}); is it a tgp provider plugin?"
    )]
    NotAProvider { exports: String },
    #[error("the plugin imports something this host does not provide: {message}")]
    Link { message: String },
    #[error("the plugin failed its validating info() call: {0}")]
    InfoFailed(#[source] CallError),
    /// The plugin declares (in `info().capabilities.hosts`) an origin its grants do not allow.
    /// `host` is the declared origin normalised (`scheme://host:port`), `granted` the allowed
    /// origins, normalised the same way.
    #[error(
        "the plugin declares it will call {host}, which allowedHosts does not grant (granted: {}); \
         add it to allowedHosts (`--allow-host` with `tgp plugin`) or use another module",
        list_or_none(.granted)
    )]
    UngrantedHost { host: String, granted: Vec<String> },
    /// A host the plugin declares is not a `scheme://host[:port]` origin.
    #[error(
        "the plugin declares `{declared}` as a host it will call, which is not an origin: {reason}; \
         a declared host is scheme://host[:port] with http or https (check the plugin's \
         configuration, e.g. base_url, or fix the plugin)"
    )]
    MalformedHost { declared: String, reason: String },
    /// The credentials scheme (the operator's or the plugin's declared one) cannot be used.
    #[error("the credentials scheme cannot be used: {reason}")]
    AuthConfig { reason: String },
    #[error("compile cache error: {0}")]
    Cache(String),
    #[error("internal error while loading the plugin: {0}")]
    Internal(String),
}

impl LoadError {
    /// A one-word reason for status conditions and metrics, e.g. `HostNotGranted`.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Compile { .. } => "InvalidModule",
            LoadError::Incompatible { .. } => "IncompatibleContract",
            LoadError::NotAProvider { .. } => "NotAProvider",
            LoadError::Link { .. } => "LinkFailed",
            LoadError::InfoFailed(_) => "InfoFailed",
            LoadError::UngrantedHost { .. } => "HostNotGranted",
            LoadError::MalformedHost { .. } => "MalformedDeclaredHost",
            LoadError::AuthConfig { .. } => "InvalidAuth",
            LoadError::Cache(_) => "CacheError",
            LoadError::Internal(_) => "InternalError",
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A call into a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum CallError {
    /// The plugin answered with a classified provider error.
    #[error("provider error: {0:?}")]
    Provider(ProviderError),
    #[error(
        "plugin call exceeded its time budget of {after:?} and was stopped; raise limits.call_timeout or fix the plugin"
    )]
    Timeout { after: Duration },
    #[error(
        "plugin exceeded its memory limit of {limit_bytes} bytes and was stopped; raise limits.memory_bytes or fix the plugin"
    )]
    OutOfMemory { limit_bytes: u64 },
    #[error("plugin panicked: {message}")]
    GuestPanic { message: String },
    #[error(
        "plugin tried to reach {what}, which is not granted; add it to allowed_hosts if it is legitimate"
    )]
    CapabilityDenied { what: String },
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    #[error("internal host error: {message}")]
    Internal { message: String },
}
