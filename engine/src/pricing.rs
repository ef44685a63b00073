//! Asks every provider for prices at once and ranks what fits.
//!
//! Plugins filter their own offers, but the engine never trusts a plugin's filtering: every offer
//! is checked again against the request (GPU type, count, region, spot, price) and dropped if it
//! does not fit. Ranking is by price, then provider priority (higher first), then availability,
//! then names, so the order is deterministic. A provider that fails is reported beside the offers,
//! never silently dropped.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plugins::{Availability, CallError, GpuSpec, Offer, Operation};
use crate::provider_set::ActiveProvider;

/// One offer that fits, with the provider that made it.
#[derive(Debug, Clone, Serialize)]
pub struct RankedOffer {
    pub provider: String,
    pub priority: i32,
    pub offer: Offer,
}

/// Why a provider gave no usable offers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ProviderSkip {
    /// The call failed.
    Failed { error: CallError },
    /// The plugin does not implement `quote`.
    QuoteUnsupported,
    /// Spot capacity was asked for and the provider has none.
    NoSpot,
}

impl std::fmt::Display for ProviderSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderSkip::Failed { error } => write!(f, "{error}"),
            ProviderSkip::QuoteUnsupported => write!(f, "the plugin does not implement quote"),
            ProviderSkip::NoSpot => write!(
                f,
                "spot was requested and this provider has no spot capacity"
            ),
        }
    }
}

/// What one provider answered.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderAnswer {
    pub provider: String,
    /// Offers the provider returned, before the engine's own filter.
    pub offered: usize,
    /// Offers that fit the request.
    pub fitting: usize,
    pub skipped: Option<ProviderSkip>,
    #[serde(serialize_with = "ser_millis")]
    pub elapsed: Duration,
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Everything a quote round produced.
#[derive(Debug, Clone, Serialize)]
pub struct QuoteReport {
    /// Fitting offers, best first.
    pub offers: Vec<RankedOffer>,
    /// One entry per provider asked, in the order given.
    pub providers: Vec<ProviderAnswer>,
}

impl QuoteReport {
    /// The providers that could not answer, with the reason.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &ProviderSkip)> {
        self.providers
            .iter()
            .filter_map(|p| p.skipped.as_ref().map(|s| (p.provider.as_str(), s)))
    }
}

/// Why an offer was dropped by the engine's own check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    GpuType,
    Count,
    Region,
    Spot,
    Price,
    Unavailable,
}

/// Checks one offer against the request.
pub fn fits(offer: &Offer, spec: &GpuSpec) -> Result<(), Misfit> {
    if !offer.gpu_type.eq_ignore_ascii_case(&spec.gpu_type) {
        return Err(Misfit::GpuType);
    }
    if offer.count != spec.count {
        return Err(Misfit::Count);
    }
    if !spec.regions.is_empty()
        && !spec
            .regions
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&offer.region))
    {
        return Err(Misfit::Region);
    }
    if offer.spot != spec.spot {
        return Err(Misfit::Spot);
    }
    if let Some(max) = spec.max_price_per_hour
        && offer.price_per_hour > max
    {
        return Err(Misfit::Price);
    }
    if offer.availability == Availability::Unavailable {
        return Err(Misfit::Unavailable);
    }
    Ok(())
}

fn availability_rank(a: &Availability) -> u8 {
    match a {
        Availability::Available => 0,
        Availability::Limited => 1,
        Availability::Unavailable => 2,
    }
}

/// Sorts offers best first: cheapest, then higher priority, then better availability, then names.
pub fn rank(offers: &mut [RankedOffer]) {
    offers.sort_by(|a, b| {
        a.offer
            .price_per_hour
            .cmp(&b.offer.price_per_hour)
            .then(b.priority.cmp(&a.priority))
            .then(
                availability_rank(&a.offer.availability)
                    .cmp(&availability_rank(&b.offer.availability)),
            )
            .then(a.provider.cmp(&b.provider))
            .then(a.offer.offer_id.cmp(&b.offer.offer_id))
    });
}

