//! The conformance kit: a standard scenario suite any provider plugin must pass, run through the
//! same host the operator uses. `tgp plugin test` prints its table; CI runs it for every plugin.
//!
//! Scenarios: quote returns well-formed offers sorted by price; launch then verify reaches
//! running; terminate twice is idempotent; an unknown id maps to not-found; a bad key maps to
//! auth; no capacity maps to capacity; 429 maps to rate-limited; balance is a number or
//! "unsupported"; list-owned finds what launch created and nothing else; the hosts the plugin
//! declares (`capabilities.hosts`) cover every host it called during the run.

pub mod target;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plugins::{
    Availability, Balance, CallError, GpuSpec, Grants, InstanceState, LaunchRequest, Offer, Plugin,
    PluginHost, ProviderError, SecretValue, Tag, TerminateOutcome,
};
pub use target::{Personality, Target};

/// How one scenario ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plugin: String,
    pub results: Vec<ScenarioResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.verdict != Verdict::Fail)
    }
}

/// GPU types tried, in order, until one has offers.
const CANDIDATE_GPUS: [&str; 6] = [
    "H100-SXM",
    "A100-80GB",
    "RTX4090",
    "L40S",
    "A6000",
    "H100-PCIe",
];
/// The owner tag the kit marks its instances with.
const OWNER_KEY: &str = "tgp.io/cluster";

type Outcome = Result<String, String>;

struct Kit<'a> {
    host: &'a PluginHost,
    bytes: Vec<u8>,
    target: &'a Target,
    plugin: Plugin,
    owner: Tag,
    spec: Option<GpuSpec>,
    offer: Option<Offer>,
    launched: Vec<String>,
}

fn grants(name: &str, target: &Target, key: &str, extra: &BTreeMap<String, String>) -> Grants {
    let mut config = target.config().clone();
    config.insert("base_url".into(), target.base_url().to_string());
    config.extend(extra.clone());
    // Grant the API's origin (a URL target may carry a path, which an allow-list entry may not).
    let allowed = url::Url::parse(target.base_url())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| target.base_url().to_string());
    Grants {
        provider_name: name.to_string(),
        allowed_hosts: vec![allowed],
        secrets: [("api_key".to_string(), SecretValue::from(key.to_string()))].into(),
        auth: None,
        config,
        limits: Default::default(),
    }
}

fn spec(gpu: &str) -> GpuSpec {
    GpuSpec {
        gpu_type: gpu.to_string(),
        count: 1,
        regions: vec![],
        spot: false,
        max_price_per_hour: None,
        aliases: Vec::new(),
    }
}

