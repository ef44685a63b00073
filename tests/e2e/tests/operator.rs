//! The operator end to end: the development API server, simulated clouds, the real mock plugin
//! and the real operator (controllers, leader election, garbage collection), one DevEnv per test.
//! The simulators' state and call logs are the witnesses.

#[path = "operator/support.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tgp::crd::gpurequest::Phase;
use tgp::devenv::{CloudSpec, NAMESPACE};
use tgp_apiserver::{Fault, VerbMatch};
use tgp_cloudsim::{Endpoint, Faults, InstanceStatus, Switch};

use support::*;

/// 1. The cheapest offer wins; Ready only after the provider reported the instance running;
/// deletion leaves nothing running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_cheapest_offer_verified_then_cleaned_up() {
    let env = start(two_clouds(dearer(), cheap())).await; // "b" is the cheap one here
    env.create_request(&request("happy", "")).await.unwrap();
    let watched = watch_until(&env, "happy", T, |r| {
        is_ready(r) || phase(r) == Phase::Failed
    })
    .await
    .unwrap();
    let r = watched.last.clone();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let st = r.status.clone().unwrap();
    let id = st.instance_id.clone().expect("instance id");
    assert_eq!(
        st.provider.as_deref(),
        Some("b"),
        "the cheaper provider is chosen: {}",
        dump(&r)
    );
    // At the moment Ready was stored, the simulator had the instance running.
    let sim = env
        .cloud("b")
        .instance(&id)
        .expect("instance exists in cloud b");
    assert_eq!(
        sim.status,
        InstanceStatus::Running,
        "Ready only once running"
    );
    let phases = watched.phases();
    assert!(
        phases.contains(&Phase::Verifying),
        "phase passed through Verifying: {phases:?}"
    );
    // The call log shows a verify GET made after the instance reached running (launch + 600 ms).
    let calls = env.cloud("b").calls();
    let launch = calls_to(&calls, "launch")
        .into_iter()
        .find(|c| c.status == 201)
        .expect("a launch")
        .at_ms;
    let running_at = launch + 600;
    assert!(
        calls.iter().any(|c| c.endpoint == "get"
            && c.path.contains(&id)
            && c.status == 200
            && c.at_ms >= running_at),
        "a verify after running (launch at {launch} ms): {calls:#?}"
    );
    assert_eq!(
        env.cloud("a").call_count(Endpoint::Launch),
        0,
        "the dearer cloud is never launched on"
    );
    assert!(condition(&r, "InstanceVerified").is_some_and(|c| c.status == "True"));

    env.delete_request("happy").await.unwrap();
    env.wait_gone("happy", T).await.unwrap();
    wait_no_live_instances(&env, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(env.live_instances(), 0);
    env.shutdown().await;
}

/// 2. A launch that answers an id for an instance that never exists: never Ready there; the
/// phantom is terminated; the next provider serves the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_launch_failure_fails_over() {
    let a = cheap().with_faults(Faults::none().silent_launch_failure(Switch::Always));
    let env = start(two_clouds(a, dearer())).await;
    env.create_request(&request("silent", "")).await.unwrap();
    let watched = watch_until(&env, "silent", T, |r| {
        is_ready(r) || phase(r) == Phase::Failed
    })
    .await
    .unwrap();
    let r = watched.last.clone();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let st = r.status.clone().unwrap();
    assert_eq!(st.provider.as_deref(), Some("b"), "{}", dump(&r));
    for s in &watched.states {
        assert!(
            !(is_ready(s) && s.status.as_ref().and_then(|s| s.provider.as_deref()) == Some("a")),
            "never Ready on the silent provider: {}",
            dump(s)
        );
    }
    let failed = st
        .attempts
        .iter()
        .find(|a| a.provider == "a" && a.reason == "SilentLaunchFailure")
        .unwrap_or_else(|| panic!("attempt with SilentLaunchFailure: {}", dump(&r)));
    let phantom = failed
        .instance_id
        .clone()
        .expect("the phantom id is recorded");
    let calls = env.cloud("a").calls();
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&format!("/v1/instances/{phantom}"))),
        "terminate attempted for the phantom {phantom}: {calls:#?}"
    );
    assert_eq!(env.cloud("a").live_instances().len(), 0);
    assert_eq!(env.cloud("b").live_instances().len(), 1);
    env.delete_request("silent").await.unwrap();
    env.wait_gone("silent", T).await.unwrap();
    wait_no_live_instances(&env, Duration::from_secs(10))
        .await
        .unwrap();
    env.shutdown().await;
}

