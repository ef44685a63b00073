//! Talos bootstrap end to end: a GPURequest with `bootstrap.mode: talos` through the real
//! operator, with the Talos secrets in a Secret, a simulated Tailscale API, and simulated
//! machines that check their worker configuration and only then register a Node in the
//! development API server. The witnesses are the Node objects, the Tailscale simulator's keys,
//! devices and event log, the clouds' call logs and the API server's request log.
//!
//! Every log line of this test binary is captured, so the tests can assert that the node's
//! Tailscale key never appears in logs, status or events.

#[path = "operator/support.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tgp::crd::gpurequest::Phase;
use tgp::crd::{GPUProvider, GPURequest};
use tgp::devenv::talos::put_secret;
use tgp::devenv::{self, CloudSpec, DevEnv, JoinTiming, NAMESPACE};
use tgp_cloudsim::{
    Endpoint, Faults, JoinOutcome, JoinRefusal, RunpodCloud, RunpodConfig, SimEventKind, VastCloud,
    VastConfig,
};

use support::{T, cheap, condition, dump, is_ready, phase, request, watch_until};

/// Everything logged by this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,tgp=trace,kube=debug,reqwest=debug",
            ))
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// A Talos-enabled environment with clouds, a tweak of the settings, and one operator.
async fn start_talos(clouds: Vec<CloudSpec>, tweak: impl FnOnce(&mut DevEnv)) -> DevEnv {
    start_talos_timed(clouds, JoinTiming::default(), tweak).await
}

async fn start_talos_timed(
    clouds: Vec<CloudSpec>,
    timing: JoinTiming,
    tweak: impl FnOnce(&mut DevEnv),
) -> DevEnv {
    logs();
    let mut env = DevEnv::start(clouds, devenv::fast_settings())
        .await
        .expect("dev environment starts");
    env.enable_talos(timing).await.expect("talos environment");
    tweak(&mut env);
    env.start_operator("op-1").await.expect("operator starts");
    env.wait_providers_loaded(T).await.expect("providers load");
    env
}

const TALOS: &str = "  bootstrap:\n    mode: talos\n  nodeLabels:\n    team: ml\n  nodeTaints:\n    - key: tgp.io/dedicated\n      value: gpu\n      effect: NoSchedule\n";

/// Creates request `name` with `spec` and waits until it is Ready (the test fails with its
/// status if it fails instead); returns it and the name of the Node it joined.
async fn create_ready(env: &DevEnv, name: &str, spec: &str) -> (GPURequest, String) {
    env.create_request(&request(name, spec)).await.unwrap();
    let r = env
        .wait_for(name, T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let node_name = r
        .status
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("a Ready Talos request names its node");
    (r, node_name)
}

fn node_api(env: &DevEnv) -> Api<Node> {
    Api::all(env.client.clone())
}

/// A pod bound to `node` that uses one GPU.
async fn gpu_pod(env: &DevEnv, name: &str, node: &str) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "train", "image": "trainer:1",
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
}

