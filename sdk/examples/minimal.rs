//! A minimal tgp provider: quotes on-demand GPUs from a JSON price list.
use serde::Deserialize;
use tgp_provider_sdk::{
    AuthScheme, Availability, GpuSpec, Offer, Operation, Provider, ProviderError, ProviderInfo,
    QuoteResult, config, http, money,
};

/// One entry of the (imaginary) cloud's `GET /prices` answer.
#[derive(Deserialize)]
struct Price {
    id: String,
    gpu: String,
    gpus: u32,
    region: String,
    usd_per_hour: String,
}

struct Hello;

impl Provider for Hello {
    fn info() -> ProviderInfo {
        ProviderInfo::new("hello", env!("CARGO_PKG_VERSION"))
            .supports(&[Operation::Quote])
            // The hosts this plugin calls: the origin of its `base_url` (none while unset). The
            // engine refuses to load a plugin that declares a host the operator did not grant.
            .hosts(config::base_url_hosts(config::get("base_url"), None))
            // The cloud wants `Authorization: Bearer <key>`: the host adds it to every request
            // with the value of the operator's secret `api_key`; the plugin never sees the key.
            .auth(AuthScheme::bearer("api_key"))
    }

    fn quote(spec: GpuSpec) -> Result<QuoteResult, ProviderError> {
        if spec.spot {
            return Ok(QuoteResult::new(Vec::new())); // this cloud sells no spot capacity
        }
        let base_url = config::require("base_url")?;
        let prices: Vec<Price> = http::get(format!("{base_url}/prices"))
            .query("gpu", &spec.gpu_type)
            .send()?
            .error_for_status()?
            .json()?;
        let mut offers = Vec::new();
        for p in prices {
            let price_per_hour = money::parse_usd(&p.usd_per_hour)?;
            if p.gpu == spec.gpu_type
                && p.gpus == spec.count
                && spec.accepts_region(&p.region)
                && spec.accepts_price(price_per_hour)
            {
                offers.push(Offer {
                    offer_id: p.id,
                    gpu_type: p.gpu,
                    count: p.gpus,
                    region: p.region,
                    price_per_hour,
                    spot: false,
                    availability: Availability::Available,
                });
            }
        }
        offers.sort_by_key(|o| o.price_per_hour);
        tgp_provider_sdk::debug!(
            "{} offers for {}x {}",
            offers.len(),
            spec.count,
            spec.gpu_type
        );
        Ok(offers.into())
    }
}

tgp_provider_sdk::export_provider!(Hello);
