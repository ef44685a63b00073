//! Pure translation between the mock cloud's answers and the contract's types.
//!
//! No host calls here, so every rule (filters, availability, state names, error classes) is
//! unit-tested natively. `client` does the HTTP and hands the results to these functions.

use tgp_provider_sdk::http::{body_snippet, classify_status};
use tgp_provider_sdk::money::{MoneyError, parse_usd};
use tgp_provider_sdk::{
    Availability, Balance, GpuSpec, Instance, InstanceState, Offer, ProviderError, Tag,
    TerminateOutcome,
};

use crate::api::{Account, ApiInstance, ApiOffer, ErrorEnvelope};

/// Stock 0 is unavailable, 1-2 is limited, more is available.
pub fn availability(stock: u64) -> Availability {
    match stock {
        0 => Availability::Unavailable,
        1..=2 => Availability::Limited,
        _ => Availability::Available,
    }
}

/// The offers that satisfy `spec`, cheapest first (ties by offer id, for stable answers), and
/// a note for every offer dropped because its price could not be read.
///
/// The cloud already filters by GPU type, count and spot; those are checked again here so a
/// lax filter never yields a wrong offer. Regions and the price cap are only checked here.
pub fn select_offers(spec: &GpuSpec, offers: Vec<ApiOffer>) -> (Vec<Offer>, Vec<String>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for offer in offers {
        let same_gpu = offer.gpu_type == spec.gpu_type || spec.is_alias(&offer.gpu_type);
        if !same_gpu || offer.gpu_count != spec.count || offer.spot != spec.spot {
            continue;
        }
        if !spec.accepts_region(&offer.region) {
            continue;
        }
        let price = match parse_usd(&offer.hourly_price_usd) {
            Ok(price) => price,
            Err(e) => {
                skipped.push(format!("offer {}: hourly_price_usd: {e}", offer.id));
                continue;
            }
        };
        if !spec.accepts_price(price) {
            continue;
        }
        selected.push(Offer {
            offer_id: offer.id,
            // The engine's name for it, whichever alias the cloud used.
            gpu_type: spec.gpu_type.clone(),
            count: offer.gpu_count,
            region: offer.region,
            price_per_hour: price,
            spot: offer.spot,
            availability: availability(offer.stock),
        });
    }
    selected.sort_by(|a, b| {
        a.price_per_hour
            .cmp(&b.price_per_hour)
            .then_with(|| a.offer_id.cmp(&b.offer_id))
    });
    (selected, skipped)
}

/// The contract's state for a mock-cloud `status`. A status this plugin does not know is
/// `unknown` (the instance keeps its `vendor-state`), never an error: one odd instance must not
/// fail a verify or a whole listing.
pub fn instance_state(status: &str) -> InstanceState {
    match status {
        "pending" => InstanceState::Pending,
        "booting" => InstanceState::Booting,
        "running" => InstanceState::Running,
        "rebooting" => InstanceState::Rebooting,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        "preempted" => InstanceState::Preempted,
        "terminated" => InstanceState::Terminated,
        "failed" => InstanceState::Failed,
        _ => InstanceState::Unknown,
    }
}

/// A mock-cloud instance as a contract instance. The price is optional in the contract: a
/// malformed one is left out rather than hiding the instance's state.
pub fn to_instance(api: ApiInstance) -> Instance {
    Instance {
        state: instance_state(&api.status),
        vendor_state: Some(api.status),
        instance_id: api.id,
        name: api.name,
        public_ip: api.public_ip,
        region: api.region,
        gpu_type: api.gpu_type,
        price_per_hour: api
            .hourly_price_usd
            .as_deref()
            .and_then(|p| parse_usd(p).ok()),
        tags: api
            .tags
            .into_iter()
            .map(|(key, value)| Tag { key, value })
            .collect(),
    }
}

/// The instances carrying `owner`, checked here whatever the cloud's filter did; the tag is
/// checked before anything else is read.
pub fn owned_instances(instances: Vec<ApiInstance>, owner: &Tag) -> Vec<Instance> {
    instances
        .into_iter()
        .filter(|i| i.tags.get(&owner.key) == Some(&owner.value))
        .map(to_instance)
        .collect()
}

/// The outcome of a `DELETE` that answered with an instance in `status`.
pub fn terminate_outcome(status: &str) -> TerminateOutcome {
    match status {
        "terminated" => TerminateOutcome::Terminated,
        // `stopping`, or a state the cloud has not advanced yet: termination was accepted.
        _ => TerminateOutcome::Terminating,
    }
}

/// The account balance. An overdrawn account (negative balance) has nothing to spend: 0.
pub fn balance(account: &Account) -> Result<Balance, ProviderError> {
    let available = match parse_usd(&account.balance_usd) {
        Ok(micros) => micros,
        Err(MoneyError::Negative(_)) => 0,
        Err(e) => return Err(ProviderError::internal(format!("balance_usd: {e}"))),
    };
    let spend = match account.spend_usd_per_hour.as_deref() {
        None => None,
        Some(s) => Some(
            parse_usd(s)
                .map_err(|e| ProviderError::internal(format!("spend_usd_per_hour: {e}")))?,
        ),
    };
    Ok(Balance::amount(available, spend))
}