/// Must show: GPURequest to Ready with Registered and Initialized, the Node labelled and
/// tainted as requested, the Tailscale key single-use and consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_join_registers_initializes_and_consumes_the_key() {
    // The machine registers its Node, then takes a while to load its GPU driver.
    let timing = JoinTiming {
        register_delay: Duration::from_millis(200),
        initialize_delay: Duration::from_millis(1500),
    };
    let env = start_talos_timed(vec![CloudSpec::new("a", cheap())], timing, |_| {}).await;
    env.create_request(&request("join", TALOS)).await.unwrap();
    let watched = watch_until(&env, "join", T, |r| {
        is_ready(r) || phase(r) == Phase::Failed
    })
    .await
    .unwrap();
    let r = watched.last.clone();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let phases = watched.phases();
    assert!(
        phases.contains(&Phase::Joining),
        "Ready came after Joining: {phases:?}"
    );
    // Registered is not Ready: the operator saw the Node and went on waiting for its GPUs.
    let is_true =
        |r: &tgp::crd::GPURequest, c: &str| condition(r, c).is_some_and(|c| c.status == "True");
    assert!(
        watched.states.iter().any(|s| phase(s) == Phase::Joining
            && is_true(s, "Registered")
            && !is_true(s, "Initialized")
            && condition(s, "Initialized").is_some_and(|c| c.reason == "WaitingForGPUs")),
        "a registered node without allocatable GPUs was waited for: {phases:?}"
    );
    for c in ["Registered", "Initialized", "Ready", "InstanceVerified"] {
        let cond = condition(&r, c).unwrap_or_else(|| panic!("condition {c}: {}", dump(&r)));
        assert_eq!(cond.status, "True", "{c}: {}", dump(&r));
    }
    let st = r.status.clone().unwrap();
    let node_name = st.node_name.clone().expect("status.nodeName");
    let id = st.instance_id.clone().unwrap();
    let bs = st.bootstrap.clone().expect("status.bootstrap");
    assert_eq!(bs.delivery.as_deref(), Some("TalosUserData"));

    // The Node: labels and taints as asked, GPUs allocatable, no startup taint.
    let node = node_api(&env).get(&node_name).await.expect("node exists");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    for (k, v) in [
        ("team", "ml"),
        ("tgp.io/request", "join"),
        ("tgp.io/provider", "a"),
        ("tgp.io/gpu-type", "H100-SXM"),
        ("tgp.io/instance-id", id.as_str()),
    ] {
        assert_eq!(
            labels.get(k).map(String::as_str),
            Some(v),
            "label {k}: {labels:?}"
        );
    }
    let taints = node.spec.clone().and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == "tgp.io/dedicated"
            && t.value.as_deref() == Some("gpu")
            && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    assert!(
        !taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready"),
        "Ready only once the startup taint is gone: {taints:?}"
    );
    let alloc = node
        .status
        .clone()
        .and_then(|s| s.allocatable)
        .unwrap_or_default();
    assert_eq!(alloc.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("1"));

    // The key: one, single-use, ephemeral, pre-authorised, tagged, consumed by this node.
    let ts = &env.talos().tailscale;
    let keys = ts.keys();
    assert_eq!(keys.len(), 1, "one key per request: {keys:?}");
    let key = &keys[0];
    assert_eq!(Some(&key.id), bs.tailscale_key_id.as_ref());
    assert!(
        !key.reusable && key.ephemeral && key.preauthorized,
        "{key:?}"
    );
    assert_eq!(key.tags, vec!["tag:tgp-gpu".to_string()]);
    assert!(key.used, "the key was consumed by the join: {key:?}");
    let devices = ts.live_devices();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].hostname, node_name);
    assert_eq!(
        bs.tailscale_device_id.as_deref(),
        Some(devices[0].id.as_str())
    );
    // Used once: the same configuration on a second machine would be refused.
    assert!(ts.enrol(&key.key, "impostor").is_err());

    // The worker configuration the machine booted with carried the cluster's real secrets.
    let sim = env.cloud("a").instance(&id).unwrap();
    let user_data = sim.user_data.clone().expect("user data delivered");
    let secrets = &env.talos().secret_data;
    assert!(user_data.contains(&secrets["bootstrap-token"]));
    assert!(user_data.contains(&secrets["machine-token"]));
    assert!(matches!(
        env.talos().join.outcomes().first(),
        Some(JoinOutcome::Joined { .. })
    ));

    // The key is in the user data only: never in status, events or logs.
    for s in &watched.states {
        let text = serde_json::to_string(&s.status).unwrap();
        assert!(!text.contains(&key.key), "key leaked into status: {text}");
    }
    let events = Api::<K8sEvent>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let events_text = serde_json::to_string(&events.items).unwrap();
    assert!(!events_text.contains(&key.key), "key leaked into events");
    assert!(!captured_logs().contains(&key.key), "key leaked into logs");
    env.shutdown().await;
}

