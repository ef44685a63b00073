//! Pure translation between Vast.ai's answers and the contract's types.
//!
//! No host calls here, so every rule (the search filter, offer pricing on-demand and spot,
//! regions from `geolocation`, instance states from `actual_status`/`intended_status`/`cur_state`,
//! error classes, label decoding) is unit-tested natively. `client` does the HTTP.

use serde_json::{Value, json};
use tgp_provider_sdk::http::{body_snippet, classify_status};
use tgp_provider_sdk::money::{self, MoneyError};
use tgp_provider_sdk::{
    Availability, Balance, GpuSpec, Instance, InstanceState, MicroUsd, Offer, ProviderError, Tag,
    catalog,
};

use crate::api::{ApiError, User, VastInstance, VastOffer};
use crate::settings::Settings;
use crate::tags;

/// The `POST /bundles/` search for `spec` (filters are re-checked on the answer: never trust a
/// server-side filter).
pub fn search_body(spec: &GpuSpec, canonical: &str, settings: &Settings) -> Value {
    let mut body = json!({
        "gpu_name": {"in": catalog::vast_names(canonical)},
        "num_gpus": {"eq": spec.count},
        "rentable": {"eq": true},
        "rented": {"eq": false},
        "reliability": {"gte": settings.min_reliability},
        "type": if spec.spot { "bid" } else { "ondemand" },
        "order": [["dph_total", "asc"]],
        "limit": 100,
        "allocated_storage": settings.disk_gb,
    });
    if settings.verified_only {
        body["verified"] = json!({"eq": true});
    }
    body
}

/// The region of a `"City, CC"` geolocation: the country code (or the whole text).
pub fn region(geolocation: Option<&str>) -> String {
    let geo = geolocation.unwrap_or("").trim();
    match geo.rsplit_once(',') {
        Some((_, cc)) if !cc.trim().is_empty() => cc.trim().to_string(),
        _ if geo.is_empty() => "unknown".into(),
        _ => geo.to_string(),
    }
}

/// Whether a requested region matches an offer: its country code or whole geolocation,
/// case-insensitively.
fn region_accepted(spec: &GpuSpec, geolocation: Option<&str>) -> bool {
    let code = region(geolocation);
    let geo = geolocation.unwrap_or("").trim();
    spec.regions.is_empty()
        || spec
            .regions
            .iter()
            .any(|r| r.trim().eq_ignore_ascii_case(&code) || r.trim().eq_ignore_ascii_case(geo))
}

fn usd(value: Option<&Value>) -> Result<Option<MicroUsd>, MoneyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money::usd_from_json(v).map(Some),
    }
}

/// The offer id: the ask id, plus the bid for spot offers (`<ask>` or `<ask>:bid:<micro-USD>`).
pub fn offer_id(ask: u64, bid: Option<MicroUsd>) -> String {
    match bid {
        Some(bid) => format!("{ask}:bid:{bid}"),
        None => ask.to_string(),
    }
}

/// The ask id and spot bid of an offer id.
pub fn parse_offer_id(offer_id: &str) -> Result<(u64, Option<MicroUsd>), ProviderError> {
    let bad = || {
        ProviderError::invalid(
            "offer.offer-id",
            format!("`{offer_id}` is not a Vast offer id (`<ask>` or `<ask>:bid:<micro-USD>`)"),
        )
    };
    let (ask, bid) = match offer_id.split_once(":bid:") {
        Some((ask, bid)) => (ask, Some(bid.parse::<u64>().map_err(|_| bad())?)),
        None => (offer_id, None),
    };
    Ok((ask.parse::<u64>().map_err(|_| bad())?, bid))
}

/// `min_bid` raised by the configured margin, rounded up to the micro-dollar.
pub fn bid_with_margin(min_bid: MicroUsd, margin_percent: u32) -> Option<MicroUsd> {
    min_bid
        .checked_mul(100 + u64::from(margin_percent))
        .map(|v| v.div_ceil(100))
}

