//! Pure translation between RunPod's GraphQL answers and the contract's types.
//!
//! No host calls here, so every rule (per-GPU prices times the count, stock to availability, pod
//! status to instance state, RunPod's error messages to error classes, tag filtering) is
//! unit-tested natively. `client` does the HTTP and hands the results to these functions.

use serde_json::Value;
use tgp_provider_sdk::http::GraphqlError;
use tgp_provider_sdk::money::{self, MoneyError};
use tgp_provider_sdk::{
    Availability, Balance, GpuSpec, Instance, InstanceState, MicroUsd, Offer, ProviderError, Tag,
};

use crate::api::{GpuType, Myself, Pod};
use crate::settings::CloudType;
use crate::tags;

/// The region of offers priced without a data centre (RunPod picks one at deploy time).
pub const ANY_REGION: &str = "any";

/// What RunPod says when a deploy cannot be placed (observed messages, research notes §1.3).
const CAPACITY_MESSAGES: &[&str] = &["no longer any instances available", "not enough free gpus"];
/// RunPod's generic failure: worth retrying.
const SOMETHING_WENT_WRONG: &str = "something went wrong";
/// The answer to terminating an unknown pod.
const NOT_FOUND_TO_TERMINATE: &str = "pod not found to terminate";

/// `stockStatus` to availability: `null` means none for this count and location, `Low` is
/// limited, anything else non-null (Medium, High, or a value not seen yet) is available.
pub fn availability(stock_status: Option<&str>) -> Availability {
    match stock_status.map(str::trim) {
        None | Some("") => Availability::Unavailable,
        Some(s) if s.eq_ignore_ascii_case("low") => Availability::Limited,
        Some(_) => Availability::Available,
    }
}

/// A USD amount RunPod sent as a JSON number (or string); `None` when absent, null or zero.
fn price(value: Option<&Value>) -> Result<Option<MicroUsd>, MoneyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money::usd_from_json(v).map(|p| (p > 0).then_some(p)),
    }
}

/// The per-GPU hourly price the spec pays: the bid floor for spot, the on-demand price otherwise
/// (falling back to the GPU type's list price for the configured cloud).
fn per_gpu_price(
    t: &GpuType,
    spot: bool,
    cloud: CloudType,
) -> Result<Option<MicroUsd>, MoneyError> {
    let lowest = t.lowest_price.as_ref();
    if spot {
        return price(lowest.and_then(|l| l.minimum_bid_price.as_ref()));
    }
    if let Some(p) = price(lowest.and_then(|l| l.uninterruptable_price.as_ref()))? {
        return Ok(Some(p));
    }
    match cloud {
        CloudType::Community => price(t.community_price.as_ref()),
        _ => price(t.secure_price.as_ref()),
    }
}

/// The offer id: what was priced, readable in logs (launch reads the offer's own fields).
pub fn offer_id(gpu_id: &str, count: u32, region: &str, spot: bool) -> String {
    let kind = if spot { "spot" } else { "on-demand" };
    format!("{gpu_id}|{count}|{region}|{kind}")
}

/// The offers for `spec` from one `gpuTypes` answer per region, cheapest first, and a note for
/// every type dropped because its price could not be read.
pub fn select_offers(
    spec: &GpuSpec,
    canonical: &str,
    gpu_id: &str,
    cloud: CloudType,
    answers: Vec<(String, Vec<GpuType>)>,
) -> (Vec<Offer>, Vec<String>) {
    let mut offers = Vec::new();
    let mut skipped = Vec::new();
    for (region, types) in answers {
        // Never trust the server's filter: only the requested type counts.
        for t in types.iter().filter(|t| t.id == gpu_id) {
            let per_gpu = match per_gpu_price(t, spec.spot, cloud) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(format!("{} in {region}: {e}", t.id));
                    continue;
                }
            };
            let Some(total) = per_gpu.checked_mul(u64::from(spec.count)) else {
                skipped.push(format!("{} in {region}: price overflows", t.id));
                continue;
            };
            if !spec.accepts_price(total) {
                continue;
            }
            let too_many = t.max_gpu_count.is_some_and(|max| spec.count > max);
            let stock = t
                .lowest_price
                .as_ref()
                .and_then(|l| l.stock_status.as_deref());
            offers.push(Offer {
                offer_id: offer_id(gpu_id, spec.count, &region, spec.spot),
                gpu_type: canonical.to_string(),
                count: spec.count,
                region: region.clone(),
                price_per_hour: total,
                spot: spec.spot,
                availability: if too_many {
                    Availability::Unavailable
                } else {
                    availability(stock)
                },
            });
        }
    }
    offers.sort_by(|a, b| {
        a.price_per_hour
            .cmp(&b.price_per_hour)
            .then_with(|| a.region.cmp(&b.region))
    });
    (offers, skipped)
}