/// Must show: a wrong bootstrap token never joins; after the registration timeout (here the
/// provider's own override, shorter than the operator's 20 s) the instance is terminated and
/// the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bootstrap_token_never_joins_and_is_terminated_after_the_timeout() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    Api::<GPUProvider>::all(env.client.clone())
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"registrationTimeout": "3s"}})),
        )
        .await
        .unwrap();
    // The Secret holds a well-formed token that is not the cluster's.
    let mut wrong = env.talos().secret_data.clone();
    wrong.insert("bootstrap-token".into(), "abcdef.0123456789abcdef".into());
    put_secret(&env.client, "tgp-talos-secrets", &wrong)
        .await
        .unwrap();
    env.create_request(&request("badtoken", TALOS))
        .await
        .unwrap();
    let r = env
        .wait_for("badtoken", T, |r| {
            matches!(phase(r), Phase::Failed | Phase::Ready)
        })
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Failed, "{}", dump(&r));
    let ready = condition(&r, "Ready").unwrap();
    assert_eq!(ready.reason, "RegistrationTimeout", "{}", dump(&r));
    assert!(
        ready.message.contains("did not register within 3s"),
        "{}",
        ready.message
    );
    assert!(ready.message.contains("terminated"), "{}", ready.message);
    let st = r.status.clone().unwrap();
    let attempt = st
        .attempts
        .iter()
        .find(|a| a.reason == "RegistrationTimeout")
        .unwrap_or_else(|| panic!("attempt recorded: {}", dump(&r)));
    let id = attempt.instance_id.clone().unwrap();
    // The machine refused its configuration: no Node, no device, key never used (and deleted).
    assert!(env.talos().join.outcomes().iter().any(|o| matches!(
        o,
        JoinOutcome::Refused { instance_id, reason: JoinRefusal::WrongBootstrapToken } if *instance_id == id
    )), "{:?}", env.talos().join.outcomes());
    assert!(
        node_api(&env)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(env.talos().tailscale.live_devices().is_empty());
    let keys = env.talos().tailscale.keys();
    assert!(keys.iter().all(|k| !k.used && k.deleted), "{keys:?}");
    // And the instance is gone.
    support::wait_no_live_instances(&env, T).await.unwrap();
    assert!(env.cloud("a").call_count(Endpoint::Delete) >= 1);
    env.shutdown().await;
}

/// Must show: a missing Talos secret key gives a clear condition and zero launch calls; once
/// the Secret is fixed the request proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_talos_secret_key_blocks_before_any_provider_call() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    let good = env.talos().secret_data.clone();
    let mut missing = good.clone();
    missing.remove("bootstrap-token");
    put_secret(&env.client, "tgp-talos-secrets", &missing)
        .await
        .unwrap();
    env.create_request(&request("nosecret", TALOS))
        .await
        .unwrap();
    let r = env
        .wait_for("nosecret", T, |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "TalosSecretInvalid")
        })
        .await
        .unwrap();
    let ready = condition(&r, "Ready").unwrap();
    assert!(
        ready.message.contains("bootstrap-token"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("tgp-system/tgp-talos-secrets"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("nothing was launched"),
        "{}",
        ready.message
    );
    assert_eq!(phase(&r), Phase::Pending);
    // Several retries later: still no launch, not even a quote.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.cloud("a").call_count(Endpoint::Launch), 0);
    assert_eq!(env.cloud("a").call_count(Endpoint::Offers), 0);
    assert!(env.talos().tailscale.keys().is_empty(), "no key minted");
    // Fixing the Secret is enough.
    put_secret(&env.client, "tgp-talos-secrets", &good)
        .await
        .unwrap();
    let r = env
        .wait_for("nosecret", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    env.shutdown().await;
}

/// Must show: on delete, pods are evicted, the Node deleted, the Tailscale device deleted and
/// the instance terminated, in that order; the key never appears in logs, status or events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_drains_then_removes_node_device_and_instance_in_order() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    let (r, node_name) = create_ready(&env, "teardown", TALOS).await;
    let id = r.status.clone().unwrap().instance_id.unwrap();
    gpu_pod(&env, "trainer", &node_name).await;
    let api = env.api.as_ref().expect("development API server");
    api.clear_requests();
    env.delete_request("teardown").await.unwrap();
    env.wait_gone("teardown", T).await.unwrap();

    // Witnesses with the moment each effect happened.
    let requests = api.requests();
    let evicted = requests
        .iter()
        .find(|q| {
            q.method == "POST"
                && q.subresource.as_deref() == Some("eviction")
                && q.path.contains("/pods/trainer/")
                && q.status < 300
        })
        .unwrap_or_else(|| panic!("the pod was evicted: {requests:#?}"))
        .handled_at;
    let node_deleted = requests
        .iter()
        .find(|q| {
            q.method == "DELETE"
                && q.resource.as_deref() == Some("nodes")
                && q.path.ends_with(&format!("/nodes/{node_name}"))
                && q.status < 300
        })
        .unwrap_or_else(|| panic!("the node was deleted: {requests:#?}"))
        .handled_at;
    let device_deleted = env
        .talos()
        .tailscale
        .events()
        .into_iter()
        .find(|e| matches!(&e.kind, SimEventKind::DeviceDeleted { hostname, .. } if *hostname == node_name))
        .expect("the device was deleted")
        .at;
    let calls = env.cloud("a").calls();
    let terminated: Instant = calls
        .iter()
        .find(|c| c.endpoint == Endpoint::Delete.key() && c.path.contains(&id) && c.status < 300)
        .expect("the instance was terminated")
        .answered_at;
    assert!(
        evicted < node_deleted,
        "pods evicted before the node is deleted"
    );
    assert!(
        node_deleted < device_deleted,
        "node deleted before its device"
    );
    assert!(
        device_deleted < terminated,
        "device deleted before the instance ends"
    );

    assert!(
        Api::<Pod>::namespaced(env.client.clone(), "default")
            .get_opt("trainer")
            .await
            .unwrap()
            .is_none()
    );
    assert!(node_api(&env).get_opt(&node_name).await.unwrap().is_none());
    assert!(env.talos().tailscale.live_devices().is_empty());
    support::wait_no_live_instances(&env, T).await.unwrap();
    let key = env.talos().tailscale.keys().pop().expect("the key");
    assert!(!captured_logs().contains(&key.key), "key leaked into logs");
    let events = Api::<K8sEvent>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&events.items)
            .unwrap()
            .contains(&key.key)
    );
    env.shutdown().await;
}