/// Classifies an error answer of the mock cloud (see its error table).
pub fn api_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .ok();
    let message = match &error {
        Some(e) if !e.message.is_empty() => format!("{} ({})", e.message, e.code),
        Some(e) => e.code.clone(),
        None => body_snippet(body),
    };
    match status {
        400 => {
            let field = error
                .and_then(|e| e.field)
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "request".into());
            ProviderError::invalid(field, message)
        }
        401 => ProviderError::auth(message),
        402 => ProviderError::billing(message),
        404 => ProviderError::not_found(message),
        429 => ProviderError::rate_limited(retry_after_ms),
        503 => ProviderError::capacity(message),
        _ => classify_status(status, retry_after_ms, &message).unwrap_or_else(|| {
            ProviderError::internal(format!("unexpected HTTP {status}: {message}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn offer(id: &str, region: &str, price: &str, spot: bool, stock: u64) -> ApiOffer {
        ApiOffer {
            id: id.into(),
            gpu_type: "H100-SXM".into(),
            gpu_count: 1,
            region: region.into(),
            hourly_price_usd: price.into(),
            spot,
            stock,
        }
    }

    fn instance(id: &str, status: &str, tags: &[(&str, &str)]) -> ApiInstance {
        ApiInstance {
            id: id.into(),
            name: format!("tgp-{id}"),
            region: Some("us-east-1".into()),
            gpu_type: Some("H100-SXM".into()),
            hourly_price_usd: Some("2.49".into()),
            status: status.into(),
            public_ip: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn availability_follows_stock() {
        assert_eq!(availability(0), Availability::Unavailable);
        assert_eq!(availability(1), Availability::Limited);
        assert_eq!(availability(2), Availability::Limited);
        assert_eq!(availability(3), Availability::Available);
    }

    #[test]
    fn selects_filters_and_sorts_offers() {
        let mut spec = GpuSpec::new("H100-SXM", 1);
        spec.regions = vec!["us-east-1".into(), "eu-west-1".into()];
        spec.max_price_per_hour = Some(3_000_000);
        let mut wrong_type = offer("a100", "us-east-1", "1.00", false, 5);
        wrong_type.gpu_type = "A100-80GB".into();
        let mut wrong_count = offer("h100-2x", "us-east-1", "1.00", false, 5);
        wrong_count.gpu_count = 2;
        let (offers, skipped) = select_offers(
            &spec,
            vec![
                offer("us-b", "us-east-1", "2.49", false, 4),
                offer("eu", "eu-west-1", "2.10", false, 0),
                offer("us-a", "us-east-1", "2.49", false, 1),
                offer("ap", "ap-south-1", "1.00", false, 9),
                offer("spot", "us-east-1", "0.90", true, 9),
                offer("dear", "us-east-1", "3.000001", false, 9),
                offer("cap", "us-east-1", "3.00", false, 9),
                offer("bad", "us-east-1", "cheap", false, 9),
                wrong_type,
                wrong_count,
            ],
        );
        let ids: Vec<_> = offers.iter().map(|o| o.offer_id.as_str()).collect();
        assert_eq!(ids, ["eu", "us-a", "us-b", "cap"]);
        assert_eq!(offers[0].price_per_hour, 2_100_000);
        assert_eq!(offers[0].availability, Availability::Unavailable);
        assert_eq!(offers[1].availability, Availability::Limited);
        assert_eq!(offers[2].availability, Availability::Available);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("bad"), "{skipped:?}");
    }

    #[test]
    fn spot_specs_only_get_spot_offers() {
        let mut spec = GpuSpec::new("H100-SXM", 1);
        spec.spot = true;
        let (offers, _) = select_offers(
            &spec,
            vec![
                offer("od", "r", "2.00", false, 3),
                offer("sp", "r", "0.80", true, 3),
            ],
        );
        assert_eq!(offers.len(), 1);
        assert!(offers[0].spot);
        assert_eq!(offers[0].price_per_hour, 800_000);
    }

    #[test]
    fn aliases_from_the_engine_catalogue_match() {
        let mut spec = GpuSpec::new("B200", 1);
        let mut listed = offer("b", "r", "5.00", false, 3);
        listed.gpu_type = "NVIDIA B200 SXM".into();
        let (none, _) = select_offers(&spec, vec![listed.clone()]);
        assert!(none.is_empty(), "an unknown name matches nothing");
        spec.aliases = vec!["nvidia b200 sxm".into()];
        let (offers, _) = select_offers(&spec, vec![listed]);
        assert_eq!(offers.len(), 1);
        assert_eq!(
            offers[0].gpu_type, "B200",
            "reported under the engine's name"
        );
    }

    #[test]
    fn maps_every_documented_status() {
        for (status, state) in [
            ("pending", InstanceState::Pending),
            ("booting", InstanceState::Booting),
            ("running", InstanceState::Running),
            ("rebooting", InstanceState::Rebooting),
            ("stopping", InstanceState::Stopping),
            ("stopped", InstanceState::Stopped),
            ("preempted", InstanceState::Preempted),
            ("terminated", InstanceState::Terminated),
            ("failed", InstanceState::Failed),
        ] {
            assert_eq!(instance_state(status), state);
        }
        assert_eq!(instance_state("exploded"), InstanceState::Unknown);
        let odd = to_instance(instance("i-9", "exploded", &[]));
        assert_eq!(odd.state, InstanceState::Unknown);
        assert_eq!(odd.vendor_state.as_deref(), Some("exploded"));
    }

    #[test]
    fn converts_instances() {
        let mut api = instance("i-1", "booting", &[("tgp.io/cluster", "c1"), ("a", "b")]);
        api.public_ip = Some("203.0.113.7".into());
        let i = to_instance(api);
        assert_eq!(i.instance_id, "i-1");
        assert_eq!(i.state, InstanceState::Booting);
        assert_eq!(i.public_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(i.price_per_hour, Some(2_490_000));
        assert_eq!(
            i.tags,
            vec![Tag::new("a", "b"), Tag::new("tgp.io/cluster", "c1")]
        );
        let mut bad_price = instance("i-2", "running", &[]);
        bad_price.hourly_price_usd = Some("n/a".into());
        assert_eq!(to_instance(bad_price).price_per_hour, None);
    }

    #[test]
    fn owned_instances_are_filtered_client_side() {
        let owner = Tag::new("tgp.io/cluster", "c1");
        let owned = owned_instances(
            vec![
                instance("i-1", "running", &[("tgp.io/cluster", "c1")]),
                instance("i-2", "terminated", &[("tgp.io/cluster", "c1")]),
                instance("i-3", "running", &[("tgp.io/cluster", "c2")]),
                instance("i-4", "running", &[("other", "c1")]),
                instance("i-5", "melting", &[("tgp.io/cluster", "c1")]),
                instance("i-6", "melting", &[("tgp.io/cluster", "c2")]),
            ],
            &owner,
        );
        let ids: Vec<_> = owned
            .iter()
            .map(|i| (i.instance_id.as_str(), i.state))
            .collect();
        assert_eq!(
            ids,
            [
                ("i-1", InstanceState::Running),
                ("i-2", InstanceState::Terminated),
                ("i-5", InstanceState::Unknown),
            ],
            "one odd instance is reported as unknown, never fails the listing"
        );
    }

    #[test]
    fn terminate_outcomes() {
        assert_eq!(terminate_outcome("stopping"), TerminateOutcome::Terminating);
        assert_eq!(
            terminate_outcome("terminated"),
            TerminateOutcome::Terminated
        );
        assert_eq!(terminate_outcome("running"), TerminateOutcome::Terminating);
    }

    #[test]
    fn balances() {
        let account = Account {
            balance_usd: "100.00".into(),
            spend_usd_per_hour: Some("2.49".into()),
        };
        assert_eq!(
            balance(&account),
            Ok(Balance::amount(100_000_000, Some(2_490_000)))
        );
        let overdrawn = Account {
            balance_usd: "-1.20".into(),
            spend_usd_per_hour: None,
        };
        assert_eq!(balance(&overdrawn), Ok(Balance::amount(0, None)));
        let garbage = Account {
            balance_usd: "lots".into(),
            spend_usd_per_hour: None,
        };
        assert!(matches!(balance(&garbage), Err(ProviderError::Internal(_))));
    }

    #[test]
    fn classifies_documented_errors() {
        let body = |code: &str, field: Option<&str>| {
            serde_json::to_vec(
                &serde_json::json!({"error": {"code": code, "message": "m", "field": field}}),
            )
            .unwrap()
        };
        assert_eq!(
            api_error(400, None, &body("invalid_request", Some("offer_id"))),
            ProviderError::invalid("offer_id", "m (invalid_request)")
        );
        assert!(
            matches!(api_error(400, None, b"nope"), ProviderError::InvalidRequest(f) if f.field == "request" && f.reason == "nope")
        );
        assert!(matches!(
            api_error(401, None, &body("unauthorized", None)),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            api_error(402, None, &body("insufficient_balance", None)),
            ProviderError::Billing(_)
        ));
        assert!(matches!(
            api_error(404, None, &body("not_found", None)),
            ProviderError::NotFound(_)
        ));
        assert_eq!(
            api_error(429, Some(2000), &body("rate_limited", None)),
            ProviderError::RateLimited(Some(2000))
        );
        assert_eq!(api_error(429, None, b""), ProviderError::RateLimited(None));
        assert!(
            matches!(api_error(503, None, &body("capacity_exhausted", None)), ProviderError::Capacity(m) if m.contains("capacity_exhausted"))
        );
        assert!(matches!(
            api_error(500, None, &body("internal", None)),
            ProviderError::Transient(_)
        ));
        assert!(matches!(api_error(403, None, b""), ProviderError::Auth(_)));
        assert!(matches!(
            api_error(409, None, b""),
            ProviderError::Internal(_)
        ));
    }
}