/// The offers for `spec`, cheapest first, and a note for every offer skipped as unreadable.
///
/// On-demand price: `dph_total` (machine plus the allocated storage). Spot price: the bid we
/// will place (`min_bid` plus the margin) plus the storage part (`dph_total - dph_base`); the bid
/// travels in the offer id. Search answers are rentable now, so offers are available.
pub fn select_offers(
    spec: &GpuSpec,
    canonical: &str,
    settings: &Settings,
    offers: Vec<VastOffer>,
) -> (Vec<Offer>, Vec<String>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for o in offers {
        if catalog::from_vast_offer(&o.gpu_name, o.gpu_ram) != Some(canonical)
            || o.num_gpus != spec.count
            || o.rentable == Some(false)
            || o.rented == Some(true)
            || !region_accepted(spec, o.geolocation.as_deref())
        {
            continue;
        }
        let reliability = o.reliability2.or(o.reliability);
        if reliability.is_some_and(|r| r < settings.min_reliability) {
            continue;
        }
        let priced = (|| -> Result<Option<(MicroUsd, Option<MicroUsd>)>, String> {
            let total = usd(o.dph_total.as_ref()).map_err(|e| format!("dph_total: {e}"))?;
            let Some(total) = total else { return Ok(None) };
            if !spec.spot {
                return Ok(Some((total, None)));
            }
            let base = usd(o.dph_base.as_ref()).map_err(|e| format!("dph_base: {e}"))?;
            let storage = base.map_or(0, |b| total.saturating_sub(b));
            let Some(min_bid) = usd(o.min_bid.as_ref()).map_err(|e| format!("min_bid: {e}"))?
            else {
                return Ok(None);
            };
            let bid =
                bid_with_margin(min_bid, settings.bid_margin_percent).ok_or("bid overflows")?;
            Ok(Some((bid.saturating_add(storage), Some(bid))))
        })();
        let (price, bid) = match priced {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                skipped.push(format!("offer {}: {e}", o.id));
                continue;
            }
        };
        if !spec.accepts_price(price) {
            continue;
        }
        selected.push(Offer {
            offer_id: offer_id(o.id, bid),
            gpu_type: canonical.to_string(),
            count: spec.count,
            region: region(o.geolocation.as_deref()),
            price_per_hour: price,
            spot: spec.spot,
            availability: Availability::Available,
        });
    }
    selected.sort_by(|a, b| {
        a.price_per_hour
            .cmp(&b.price_per_hour)
            .then_with(|| a.offer_id.cmp(&b.offer_id))
    });
    (selected, skipped)
}

/// The contract state of a Vast instance. `actual_status` is the container's state;
/// `intended_status`/`cur_state` say whether Vast means to keep it running. A stopped instance
/// still bills its disk until it is destroyed, so it is `stopped`, never gone; Vast's own
/// `unknown` and `offline` (the host is unreachable for now) and any status this plugin does not
/// know are `unknown` with the vendor's word kept, never an error.
pub fn instance_state(i: &VastInstance) -> InstanceState {
    let intended = i.intended_status.as_deref().unwrap_or("");
    let cur = i.cur_state.as_deref().unwrap_or("");
    if intended == "stopped" && cur == "stopped" {
        // Stopped by Vast (an outbid spot instance) or by someone: destroy it to stop the bill.
        return InstanceState::Stopped;
    }
    let msg = i.status_msg.as_deref().unwrap_or("");
    match i.actual_status.as_deref().map(str::trim) {
        None | Some("") => InstanceState::Pending,
        Some("created") if msg.contains("OCI runtime create failed") => InstanceState::Failed,
        Some("created" | "loading") => InstanceState::Booting,
        Some("rebooting") => InstanceState::Rebooting,
        Some("running") => InstanceState::Running,
        Some("stopped" | "exited" | "frozen") => InstanceState::Stopped,
        _ => InstanceState::Unknown,
    }
}

/// The vendor's word for an instance's state, for `vendor-state`.
fn vendor_state(i: &VastInstance) -> String {
    format!(
        "actual_status={} intended_status={} cur_state={}",
        i.actual_status.as_deref().unwrap_or("null"),
        i.intended_status.as_deref().unwrap_or("null"),
        i.cur_state.as_deref().unwrap_or("null")
    )
}

/// A Vast instance as a contract instance; name and tags come from the label.
pub fn to_instance(i: VastInstance) -> Instance {
    let state = instance_state(&i);
    let vendor_state = vendor_state(&i);
    let (name, tags) = match i.label.as_deref().and_then(tags::decode_label) {
        Some(decoded) => decoded,
        None => (i.label.clone().unwrap_or_default(), Vec::new()),
    };
    Instance {
        instance_id: i.id.to_string(),
        name,
        state,
        public_ip: i
            .public_ipaddr
            .as_deref()
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string),
        region: i.geolocation.as_deref().map(|g| region(Some(g))),
        gpu_type: i
            .gpu_name
            .as_deref()
            .and_then(|n| catalog::from_vast_offer(n, i.gpu_ram))
            .map(str::to_string),
        price_per_hour: usd(i.dph_total.as_ref()).ok().flatten(),
        tags,
        vendor_state: Some(vendor_state),
    }
}

