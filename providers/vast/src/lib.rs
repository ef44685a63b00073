//! The tgp provider plugin for Vast.ai (v0 REST API, research notes §3).
//!
//! Vast rents machines from a marketplace of offers ("asks"), on demand or as interruptible bids.
//! Default Vast instances are unprivileged containers, so the only bootstrap is container-only.
//! The instance label carries our name and ownership tags (see `tags`). A bid under the minimum
//! leaves Vast with a stopped instance behind an error; the plugin destroys it at once (see
//! `client::Client::create`). Structure as in `providers/mock`.

mod api;
mod client;
mod mapping;
mod settings;
mod tags;

use tgp_provider_sdk::{
    AuthScheme, Balance, BootstrapDelivery, Capabilities, GpuSpec, Instance, InstanceState,
    LaunchRequest, Operation, Provider, ProviderError, ProviderInfo, QuoteResult, RateLimit, Tag,
    TerminateOutcome, catalog, config, info, money, warn,
};

use client::{Client, Lookup};
use settings::Settings;

/// The Vast.ai provider.
pub struct VastProvider;

fn client() -> Result<Client, ProviderError> {
    Settings::load().map(Client::new)
}

/// Vast instance ids are numbers: anything else cannot be one of its instances.
fn numeric_id(instance_id: &str) -> Option<u64> {
    instance_id.trim().parse().ok()
}

impl Provider for VastProvider {
    fn info() -> ProviderInfo {
        ProviderInfo::new(
            settings::provider_name(config::get("name")),
            env!("CARGO_PKG_VERSION"),
        )
        .supports(&Operation::ALL)
        .capabilities(Capabilities {
            spot: true,
            balance: true,
            bootstrap: vec![BootstrapDelivery::ContainerOnly],
            hosts: settings::hosts(config::get("base_url")),
            // Vast takes `Authorization: Bearer <key>` (or `?api_key=`); the host adds it.
            auth: Some(AuthScheme::bearer(config::value_or(
                config::get("api_key_secret"),
                "api_key",
            ))),
            self_terminate: false,
        })
        // Vast enforces a minimum interval per endpoint and identity (its OpenAPI
        // `x-rate-limit` thresholds, read as seconds: create 4.5, show 2.0, destroy 3.0). One
        // call of each operation makes one request to its endpoint, except `launch`, which may
        // also destroy a low-bid leftover (see `client::Client::create`).
        .rate_limit(RateLimit::new(1, 5).for_operation(Operation::Launch))
        .rate_limit(RateLimit::new(1, 2).for_operation(Operation::Verify))
        .rate_limit(RateLimit::new(1, 3).for_operation(Operation::Terminate))
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        let canonical = catalog::require(&spec.gpu_type)?;
        if spec.count == 0 {
            return Err(ProviderError::invalid("count", "must be at least 1"));
        }
        let client = client()?;
        if catalog::vast_names(canonical).is_empty() {
            info!("Vast does not list {canonical}");
            return Ok(QuoteResult::new(Vec::new()));
        }
        let body = mapping::search_body(&spec, canonical, client.settings());
        let found = client.search(&body)?;
        let (offers, skipped) = mapping::select_offers(&spec, canonical, client.settings(), found);
        for note in skipped {
            warn!("skipping a Vast offer: {note}");
        }
        Ok(offers.into())
    }

    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let (ask, bid) = mapping::parse_offer_id(&req.offer.offer_id)?;
        let client = client()?;
        let body = client::create_body(client.settings(), &req, bid)?;
        let id = client.create(ask, &body)?;
        info!(
            "created instance {id} ({}) from ask {ask} at {}/h{}",
            req.instance_name,
            money::format_usd(req.offer.price_per_hour),
            if req.offer.spot { " (bid)" } else { "" }
        );
        Ok(Instance {
            instance_id: id.to_string(),
            name: req.instance_name.trim().to_string(),
            state: InstanceState::Pending,
            public_ip: None,
            region: Some(req.offer.region.clone()),
            gpu_type: catalog::canonical(&req.offer.gpu_type).map(str::to_string),
            price_per_hour: Some(req.offer.price_per_hour),
            tags: req.tags,
            vendor_state: None,
        })
    }

    fn verify(instance_id: String) -> Result<Instance, ProviderError> {
        let client = client()?;
        let Some(id) = numeric_id(&instance_id) else {
            return Err(ProviderError::not_found(instance_id));
        };
        match client.instance(id)? {
            Lookup::Found(instance) => Ok(mapping::to_instance(instance)),
            Lookup::Missing => Err(ProviderError::not_found(instance_id)),
        }
    }

    fn terminate(instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        let client = client()?;
        let Some(id) = numeric_id(&instance_id) else {
            return Ok(TerminateOutcome::AlreadyGone);
        };
        Ok(match client.destroy(id)? {
            // Vast destroys the contract at once; it is gone from the listing right after.
            Lookup::Found(()) => TerminateOutcome::Terminated,
            Lookup::Missing => TerminateOutcome::AlreadyGone,
        })
    }

    fn balance() -> Result<Balance, ProviderError> {
        mapping::balance(&client()?.user()?)
    }

    fn list_owned(owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        Ok(mapping::owned_instances(client()?.instances()?, &owner))
    }
}

tgp_provider_sdk::export_provider!(VastProvider);

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_provider_sdk::Offer;

    #[test]
    fn info_declares_vast_capabilities() {
        let info = VastProvider::info();
        assert_eq!(info.name, "vast");
        assert_eq!(info.supported_operations, Operation::ALL.to_vec());
        assert!(info.capabilities.spot && info.capabilities.balance);
        assert_eq!(
            info.capabilities.bootstrap,
            [BootstrapDelivery::ContainerOnly]
        );
        // Natively the configuration is empty: the default API is the one host.
        assert_eq!(info.capabilities.hosts, ["https://console.vast.ai"]);
        assert_eq!(info.capabilities.auth, Some(AuthScheme::bearer("api_key")));
        assert_eq!(
            info.rate_limits,
            [
                RateLimit::new(1, 5).for_operation(Operation::Launch),
                RateLimit::new(1, 2).for_operation(Operation::Verify),
                RateLimit::new(1, 3).for_operation(Operation::Terminate),
            ],
            "Vast's per-endpoint intervals are declared so the host paces calls"
        );
    }

    #[test]
    fn refuses_unknown_gpus_and_foreign_ids_without_calls() {
        assert!(
            matches!(VastProvider::quote(GpuSpec::new("RTX 4090", 1)), Err(ProviderError::InvalidRequest(f)) if f.field == "gpu-type")
        );
        assert!(matches!(
            VastProvider::verify("i-abc".into()),
            Err(ProviderError::NotFound(_))
        ));
        assert_eq!(
            VastProvider::terminate("i-abc".into()),
            Ok(TerminateOutcome::AlreadyGone)
        );
        assert!(matches!(VastProvider::launch(LaunchRequest {
            offer: Offer {
                offer_id: "not-an-ask".into(),
                gpu_type: "RTX4090".into(),
                count: 1,
                region: "CA".into(),
                price_per_hour: 1,
                spot: false,
                availability: tgp_provider_sdk::Availability::Available,
            },
            instance_name: "n".into(),
            tags: vec![],
            user_data: None,
            image: None,
            terminate_after_seconds: None,
        }), Err(ProviderError::InvalidRequest(f)) if f.field == "offer.offer-id"));
    }
}
