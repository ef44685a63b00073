//! The tgp provider plugin for Lambda Cloud (v1 REST API, research notes §2).
//!
//! Lambda rents whole VMs that run cloud-init, on demand only, and has no balance API. Its API
//! allows about one request per second and one launch per 12 seconds, which `info` declares so
//! that the host paces the calls. Structure as in `providers/mock`: configuration in `settings`,
//! wire types in `api`, HTTP in `client`, pure translation rules in `mapping`, tag escaping in
//! `tags`.

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

/// The Lambda Cloud provider.
pub struct LambdaProvider;

impl Provider for LambdaProvider {
    fn info() -> ProviderInfo {
        ProviderInfo::new(
            settings::provider_name(config::get("name")),
            env!("CARGO_PKG_VERSION"),
        )
        .supports(&Operation::ALL)
        .capabilities(Capabilities {
            spot: false,
            balance: false,
            bootstrap: vec![BootstrapDelivery::CloudInit],
            hosts: settings::hosts(config::get("base_url")),
            // Lambda's API takes `Authorization: Bearer <key>`; the host adds it.
            auth: Some(AuthScheme::bearer(config::value_or(
                config::get("api_key_secret"),
                "api_key",
            ))),
            self_terminate: false,
        })
        .rate_limit(RateLimit::new(1, 1))
        .rate_limit(RateLimit::new(1, 12).for_operation(Operation::Launch))
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        let canonical = catalog::resolve(&spec)?;
        if spec.count == 0 {
            return Err(ProviderError::invalid("count", "must be at least 1"));
        }
        let settings = Settings::load()?;
        if spec.spot {
            return Ok(QuoteResult::new(Vec::new())); // Lambda sells no spot capacity.
        }
        let known = catalog::canonical(&canonical).is_some();
        if known
            && spec.aliases.is_empty()
            && catalog::lambda_types(&canonical, spec.count).is_empty()
        {
            info!("Lambda does not offer {canonical}");
            return Ok(QuoteResult::new(Vec::new()));
        }
        let types = Client::new(settings).instance_types()?;
        let (offers, skipped, unrecognized) = mapping::select_offers(&spec, &canonical, &types);
        for note in skipped {
            warn!("skipping a Lambda instance type: {note}");
        }
        Ok(QuoteResult::new(offers).unrecognized(unrecognized))
    }

    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let settings = Settings::load()?;
        let body = client::launch_body(&settings, &req)?;
        let id = Client::new(settings).launch(&body)?;
        info!(
            "launched {id} ({}) as {} in {} at {}/h",
            body.name,
            body.instance_type_name,
            body.region_name,
            money::format_usd(req.offer.price_per_hour)
        );
        // No follow-up GET: the launch limit is tight and `verify` will report the state.
        Ok(Instance {
            instance_id: id,
            name: body.name,
            state: InstanceState::Booting,
            public_ip: None,
            region: Some(body.region_name),
            gpu_type: catalog::canonical(&req.offer.gpu_type).map(str::to_string),
            price_per_hour: Some(req.offer.price_per_hour),
            tags: req.tags,
            vendor_state: None,
        })
    }

    fn verify(instance_id: String) -> Result<Instance, ProviderError> {
        match Client::new(Settings::load()?).instance(&instance_id)? {
            Lookup::Found(instance) => Ok(mapping::to_instance(instance)),
            Lookup::Missing => Err(ProviderError::not_found(instance_id)),
        }
    }

    fn terminate(instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        match Client::new(Settings::load()?).terminate(&instance_id)? {
            Lookup::Found(done) => {
                let status = done
                    .terminated_instances
                    .iter()
                    .find(|i| i.id == instance_id)
                    .map(|i| i.status.as_str());
                Ok(mapping::terminate_outcome(status))
            }
            Lookup::Missing => Ok(TerminateOutcome::AlreadyGone),
        }
    }

    fn balance() -> Result<Balance, ProviderError> {
        Ok(Balance::Unsupported) // Lambda bills by invoice; API 1.8.3 has no balance endpoint.
    }

    fn list_owned(owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        let instances = Client::new(Settings::load()?).instances()?;
        Ok(mapping::owned_instances(instances, &owner))
    }
}

tgp_provider_sdk::export_provider!(LambdaProvider);

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_provider_sdk::Offer;

    #[test]
    fn info_declares_lambda_capabilities_and_limits() {
        let info = LambdaProvider::info();
        assert_eq!(info.name, "lambda");
        assert_eq!(info.supported_operations, Operation::ALL.to_vec());
        assert!(!info.capabilities.spot && !info.capabilities.balance);
        assert_eq!(info.capabilities.bootstrap, [BootstrapDelivery::CloudInit]);
        // Natively the configuration is empty: the default API is the one host.
        assert_eq!(info.capabilities.hosts, ["https://cloud.lambda.ai"]);
        assert_eq!(
            info.rate_limits,
            [
                RateLimit::new(1, 1),
                RateLimit::new(1, 12).for_operation(Operation::Launch)
            ]
        );
    }

    #[test]
    fn quote_refuses_unknown_gpus_and_skips_spot() {
        assert!(
            matches!(LambdaProvider::quote(GpuSpec::new("GH200", 1)), Err(ProviderError::InvalidRequest(f)) if f.field == "gpu-type")
        );
        let mut spot = GpuSpec::new("H100-SXM", 1);
        spot.spot = true;
        assert_eq!(
            LambdaProvider::quote(spot),
            Ok(QuoteResult::new(Vec::new()))
        );
        assert_eq!(
            LambdaProvider::quote(GpuSpec::new("RTX4090", 1)),
            Ok(QuoteResult::new(Vec::new()))
        );
    }

    #[test]
    fn balance_is_unsupported_not_an_error() {
        assert_eq!(LambdaProvider::balance(), Ok(Balance::Unsupported));
    }

    #[test]
    fn launch_without_ssh_key_is_refused_before_any_request() {
        let req = LaunchRequest {
            offer: Offer {
                offer_id: "gpu_1x_h100_sxm5@us-east-1".into(),
                gpu_type: "H100-SXM".into(),
                count: 1,
                region: "us-east-1".into(),
                price_per_hour: 1,
                spot: false,
                availability: tgp_provider_sdk::Availability::Available,
            },
            instance_name: "tgp-a-1".into(),
            tags: vec![],
            user_data: None,
            image: None,
            terminate_after_seconds: None,
        };
        assert!(
            matches!(LambdaProvider::launch(req), Err(ProviderError::InvalidRequest(f)) if f.field == "ssh_key_name")
        );
    }
}
