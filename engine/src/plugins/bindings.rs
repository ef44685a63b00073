//! Host-side bindings generated from `wit/provider.wit`.
//!
//! Kept in one module so the generated names are defined once and re-exported from
//! [`crate::plugins`] with the derives the rest of the engine needs (serde for the API and the
//! status fields, `PartialEq` for tests).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "provider-plugin",
    imports: {
        "tgp:provider/http.send": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use self::tgp::provider::http as http_api;
pub use self::tgp::provider::log as log_api;
pub use self::tgp::provider::types::{
    AuthScheme, Availability, Balance, BalanceAmount, BasicAuth, BootstrapDelivery, Capabilities,
    ClientAuth, GpuSpec, Instance, InstanceState, InvalidField, LaunchRequest, NamedCredential,
    Oauth2ClientCredentials, Offer, Operation, ProviderError, ProviderInfo, QuoteResult, RateLimit,
    SealedDocument, Tag, TerminateOutcome,
};