/// 3. No money on the cheapest cloud: skipped before any launch, the other one used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_balance_skips_provider_without_launching() {
    let a = cheap().with_balance_micro_usd(0);
    let env = start(two_clouds(a, dearer())).await;
    env.create_request(&request("broke", "")).await.unwrap();
    let r = env
        .wait_for("broke", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let st = r.status.clone().unwrap();
    assert_eq!(st.provider.as_deref(), Some("b"));
    assert!(
        st.attempts
            .iter()
            .any(|a| a.provider == "a" && a.reason == "InsufficientBalance"),
        "InsufficientBalance attempt for a: {}",
        dump(&r)
    );
    assert_eq!(
        env.cloud("a").call_count(Endpoint::Launch),
        0,
        "zero launch calls to the unfunded cloud"
    );
    env.shutdown().await;
}

/// 4. Capacity errors on the cheapest offers: each offer tried once, then the next provider;
/// every attempt listed in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_errors_fail_over_offer_by_offer() {
    let a = cloud(vec![
        h100("us-east-1", 1_000_000),
        h100("eu-west-1", 1_500_000),
    ])
    .with_faults(Faults::none().capacity_exhausted(Switch::Always));
    let env = start(two_clouds(a, dearer())).await;
    env.create_request(&request("full", "")).await.unwrap();
    let r = env
        .wait_for("full", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let st = r.status.clone().unwrap();
    assert_eq!(st.provider.as_deref(), Some("b"));
    let capacity: Vec<_> = st
        .attempts
        .iter()
        .filter(|a| a.provider == "a" && a.reason == "Capacity")
        .collect();
    let offers: Vec<_> = capacity
        .iter()
        .filter_map(|a| a.offer_id.as_deref())
        .collect();
    assert!(
        offers.contains(&"h100-sxm-1x-us-east-1") && offers.contains(&"h100-sxm-1x-eu-west-1"),
        "both offers of a tried: {}",
        dump(&r)
    );
    assert!(
        st.attempts
            .iter()
            .any(|a| a.provider == "b" && a.outcome == "Launched"),
        "{}",
        dump(&r)
    );
    assert_eq!(
        env.cloud("a").call_count(Endpoint::Launch),
        2,
        "each failing offer tried once"
    );
    assert_eq!(env.cloud("b").call_count(Endpoint::Launch), 1);
    env.shutdown().await;
}