/// The regions to price: the spec's (RunPod data centre ids are upper case), or [`ANY_REGION`].
pub fn regions_to_price(spec: &GpuSpec) -> Vec<String> {
    if spec.regions.is_empty() {
        return vec![ANY_REGION.to_string()];
    }
    let mut regions: Vec<String> = spec
        .regions
        .iter()
        .map(|r| r.trim().to_ascii_uppercase())
        .filter(|r| !r.is_empty())
        .collect();
    regions.dedup();
    regions
}

/// The data centre to pass to RunPod for an offer's region (`None` lets RunPod choose).
pub fn data_center(region: &str) -> Option<String> {
    let region = region.trim();
    (!region.is_empty() && !region.eq_ignore_ascii_case(ANY_REGION))
        .then(|| region.to_ascii_uppercase())
}

/// Micro-dollars as the USD float RunPod's inputs take (exact for any realistic price: the
/// shortest decimal form of the quotient is the micro-dollar amount).
pub fn usd_float(micros: MicroUsd) -> f64 {
    micros as f64 / money::MICROS_PER_USD as f64
}

/// The spot bid per GPU for an offer priced for the whole pod, rounded up to the micro-dollar so
/// that `bid * count` never falls under the quoted price.
pub fn bid_per_gpu(offer: &Offer) -> Result<MicroUsd, ProviderError> {
    if offer.count == 0 {
        return Err(ProviderError::invalid("offer.count", "must be at least 1"));
    }
    Ok(offer.price_per_hour.div_ceil(u64::from(offer.count)))
}

/// The contract state of a pod. `desiredStatus` is what RunPod aims for; the container is only up
/// once `runtime` is non-null. A RUNNING pod without a runtime stays `booting` however long it
/// takes (RunPod bills it, but it may never start): the engine's boot timeout decides. A status
/// this plugin does not know is `unknown` (with the vendor's word kept), never an error.
pub fn instance_state(desired_status: Option<&str>, has_runtime: bool) -> InstanceState {
    let status = desired_status.unwrap_or("").trim().to_ascii_uppercase();
    match status.as_str() {
        "RUNNING" if has_runtime => InstanceState::Running,
        "RUNNING" => InstanceState::Booting,
        // A restart of a pod that ran: it is expected back.
        "RESTARTING" => InstanceState::Rebooting,
        "CREATED" | "" => InstanceState::Pending,
        // A stopped pod (podStop, or a spot pod outbid) is not coming back by itself, and its
        // volume still bills until the pod is terminated.
        "EXITED" => InstanceState::Stopped,
        "DEAD" => InstanceState::Failed,
        "TERMINATED" => InstanceState::Terminated,
        _ => InstanceState::Unknown,
    }
}

/// A pod as a contract instance, with its tags and launch metadata decoded from its environment.
/// The price is optional in the contract: an unreadable one is left out.
pub fn to_instance(pod: Pod) -> Instance {
    let state = instance_state(pod.desired_status.as_deref(), pod.runtime.is_some());
    let env = pod.env.unwrap_or_default();
    let public_ip = pod
        .runtime
        .as_ref()
        .and_then(|r| r.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.is_ip_public == Some(true))
                .and_then(|p| p.ip.clone())
        })
        .filter(|ip| !ip.is_empty());
    Instance {
        instance_id: pod.id,
        name: pod.name.unwrap_or_default(),
        state,
        public_ip,
        region: tags::env_value(&env, tags::REGION_VAR).map(str::to_string),
        gpu_type: tags::env_value(&env, tags::GPU_VAR).map(str::to_string),
        price_per_hour: pod
            .cost_per_hr
            .as_ref()
            .and_then(|v| money::usd_from_json(v).ok()),
        tags: tags::env_value(&env, tags::TAGS_VAR)
            .map(tags::decode)
            .unwrap_or_default(),
        vendor_state: pod.desired_status,
    }
}

/// The pods carrying `owner` (decoded from their environment, never trusting a server filter).
/// The tag is read first; a pod that carries it is reported whatever else it holds.
pub fn owned_instances(pods: Vec<Pod>, owner: &Tag) -> Vec<Instance> {
    pods.into_iter()
        .filter(|pod| {
            let env = pod.env.as_deref().unwrap_or_default();
            tags::env_value(env, tags::TAGS_VAR)
                .map(tags::decode)
                .is_some_and(|tags| tags.contains(owner))
        })
        .map(to_instance)
        .collect()
}

