//! Shared helpers for the operator end-to-end tests: a DevEnv with the real operator, request
//! text, a watch that records every phase a request passed through, and call-log queries.

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tgp::crd::GPURequest;
use tgp::crd::conditions::Condition;
use tgp::crd::gpurequest::Phase;
use tgp::devenv::{self, CloudSpec, DevEnv};
use tgp_cloudsim::{CallRecord, MockCloudConfig, OfferSpec};

/// Deadline for anything the operator must do (the machine is slow and shared).
pub const T: Duration = Duration::from_secs(60);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One H100-SXM x1 offer with stock 10 in `region`, priced in micro-USD.
pub fn h100(region: &str, price_micro: u64) -> OfferSpec {
    OfferSpec::new("H100-SXM", 1, region, price_micro, false, 10)
}

/// A cloud selling `offers`, booting in 300 ms + 300 ms, stopping in 100 ms.
pub fn cloud(offers: Vec<OfferSpec>) -> MockCloudConfig {
    MockCloudConfig {
        offers,
        boot_delay: Duration::from_millis(300),
        run_delay: Duration::from_millis(300),
        stop_delay: Duration::from_millis(100),
        ..MockCloudConfig::default()
    }
}

/// The two-cloud set-up most tests use: `a` is the cheapest ($1.00/h), `b` next ($2.00/h).
pub fn two_clouds(a: MockCloudConfig, b: MockCloudConfig) -> Vec<CloudSpec> {
    vec![CloudSpec::new("a", a), CloudSpec::new("b", b)]
}

pub fn cheap() -> MockCloudConfig {
    cloud(vec![h100("us-east-1", 1_000_000)])
}

pub fn dearer() -> MockCloudConfig {
    cloud(vec![h100("us-east-1", 2_000_000)])
}

/// Starts the environment and one operator replica (`op-1`), and waits for the providers.
pub async fn start(clouds: Vec<CloudSpec>) -> DevEnv {
    init_tracing();
    let mut env = DevEnv::start(clouds, devenv::fast_settings())
        .await
        .expect("dev environment starts");
    env.start_operator("op-1").await.expect("operator starts");
    env.wait_providers_loaded(T).await.expect("providers load");
    env
}

/// A GPURequest for one H100-SXM, with extra spec lines (YAML, indented by 2).
pub fn request(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: {name}\nspec:\n  gpuType: H100-SXM\n  gpuCount: 1\n{extra_spec}"
    )
}

pub fn phase(r: &GPURequest) -> Phase {
    r.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

pub fn condition<'a>(r: &'a GPURequest, type_: &str) -> Option<&'a Condition> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn is_ready(r: &GPURequest) -> bool {
    phase(r) == Phase::Ready
}

/// Status as pretty JSON, for assertion messages.
pub fn dump(r: &GPURequest) -> String {
    serde_json::to_string_pretty(&r.status).unwrap_or_default()
}

/// Every persisted state of one request seen through a watch, and the first one that satisfied
/// the predicate. The watch sees every status write, so the phases are the ones actually stored.
pub struct Watched {
    pub states: Vec<GPURequest>,
    pub last: GPURequest,
}

impl Watched {
    pub fn phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for s in &self.states {
            let p = phase(s);
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// Watches `name` until `done` holds; returns every state seen on the way.
pub async fn watch_until(
    env: &DevEnv,
    name: &str,
    timeout: Duration,
    done: impl Fn(&GPURequest) -> bool,
) -> anyhow::Result<Watched> {
    let api: Api<GPURequest> = Api::all(env.client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = Box::pin(watcher(api, config).applied_objects());
    let mut states = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        match next {
            Err(_) => {
                let last = states.last().map(dump).unwrap_or_else(|| "none".into());
                anyhow::bail!("timed out after {timeout:?} watching {name}; last status: {last}");
            }
            Ok(None) => anyhow::bail!("watch on {name} ended"),
            Ok(Some(Err(e))) => {
                tracing::warn!("watch error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Some(Ok(r))) => {
                let stop = done(&r);
                states.push(r.clone());
                if stop {
                    return Ok(Watched { states, last: r });
                }
            }
        }
    }
}

/// Waits until no simulated cloud has a live instance (stopping ones included).
pub async fn wait_no_live_instances(env: &DevEnv, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while env.live_instances() > 0 {
        if tokio::time::Instant::now() >= deadline {
            let live: Vec<_> = env
                .clouds
                .iter()
                .flat_map(|(n, c)| {
                    c.live_instances()
                        .into_iter()
                        .map(move |i| format!("{n}:{}:{:?}", i.id, i.status))
                })
                .collect();
            anyhow::bail!("timed out after {timeout:?}; live instances: {live:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// Calls of `endpoint` in a call log.
pub fn calls_to<'a>(calls: &'a [CallRecord], endpoint: &str) -> Vec<&'a CallRecord> {
    calls.iter().filter(|c| c.endpoint == endpoint).collect()
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