/// 5. A 429 with Retry-After on the cheapest cloud's quote: no call to it before the time given;
/// the request is served meanwhile by the other cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let a = cheap().with_faults(Faults::none().rate_limit_next("offers", 1, Some(3)));
    let env = start(two_clouds(a, dearer())).await;
    env.create_request(&request("limited", "")).await.unwrap();
    let r = env
        .wait_for("limited", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    assert_eq!(
        r.status.as_ref().unwrap().provider.as_deref(),
        Some("b"),
        "{}",
        dump(&r)
    );
    let limited_at = {
        let calls = env.cloud("a").calls();
        calls
            .iter()
            .find(|c| c.status == 429)
            .unwrap_or_else(|| panic!("a 429: {calls:#?}"))
            .at_ms
    };
    // Let the Retry-After window pass, plus a few GC rounds, so calls after it are seen.
    let deadline = Instant::now() + T;
    loop {
        let calls = env.cloud("a").calls();
        if calls.iter().any(|c| c.at_ms >= limited_at + 3000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cloud a is called again after the window: {calls:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = env.cloud("a").calls();
    let early: Vec<_> = calls
        .iter()
        .filter(|c| c.at_ms > limited_at && c.at_ms < limited_at + 3000)
        .collect();
    assert!(
        early.is_empty(),
        "calls to a within 3 s of the 429 at {limited_at} ms: {early:#?}"
    );
    env.shutdown().await;
}

/// 6. An instance that vanishes after Ready: Healthy=False and Failed within two health
/// intervals. fast_settings' health interval is 500 ms, so two intervals are 1 s; the bound is
/// 5 s: 1 s plus 4 s of slack for a slow, shared machine (status write, watch, polling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_instance_fails_the_request_quickly() {
    let env = start(vec![CloudSpec::new("a", cheap())]).await;
    env.create_request(&request("vanish", "")).await.unwrap();
    let r = env
        .wait_for("vanish", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let id = r.status.as_ref().unwrap().instance_id.clone().unwrap();
    let vanished_at = Instant::now();
    assert!(env.cloud("a").vanish(&id));
    let r = env
        .wait_for("vanish", T, |r| phase(r) == Phase::Failed)
        .await
        .unwrap();
    let took = vanished_at.elapsed();
    let healthy = condition(&r, "Healthy").expect("Healthy condition");
    assert_eq!(healthy.status, "False", "{}", dump(&r));
    assert_eq!(condition(&r, "Ready").unwrap().status, "False");
    assert!(
        took <= Duration::from_secs(5),
        "lost instance noticed in {took:?} (bound 5 s = 2 x 500 ms + 4 s slack)"
    );
    env.shutdown().await;
}

/// 7. Deleting a request while its launch call is in flight leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_launching_leaks_nothing() {
    let a = cheap().with_faults(Faults::none().latency("launch", Duration::from_secs(3)));
    let env = start(vec![CloudSpec::new("a", a)]).await;
    env.create_request(&request("midway", "")).await.unwrap();
    env.wait_for("midway", T, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.pending_launch.is_some())
    })
    .await
    .unwrap();
    // The launch call follows the status write at once and takes 3 s to answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.delete_request("midway").await.unwrap();
    env.wait_gone("midway", T).await.unwrap();
    wait_no_live_instances(&env, Duration::from_secs(10))
        .await
        .unwrap();
    // And it stays that way: nothing launched late.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.live_instances(),
        0,
        "instances: {:#?}",
        env.cloud("a").instances()
    );
    env.shutdown().await;
}

/// 8. The operator dies after the launch call but before its result reached status; the next
/// operator adopts the instance instead of launching a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_launch_and_status_write_adopts() {
    let a = cheap().with_faults(Faults::none().latency("launch", Duration::from_millis(1500)));
    let mut env = start(vec![CloudSpec::new("a", a)]).await;
    env.create_request(&request("crash", "")).await.unwrap();
    env.wait_for("crash", T, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.pending_launch.is_some())
    })
    .await
    .unwrap();
    // The launch is in flight (1.5 s of latency): every status write from now on fails.
    let Some(api) = env.api.as_ref() else {
        eprintln!(
            "skipped: needs the development API server's fault injection (not available on a real cluster)"
        );
        return;
    };
    api.inject(
        Fault::on(VerbMatch::Write)
            .resource("gpurequests")
            .subresource("status")
            .code(500)
            .times(100_000),
    );
    eventually(T, "the simulator records the launch", || {
        env.cloud("a").instances().len() == 1
    })
    .await;
    // Give the operator a moment to try (and fail) to store the result.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = env.requests().get("crash").await.unwrap();
    assert!(
        r.status.as_ref().unwrap().instance_id.is_none(),
        "the launch result must not have been stored: {}",
        dump(&r)
    );
    env.kill_operator("op-1");
    if let Some(api) = env.api.as_ref() {
        api.clear_faults();
    }
    env.start_operator("op-2").await.unwrap();
    let r = env
        .wait_for("crash", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    assert_eq!(
        env.cloud("a").instances().len(),
        1,
        "exactly one instance ever launched"
    );
    assert_eq!(
        env.cloud("a").call_count(Endpoint::Launch),
        1,
        "one launch call"
    );
    let launched = condition(&r, "Launched").expect("Launched condition");
    assert_eq!(launched.reason, "Adopted", "{}", dump(&r));
    // The killed replica is really dead: what happened after the restart was done by op-2.
    let events: Api<K8sEvent> = Api::all(env.client.clone());
    let after: Vec<_> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("crash"))
        .filter(|e| matches!(e.reason.as_deref(), Some("Adopted") | Some("Ready")))
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.reporting_instance.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(!after.is_empty(), "Adopted/Ready events published");
    assert!(
        after.iter().all(|(_, who)| who == "op-2"),
        "only the new replica acted after the kill: {after:?}"
    );
    env.delete_request("crash").await.unwrap();
    env.wait_gone("crash", T).await.unwrap();
    wait_no_live_instances(&env, Duration::from_secs(10))
        .await
        .unwrap();
    env.shutdown().await;
}

