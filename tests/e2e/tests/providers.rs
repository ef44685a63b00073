//! The real provider plugins (built by this crate's build script) through the real host, against
//! the simulators that speak their wire formats: the conformance kit for all four, and each
//! provider's own failure modes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tgp::conformance::{self, Personality, Target, Verdict};
use tgp::plugins::{
    CallError, GpuSpec, Grants, HostConfig, InstanceState, LaunchRequest, LoadError, Plugin,
    PluginHost, ProviderError, SecretValue, Tag,
};
use tgp_cloudsim::{
    Faults, LambdaCloud, LambdaConfig, RunpodCloud, RunpodConfig, Switch, VastCloud, VastConfig,
};

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("TGP_TEST_PLUGIN_DIR")).join(format!("tgp_provider_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn conformance_passes(name: &str, personality: Personality) {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let target = Target::simulator(personality).await.expect("simulator");
    let report = conformance::run(&host, component(name), &target, &BTreeMap::new())
        .await
        .expect("kit runs");
    let failures: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .collect();
    assert!(
        failures.is_empty(),
        "{name}: {}",
        conformance::render(&report)
    );
    assert_eq!(report.results.len(), 10);
    let hosts = report
        .results
        .iter()
        .find(|r| r.scenario == "declared hosts cover every host called")
        .expect("the declared-hosts scenario ran");
    assert!(
        hosts.detail.contains(target.base_url()),
        "{name}: {}",
        hosts.detail
    );
}

#[tokio::test]
async fn conformance_mock() {
    conformance_passes("mock", Personality::Mock).await;
}

#[tokio::test]
async fn conformance_runpod() {
    conformance_passes("runpod", Personality::Runpod).await;
}

#[tokio::test]
async fn conformance_lambda() {
    conformance_passes("lambda", Personality::Lambda).await;
}

#[tokio::test]
async fn conformance_vast() {
    conformance_passes("vast", Personality::Vast).await;
}

fn grants(name: &str, base_url: &str, key: &str, extra: &[(&str, &str)]) -> Grants {
    let mut config: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.insert("base_url".into(), base_url.into());
    Grants {
        provider_name: name.into(),
        allowed_hosts: vec![base_url.into()],
        secrets: [("api_key".to_string(), SecretValue::from(key))].into(),
        auth: None,
        config,
        limits: Default::default(),
    }
}

/// Loads the provider `name`'s component with `grants(name, base_url, key, extra)`.
async fn load(name: &str, base_url: &str, key: &str, extra: &[(&str, &str)]) -> Plugin {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    host.load(component(name), grants(name, base_url, key, extra))
        .await
        .expect("the plugin loads")
}

/// Each provider declares the origin of its `base_url` (a loopback simulator's here), or of its
/// vendor's API when unset, and the same component is refused where that origin is not granted.
/// Loading makes no request, so no simulator is needed.
#[tokio::test]
async fn providers_declare_their_base_url_and_are_refused_without_its_grant() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let base = "http://127.0.0.1:8799";
    for (name, vendor) in [
        ("mock", None),
        ("runpod", Some("https://api.runpod.io")),
        ("lambda", Some("https://cloud.lambda.ai")),
        ("vast", Some("https://console.vast.ai")),
    ] {
        let plugin = host
            .load(component(name), grants(name, &format!("{base}/"), "k", &[]))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plugin.declared_hosts(), [base], "{name}");

        // Pointed at the simulator, granted only the vendor's API: refused at load.
        let mut g = grants(name, base, "k", &[]);
        g.allowed_hosts = vec![vendor.unwrap_or("https://mock.example").into()];
        match host.load(component(name), g).await {
            Err(LoadError::UngrantedHost { host, .. }) => {
                assert_eq!(host, format!("{base}"), "{name}")
            }
            other => panic!("{name}: expected UngrantedHost, got {other:?}"),
        }

        // Unconfigured: the vendor's API (the mock cloud has none: nothing).
        let g = Grants {
            provider_name: name.into(),
            allowed_hosts: vendor.map(|v| vec![v.to_string()]).unwrap_or_default(),
            ..Default::default()
        };
        let plugin = host
            .load(component(name), g)
            .await
            .unwrap_or_else(|e| panic!("{name} unconfigured: {e}"));
        assert_eq!(
            plugin.declared_hosts(),
            vendor.map(|v| vec![v.to_string()]).unwrap_or_default(),
            "{name}"
        );
    }
}

fn spec(gpu: &str, spot: bool) -> GpuSpec {
    GpuSpec {
        gpu_type: gpu.into(),
        count: 1,
        regions: vec![],
        spot,
        max_price_per_hour: None,
        aliases: Vec::new(),
    }
}

async fn launch_cheapest(plugin: &Plugin, spot: bool, name: &str) -> String {
    let offer = plugin.quote(&spec("H100-SXM", spot)).await.expect("quote")[0].clone();
    let req = LaunchRequest {
        offer,
        instance_name: name.into(),
        tags: vec![Tag {
            key: "tgp.io/cluster".into(),
            value: "t".into(),
        }],
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };
    plugin.launch(&req, None).await.expect("launch").instance_id
}

async fn state(plugin: &Plugin, id: &str) -> InstanceState {
    match plugin.verify(id).await {
        Ok(i) => i.state,
        Err(CallError::Provider(ProviderError::NotFound(_))) => InstanceState::NotFound,
        Err(e) => panic!("verify failed: {e}"),
    }
}

