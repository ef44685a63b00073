//! The tgp provider plugin for the mock cloud (`docs/mock-cloud-api.md`).
//!
//! It lets tgp's lifecycle, failover and garbage collection be tested and demonstrated against
//! `tests/cloudsim` without an account or a bill, and it is the reference example of a complete
//! provider built on `tgp-provider-sdk`: configuration in `settings`, wire types in `api`, HTTP
//! in `client`, and the pure translation rules in `mapping`.
//!
//! Configuration: `base_url` (required), `api_key_secret` (default `api_key`), `name` (default
//! `mock`). `verify` of an id the cloud does not know answers `not-found`.

mod api;
mod client;
mod mapping;
mod settings;

use tgp_provider_sdk::{
    AuthScheme, Balance, BootstrapDelivery, Capabilities, GpuSpec, Instance, LaunchRequest,
    Operation, Provider, ProviderError, ProviderInfo, QuoteResult, Tag, TerminateOutcome, config,
    info, money, warn,
};

use client::{Client, Lookup};
use settings::Settings;

/// The mock cloud provider.
pub struct MockProvider;

/// A client for the configured cloud. The settings are validated on the first call of an
/// instance and kept: a plugin's configuration is fixed while it is loaded (the SDK reads it
/// from the host once per instance). A configuration error is not kept, so every call reports it.
fn client() -> Result<Client<'static>, ProviderError> {
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    if let Some(settings) = SETTINGS.get() {
        return Ok(Client::new(settings));
    }
    let settings = Settings::load()?;
    Ok(Client::new(SETTINGS.get_or_init(|| settings)))
}

impl Provider for MockProvider {
    fn info() -> ProviderInfo {
        ProviderInfo::new(
            settings::provider_name(config::get("name")),
            // A build may report another version (the hot-swap tests build a second one).
            option_env!("TGP_MOCK_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
        )
        .supports(&Operation::ALL)
        .capabilities(Capabilities {
            spot: true,
            balance: true,
            bootstrap: vec![
                BootstrapDelivery::TalosUserData,
                BootstrapDelivery::CloudInit,
            ],
            hosts: settings::hosts(config::get("base_url")),
            // The mock cloud wants `Authorization: Bearer <key>`; the host adds it.
            auth: Some(AuthScheme::bearer(config::value_or(
                config::get("api_key_secret"),
                "api_key",
            ))),
            self_terminate: false,
        })
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        let listed = client()?.offers(&spec)?;
        let (offers, skipped) = mapping::select_offers(&spec, listed);
        for note in skipped {
            warn!("skipping an offer with an unreadable price: {note}");
        }
        Ok(offers.into())
    }

    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let created = mapping::to_instance(client()?.create_instance(&req)?);
        info!(
            "launched {} ({}) from offer {} at {}/h",
            created.instance_id,
            created.name,
            req.offer.offer_id,
            money::format_usd(req.offer.price_per_hour)
        );
        Ok(created)
    }

    fn verify(instance_id: String) -> Result<Instance, ProviderError> {
        match client()?.instance(&instance_id)? {
            Lookup::Found(instance) => Ok(mapping::to_instance(instance)),
            Lookup::Missing => Err(ProviderError::not_found(instance_id)),
        }
    }

    fn terminate(instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        match client()?.delete_instance(&instance_id)? {
            Lookup::Found(instance) => Ok(mapping::terminate_outcome(&instance.status)),
            Lookup::Missing => Ok(TerminateOutcome::AlreadyGone),
        }
    }

    fn balance() -> Result<Balance, ProviderError> {
        mapping::balance(&client()?.account()?)
    }

    fn list_owned(owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        let listed = client()?.instances_tagged(&owner)?;
        Ok(mapping::owned_instances(listed, &owner))
    }
}

tgp_provider_sdk::export_provider!(MockProvider);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_declares_everything() {
        let info = MockProvider::info();
        assert_eq!(info.name, "mock");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.supported_operations, Operation::ALL.to_vec());
        assert!(info.capabilities.spot && info.capabilities.balance);
        assert_eq!(
            info.capabilities.bootstrap,
            [
                BootstrapDelivery::TalosUserData,
                BootstrapDelivery::CloudInit
            ]
        );
        assert!(info.rate_limits.is_empty());
        assert_eq!(info.capabilities.auth, Some(AuthScheme::bearer("api_key")));
        // Natively the configuration is empty: no base_url, so no host to call.
        assert!(info.capabilities.hosts.is_empty());
    }

    #[test]
    fn operations_refuse_clearly_without_base_url() {
        let missing = ProviderError::invalid("base_url", "required configuration key is not set");
        assert_eq!(
            MockProvider::quote(GpuSpec::new("H100-SXM", 1)),
            Err(missing.clone())
        );
        assert_eq!(MockProvider::verify("i-1".into()), Err(missing.clone()));
        assert_eq!(MockProvider::balance(), Err(missing));
    }
}
