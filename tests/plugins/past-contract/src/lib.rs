//! A provider plugin built against the previous contract (`tgp:provider@0.2.0`, a verbatim copy
//! of that version of `wit/provider.wit` in `wit/`), so the host tests can prove such a component
//! is refused at load with a message naming both versions, as the versioning rules promise for
//! every contract change.

wit_bindgen::generate!({
    path: "wit",
    world: "provider-plugin",
});

use exports::tgp::provider::provider::Guest;
use tgp::provider::types::{
    Balance, Capabilities, GpuSpec, Instance, LaunchRequest, Offer, ProviderError, ProviderInfo,
    Tag, TerminateOutcome,
};

struct Past;

impl Guest for Past {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "past".into(),
            version: "0.2.0".into(),
            supported_operations: vec![],
            capabilities: Capabilities {
                spot: false,
                balance: false,
                bootstrap: vec![],
                hosts: vec![],
            },
            rate_limits: vec![],
        }
    }
    fn quote(_spec: GpuSpec) -> Result<Vec<Offer>, ProviderError> {
        Err(ProviderError::Unsupported("quote".into()))
    }
    fn launch(_req: LaunchRequest) -> Result<Instance, ProviderError> {
        Err(ProviderError::Unsupported("launch".into()))
    }
    fn verify(_instance_id: String) -> Result<Instance, ProviderError> {
        Err(ProviderError::Unsupported("verify".into()))
    }
    fn terminate(_instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        Err(ProviderError::Unsupported("terminate".into()))
    }
    fn balance() -> Result<Balance, ProviderError> {
        Ok(Balance::Unsupported)
    }
    fn list_owned(_owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        Err(ProviderError::Unsupported("list-owned".into()))
    }
}

export!(Past);