/// 9. Terminate fails a few times: the finalizer holds the request until termination is
/// confirmed; then it goes and nothing is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_waits_for_confirmed_termination() {
    let env = start(vec![CloudSpec::new("a", cheap())]).await;
    env.create_request(&request("sticky", "")).await.unwrap();
    let r = env.wait_for("sticky", T, is_ready).await.unwrap();
    let id = r.status.as_ref().unwrap().instance_id.clone().unwrap();
    // Six failures: the operator backs off between them (100 ms doubling), so when the third
    // has been seen, at least three more are still to come before a terminate can succeed.
    env.cloud("a")
        .set_faults(Faults::none().fail_next("delete", 6));
    env.delete_request("sticky").await.unwrap();
    eventually(T, "three failed terminate calls", || {
        env.cloud("a")
            .calls()
            .iter()
            .filter(|c| c.endpoint == "delete" && c.status == 500)
            .count()
            >= 3
    })
    .await;
    let r = env
        .requests()
        .get_opt("sticky")
        .await
        .unwrap()
        .expect("the request stays while terminate fails");
    assert!(r.metadata.deletion_timestamp.is_some());
    assert!(
        r.finalizers().iter().any(|f| f == tgp::crd::FINALIZER),
        "finalizer kept"
    );
    assert_eq!(
        env.cloud("a").instance(&id).unwrap().status,
        InstanceStatus::Running,
        "not terminated yet"
    );
    env.wait_gone("sticky", T).await.unwrap();
    let deletes: Vec<_> = env
        .cloud("a")
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "delete")
        .map(|c| c.status)
        .collect();
    assert_eq!(&deletes[..6], &[500; 6], "{deletes:?}");
    assert!(
        deletes[6..].iter().any(|s| *s < 300),
        "a terminate succeeded before the finalizer went: {deletes:?}"
    );
    let inst = env.cloud("a").instance(&id).unwrap();
    assert!(
        matches!(inst.status, InstanceStatus::Terminated),
        "the finalizer went only after the instance was confirmed terminated; it is {:?}",
        inst.status
    );
    assert_eq!(env.live_instances(), 0);
    env.shutdown().await;
}

