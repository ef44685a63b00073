//! Pure translation between Lambda Cloud's answers and the contract's types.
//!
//! No host calls here, so every rule (instance types to offers, capacity to availability, status
//! names, error codes) is unit-tested natively. `client` does the HTTP.

use tgp_provider_sdk::http::{body_snippet, classify_status};
use tgp_provider_sdk::money::cents_to_micros;
use tgp_provider_sdk::{
    Availability, GpuSpec, Instance, InstanceState, Offer, ProviderError, Tag, TerminateOutcome,
    catalog,
};

use crate::api::{ApiInstance, ErrorEnvelope, InstanceTypes};
use crate::tags;

/// The region of an offer for a type with no capacity anywhere (launching it is refused).
pub const NO_REGION: &str = "none";

/// The offer id: instance type and region, which is all a launch needs.
pub fn offer_id(instance_type: &str, region: &str) -> String {
    format!("{instance_type}@{region}")
}

/// The instance type and region of an offer id.
pub fn parse_offer_id(offer_id: &str) -> Result<(&str, &str), ProviderError> {
    offer_id
        .rsplit_once('@')
        .filter(|(t, r)| !t.is_empty() && !r.is_empty())
        .ok_or_else(|| {
            ProviderError::invalid(
                "offer.offer-id",
                format!("`{offer_id}` is not a Lambda offer id (`<instance type>@<region>`)"),
            )
        })
}

/// The offers for `spec` (on-demand only), cheapest first, a note for every type skipped, and
/// the listed types the catalogue cannot name (reported to the engine, not priced).
///
/// Lambda encodes the GPU count in the type name, so a type matches when the catalogue maps it to
/// the spec's GPU and count. With no requested region there is one available offer per region
/// with capacity (or one unavailable offer in region [`NO_REGION`] when there is none); with
/// requested regions, one offer per requested region, available when it has capacity.
pub fn select_offers(
    spec: &GpuSpec,
    canonical: &str,
    types: &InstanceTypes,
) -> (Vec<Offer>, Vec<String>, Vec<String>) {
    let mut offers = Vec::new();
    let mut skipped = Vec::new();
    let mut unrecognized = Vec::new();
    for (name, entry) in types {
        let known = catalog::from_lambda_type(name);
        let matches = match known {
            Some(found) => found == (canonical, spec.count),
            // An operator's catalogue alias: the whole type name, or its family
            // (`gpu_1x_gh200` -> `gh200`) with the count from the name.
            None => match lambda_family(name) {
                Some((count, family)) if spec.is_alias(name) || spec.is_alias(family) => {
                    count == spec.count
                }
                _ => {
                    unrecognized.push(name.clone());
                    false
                }
            },
        };
        if !matches {
            continue;
        }
        let price = match entry
            .instance_type
            .price_cents_per_hour
            .map(cents_to_micros)
        {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                skipped.push(format!("{name}: {e}"));
                continue;
            }
            None => {
                skipped.push(format!("{name}: no price_cents_per_hour"));
                continue;
            }
        };
        if !spec.accepts_price(price) {
            continue;
        }
        let with_capacity: Vec<&str> = entry
            .regions_with_capacity_available
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let regions: Vec<(&str, Availability)> = if spec.regions.is_empty() {
            if with_capacity.is_empty() {
                vec![(NO_REGION, Availability::Unavailable)]
            } else {
                with_capacity
                    .iter()
                    .map(|r| (*r, Availability::Available))
                    .collect()
            }
        } else {
            spec.regions
                .iter()
                .map(|r| {
                    let available = with_capacity.contains(&r.as_str());
                    (
                        r.as_str(),
                        if available {
                            Availability::Available
                        } else {
                            Availability::Unavailable
                        },
                    )
                })
                .collect()
        };
        for (region, availability) in regions {
            offers.push(Offer {
                offer_id: offer_id(name, region),
                gpu_type: canonical.to_string(),
                count: spec.count,
                region: region.to_string(),
                price_per_hour: price,
                spot: false,
                availability,
            });
        }
    }
    offers.sort_by(|a, b| {
        a.price_per_hour
            .cmp(&b.price_per_hour)
            .then_with(|| a.offer_id.cmp(&b.offer_id))
    });
    (offers, skipped, unrecognized)
}

/// The GPU count and family of a Lambda type name `gpu_{N}x_{family}`, whatever the family.
fn lambda_family(name: &str) -> Option<(u32, &str)> {
    let (count, family) = name.strip_prefix("gpu_")?.split_once("x_")?;
    let count = count.parse().ok().filter(|c: &u32| *c > 0)?;
    (!family.is_empty()).then_some((count, family))
}