impl Kit<'_> {
    /// Waits (advancing simulated time) until `id` reports `want`, or the deadline passes.
    async fn verify_until(
        &self,
        id: &str,
        want: impl Fn(InstanceState) -> bool,
    ) -> Result<InstanceState, String> {
        let deadline =
            Instant::now() + Duration::from_secs(if self.target.controllable() { 20 } else { 900 });
        let mut last = None;
        while Instant::now() < deadline {
            let state = match self.plugin.verify(id).await {
                Ok(i) => i.state,
                Err(CallError::Provider(ProviderError::NotFound(_))) => InstanceState::NotFound,
                Err(e) => return Err(format!("verify failed: {e}")),
            };
            if want(state) {
                return Ok(state);
            }
            last = Some(state);
            self.target.advance(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(if self.target.controllable() {
                5
            } else {
                5000
            }))
            .await;
        }
        Err(format!(
            "instance {id} never reached the expected state; last {:?}",
            last.map(|s| s.name())
        ))
    }

    /// A fresh offer to launch: some providers sell each offer once (a Vast ask is one machine).
    /// Tries the quoted GPU type first, then the other candidates.
    async fn fresh_offer(&self) -> Result<Offer, String> {
        let first = self
            .spec
            .as_ref()
            .map(|s| s.gpu_type.clone())
            .ok_or("no GPU type with offers (quote found none)")?;
        let mut order = vec![first.clone()];
        order.extend(
            CANDIDATE_GPUS
                .iter()
                .map(|g| g.to_string())
                .filter(|g| *g != first),
        );
        for gpu in order {
            let offers = self
                .plugin
                .quote(&spec(&gpu))
                .await
                .map_err(|e| format!("quote before launch: {e}"))?;
            if let Some(o) = offers
                .into_iter()
                .find(|o| o.availability != Availability::Unavailable)
            {
                return Ok(o);
            }
        }
        Err("no available offer left to launch".to_string())
    }

    async fn try_launch(
        &self,
        name: &str,
        tags: Vec<Tag>,
    ) -> Result<Result<crate::plugins::Instance, CallError>, String> {
        let offer = self.fresh_offer().await?;
        let req = LaunchRequest {
            offer,
            instance_name: name.to_string(),
            tags,
            user_data: None,
            image: None,
            terminate_after_seconds: None,
        };
        Ok(self.plugin.launch(&req, None).await)
    }

    async fn launch(&mut self, name: &str, tags: Vec<Tag>) -> Result<String, String> {
        let inst = self
            .try_launch(name, tags)
            .await?
            .map_err(|e| format!("launch failed: {e}"))?;
        if inst.instance_id.is_empty() {
            return Err("launch answered an empty instance id".into());
        }
        self.launched.push(inst.instance_id.clone());
        Ok(inst.instance_id)
    }

    async fn quote(&mut self) -> Outcome {
        for gpu in CANDIDATE_GPUS {
            let s = spec(gpu);
            let offers = self
                .plugin
                .quote(&s)
                .await
                .map_err(|e| format!("quote {gpu}: {e}"))?;
            if offers.is_empty() {
                continue;
            }
            for o in &offers {
                if o.offer_id.is_empty() {
                    return Err(format!("an offer for {gpu} has an empty offer id"));
                }
                if !o.gpu_type.eq_ignore_ascii_case(gpu) || o.count != 1 {
                    return Err(format!(
                        "asked for 1x {gpu}, got an offer for {}x {}",
                        o.count, o.gpu_type
                    ));
                }
                if o.price_per_hour == 0 {
                    return Err(format!("offer {} has a zero price", o.offer_id));
                }
            }
            if !offers
                .windows(2)
                .all(|w| w[0].price_per_hour <= w[1].price_per_hour)
            {
                return Err("offers are not sorted by price".into());
            }
            let n = offers.len();
            self.offer = offers
                .iter()
                .find(|o| o.availability != Availability::Unavailable)
                .cloned();
            self.spec = Some(s);
            if self.offer.is_none() {
                return Err(format!("{n} offers for {gpu}, none available to launch"));
            }
            return Ok(format!("{n} well-formed offers for {gpu}, sorted by price"));
        }
        Err(format!(
            "no offers for any of {}",
            CANDIDATE_GPUS.join(", ")
        ))
    }

    async fn launch_verify(&mut self) -> Outcome {
        let id = self
            .launch("tgp-conformance-1", vec![self.owner.clone()])
            .await?;
        self.verify_until(&id, |s| s == InstanceState::Running)
            .await?;
        Ok(format!("instance {id} reached running"))
    }

    async fn terminate_twice(&mut self) -> Outcome {
        let id = self
            .launched
            .first()
            .cloned()
            .ok_or("nothing was launched")?;
        let first = self
            .plugin
            .terminate(&id)
            .await
            .map_err(|e| format!("first terminate: {e}"))?;
        self.verify_until(&id, |s| {
            matches!(s, InstanceState::Terminated | InstanceState::NotFound)
        })
        .await?;
        let second = self
            .plugin
            .terminate(&id)
            .await
            .map_err(|e| format!("second terminate: {e}"))?;
        if !matches!(
            second,
            TerminateOutcome::Terminated | TerminateOutcome::AlreadyGone
        ) {
            return Err(format!(
                "second terminate answered {second:?}; expected terminated or already-gone"
            ));
        }
        Ok(format!("{}, then {}", first.name(), second.name()))
    }

    async fn unknown_id(&mut self) -> Outcome {
        let id = "tgp-conformance-no-such-instance";
        match self.plugin.verify(id).await {
            Err(CallError::Provider(ProviderError::NotFound(_))) => {}
            Ok(i) if i.state == InstanceState::NotFound => {}
            other => {
                return Err(format!(
                    "verify of an unknown id: expected not-found, got {other:?}"
                ));
            }
        }
        match self.plugin.terminate(id).await {
            Ok(TerminateOutcome::AlreadyGone) => {
                Ok("verify: not-found; terminate: already-gone".into())
            }
            other => Err(format!(
                "terminate of an unknown id: expected already-gone, got {other:?}"
            )),
        }
    }

    async fn bad_key(&mut self) -> Outcome {
        let g = grants(
            "conformance-bad-key",
            self.target,
            "tgp-conformance-wrong-key",
            &BTreeMap::new(),
        );
        let plugin = self
            .host
            .load(self.bytes.clone(), g)
            .await
            .map_err(|e| format!("load: {e}"))?;
        let s = self.spec.clone().unwrap_or_else(|| spec("H100-SXM"));
        match plugin.quote(&s).await {
            Err(CallError::Provider(ProviderError::Auth(m))) => Ok(format!("auth: {m}")),
            other => Err(format!("expected auth, got {other:?}")),
        }
    }

    async fn no_capacity(&mut self) -> Outcome {
        if !self.target.controllable() {
            return Ok("skip".into());
        }
        let before = self.target.live_instances();
        let offer = self.fresh_offer().await?;
        self.target.no_capacity();
        let req = LaunchRequest {
            offer,
            instance_name: "tgp-conformance-nocap".into(),
            tags: vec![self.owner.clone()],
            user_data: None,
            image: None,
            terminate_after_seconds: None,
        };
        let result = self.plugin.launch(&req, None).await;
        self.target.clear_faults();
        match result {
            Err(CallError::Provider(ProviderError::Capacity(_))) => {}
            Err(e) => return Err(format!("expected capacity, got {e}")),
            Ok(i) => {
                self.launched.push(i.instance_id.clone());
                return Err(format!(
                    "launch succeeded ({}) while capacity was exhausted",
                    i.instance_id
                ));
            }
        }
        if self.target.live_instances() != before {
            return Err("a refused launch left an instance behind".into());
        }
        Ok("capacity, and no instance left behind".into())
    }

    async fn rate_limited(&mut self) -> Outcome {
        if !self.target.controllable() {
            return Ok("skip".into());
        }
        self.target.rate_limit_next_quote();
        let s = self.spec.clone().unwrap_or_else(|| spec("H100-SXM"));
        let result = self.plugin.quote(&s).await;
        self.target.clear_faults();
        match result {
            Err(CallError::Provider(ProviderError::RateLimited(after))) => Ok(match after {
                Some(ms) => format!("rate-limited, retry after {ms} ms"),
                None => "rate-limited (the API gave no Retry-After)".into(),
            }),
            other => Err(format!("expected rate-limited, got {other:?}")),
        }
    }

    async fn balance(&mut self) -> Outcome {
        match self.plugin.balance().await {
            Ok(Balance::Amount(a)) => Ok(format!("{} available", crate::money::Usd(a.available))),
            Ok(Balance::Unsupported) => Ok("unsupported (no balance API)".into()),
            Err(e) => Err(format!("expected a number or unsupported, got {e}")),
        }
    }

    async fn list_owned(&mut self) -> Outcome {
        let mine = self
            .launch("tgp-conformance-2", vec![self.owner.clone()])
            .await?;
        let foreign_tag = Tag {
            key: OWNER_KEY.into(),
            value: format!("{}-other", self.owner.value),
        };
        let theirs = self.launch("tgp-conformance-3", vec![foreign_tag]).await?;
        let listed = self
            .plugin
            .list_owned(&self.owner)
            .await
            .map_err(|e| format!("list-owned: {e}"))?;
        let live: Vec<_> = listed
            .iter()
            .filter(|i| !matches!(i.state, InstanceState::Terminated | InstanceState::NotFound))
            .collect();
        if !live.iter().any(|i| i.instance_id == mine) {
            return Err(format!(
                "list-owned did not return {mine}, which carries the owner tag"
            ));
        }
        if listed.iter().any(|i| i.instance_id == theirs) {
            return Err(format!(
                "list-owned returned {theirs}, which carries another owner's tag"
            ));
        }
        if let Some(stray) = listed.iter().find(|i| {
            !i.tags
                .iter()
                .any(|t| t.key == self.owner.key && t.value == self.owner.value)
        }) {
            return Err(format!(
                "list-owned returned {} without the owner tag",
                stray.instance_id
            ));
        }
        Ok(format!(
            "{} owned instance(s) listed, the foreign one not",
            live.len()
        ))
    }

    /// Runs last: every origin the plugin sent a request to during the run must be among the
    /// hosts it declared at load. (The host already refused it at load had it declared an
    /// origin it was not granted, and refuses every request off the allow-list.)
    async fn declared_hosts(&mut self) -> Outcome {
        let declared = self.plugin.declared_hosts().join(", ");
        let called = self.plugin.contacted_origins();
        let undeclared = self.plugin.undeclared_origins();
        if !undeclared.is_empty() {
            return Err(format!(
                "the plugin called {} without declaring it (declared: {}); list every host it \
                 calls in info().capabilities.hosts",
                undeclared.join(", "),
                if declared.is_empty() {
                    "none"
                } else {
                    &declared
                }
            ));
        }
        if called.is_empty() {
            return Err("the plugin called no host during the run".into());
        }
        Ok(format!("declared {declared}; called {}", called.join(", ")))
    }

    /// Terminates everything the kit launched (best effort).
    async fn clean_up(&mut self) {
        for id in self.launched.clone() {
            let _ = self.plugin.terminate(&id).await;
        }
    }
}

