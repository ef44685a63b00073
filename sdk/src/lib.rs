//! The SDK for writing tgp cloud-provider plugins in Rust.
//!
//! A provider plugin is a WebAssembly component (`wasm32-wasip2`) that the tgp engine loads in
//! a sandbox. It talks to its cloud only through the host (`http`), reads its settings from the
//! host (`config`), logs through the host (`log`) and never sees a credential or a bootstrap
//! document: it declares how its vendor authenticates ([`ProviderInfo::auth`]) and the host
//! applies the credentials, and it places the sealed user-data by reference ([`user_data`]).
//!
//! This crate hides the component-model plumbing (wit-bindgen) entirely. A provider:
//!
//! 1. implements [`Provider`] for a unit struct (only [`Provider::info`] is mandatory; every
//!    other operation answers [`ProviderError::Unsupported`] until implemented);
//! 2. declares in `info()` the hosts it will call, from its configuration
//!    ([`ProviderInfo::hosts`], [`config::base_url_hosts`]): the engine refuses to load a
//!    plugin declaring a host the operator did not grant;
//! 3. declares how its vendor authenticates ([`ProviderInfo::auth`], [`AuthScheme`]);
//! 4. calls [`export_provider!`] once with that type.
//!
//! See `README.md` for a complete walk-through, and `providers/mock` for a full provider.
//!
//! On targets other than `wasm32`, the host functions have inert stand-ins (logs go to stderr,
//! configuration is empty, HTTP is denied, the clock is the system clock) so that a provider's
//! pure logic can be unit-tested natively with `cargo test`.

#![deny(missing_docs)]

#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __bindings;

pub mod catalog;
pub mod config;
pub mod http;
pub mod log;
pub mod money;
pub mod user_data;

mod clock;
mod export;
mod host;
mod provider;
mod types;

pub use clock::now_ms;
pub use provider::Provider;
pub use types::{
    AuthScheme, Availability, Balance, BalanceAmount, BasicAuth, BootstrapDelivery, Capabilities,
    ClientAuth, GpuSpec, Instance, InstanceState, InvalidField, LaunchRequest, MicroUsd,
    NamedCredential, Oauth2ClientCredentials, Offer, Operation, ProviderError, ProviderInfo,
    QuoteResult, RateLimit, SealedDocument, Tag, TerminateOutcome,
};

/// Implementation details used by [`export_provider!`]'s expansion. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__bindings::__export_provider_plugin as export_glue;
    pub use crate::__bindings::exports::tgp::provider::provider::Guest;
    pub use crate::export::*;
}