/// Lambda hostnames: `^[a-z0-9][0-9a-z-]{0,62}$`. The instance name when it qualifies.
pub fn hostname(instance_name: &str) -> Option<String> {
    let b = instance_name.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    valid.then(|| instance_name.to_string())
}

/// The contract state of a Lambda `status`. A status this plugin does not know is `unknown`
/// (the vendor's word is kept), never an error.
pub fn instance_state(status: &str) -> InstanceState {
    match status {
        "booting" => InstanceState::Booting,
        "active" => InstanceState::Running,
        // Lambda's health check of the VM failed: often a blip (a heartbeat missed); the engine
        // tolerates it for a grace period before acting.
        "unhealthy" => InstanceState::Rebooting,
        "terminating" => InstanceState::Stopping,
        "terminated" => InstanceState::Terminated,
        // Taken back by Lambda: it may still be listed, and is terminated to be sure.
        "preempted" => InstanceState::Preempted,
        _ => InstanceState::Unknown,
    }
}

/// A Lambda instance as a contract instance.
pub fn to_instance(api: ApiInstance) -> Instance {
    let instance_type = api.instance_type.as_ref();
    Instance {
        state: instance_state(&api.status),
        name: api.name.unwrap_or_default(),
        public_ip: api.ip.filter(|ip| !ip.is_empty()),
        region: api.region.map(|r| r.name),
        gpu_type: instance_type
            .and_then(|t| catalog::from_lambda_type(&t.name))
            .map(|(canonical, _)| canonical.to_string()),
        price_per_hour: instance_type
            .and_then(|t| t.price_cents_per_hour)
            .and_then(|c| cents_to_micros(c).ok()),
        tags: tags::decode(api.tags.as_deref().unwrap_or_default()),
        instance_id: api.id,
        vendor_state: Some(api.status),
    }
}

/// The instances carrying `owner`, checked here whatever the API returned; the tag is read
/// before anything else, so one odd instance never fails the listing.
pub fn owned_instances(instances: Vec<ApiInstance>, owner: &Tag) -> Vec<Instance> {
    instances
        .into_iter()
        .filter(|api| tags::decode(api.tags.as_deref().unwrap_or_default()).contains(owner))
        .map(to_instance)
        .collect()
}

/// The outcome of a terminate that answered with the instance's new status.
pub fn terminate_outcome(status: Option<&str>) -> TerminateOutcome {
    match status {
        Some("terminated") => TerminateOutcome::Terminated,
        _ => TerminateOutcome::Terminating,
    }
}

/// Classifies a Lambda error answer by its `code` (the spec says to rely on the code, not the
/// message), falling back to the HTTP status.
pub fn api_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .ok();
    let code = error.as_ref().map_or("", |e| e.code.as_str());
    let message = match &error {
        Some(e) if !e.message.is_empty() => match &e.suggestion {
            Some(s) if !s.is_empty() => format!("{} {} ({})", e.message, s, e.code),
            _ => format!("{} ({})", e.message, e.code),
        },
        Some(e) if !e.code.is_empty() => e.code.clone(),
        _ => body_snippet(body),
    };
    if status == 429 {
        return ProviderError::rate_limited(retry_after_ms);
    }
    let kind = code.rsplit('/').next().unwrap_or("");
    match kind {
        "invalid-api-key" => ProviderError::auth(message),
        // Inactive accounts lack a verified email or a valid payment method: the operator must
        // fix the account's billing; no retry helps.
        "account-inactive" | "invalid-address" => ProviderError::billing(message),
        "insufficient-capacity" => ProviderError::capacity(message),
        "quota-exceeded" => ProviderError::quota(message),
        "object-does-not-exist" => ProviderError::not_found(message),
        "invalid-parameters" => ProviderError::invalid("request", message),
        "file-system-in-wrong-region" | "file-systems-not-supported" => {
            ProviderError::invalid("request", message)
        }
        "internal-error" => ProviderError::transient(message),
        _ if code.starts_with("provider/") => ProviderError::transient(message),
        _ => classify_status(status, retry_after_ms, &message).unwrap_or_else(|| {
            ProviderError::internal(format!("unexpected HTTP {status}: {message}"))
        }),
    }
}