/// Runs every scenario against `target` and reports each.
pub async fn run(
    host: &PluginHost,
    bytes: Vec<u8>,
    target: &Target,
    extra_config: &BTreeMap<String, String>,
) -> anyhow::Result<Report> {
    let owner = Tag {
        key: OWNER_KEY.into(),
        value: format!("conformance-{}", std::process::id()),
    };
    let g = grants("conformance", target, target.api_key(), extra_config);
    let plugin = host.load(bytes.clone(), g).await?;
    let name = format!("{} {}", plugin.info().name, plugin.info().version);
    let mut kit = Kit {
        host,
        bytes,
        target,
        plugin,
        owner,
        spec: None,
        offer: None,
        launched: Vec::new(),
    };
    let mut results = Vec::new();
    macro_rules! scenario {
        ($name:expr, $call:ident) => {{
            let outcome = kit.$call().await;
            let (verdict, detail) = match outcome {
                Ok(d) if d == "skip" => (
                    Verdict::Skip,
                    "needs a simulator (fault injection)".to_string(),
                ),
                Ok(d) => (Verdict::Pass, d),
                Err(d) => (Verdict::Fail, d),
            };
            results.push(ScenarioResult {
                scenario: $name,
                verdict,
                detail,
            });
        }};
    }
    scenario!("quote returns well-formed offers sorted by price", quote);
    scenario!("launch then verify reaches running", launch_verify);
    scenario!("terminate twice is idempotent", terminate_twice);
    scenario!("unknown id maps to not-found", unknown_id);
    scenario!("a bad key maps to auth", bad_key);
    scenario!("no capacity maps to capacity", no_capacity);
    scenario!("429 maps to rate-limited", rate_limited);
    scenario!("balance is a number or unsupported", balance);
    scenario!(
        "list-owned finds what launch created and nothing else",
        list_owned
    );
    scenario!("declared hosts cover every host called", declared_hosts);
    kit.clean_up().await;
    Ok(Report {
        plugin: name,
        results,
    })
}

/// The report as the table `tgp plugin test` prints.
pub fn render(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            vec![
                r.scenario.to_string(),
                format!("{:?}", r.verdict).to_uppercase(),
                r.detail.clone(),
            ]
        })
        .collect();
    let passed = report
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .count();
    let failed = report
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    let skipped = report
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Skip)
        .count();
    format!(
        "conformance of {plugin}\n{table}{passed} of {total} scenarios passed ({failed} failing, {skipped} skipped)\n",
        plugin = report.plugin,
        table = crate::cli::table::render(&["SCENARIO", "RESULT", "DETAIL"], &rows),
        total = report.results.len(),
    )
}