/// Advances the simulated clock until `id` runs.
async fn until_running(plugin: &Plugin, id: &str, advance: impl Fn(Duration)) {
    for _ in 0..60 {
        if state(plugin, id).await == InstanceState::Running {
            return;
        }
        advance(Duration::from_secs(10));
    }
    panic!("{id} never reached running");
}

#[tokio::test]
async fn runpod_silent_launch_failure_never_runs_and_bills_nothing() {
    let cloud = RunpodCloud::start(RunpodConfig::instant())
        .await
        .expect("sim");
    cloud.set_faults(Faults::none().silent_launch_failure(Switch::Always));
    let plugin = load("runpod", &cloud.base_url(), "runpod-key", &[]).await;
    let balance = cloud.balance_micro_usd();
    let id = launch_cheapest(&plugin, false, "tgp-silent").await;
    assert!(!id.is_empty(), "the API answered with an id");
    for _ in 0..10 {
        cloud.advance(Duration::from_secs(30));
        let s = state(&plugin, &id).await;
        assert_ne!(
            s,
            InstanceState::Running,
            "a silently failed pod must never look running"
        );
    }
    assert_eq!(state(&plugin, &id).await, InstanceState::NotFound);
    assert_eq!(cloud.balance_micro_usd(), balance, "nothing billed");
    assert!(cloud.live_instances().is_empty());
}

#[tokio::test]
async fn runpod_pod_that_disappears_is_not_found() {
    let cloud = RunpodCloud::start(RunpodConfig::instant())
        .await
        .expect("sim");
    let plugin = load("runpod", &cloud.base_url(), "runpod-key", &[]).await;
    let id = launch_cheapest(&plugin, false, "tgp-vanish").await;
    until_running(&plugin, &id, |d| cloud.advance(d)).await;
    assert!(cloud.vanish(&id));
    assert_eq!(state(&plugin, &id).await, InstanceState::NotFound);
}

#[tokio::test]
async fn lambda_launch_without_ssh_key_is_refused_before_any_call() {
    let cloud = LambdaCloud::start(LambdaConfig::instant())
        .await
        .expect("sim");
    // Configured without ssh_key_name.
    let plugin = load("lambda", &cloud.base_url(), "lambda-key", &[]).await;
    cloud.clear_calls();
    let offer = tgp::plugins::Offer {
        offer_id: "gpu_1x_h100_sxm5:us-east-1".into(),
        gpu_type: "H100-SXM".into(),
        count: 1,
        region: "us-east-1".into(),
        price_per_hour: 2_990_000,
        spot: false,
        availability: tgp::plugins::Availability::Available,
    };
    let req = LaunchRequest {
        offer,
        instance_name: "tgp-nokey".into(),
        tags: vec![],
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };
    match plugin.launch(&req, None).await {
        Err(CallError::Provider(ProviderError::InvalidRequest(f))) => {
            assert_eq!(f.field, "ssh_key_name", "{f:?}")
        }
        other => panic!("expected invalid-request naming ssh_key_name, got {other:?}"),
    }
    assert!(
        cloud.calls().is_empty(),
        "no request reached the API: {:?}",
        cloud.calls()
    );
    assert!(cloud.live_instances().is_empty());
}

#[tokio::test]
async fn lambda_instance_that_disappears_is_not_found() {
    let cloud = LambdaCloud::start(LambdaConfig::instant())
        .await
        .expect("sim");
    let plugin = load(
        "lambda",
        &cloud.base_url(),
        "lambda-key",
        &[("ssh_key_name", "tgp")],
    )
    .await;
    let id = launch_cheapest(&plugin, false, "tgp-vanish").await;
    until_running(&plugin, &id, |d| cloud.advance(d)).await;
    assert!(cloud.vanish(&id));
    assert_eq!(state(&plugin, &id).await, InstanceState::NotFound);
}

#[tokio::test]
async fn vast_low_bid_leaves_no_instance_behind() {
    let cloud = VastCloud::start(VastConfig::instant()).await.expect("sim");
    let plugin = load("vast", &cloud.base_url(), "vast-key", &[]).await;
    let mut offer = plugin
        .quote(&spec("H100-SXM", true))
        .await
        .expect("spot quote")[0]
        .clone();
    // The minimum bid rose between quote and launch: bid far below it.
    let (ask, _) = offer
        .offer_id
        .split_once(":bid:")
        .expect("spot offers carry their bid");
    offer.offer_id = format!("{ask}:bid:1000");
    offer.price_per_hour = 1000;
    let req = LaunchRequest {
        offer,
        instance_name: "tgp-lowbid".into(),
        tags: vec![],
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };
    let result = plugin.launch(&req, None).await;
    assert!(result.is_err(), "a low bid is a failed launch: {result:?}");
    assert_eq!(
        cloud.instances().len(),
        1,
        "the API did create a contract despite the error"
    );
    assert!(
        cloud.live_instances().is_empty(),
        "the plugin destroyed it at once"
    );
}

#[tokio::test]
async fn vast_instance_that_disappears_is_not_found() {
    let cloud = VastCloud::start(VastConfig::instant()).await.expect("sim");
    let plugin = load("vast", &cloud.base_url(), "vast-key", &[]).await;
    let id = launch_cheapest(&plugin, false, "tgp-vanish").await;
    until_running(&plugin, &id, |d| cloud.advance(d)).await;
    assert!(cloud.vanish(id.parse().expect("vast ids are numbers")));
    assert_eq!(state(&plugin, &id).await, InstanceState::NotFound);
}