/// The instances whose label carries `owner`; the label is read before anything else, so one
/// odd instance never fails the listing.
pub fn owned_instances(instances: Vec<VastInstance>, owner: &Tag) -> Vec<Instance> {
    instances
        .into_iter()
        .filter(|i| {
            i.label
                .as_deref()
                .and_then(tags::decode_label)
                .is_some_and(|(_, tags)| tags.contains(owner))
        })
        .map(to_instance)
        .collect()
}

/// The spendable balance: `credit` (the prepaid credit the CLI shows) when present, else
/// `balance`; negative means nothing to spend. Vast reports no spend rate here.
pub fn balance(user: &User) -> Result<Balance, ProviderError> {
    let value = match (&user.credit, &user.balance) {
        (Some(v), _) if !v.is_null() => v,
        (_, Some(v)) if !v.is_null() => v,
        _ => {
            return Err(ProviderError::internal(
                "Vast sent neither credit nor balance",
            ));
        }
    };
    match money::usd_from_json(value) {
        Ok(micros) => Ok(Balance::amount(micros, None)),
        Err(MoneyError::Negative(_)) => Ok(Balance::amount(0, None)),
        Err(e) => Err(ProviderError::internal(format!("credit: {e}"))),
    }
}

/// Classifies a Vast error answer. 429 is rate-limited, without a delay unless the rare
/// Retry-After is there (Vast sends none).
pub fn api_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    if status == 429 {
        return ProviderError::rate_limited(retry_after_ms);
    }
    let parsed = serde_json::from_slice::<ApiError>(body).unwrap_or_default();
    let code = parsed.error.clone().unwrap_or_default();
    let text = parsed
        .msg
        .or(parsed.message)
        .or(parsed.detail)
        .unwrap_or_else(|| body_snippet(body));
    let message = if code.is_empty() {
        text.clone()
    } else {
        format!("{text} ({code})")
    };
    let lower = text.to_ascii_lowercase();
    match code.as_str() {
        "auth_error" => ProviderError::auth(message),
        "rate_limit_exceeded" => ProviderError::rate_limited(retry_after_ms),
        "insufficient_credit" | "insufficient_credits" => ProviderError::billing(message),
        // The offer is gone or rented: capacity elsewhere.
        "no_such_ask" => ProviderError::capacity(message),
        // The bid is under the current minimum: re-quote.
        "insufficient_bid" => ProviderError::capacity(message),
        // A bid below the market's minimum: no capacity at that price, not a malformed request.
        "invalid_price" => ProviderError::capacity(message),
        "invalid_args" | "no_ssh_key_for_vm" => ProviderError::invalid("request", message),
        "not_found" | "no_such_instance" => ProviderError::not_found(message),
        _ if lower.contains("insufficient credit") => ProviderError::billing(message),
        _ if lower.contains("bid") && (lower.contains("minimum") || lower.contains("below")) => {
            ProviderError::capacity(message)
        }
        _ => classify_status(status, retry_after_ms, &message).unwrap_or_else(|| {
            ProviderError::internal(format!("unexpected HTTP {status}: {message}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use tgp_provider_sdk::config;

    use super::*;

    fn settings() -> Settings {
        config::from_pairs::<Settings>(Vec::new())
            .unwrap()
            .validated()
            .unwrap()
    }

    fn offer(id: u64, name: &str, gpus: u32, total: f64, geo: &str) -> VastOffer {
        VastOffer {
            id,
            gpu_name: name.into(),
            num_gpus: gpus,
            gpu_ram: Some(24564.0),
            dph_total: Some(json!(total)),
            dph_base: Some(json!(total - 0.01)),
            min_bid: Some(json!(0.2)),
            reliability: None,
            reliability2: Some(0.995),
            geolocation: Some(geo.into()),
            rentable: Some(true),
            rented: Some(false),
        }
    }

    #[test]
    fn search_body_filters_what_the_spec_needs() {
        let mut spec = GpuSpec::new("A100-80GB", 2);
        spec.spot = true;
        let body = search_body(&spec, "A100-80GB", &settings());
        assert_eq!(body["gpu_name"], json!({"in": ["A100 SXM4", "A100 PCIE"]}));
        assert_eq!(body["num_gpus"], json!({"eq": 2}));
        assert_eq!(body["type"], "bid");
        assert_eq!(body["verified"], json!({"eq": true}));
        assert_eq!(body["reliability"], json!({"gte": 0.98}));
    }

    #[test]
    fn on_demand_offers_use_dph_total() {
        let mut spec = GpuSpec::new("RTX4090", 1);
        spec.regions = vec!["us".into(), "Quebec, CA".into()];
        let mut unreliable = offer(4, "RTX 4090", 1, 0.1, "Texas, US");
        unreliable.reliability2 = Some(0.5);
        let mut bad = offer(5, "RTX 4090", 1, 0.3, "Texas, US");
        bad.dph_total = Some(json!("cheap"));
        let (offers, skipped) = select_offers(
            &spec,
            "RTX4090",
            &settings(),
            vec![
                offer(1, "RTX 4090", 1, 0.40, "California, US"),
                offer(2, "RTX 4090", 1, 0.35, "Quebec, CA"),
                offer(3, "RTX 4090", 4, 1.50, "Virginia, US"),
                offer(6, "RTX 3090", 1, 0.20, "Texas, US"),
                offer(7, "RTX 4090", 1, 0.30, "Oslo, NO"),
                unreliable,
                bad,
            ],
        );
        let got: Vec<_> = offers
            .iter()
            .map(|o| (o.offer_id.as_str(), o.region.as_str(), o.price_per_hour))
            .collect();
        assert_eq!(got, [("2", "CA", 350_000), ("1", "US", 400_000)]);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn spot_offers_bid_above_the_floor() {
        let mut spec = GpuSpec::new("RTX4090", 1);
        spec.spot = true;
        let (offers, _) = select_offers(
            &spec,
            "RTX4090",
            &settings(),
            vec![offer(1, "RTX 4090", 1, 0.40, "Oslo, NO")],
        );
        // min_bid 0.20 + 10 % = 0.22, plus 0.01 storage.
        assert_eq!(offers[0].price_per_hour, 230_000);
        assert_eq!(offers[0].offer_id, "1:bid:220000");
        assert!(offers[0].spot);
        assert_eq!(parse_offer_id("1:bid:220000"), Ok((1, Some(220_000))));
        assert_eq!(parse_offer_id("42"), Ok((42, None)));
        for bad in ["", "x", "1:bid:", "1:bid:x"] {
            assert!(parse_offer_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a100_memory_decides_the_canonical_name() {
        let mut big = offer(1, "A100 PCIE", 1, 1.0, "Texas, US");
        big.gpu_ram = Some(81920.0);
        let small = offer(2, "A100 PCIE", 1, 0.8, "Texas, US");
        let (offers, _) = select_offers(
            &GpuSpec::new("A100-80GB", 1),
            "A100-80GB",
            &settings(),
            vec![big, small],
        );
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].offer_id, "1");
    }

    fn instance(actual: Option<&str>, intended: &str, cur: &str) -> VastInstance {
        VastInstance {
            id: 77,
            label: Some(
                tags::encode_label("tgp-a-1", &[Tag::new("tgp.io/cluster", "c1")]).unwrap(),
            ),
            actual_status: actual.map(str::to_string),
            intended_status: Some(intended.into()),
            cur_state: Some(cur.into()),
            status_msg: None,
            public_ipaddr: Some(" 192.0.2.4 ".into()),
            dph_total: Some(json!(0.4)),
            gpu_name: Some("RTX 4090".into()),
            gpu_ram: Some(24564.0),
            geolocation: Some("Oslo, NO".into()),
        }
    }

    #[test]
    fn maps_statuses() {
        let state = |a: Option<&str>, i: &str, c: &str| instance_state(&instance(a, i, c));
        for (actual, intended, cur, expected) in [
            (None, "running", "running", InstanceState::Pending),
            (
                Some("loading"),
                "running",
                "running",
                InstanceState::Booting,
            ),
            (
                Some("created"),
                "running",
                "running",
                InstanceState::Booting,
            ),
            (
                Some("running"),
                "running",
                "running",
                InstanceState::Running,
            ),
            (
                Some("rebooting"),
                "running",
                "running",
                InstanceState::Rebooting,
            ),
            (
                Some("unknown"),
                "running",
                "running",
                InstanceState::Unknown,
            ),
            (
                Some("offline"),
                "running",
                "running",
                InstanceState::Unknown,
            ),
            (Some("exited"), "running", "running", InstanceState::Stopped),
            // Outbid spot instance, or stopped by someone: still billed until destroyed.
            (
                Some("stopped"),
                "stopped",
                "stopped",
                InstanceState::Stopped,
            ),
            (
                Some("loading"),
                "stopped",
                "stopped",
                InstanceState::Stopped,
            ),
            (Some("melted"), "running", "running", InstanceState::Unknown),
        ] {
            assert_eq!(
                state(actual, intended, cur),
                expected,
                "{actual:?}/{intended}/{cur}"
            );
        }
        let mut oci = instance(Some("created"), "running", "running");
        oci.status_msg = Some("Error: OCI runtime create failed: x".into());
        assert_eq!(instance_state(&oci), InstanceState::Failed);
        let odd = to_instance(instance(Some("melted"), "running", "running"));
        assert_eq!(
            odd.vendor_state.as_deref(),
            Some("actual_status=melted intended_status=running cur_state=running")
        );
    }

    #[test]
    fn converts_and_filters_by_label() {
        let i = to_instance(instance(Some("running"), "running", "running"));
        assert_eq!(i.instance_id, "77");
        assert_eq!(i.name, "tgp-a-1");
        assert_eq!(i.public_ip.as_deref(), Some("192.0.2.4"));
        assert_eq!(i.region.as_deref(), Some("NO"));
        assert_eq!(i.gpu_type.as_deref(), Some("RTX4090"));
        assert_eq!(i.price_per_hour, Some(400_000));
        let mut foreign = instance(Some("running"), "running", "running");
        foreign.label = Some("someone else's".into());
        foreign.id = 78;
        let mut other = instance(Some("running"), "running", "running");
        other.label = Some(tags::encode_label("x", &[Tag::new("tgp.io/cluster", "c2")]).unwrap());
        other.id = 79;
        let mut odd = instance(Some("melted"), "running", "running");
        odd.id = 80;
        odd.dph_total = Some(json!("not a price"));
        let mut odd_foreign = instance(Some("melted"), "???", "");
        odd_foreign.label = None;
        odd_foreign.id = 81;
        let owned = owned_instances(
            vec![
                instance(None, "running", "running"),
                foreign,
                other,
                odd,
                odd_foreign,
            ],
            &Tag::new("tgp.io/cluster", "c1"),
        );
        let got: Vec<_> = owned
            .iter()
            .map(|i| (i.instance_id.as_str(), i.state))
            .collect();
        assert_eq!(
            got,
            [
                ("77", InstanceState::Pending),
                ("80", InstanceState::Unknown)
            ],
            "odd instances are reported (ours) or skipped (foreign), never fail the listing"
        );
    }

    #[test]
    fn balances_prefer_credit() {
        let user = |credit: Option<Value>, balance: Option<Value>| User { credit, balance };
        assert_eq!(
            balance(&user(Some(json!(12.5)), Some(json!(-12.5)))),
            Ok(Balance::amount(12_500_000, None))
        );
        assert_eq!(
            balance(&user(None, Some(json!(3)))),
            Ok(Balance::amount(3_000_000, None))
        );
        assert_eq!(
            balance(&user(Some(json!(-1.0)), None)),
            Ok(Balance::amount(0, None))
        );
        assert!(matches!(
            balance(&user(None, None)),
            Err(ProviderError::Internal(_))
        ));
    }

    #[test]
    fn classifies_vast_errors() {
        let body = |error: &str, msg: &str| {
            serde_json::to_vec(&json!({"success": false, "error": error, "msg": msg})).unwrap()
        };
        assert!(matches!(
            api_error(401, None, &body("auth_error", "Invalid user key")),
            ProviderError::Auth(_)
        ));
        assert_eq!(
            api_error(429, None, b"API requests too frequent"),
            ProviderError::RateLimited(None)
        );
        assert_eq!(
            api_error(
                429,
                None,
                br#"{"detail": "API requests too frequent endpoint threshold=4.5"}"#
            ),
            ProviderError::RateLimited(None)
        );
        assert!(matches!(
            api_error(410, None, &body("no_such_ask", "gone")),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            api_error(404, None, &body("no_such_ask", "gone")),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            api_error(400, None, &body("insufficient_bid", "low")),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            api_error(
                400,
                None,
                &body("insufficient_credit", "Insufficient credits")
            ),
            ProviderError::Billing(_)
        ));
        assert!(matches!(
            api_error(400, None, br#"{"msg": "Insufficient credits"}"#),
            ProviderError::Billing(_)
        ));
        assert!(
            matches!(
                api_error(400, None, &body("invalid_price", "p")),
                ProviderError::Capacity(_)
            ),
            "a low bid is capacity"
        );
        assert!(
            matches!(api_error(400, None, &body("invalid_args", "a")), ProviderError::InvalidRequest(f) if f.field == "request")
        );
        assert!(matches!(
            api_error(404, None, &body("not_found", "Instance not found")),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            api_error(404, None, &body("no_such_instance", "x")),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            api_error(500, None, &body("server_error", "x")),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            api_error(409, None, b"?"),
            ProviderError::Internal(_)
        ));
    }
}