async fn quote_one(
    provider: &ActiveProvider,
    spec: &GpuSpec,
) -> (ProviderAnswer, Vec<RankedOffer>) {
    let started = Instant::now();
    let info = provider.plugin.info();
    let answer = |offered, fitting, skipped| ProviderAnswer {
        provider: provider.name.clone(),
        offered,
        fitting,
        skipped,
        elapsed: started.elapsed(),
    };
    if !info.supported_operations.contains(&Operation::Quote) {
        return (
            answer(0, 0, Some(ProviderSkip::QuoteUnsupported)),
            Vec::new(),
        );
    }
    if spec.spot && !info.capabilities.spot {
        return (answer(0, 0, Some(ProviderSkip::NoSpot)), Vec::new());
    }
    match provider.plugin.quote(spec).await {
        Ok(offers) => {
            let offered = offers.len();
            let fitting: Vec<RankedOffer> = offers
                .into_iter()
                .filter(|o| fits(o, spec).is_ok())
                .map(|offer| RankedOffer {
                    provider: provider.name.clone(),
                    priority: provider.priority,
                    offer,
                })
                .collect();
            (answer(offered, fitting.len(), None), fitting)
        }
        Err(error) => (
            answer(0, 0, Some(ProviderSkip::Failed { error })),
            Vec::new(),
        ),
    }
}

/// Quotes every provider in parallel and ranks the fitting offers.
pub async fn quote_all(providers: &[ActiveProvider], spec: &GpuSpec) -> QuoteReport {
    let answers = futures::future::join_all(providers.iter().map(|p| quote_one(p, spec))).await;
    let mut offers = Vec::new();
    let mut report = Vec::new();
    for (answer, mut fitting) in answers {
        report.push(answer);
        offers.append(&mut fitting);
    }
    rank(&mut offers);
    QuoteReport {
        offers,
        providers: report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, price: u64, availability: Availability) -> Offer {
        Offer {
            offer_id: id.into(),
            gpu_type: "H100-SXM".into(),
            count: 1,
            region: "us-east-1".into(),
            price_per_hour: price,
            spot: false,
            availability,
        }
    }

    fn spec() -> GpuSpec {
        GpuSpec {
            gpu_type: "H100-SXM".into(),
            count: 1,
            regions: vec![],
            spot: false,
            max_price_per_hour: None,
            aliases: Vec::new(),
        }
    }

    #[test]
    fn engine_rechecks_every_field() {
        let s = GpuSpec {
            regions: vec!["eu-west-1".into()],
            max_price_per_hour: Some(2_000_000),
            aliases: Vec::new(),
            ..spec()
        };
        let mut o = offer("a", 1_000_000, Availability::Available);
        assert_eq!(fits(&o, &s), Err(Misfit::Region));
        o.region = "EU-WEST-1".into();
        assert_eq!(fits(&o, &s), Ok(()));
        o.price_per_hour = 2_000_001;
        assert_eq!(fits(&o, &s), Err(Misfit::Price));
        o.price_per_hour = 2_000_000;
        o.count = 2;
        assert_eq!(fits(&o, &s), Err(Misfit::Count));
        o.count = 1;
        o.spot = true;
        assert_eq!(fits(&o, &s), Err(Misfit::Spot));
        o.spot = false;
        o.gpu_type = "A100-80GB".into();
        assert_eq!(fits(&o, &s), Err(Misfit::GpuType));
        o.gpu_type = "H100-SXM".into();
        o.availability = Availability::Unavailable;
        assert_eq!(fits(&o, &s), Err(Misfit::Unavailable));
    }

    #[test]
    fn ranks_by_price_then_priority_then_availability() {
        let ranked = |p: &str, prio, o| RankedOffer {
            provider: p.into(),
            priority: prio,
            offer: o,
        };
        let mut offers = vec![
            ranked("b", 0, offer("x", 3_000_000, Availability::Available)),
            ranked("a", 0, offer("y", 2_000_000, Availability::Limited)),
            ranked("c", 5, offer("z", 2_000_000, Availability::Limited)),
            ranked("d", 0, offer("w", 2_000_000, Availability::Available)),
        ];
        rank(&mut offers);
        let order: Vec<&str> = offers.iter().map(|o| o.provider.as_str()).collect();
        assert_eq!(order, ["c", "d", "a", "b"]);
    }
}