/// 10. Garbage collection: an instance with our cluster tag and no request is terminated after
/// the grace period; one of another cluster is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_this_cluster_are_collected_others_left_alone() {
    let env = start(vec![CloudSpec::new("a", cheap())]).await;
    let cluster = env.settings.cluster_id.clone();
    let http = reqwest::Client::new();
    let launch = async |name: &str, cluster: &str| -> String {
        let body = serde_json::json!({
            "offer_id": "h100-sxm-1x-us-east-1",
            "name": name,
            "tags": {"tgp.io/cluster": cluster, "tgp.io/request-uid": "00000000-dead-beef-0000-000000000000"}
        });
        let resp = http
            .post(format!("{}/v1/instances", env.cloud("a").base_url()))
            .bearer_auth("mock-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let v: serde_json::Value = resp.json().await.unwrap();
        v["instance"]["id"]
            .as_str()
            .or(v["id"].as_str())
            .expect("id")
            .to_string()
    };
    let ours = launch("orphan-ours", &cluster).await;
    let theirs = launch("orphan-theirs", "another-cluster").await;
    let created = Instant::now();
    eventually(T, "the orphan to be terminated", || {
        env.cloud("a").instance(&ours).is_some_and(|i| {
            matches!(
                i.status,
                InstanceStatus::Stopping | InstanceStatus::Terminated
            )
        })
    })
    .await;
    assert!(
        created.elapsed() >= env.settings.gc_grace,
        "not before the grace period"
    );
    // Several more GC rounds (500 ms each): the other cluster's instance is untouched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let other = env.cloud("a").instance(&theirs).unwrap();
    assert_eq!(
        other.status,
        InstanceStatus::Running,
        "another cluster's instance is left alone"
    );
    assert!(
        !env.cloud("a")
            .calls()
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&theirs)),
        "never a DELETE for the other cluster's instance"
    );
    env.shutdown().await;
}

/// 11. Ten malformed requests: each is refused with InvalidSpec naming the field, and no
/// provider is asked to quote or launch anything. Most of them the CRD's own schema refuses at
/// admission (tests/e2e/tests/admission.rs); on the development API server this test turns
/// those checks off, as on a cluster whose API server lacks them or for objects stored before a
/// rule existed, to show that the operator refuses them itself. On a real cluster, a request
/// the API server refuses must name the field in its refusal instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_without_provider_calls() {
    let env = start(two_clouds(cheap(), dearer())).await;
    if let Some(api) = env.api.as_ref() {
        api.set_schema_checks(false);
    }
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad-type", "apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: bad-type\nspec:\n  gpuType: H9000\n".into(), "gpuType"),
        ("neg-count", "apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: neg-count\nspec:\n  gpuType: H100-SXM\n  gpuCount: -1\n".into(), "gpuCount"),
        ("zero-count", "apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: zero-count\nspec:\n  gpuType: H100-SXM\n  gpuCount: 0\n".into(), "gpuCount"),
        ("nan-price", request("nan-price", "  maxHourlyPrice: cheap\n"), "maxHourlyPrice"),
        ("neg-price", request("neg-price", "  maxHourlyPrice: \"-3\"\n"), "maxHourlyPrice"),
        ("bad-lifetime", request("bad-lifetime", "  maxLifetime: forever\n"), "maxLifetime"),
        ("bad-idle", request("bad-idle", "  idleTimeout: \"10\"\n"), "idleTimeout"),
        ("bad-label", request("bad-label", "  nodeLabels:\n    \"bad key!\": v\n"), "nodeLabels"),
        ("bad-taint", request("bad-taint", "  nodeTaints:\n  - key: gpu\n    effect: Sometimes\n"), "nodeTaints[0].effect"),
        ("empty-region", request("empty-region", "  regions:\n  - us-east-1\n  - \"\"\n"), "regions[1]"),
    ];
    let mut admitted = Vec::new();
    for (name, text, field) in &cases {
        match env.create_request(text).await {
            Ok(_) => admitted.push((name, field)),
            Err(e) => {
                assert!(
                    env.api.is_none(),
                    "{name}: the development API server, checks off, refused it: {e}"
                );
                assert!(
                    e.to_string().contains(field),
                    "{name}: the refusal names {field}: {e}"
                );
            }
        }
    }
    for (name, field) in admitted {
        let r = env
            .wait_for(name, T, |r| phase(r) == Phase::Failed)
            .await
            .unwrap();
        let ready = condition(&r, "Ready")
            .unwrap_or_else(|| panic!("{name}: Ready condition: {}", dump(&r)));
        assert_eq!(ready.status, "False", "{name}");
        assert_eq!(ready.reason, "InvalidSpec", "{name}: {}", dump(&r));
        assert!(
            ready.message.contains(field),
            "{name}: message names {field}: {}",
            ready.message
        );
    }
    // Give any stray reconcile time to misbehave.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (cloud_name, cloud) in &env.clouds {
        let calls = cloud.calls();
        let bad: Vec<_> = calls
            .iter()
            .filter(|c| c.endpoint != "account" && c.endpoint != "list")
            .collect();
        assert!(
            bad.is_empty(),
            "cloud {cloud_name} got quote/launch/other calls: {bad:#?}"
        );
        assert_eq!(cloud.call_count(Endpoint::Offers), 0);
        assert_eq!(cloud.call_count(Endpoint::Launch), 0);
    }
    env.shutdown().await;
}