/// A launch's error: a 404 there means a named launch resource (the SSH key) does not exist.
pub fn launch_error(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::NotFound(message) => ProviderError::invalid(
            "ssh_key_name",
            format!("Lambda does not know a launch resource (the configured SSH key?): {message}"),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiTag, Data, InstanceType, Region};

    fn types() -> InstanceTypes {
        serde_json::from_str::<Data<InstanceTypes>>(
            r#"{"data": {
              "gpu_1x_h100_sxm5": {"instance_type": {"name": "gpu_1x_h100_sxm5", "price_cents_per_hour": 329},
                 "regions_with_capacity_available": [{"name": "us-east-1"}, {"name": "us-west-1"}]},
              "gpu_8x_h100_sxm5": {"instance_type": {"name": "gpu_8x_h100_sxm5", "price_cents_per_hour": 2392},
                 "regions_with_capacity_available": [{"name": "us-east-1"}]},
              "gpu_1x_a100": {"instance_type": {"name": "gpu_1x_a100", "price_cents_per_hour": 129},
                 "regions_with_capacity_available": []},
              "gpu_1x_a100_sxm4": {"instance_type": {"name": "gpu_1x_a100_sxm4", "price_cents_per_hour": 110},
                 "regions_with_capacity_available": [{"name": "europe-central-1"}]},
              "gpu_1x_gh200": {"instance_type": {"name": "gpu_1x_gh200", "price_cents_per_hour": 149},
                 "regions_with_capacity_available": [{"name": "us-west-1"}]}
            }}"#,
        )
        .unwrap()
        .data
    }

    #[test]
    fn one_offer_per_region_with_capacity() {
        let (offers, skipped, unrecognized) =
            select_offers(&GpuSpec::new("H100-SXM", 1), "H100-SXM", &types());
        assert!(skipped.is_empty());
        assert_eq!(
            unrecognized,
            ["gpu_1x_gh200"],
            "a type outside the catalogue is reported, not dropped silently"
        );
        let got: Vec<_> = offers
            .iter()
            .map(|o| (o.offer_id.as_str(), o.price_per_hour, o.availability))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "gpu_1x_h100_sxm5@us-east-1",
                    3_290_000,
                    Availability::Available
                ),
                (
                    "gpu_1x_h100_sxm5@us-west-1",
                    3_290_000,
                    Availability::Available
                ),
            ]
        );
        let (eight, _, _) = select_offers(&GpuSpec::new("H100-SXM", 8), "H100-SXM", &types());
        assert_eq!(eight.len(), 1);
        assert_eq!((eight[0].count, eight[0].price_per_hour), (8, 23_920_000));
    }

    #[test]
    fn no_capacity_is_unavailable_and_regions_filter() {
        let (offers, _, _) = select_offers(&GpuSpec::new("A100-40GB", 1), "A100-40GB", &types());
        let got: Vec<_> = offers
            .iter()
            .map(|o| (o.offer_id.as_str(), o.availability))
            .collect();
        assert_eq!(
            got,
            [
                ("gpu_1x_a100_sxm4@europe-central-1", Availability::Available),
                ("gpu_1x_a100@none", Availability::Unavailable),
            ]
        );
        let mut spec = GpuSpec::new("H100-SXM", 1);
        spec.regions = vec!["us-west-1".into(), "us-south-1".into()];
        let (offers, _, _) = select_offers(&spec, "H100-SXM", &types());
        let got: Vec<_> = offers
            .iter()
            .map(|o| (o.region.as_str(), o.availability))
            .collect();
        assert_eq!(
            got,
            [
                ("us-south-1", Availability::Unavailable),
                ("us-west-1", Availability::Available)
            ]
        );
        spec.max_price_per_hour = Some(3_289_999);
        assert!(select_offers(&spec, "H100-SXM", &types()).0.is_empty());
        assert!(
            select_offers(&GpuSpec::new("RTX4090", 1), "RTX4090", &types())
                .0
                .is_empty()
        );
    }

    #[test]
    fn offer_ids_round_trip() {
        assert_eq!(
            parse_offer_id(&offer_id("gpu_1x_a10", "us-east-1")),
            Ok(("gpu_1x_a10", "us-east-1"))
        );
        for bad in ["gpu_1x_a10", "@us-east-1", "gpu_1x_a10@"] {
            assert!(
                matches!(parse_offer_id(bad), Err(ProviderError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostnames_only_when_valid() {
        assert_eq!(
            hostname("tgp-3f2504e04f89-1").as_deref(),
            Some("tgp-3f2504e04f89-1")
        );
        assert_eq!(hostname("Tgp_1"), None);
        assert_eq!(hostname(&"a".repeat(64)), None);
    }

    #[test]
    fn maps_every_documented_status() {
        for (status, state) in [
            ("booting", InstanceState::Booting),
            ("active", InstanceState::Running),
            ("unhealthy", InstanceState::Rebooting),
            ("terminating", InstanceState::Stopping),
            ("terminated", InstanceState::Terminated),
            ("preempted", InstanceState::Preempted),
        ] {
            assert_eq!(instance_state(status), state, "{status}");
        }
        assert_eq!(instance_state("melted"), InstanceState::Unknown);
        let odd = to_instance(instance("z", "melted", Some("c1")));
        assert_eq!(odd.vendor_state.as_deref(), Some("melted"));
        assert_eq!(
            terminate_outcome(Some("terminating")),
            TerminateOutcome::Terminating
        );
        assert_eq!(
            terminate_outcome(Some("terminated")),
            TerminateOutcome::Terminated
        );
        assert_eq!(terminate_outcome(None), TerminateOutcome::Terminating);
    }

    fn instance(id: &str, status: &str, cluster: Option<&str>) -> ApiInstance {
        ApiInstance {
            id: id.into(),
            status: status.into(),
            name: Some(format!("tgp-{id}")),
            ip: (status == "active").then(|| "198.51.100.4".to_string()),
            region: Some(Region {
                name: "us-east-1".into(),
            }),
            instance_type: Some(InstanceType {
                name: "gpu_8x_a100_80gb_sxm4".into(),
                price_cents_per_hour: Some(1432),
            }),
            tags: Some(
                cluster
                    .map(|c| ApiTag {
                        key: "tgp:dio:scluster".into(),
                        value: c.into(),
                    })
                    .into_iter()
                    .chain([ApiTag {
                        key: "env:prod".into(),
                        value: "x".into(),
                    }])
                    .collect(),
            ),
        }
    }

    #[test]
    fn converts_instances_and_filters_owners() {
        let i = to_instance(instance("a", "active", Some("c1")));
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(i.gpu_type.as_deref(), Some("A100-80GB"));
        assert_eq!(i.price_per_hour, Some(14_320_000));
        assert_eq!(i.tags, [Tag::new("tgp.io/cluster", "c1")]);
        let owned = owned_instances(
            vec![
                instance("a", "active", Some("c1")),
                instance("b", "terminated", Some("c1")),
                instance("c", "active", Some("c2")),
                instance("d", "booting", None),
                instance("e", "melted", Some("c1")),
                instance("f", "melted", Some("c2")),
            ],
            &Tag::new("tgp.io/cluster", "c1"),
        );
        let ids: Vec<_> = owned
            .iter()
            .map(|i| (i.instance_id.as_str(), i.state))
            .collect();
        assert_eq!(
            ids,
            [
                ("a", InstanceState::Running),
                ("b", InstanceState::Terminated),
                ("e", InstanceState::Unknown),
            ],
            "an odd instance is reported as unknown, never fails the listing"
        );
    }

    #[test]
    fn operator_aliases_price_types_the_catalogue_lacks() {
        let mut spec = GpuSpec::new("GH200", 1);
        spec.aliases = vec!["gh200".into()];
        let (offers, _, unrecognized) = select_offers(&spec, "GH200", &types());
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].offer_id, "gpu_1x_gh200@us-west-1");
        assert_eq!(offers[0].gpu_type, "GH200");
        assert!(!unrecognized.contains(&"gpu_1x_gh200".to_string()));
    }

    fn body(code: &str) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"error": {"code": code, "message": "m", "suggestion": "s"}}),
        )
        .unwrap()
    }

    #[test]
    fn classifies_documented_codes() {
        assert!(
            matches!(api_error(401, None, &body("global/invalid-api-key")), ProviderError::Auth(m) if m == "m s (global/invalid-api-key)")
        );
        assert!(matches!(
            api_error(403, None, &body("global/account-inactive")),
            ProviderError::Billing(_)
        ));
        assert!(matches!(
            api_error(
                400,
                None,
                &body("instance-operations/launch/insufficient-capacity")
            ),
            ProviderError::Capacity(_)
        ));
        assert!(matches!(
            api_error(400, None, &body("global/quota-exceeded")),
            ProviderError::Quota(_)
        ));
        assert!(matches!(
            api_error(404, None, &body("global/object-does-not-exist")),
            ProviderError::NotFound(_)
        ));
        assert!(
            matches!(api_error(400, None, &body("global/invalid-parameters")), ProviderError::InvalidRequest(f) if f.field == "request")
        );
        assert!(matches!(
            api_error(500, None, &body("global/internal-error")),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            api_error(502, None, &body("provider/internal-unavailable")),
            ProviderError::Transient(_)
        ));
        assert_eq!(
            api_error(429, Some(1000), b"slow down"),
            ProviderError::RateLimited(Some(1000))
        );
        assert_eq!(
            api_error(429, None, &body("global/too-many-requests")),
            ProviderError::RateLimited(None)
        );
        assert!(
            matches!(api_error(418, None, b"teapot"), ProviderError::Internal(m) if m.contains("teapot"))
        );
        assert!(matches!(
            api_error(503, None, b"<html>"),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            launch_error(api_error(404, None, &body("global/object-does-not-exist"))),
            ProviderError::InvalidRequest(f) if f.field == "ssh_key_name"
        ));
        assert!(matches!(
            launch_error(ProviderError::capacity("x")),
            ProviderError::Capacity(_)
        ));
    }
}