/// Must show: a join requested with only container platforms available launches nothing, and
/// status lists each provider with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_only_providers_are_skipped_with_reasons() {
    let runpod = RunpodCloud::start(RunpodConfig::default()).await.unwrap();
    let vast = VastCloud::start(VastConfig::default()).await.unwrap();
    let plugins = std::path::PathBuf::from(env!("TGP_TEST_PLUGIN_DIR"));
    let env = start_talos(Vec::new(), |_| {}).await;
    env.add_provider(
        "runpod",
        &plugins.join("tgp_provider_runpod.wasm"),
        &runpod.base_url(),
        &RunpodConfig::default().api_key,
    )
    .await
    .unwrap();
    env.add_provider(
        "vast",
        &plugins.join("tgp_provider_vast.wasm"),
        &vast.base_url(),
        &VastConfig::default().api_key,
    )
    .await
    .unwrap();
    env.wait_providers_loaded(T).await.unwrap();
    env.create_request(&request("containers", TALOS))
        .await
        .unwrap();
    let r = env
        .wait_for("containers", T, |r| {
            let st = r.status.clone().unwrap_or_default();
            ["runpod", "vast"].iter().all(|p| {
                st.attempts
                    .iter()
                    .any(|a| a.provider == *p && a.reason == "NoTalosBoot")
            })
        })
        .await
        .unwrap();
    let st = r.status.clone().unwrap();
    for p in ["runpod", "vast"] {
        let a = st
            .attempts
            .iter()
            .find(|a| a.provider == p && a.reason == "NoTalosBoot")
            .unwrap();
        assert_eq!(a.outcome, "Skipped");
        assert!(a.message.contains("container-only"), "{}", a.message);
    }
    let quoted = condition(&r, "Quoted").expect("Quoted condition");
    assert_eq!(quoted.status, "False");
    assert!(
        quoted.message.contains("runpod: NoTalosBoot")
            && quoted.message.contains("vast: NoTalosBoot"),
        "{}",
        quoted.message
    );
    assert_ne!(phase(&r), Phase::Ready);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let launches = ["podFindAndDeployOnDemand", "podRentInterruptable", "launch"];
    for (name, calls) in [("runpod", runpod.calls()), ("vast", vast.calls())] {
        assert!(
            calls
                .iter()
                .all(|c| !launches.contains(&c.endpoint.as_str())),
            "{name} got no launch: {calls:?}"
        );
    }
    assert!(env.talos().tailscale.keys().is_empty(), "no key minted");
    env.shutdown().await;
}