async fn lease_holder(env: &tgp::devenv::DevEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), NAMESPACE);
    leases
        .get_opt("tgp-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Reporting instances of the events about request `name`.
async fn reporters(env: &tgp::devenv::DevEnv, name: &str) -> Vec<String> {
    let events: Api<K8sEvent> = Api::all(env.client.clone());
    let all = events.list(&ListParams::default()).await.unwrap().items;
    all.iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| e.reporting_instance.clone().unwrap_or_default())
        .collect()
}

/// 12. Two replicas: only the leader acts; when it stops, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_the_other_takes_over() {
    init_tracing();
    let mut env =
        tgp::devenv::DevEnv::start(two_clouds(cheap(), dearer()), tgp::devenv::fast_settings())
            .await
            .unwrap();
    env.start_operator("op-a").await.unwrap();
    env.wait_providers_loaded(T).await.unwrap();
    let deadline = Instant::now() + T;
    while lease_holder(&env).await.as_deref() != Some("op-a") {
        assert!(Instant::now() < deadline, "op-a holds the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.start_operator("op-b").await.unwrap();
    env.create_request(&request("first", "")).await.unwrap();
    env.wait_for("first", T, is_ready).await.unwrap();
    assert_eq!(lease_holder(&env).await.as_deref(), Some("op-a"));
    let first = reporters(&env, "first").await;
    assert!(!first.is_empty(), "events were published");
    assert!(
        first.iter().all(|i| i == "op-a"),
        "every event from the leader: {first:?}"
    );

    env.stop_operator("op-a").await;
    let deadline = Instant::now() + T;
    while lease_holder(&env).await.as_deref() != Some("op-b") {
        assert!(Instant::now() < deadline, "op-b takes the lease over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.create_request(&request("second", "")).await.unwrap();
    let r = env
        .wait_for("second", T, |r| is_ready(r) || phase(r) == Phase::Failed)
        .await
        .unwrap();
    assert_eq!(phase(&r), Phase::Ready, "{}", dump(&r));
    let second = reporters(&env, "second").await;
    assert!(
        !second.is_empty() && second.iter().all(|i| i == "op-b"),
        "events from the new leader: {second:?}"
    );
    // Both requests are still served by exactly one instance each.
    assert_eq!(env.live_instances(), 2);
    env.shutdown().await;
}

/// maxLifetime ends the instance and says so in status: Terminated, Ready=False with reason
/// MaxLifetimeReached, and nothing left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_ends_the_instance() {
    let env = start(vec![CloudSpec::new("a", cheap())]).await;
    env.create_request(&request("short", "  maxLifetime: 2s\n"))
        .await
        .unwrap();
    let r = env.wait_for("short", T, is_ready).await.unwrap();
    let expires = r.status.as_ref().and_then(|s| s.expires_at.clone());
    assert!(
        expires.is_some(),
        "a Ready request with maxLifetime shows when it expires: {}",
        dump(&r)
    );
    let r = env
        .wait_for("short", T, |r| phase(r) == Phase::Terminated)
        .await
        .unwrap();
    let ready = condition(&r, "Ready").expect("Ready condition");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "MaxLifetimeReached", "{}", dump(&r));
    wait_no_live_instances(&env, T).await.unwrap();
    // Deleting a terminated request finishes at once and leaves nothing either.
    env.delete_request("short").await.unwrap();
    env.wait_gone("short", T).await.unwrap();
    assert_eq!(env.live_instances(), 0);
    env.shutdown().await;
}
