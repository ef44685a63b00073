//! The sandboxed WebAssembly plugin host.
//!
//! Cloud providers are WebAssembly components implementing `wit/provider.wit`. This module is
//! the only place that runs them: it compiles components once (with an on-disk cache), checks the
//! contract version they were built for, and runs calls on pooled instances under a per-call
//! deadline, a memory cap and a concurrency bound. Everything a plugin can do to the outside world
//! goes through the imports implemented here (HTTP to allow-listed hosts with host-side secret
//! substitution, rate-limited logging, config, clock); WASI is linked with an empty context.
//! At load, the hosts a plugin declares it will call must all be granted (`declared`).
//!
//! Entry points: [`PluginHost::new`], [`PluginHost::load`], then the call methods on [`Plugin`].

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
mod secrets;
mod state;
mod traps;
mod version;

pub use bindings::{
    Availability, Balance, BalanceAmount, BootstrapDelivery, Capabilities, GpuSpec, Instance,
    InstanceState, InvalidField, LaunchRequest, Offer, Operation, ProviderError, ProviderInfo,
    RateLimit, Tag, TerminateOutcome,
};
pub use config::{HostConfig, PoolingMode};
pub use error::{CallError, HostError, LoadError};
pub use grants::{Grants, Limits, SecretValue};
pub use host::PluginHost;
pub use plugin::{Plugin, PluginStats};
pub use version::CONTRACT_VERSION;