/// idleTimeout counts from the last time a pod used the node's GPUs, not from a heartbeat:
/// while a GPU pod runs the request stays Ready; once it is gone the timeout ends the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_counts_from_the_last_gpu_pod() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    let spec = format!("{TALOS}  idleTimeout: 2s\n");
    let (_, node_name) = create_ready(&env, "idle", &spec).await;
    gpu_pod(&env, "busy", &node_name).await;
    // Well past the timeout while the pod runs: still Ready, and the use is recorded.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = env.requests().get("idle").await.unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    assert!(
        r.status
            .as_ref()
            .and_then(|s| s.bootstrap.as_ref())
            .and_then(|b| b.gpu_last_used_at.clone())
            .is_some(),
        "{}",
        dump(&r)
    );
    let pod_gone = Instant::now();
    Api::<Pod>::namespaced(env.client.clone(), "default")
        .delete("busy", &DeleteParams::default())
        .await
        .unwrap();
    let r = env
        .wait_for("idle", T, |r| phase(r) == Phase::Terminated)
        .await
        .unwrap();
    // Idleness counts from the first check that saw no GPU pod, which came after the delete:
    // never earlier than idleTimeout after the pod left.
    assert!(
        pod_gone.elapsed() >= Duration::from_secs(2),
        "ended by idleness a full idleTimeout after the pod left, not before"
    );
    let ready = condition(&r, "Ready").unwrap();
    assert_eq!(ready.reason, "IdleTimeout", "{}", dump(&r));
    support::wait_no_live_instances(&env, T).await.unwrap();
    assert!(
        node_api(&env)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let _ = NAMESPACE;
    env.shutdown().await;
}

/// Tailscale clean-up failures are reported and retried, but never hold up the instance's
/// termination or, once their retries are spent, the request's deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailscale_failures_never_block_termination() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    let (_, node_name) = create_ready(&env, "tsdown", TALOS).await;
    let ts = &env.talos().tailscale;
    ts.set_faults(Faults::none().error_rate("delete_device", 1.0));
    env.delete_request("tsdown").await.unwrap();
    env.wait_gone("tsdown", T).await.unwrap();

    // The instance and the Node went; the device could not be removed and is still listed.
    support::wait_no_live_instances(&env, T).await.unwrap();
    assert!(node_api(&env).get_opt(&node_name).await.unwrap().is_none());
    assert_eq!(ts.live_devices().len(), 1);
    // Retried, and still retried after the instance was already terminated.
    let calls = env.cloud("a").calls();
    let terminated = calls
        .iter()
        .find(|c| c.endpoint == Endpoint::Delete.key() && c.status < 300)
        .expect("terminated")
        .answered_at;
    let attempts: Vec<_> = ts
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "delete_device")
        .collect();
    assert!(attempts.len() >= 2, "retried: {attempts:?}");
    assert!(
        attempts.iter().any(|c| c.answered_at > terminated),
        "termination did not wait for Tailscale"
    );
    // Reported, as a warning a person can act on.
    let events = Api::<K8sEvent>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let notes: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("TailscaleCleanupFailed"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(!notes.is_empty(), "no TailscaleCleanupFailed event");
    assert!(notes.iter().all(|n| n.contains(&node_name)), "{notes:?}");
    // Repeats of an event are folded into one series by the recorder; the log has each pass,
    // down to the last, which gives up and says what to do.
    let logs = captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("TailscaleCleanupFailed")
            && l.contains(&node_name)
            && l.contains("giving up")),
        "the final attempt is reported"
    );
    env.shutdown().await;
}

/// Nothing leaks even when the finalizer is bypassed: garbage collection terminates the
/// orphaned instance and deletes the Node it had joined, and that Node's tailnet device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_deleted_request_leaves_no_node_behind() {
    let env = start_talos(vec![CloudSpec::new("a", cheap())], |_| {}).await;
    let (_, node_name) = create_ready(&env, "forced", TALOS).await;
    // Someone removes the finalizer by hand and deletes the request.
    env.requests()
        .patch(
            "forced",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    env.delete_request("forced").await.unwrap();
    env.wait_gone("forced", T).await.unwrap();
    support::wait_no_live_instances(&env, T).await.unwrap();
    let deadline = Instant::now() + T;
    while node_api(&env).get_opt(&node_name).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the orphaned node was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + T;
    while !env.talos().tailscale.live_devices().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the orphaned node's device was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.shutdown().await;
}