/// The account balance (`clientBalance`, USD); an overdrawn account has nothing to spend.
pub fn balance(myself: &Myself) -> Result<Balance, ProviderError> {
    let available = match myself.client_balance.as_ref() {
        None | Some(Value::Null) => {
            return Err(ProviderError::internal("RunPod sent no clientBalance"));
        }
        Some(v) => match money::usd_from_json(v) {
            Ok(micros) => micros,
            Err(MoneyError::Negative(_)) => 0,
            Err(e) => return Err(ProviderError::internal(format!("clientBalance: {e}"))),
        },
    };
    let spend = match myself.current_spend_per_hr.as_ref() {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            money::usd_from_json(v)
                .map_err(|e| ProviderError::internal(format!("currentSpendPerHr: {e}")))?,
        ),
    };
    Ok(Balance::amount(available, spend))
}

/// The messages of a GraphQL `errors` answer, if that is what `error` is.
fn messages(error: &GraphqlError) -> Option<String> {
    match error {
        GraphqlError::Errors { errors, .. } => Some(
            errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
}

/// Whether `error` is RunPod's answer to terminating a pod it does not know.
pub fn is_unknown_pod_on_terminate(error: &GraphqlError) -> bool {
    messages(error).is_some_and(|m| m.to_ascii_lowercase().contains(NOT_FOUND_TO_TERMINATE))
}

/// Classifies a failed GraphQL call. HTTP statuses (401/403 auth, 429 rate-limited with
/// Retry-After, 5xx transient) are classified by the SDK; RunPod's domain errors arrive as HTTP
/// 200 with an `errors` array and are recognised here by their messages.
pub fn graphql_error(error: GraphqlError) -> ProviderError {
    let Some(message) = messages(&error) else {
        return error.into();
    };
    let lower = message.to_ascii_lowercase();
    if CAPACITY_MESSAGES.iter().any(|m| lower.contains(m)) {
        ProviderError::capacity(message)
    } else if lower.contains("bid") && (lower.contains("minimum") || lower.contains("below")) {
        // The spot floor moved above our bid since the quote: re-quote, like a capacity miss.
        ProviderError::capacity(message)
    } else if lower.contains("insufficient")
        && (lower.contains("balance") || lower.contains("funds") || lower.contains("credit"))
    {
        ProviderError::billing(message)
    } else if lower.contains(SOMETHING_WENT_WRONG) {
        ProviderError::transient(message)
    } else if lower.contains("unauthorized") || lower.contains("api key") {
        ProviderError::auth(message)
    } else {
        error.into()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{LowestPrice, Runtime, RuntimePort};

    const H100: &str = "NVIDIA H100 80GB HBM3";

    fn gpu_type(bid: Value, on_demand: Value, stock: Option<&str>) -> GpuType {
        GpuType {
            id: H100.into(),
            max_gpu_count: Some(8),
            secure_price: Some(json!(2.99)),
            community_price: Some(json!(2.39)),
            lowest_price: Some(LowestPrice {
                minimum_bid_price: Some(bid),
                uninterruptable_price: Some(on_demand),
                stock_status: stock.map(str::to_string),
            }),
        }
    }

    fn pod(status: &str, runtime: bool, env: Vec<String>) -> Pod {
        Pod {
            id: "p1".into(),
            name: Some("tgp-abc-1".into()),
            desired_status: Some(status.into()),
            cost_per_hr: Some(json!(5.98)),
            gpu_count: Some(2),
            env: Some(env),
            runtime: runtime.then(|| Runtime {
                ports: Some(vec![
                    RuntimePort {
                        ip: Some("100.65.0.2".into()),
                        is_ip_public: Some(false),
                    },
                    RuntimePort {
                        ip: Some("203.0.113.9".into()),
                        is_ip_public: Some(true),
                    },
                ]),
            }),
        }
    }

    #[test]
    fn stock_maps_to_availability() {
        assert_eq!(availability(None), Availability::Unavailable);
        assert_eq!(availability(Some("Low")), Availability::Limited);
        assert_eq!(availability(Some("Medium")), Availability::Available);
        assert_eq!(availability(Some("High")), Availability::Available);
    }

    #[test]
    fn prices_are_per_gpu_times_count() {
        let mut spec = GpuSpec::new("H100-SXM", 2);
        spec.regions = vec!["us-ks-2".into(), "EU-RO-1".into()];
        let (offers, skipped) = select_offers(
            &spec,
            "H100-SXM",
            H100,
            CloudType::Secure,
            vec![
                (
                    "US-KS-2".into(),
                    vec![gpu_type(json!(1.5), json!(2.99), Some("High"))],
                ),
                (
                    "EU-RO-1".into(),
                    vec![gpu_type(json!(1.5), json!(2.49), None)],
                ),
            ],
        );
        assert!(skipped.is_empty());
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].region, "EU-RO-1");
        assert_eq!(offers[0].price_per_hour, 4_980_000);
        assert_eq!(offers[0].availability, Availability::Unavailable);
        assert_eq!(offers[1].price_per_hour, 5_980_000);
        assert_eq!(offers[1].availability, Availability::Available);
        assert_eq!(
            offers[1].offer_id,
            "NVIDIA H100 80GB HBM3|2|US-KS-2|on-demand"
        );
        assert_eq!(offers[1].gpu_type, "H100-SXM");
        assert_eq!(regions_to_price(&spec), ["US-KS-2", "EU-RO-1"]);
    }

    #[test]
    fn spot_uses_the_bid_floor_and_caps_apply() {
        let mut spec = GpuSpec::new("H100-SXM", 2);
        spec.spot = true;
        spec.max_price_per_hour = Some(3_000_000);
        let answers = vec![(
            ANY_REGION.to_string(),
            vec![gpu_type(json!(1.5), json!(2.99), Some("Low"))],
        )];
        let (offers, _) = select_offers(&spec, "H100-SXM", H100, CloudType::All, answers.clone());
        assert_eq!(offers.len(), 1);
        assert!(offers[0].spot);
        assert_eq!(offers[0].price_per_hour, 3_000_000);
        assert_eq!(offers[0].availability, Availability::Limited);
        spec.max_price_per_hour = Some(2_999_999);
        assert!(
            select_offers(&spec, "H100-SXM", H100, CloudType::All, answers)
                .0
                .is_empty()
        );
    }

    #[test]
    fn odd_answers_are_skipped_not_trusted() {
        let spec = GpuSpec::new("H100-SXM", 9);
        let mut other = gpu_type(json!(1.0), json!(1.0), Some("High"));
        other.id = "NVIDIA L4".into();
        let mut no_lowest = gpu_type(json!(1.0), json!(1.0), None);
        no_lowest.lowest_price = None;
        let (offers, skipped) = select_offers(
            &spec,
            "H100-SXM",
            H100,
            CloudType::Community,
            vec![(
                ANY_REGION.into(),
                vec![
                    other,
                    gpu_type(json!(1.0), json!("cheap"), Some("High")),
                    gpu_type(json!(1.0), json!(2.0), Some("High")),
                    no_lowest,
                ],
            )],
        );
        assert_eq!(skipped.len(), 1);
        // 9 GPUs is above maxGpuCount 8: listed, but unavailable; list price fallback = community.
        let prices: Vec<_> = offers
            .iter()
            .map(|o| (o.price_per_hour, o.availability))
            .collect();
        assert_eq!(
            prices,
            [
                (18_000_000, Availability::Unavailable),
                (21_510_000, Availability::Unavailable)
            ]
        );
        assert!(regions_to_price(&GpuSpec::new("x", 1)) == [ANY_REGION]);
    }

    #[test]
    fn bids_round_up_and_regions_map_to_data_centres() {
        let mut offer = Offer {
            offer_id: "o".into(),
            gpu_type: "H100-SXM".into(),
            count: 3,
            region: "any".into(),
            price_per_hour: 1_000_000,
            spot: true,
            availability: Availability::Available,
        };
        assert_eq!(bid_per_gpu(&offer), Ok(333_334));
        assert_eq!(usd_float(333_334), 0.333334);
        offer.count = 0;
        assert!(bid_per_gpu(&offer).is_err());
        assert_eq!(data_center("any"), None);
        assert_eq!(data_center("eu-ro-1"), Some("EU-RO-1".into()));
    }

    #[test]
    fn pod_states() {
        for (status, runtime, state) in [
            ("RUNNING", true, InstanceState::Running),
            // Billed but never started: still booting, the engine's timeout decides.
            ("RUNNING", false, InstanceState::Booting),
            ("RESTARTING", true, InstanceState::Rebooting),
            ("CREATED", false, InstanceState::Pending),
            ("EXITED", false, InstanceState::Stopped),
            ("DEAD", false, InstanceState::Failed),
            ("TERMINATED", true, InstanceState::Terminated),
            ("EXPLODED", true, InstanceState::Unknown),
        ] {
            assert_eq!(instance_state(Some(status), runtime), state, "{status}");
        }
        let odd = to_instance(pod("EXPLODED", true, vec![]));
        assert_eq!(odd.vendor_state.as_deref(), Some("EXPLODED"));
    }

    #[test]
    fn pods_become_instances_with_their_tags() {
        let env = vec![
            format!(
                "{}={}",
                tags::TAGS_VAR,
                tags::encode(&[Tag::new("tgp.io/cluster", "c1")])
            ),
            format!("{}=H100-SXM", tags::GPU_VAR),
            format!("{}=US-KS-2", tags::REGION_VAR),
        ];
        let i = to_instance(pod("RUNNING", true, env));
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(i.price_per_hour, Some(5_980_000));
        assert_eq!(i.gpu_type.as_deref(), Some("H100-SXM"));
        assert_eq!(i.region.as_deref(), Some("US-KS-2"));
        assert_eq!(i.tags, [Tag::new("tgp.io/cluster", "c1")]);
        let booting = to_instance(pod("RUNNING", false, vec![]));
        assert_eq!(
            (booting.state, booting.public_ip),
            (InstanceState::Booting, None)
        );
    }

    #[test]
    fn owned_pods_are_filtered_client_side() {
        let mine = |id: &str, value: &str, status: &str| {
            let mut p = pod(
                status,
                false,
                vec![format!(
                    "{}={}",
                    tags::TAGS_VAR,
                    tags::encode(&[Tag::new("tgp.io/cluster", value)])
                )],
            );
            p.id = id.into();
            p
        };
        let mut untagged = pod("RUNNING", true, vec!["TGP_TAGS=garbage".into()]);
        untagged.id = "x".into();
        let owned = owned_instances(
            vec![
                mine("a", "c1", "RUNNING"),
                mine("b", "c2", "RUNNING"),
                mine("c", "c1", "TERMINATED"),
                mine("d", "c1", "MELTING"),
                mine("e", "c2", "MELTING"),
                untagged,
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
                ("a", InstanceState::Booting),
                ("c", InstanceState::Terminated),
                ("d", InstanceState::Unknown),
            ],
            "an odd pod is reported as unknown, never fails the listing"
        );
    }

    #[test]
    fn balances() {
        let m = |b: Value, s: Value| Myself {
            client_balance: Some(b),
            current_spend_per_hr: Some(s),
            pods: None,
        };
        assert_eq!(
            balance(&m(json!(100.5), json!(2.99))),
            Ok(Balance::amount(100_500_000, Some(2_990_000)))
        );
        assert_eq!(
            balance(&m(json!(-3.2), Value::Null)),
            Ok(Balance::amount(0, None))
        );
        assert!(matches!(
            balance(&m(Value::Null, Value::Null)),
            Err(ProviderError::Internal(_))
        ));
        assert!(matches!(
            balance(&m(json!("lots"), Value::Null)),
            Err(ProviderError::Internal(_))
        ));
    }

    fn errors(message: &str) -> GraphqlError {
        GraphqlError::Errors {
            errors: vec![serde_json::from_value(json!({"message": message})).unwrap()],
            data: None,
        }
    }

    #[test]
    fn classifies_runpod_errors() {
        for capacity in [
            "There are no longer any instances available with the requested specifications. Please refresh and try again.",
            "There are no longer any instances available with the request specifications. Please try again later.",
            "There are no longer any instances available with enough disk space.",
            "There are not enough free GPUs on the host machine to start this pod.",
            "Your bid price is below the minimum bid price for this GPU type.",
        ] {
            assert!(
                matches!(graphql_error(errors(capacity)), ProviderError::Capacity(_)),
                "{capacity}"
            );
        }
        assert!(matches!(
            graphql_error(errors("Insufficient balance")),
            ProviderError::Billing(_)
        ));
        assert!(matches!(
            graphql_error(errors(
                "Something went wrong. Please try again later or contact support."
            )),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            graphql_error(errors("weird")),
            ProviderError::Internal(_)
        ));
        assert!(matches!(
            graphql_error(GraphqlError::Status(ProviderError::rate_limited(Some(
                2000
            )))),
            ProviderError::RateLimited(Some(2000))
        ));
        assert!(is_unknown_pod_on_terminate(&errors(
            "pod not found to terminate"
        )));
        assert!(!is_unknown_pod_on_terminate(&errors(
            "Something went wrong"
        )));
    }
}
