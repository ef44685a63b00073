//! The sandboxed WebAssembly plugin host.
//!
//! Cloud providers are WebAssembly components implementing `wit/provider.wit`. This module is
//! the only place that runs them: it compiles components once (with an on-disk cache), checks the
//! contract version they were built for, and runs calls on pooled instances under a per-call
//! deadline, a memory cap and a concurrency bound. Everything a plugin can do to the outside world
//! goes through the imports implemented here (HTTP to allow-listed hosts, with credentials the
//! host applies itself (`auth`) and bootstrap documents it fills in (`sealed`), rate-limited
//! logging, config, clock); WASI is linked with an empty context.
//! At load, the hosts a plugin declares it will call must all be granted (`declared`).
//!
//! Entry points: [`PluginHost::new`], [`PluginHost::load`], then the call methods on [`Plugin`].

mod auth;
mod bindings;
mod cache;
mod config;
mod declared;
mod engine;
mod error;
mod grants;
mod host;
mod http;
mod limiter;
mod logging;
mod names;
mod plugin;
mod sealed;
mod secrets;
mod state;
mod traps;
mod version;

pub use auth::scheme_name as auth_scheme_name;
pub use bindings::{
    AuthScheme, Availability, Balance, BalanceAmount, BasicAuth, BootstrapDelivery, Capabilities,
    ClientAuth, GpuSpec, Instance, InstanceState, InvalidField, LaunchRequest, NamedCredential,
    Oauth2ClientCredentials, Offer, Operation, ProviderError, ProviderInfo, QuoteResult, RateLimit,
    SealedDocument, Tag, TerminateOutcome,
};
pub use config::{HostConfig, PoolingMode};
pub use error::{CallError, HostError, LoadError};
pub use grants::{AuthConfig, Grants, Limits, SecretValue};
pub use host::PluginHost;
pub use plugin::{Plugin, PluginStats};
pub use sealed::UserData;
pub use version::CONTRACT_VERSION;
