//! The tgp provider plugin for RunPod (GraphQL API, research notes §1).
//!
//! RunPod rents GPU pods: unprivileged containers, so the only bootstrap it can take is
//! container-only (it cannot boot Talos). The plugin prices with the stock-aware
//! `gpuTypes { lowestPrice }` query, deploys on-demand (`podFindAndDeployOnDemand`) or spot
//! (`podRentInterruptable`), and, since pods have no tags, carries the ownership tags in the pod's
//! environment (see `tags`). Structure as in `providers/mock`: configuration in `settings`, wire
//! types in `api`, HTTP in `client`, pure translation rules in `mapping`.

mod api;
mod client;
mod mapping;
mod settings;
mod tags;

use tgp_provider_sdk::{
    AuthScheme, Balance, BootstrapDelivery, Capabilities, GpuSpec, Instance, InstanceState,
    LaunchRequest, Operation, Provider, ProviderError, ProviderInfo, QuoteResult, Tag,
    TerminateOutcome, catalog, config, info, money, warn,
};

use client::{Client, Terminated};
use settings::Settings;

/// The RunPod provider.
pub struct RunpodProvider;

fn client() -> Result<Client, ProviderError> {
    Settings::load().map(Client::new)
}

impl Provider for RunpodProvider {
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
            // RunPod's GraphQL API takes `Authorization: Bearer <key>`; the host adds it.
            auth: Some(AuthScheme::bearer(config::value_or(
                config::get("api_key_secret"),
                "api_key",
            ))),
            self_terminate: false,
        })
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        let canonical = catalog::require(&spec.gpu_type)?;
        if spec.count == 0 {
            return Err(ProviderError::invalid("count", "must be at least 1"));
        }
        let client = client()?;
        let Some(gpu_id) = catalog::runpod_id(canonical) else {
            info!("RunPod does not offer {canonical}");
            return Ok(QuoteResult::new(Vec::new()));
        };
        let answers = client.gpu_types(&spec, gpu_id)?;
        let (offers, skipped) = mapping::select_offers(
            &spec,
            canonical,
            gpu_id,
            client.settings().cloud()?,
            answers,
        );
        for note in skipped {
            warn!("skipping a RunPod price that could not be read: {note}");
        }
        Ok(offers.into())
    }

    fn launch(req: LaunchRequest) -> Result<Instance, ProviderError> {
        let canonical = catalog::require(&req.offer.gpu_type)?;
        let gpu_id = catalog::runpod_id(canonical).ok_or_else(|| {
            ProviderError::invalid(
                "offer.gpu-type",
                format!("RunPod does not offer {canonical}"),
            )
        })?;
        let client = client()?;
        let pod = client.deploy(&req, canonical, gpu_id)?;
        let mut created = mapping::to_instance(pod);
        if created.name.is_empty() {
            created.name = req.instance_name.clone();
        }
        if created.tags.is_empty() {
            created.tags = req.tags.clone();
        }
        info!(
            "deployed pod {} ({}) as {}x {} at {}/h{}",
            created.instance_id,
            created.name,
            req.offer.count,
            canonical,
            money::format_usd(req.offer.price_per_hour),
            if req.offer.spot { " (spot)" } else { "" }
        );
        Ok(created)
    }

    fn verify(instance_id: String) -> Result<Instance, ProviderError> {
        match client()?.pod(&instance_id)? {
            Some(pod) => Ok(mapping::to_instance(pod)),
            None => Err(ProviderError::not_found(instance_id)),
        }
    }

    fn terminate(instance_id: String) -> Result<TerminateOutcome, ProviderError> {
        Ok(match client()?.terminate(&instance_id)? {
            Terminated::Accepted => TerminateOutcome::Terminating,
            Terminated::Unknown => TerminateOutcome::AlreadyGone,
        })
    }

    fn balance() -> Result<Balance, ProviderError> {
        mapping::balance(&client()?.balance()?)
    }

    fn list_owned(owner: Tag) -> Result<Vec<Instance>, ProviderError> {
        let owned = mapping::owned_instances(client()?.pods()?, &owner);
        let live = owned
            .iter()
            .filter(|i| i.state != InstanceState::Terminated)
            .count();
        info!(
            "{} pods owned by {}={} ({live} live)",
            owned.len(),
            owner.key,
            owner.value
        );
        Ok(owned)
    }
}

tgp_provider_sdk::export_provider!(RunpodProvider);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_declares_runpod_capabilities() {
        let info = RunpodProvider::info();
        assert_eq!(info.name, "runpod");
        assert_eq!(info.supported_operations, Operation::ALL.to_vec());
        assert!(info.capabilities.spot && info.capabilities.balance);
        assert_eq!(
            info.capabilities.bootstrap,
            [BootstrapDelivery::ContainerOnly]
        );
        // Natively the configuration is empty: the default API is the one host.
        assert_eq!(info.capabilities.hosts, ["https://api.runpod.io"]);
        assert_eq!(info.capabilities.auth, Some(AuthScheme::bearer("api_key")));
    }

    #[test]
    fn unknown_gpus_are_refused_before_any_call() {
        let err = RunpodProvider::quote(GpuSpec::new("H100", 1)).unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidRequest(f) if f.field == "gpu-type" && f.reason.contains("H100-SXM")),
            "{err:?}"
        );
        assert!(
            matches!(RunpodProvider::quote(GpuSpec::new("H100-SXM", 0)), Err(ProviderError::InvalidRequest(f)) if f.field == "count")
        );
    }

    #[test]
    fn gpus_runpod_lacks_have_no_offers() {
        assert_eq!(
            RunpodProvider::quote(GpuSpec::new("A100-40GB", 1)),
            Ok(QuoteResult::new(Vec::new()))
        );
    }

    #[test]
    fn natively_calls_fail_cleanly() {
        assert!(matches!(
            RunpodProvider::verify("p".into()),
            Err(ProviderError::Internal(_))
        ));
    }
}
