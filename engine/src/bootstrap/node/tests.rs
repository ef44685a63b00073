//! The pure checks on hand-written objects, and the teardown steps against the development API
//! server over HTTP.

use std::time::Instant;

use serde_json::{Value, json};
use tgp_apiserver::DevApiServer;

use super::*;

fn node(v: Value) -> Node {
    serde_json::from_value(v).expect("valid Node")
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("valid Pod")
}

const LABEL: (&str, &str) = ("tgp.io/request", "train-1");

#[test]
fn matches_by_name_or_hostname_label_and_requires_the_label() {
    let named =
        node(json!({"metadata": {"name": "gpu-a", "labels": {"tgp.io/request": "train-1"}}}));
    assert!(matches(&named, "gpu-a", LABEL));
    assert!(!matches(&named, "gpu-b", LABEL));
    assert!(!matches(&named, "gpu-a", ("tgp.io/request", "train-2")));
    assert!(!matches(&named, "gpu-a", ("tgp.io/other", "train-1")));
    assert!(!matches(&named, "", LABEL));

    let by_label = node(json!({"metadata": {"name": "ip-10-0-0-7", "labels": {
        "kubernetes.io/hostname": "gpu-a", "tgp.io/request": "train-1"}}}));
    assert!(matches(&by_label, "gpu-a", LABEL));
    assert!(matches(&by_label, "ip-10-0-0-7", LABEL));
    assert!(!matches(&by_label, "gpu-b", LABEL));

    let unlabelled =
        node(json!({"metadata": {"name": "gpu-a", "labels": {"kubernetes.io/hostname": "gpu-a"}}}));
    assert!(!matches(&unlabelled, "gpu-a", LABEL));
    let bare = node(json!({"metadata": {"name": "gpu-a"}}));
    assert!(!matches(&bare, "gpu-a", LABEL));
}

fn ready_node(taints: Value, allocatable: Value) -> Node {
    node(json!({
        "metadata": {"name": "gpu-a"},
        "spec": {"taints": taints},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ],
            "allocatable": allocatable
        }
    }))
}

fn waiting(why: &str) -> Initialization {
    Initialization::Waiting(why.to_string())
}

#[test]
fn initialization_waits_for_ready_then_taints_then_gpus() {
    let bare = node(json!({"metadata": {"name": "gpu-a"}}));
    assert_eq!(
        initialization(&bare, 2),
        waiting("condition Ready is not True")
    );
    assert_eq!(
        initialization(&bare, 0),
        waiting("condition Ready is not True")
    );

    for status in ["False", "Unknown"] {
        let n = node(json!({"metadata": {"name": "gpu-a"},
            "status": {"conditions": [{"type": "Ready", "status": status}],
                       "allocatable": {"nvidia.com/gpu": "2"}}}));
        assert_eq!(
            initialization(&n, 2),
            waiting("condition Ready is not True")
        );
    }

    for key in STARTUP_TAINTS {
        let n = ready_node(
            json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}, {"key": key, "effect": "NoSchedule"}]),
            json!({"nvidia.com/gpu": "2"}),
        );
        assert_eq!(
            initialization(&n, 2),
            waiting(&format!("startup taint {key} present"))
        );
    }

    let no_taints = json!([]);
    assert_eq!(
        initialization(&ready_node(no_taints.clone(), json!({"cpu": "8"})), 2),
        waiting("nvidia.com/gpu allocatable 0 of 2")
    );
    assert_eq!(
        initialization(
            &ready_node(no_taints.clone(), json!({"nvidia.com/gpu": "0"})),
            2
        ),
        waiting("nvidia.com/gpu allocatable 0 of 2")
    );
    assert_eq!(
        initialization(
            &ready_node(no_taints.clone(), json!({"nvidia.com/gpu": "1"})),
            2
        ),
        waiting("nvidia.com/gpu allocatable 1 of 2")
    );
    assert_eq!(
        initialization(
            &ready_node(no_taints.clone(), json!({"nvidia.com/gpu": "garbage"})),
            1
        ),
        waiting("nvidia.com/gpu allocatable 0 of 1")
    );
    for enough in ["2", "8", "2000m"] {
        assert_eq!(
            initialization(
                &ready_node(no_taints.clone(), json!({"nvidia.com/gpu": enough})),
                2
            ),
            Initialization::Ready,
            "{enough}"
        );
    }
    // Other taints (the GPU taint tgp itself sets) do not hold a node back.
    assert_eq!(
        initialization(
            &ready_node(
                json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
                json!({"nvidia.com/gpu": "1"})
            ),
            1
        ),
        Initialization::Ready
    );
    // No GPUs asked for: no GPU check.
    assert_eq!(
        initialization(&ready_node(no_taints, json!({})), 0),
        Initialization::Ready
    );
}

fn gpu_pod(name: &str, node: &str, phase: &str, finished: &[&str]) -> Pod {
    let statuses: Vec<Value> = finished
        .iter()
        .enumerate()
        .map(|(i, at)| {
            json!({"name": format!("c{i}"), "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": 0, "finishedAt": at}}})
        })
        .collect();
    pod(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [
            {"name": "main", "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}},
            {"name": "sidecar"}
        ]},
        "status": {"phase": phase, "containerStatuses": statuses}
    }))
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn gpu_use_counts_only_gpu_pods_on_the_node() {
    assert_eq!(
        gpu_use(&[], "gpu-a"),
        GpuUse {
            in_use: false,
            last_finished: None
        }
    );

    let cpu_running = pod(json!({"metadata": {"name": "web"},
        "spec": {"nodeName": "gpu-a", "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
        "status": {"phase": "Running"}}));
    let zero_gpu = pod(json!({"metadata": {"name": "zero"},
        "spec": {"nodeName": "gpu-a", "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "0"}}}]},
        "status": {"phase": "Running"}}));
    let elsewhere = gpu_pod("other", "gpu-b", "Running", &[]);
    let unscheduled = pod(json!({"metadata": {"name": "pending"},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Pending"}}));
    let idle = [cpu_running.clone(), zero_gpu, elsewhere, unscheduled];
    assert_eq!(
        gpu_use(&idle, "gpu-a"),
        GpuUse {
            in_use: false,
            last_finished: None
        }
    );

    for phase in ["Running", "Pending", "Unknown", ""] {
        let mut pods = idle.to_vec();
        pods.push(gpu_pod("train", "gpu-a", phase, &[]));
        assert!(gpu_use(&pods, "gpu-a").in_use, "{phase}");
    }

    // Limits alone, or an init container, make a GPU pod too.
    let limits_only = pod(json!({"metadata": {"name": "l"},
        "spec": {"nodeName": "gpu-a", "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
        "status": {"phase": "Running"}}));
    assert!(gpu_use(&[limits_only], "gpu-a").in_use);
    let init_gpu = pod(json!({"metadata": {"name": "i"},
        "spec": {"nodeName": "gpu-a", "containers": [{"name": "c"}],
                 "initContainers": [{"name": "warm", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Pending"}}));
    assert!(gpu_use(&[init_gpu], "gpu-a").in_use);
}

#[test]
fn gpu_use_reports_the_latest_finish_of_finished_gpu_pods() {
    let pods = [
        gpu_pod(
            "a",
            "gpu-a",
            "Succeeded",
            &["2025-03-01T10:00:00Z", "2025-03-01T10:05:00Z"],
        ),
        gpu_pod("b", "gpu-a", "Failed", &["2025-03-01T11:00:00Z"]),
        gpu_pod("c", "gpu-a", "Succeeded", &[]),
        // Later, but not GPU work or not this node.
        pod(
            json!({"metadata": {"name": "cpu"}, "spec": {"nodeName": "gpu-a", "containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "finishedAt": "2025-03-02T00:00:00Z"}}}]}}),
        ),
        gpu_pod("d", "gpu-b", "Succeeded", &["2025-03-03T00:00:00Z"]),
    ];
    assert_eq!(
        gpu_use(&pods, "gpu-a"),
        GpuUse {
            in_use: false,
            last_finished: Some(ts("2025-03-01T11:00:00Z"))
        }
    );

    // A running GPU pod: in use, and the finished ones still give the last finish.
    let mut busy = pods.to_vec();
    busy.push(gpu_pod(
        "e",
        "gpu-a",
        "Running",
        &["2025-03-05T00:00:00Z"], // a restarted container of a running pod does not count
    ));
    assert_eq!(
        gpu_use(&busy, "gpu-a"),
        GpuUse {
            in_use: true,
            last_finished: Some(ts("2025-03-01T11:00:00Z"))
        }
    );
}

// ---- against the development API server --------------------------------------------------

fn pod_obj(ns: &str, name: &str, node: &str, extra_meta: Value) -> Value {
    let mut meta = json!({"name": name, "namespace": ns});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
        m.extend(extra.clone());
    }
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    })
}

async fn pod_names(client: &kube::Client) -> Vec<String> {
    let mut names: Vec<String> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.metadata.namespace.unwrap(),
                p.metadata.name.unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

fn evictions(api: &DevApiServer) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.subresource.as_deref() == Some("eviction"))
        .map(|r| r.path)
        .collect()
}

#[tokio::test]
async fn cordon_drain_and_delete_against_the_dev_api_server() {
    let api = DevApiServer::start().await.unwrap();
    // The operator's client as it is built in production: it retries 429 by itself.
    let client = api.client().await.unwrap();
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}}))
        .unwrap();
    for obj in [
        pod_obj("default", "web", "gpu-1", json!({})),
        pod_obj("team", "batch", "gpu-1", json!({})),
        pod_obj("default", "db", "gpu-1", json!({"labels": {"app": "db"}})),
        pod_obj(
            "kube-system",
            "ds",
            "gpu-1",
            json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "nvidia-device-plugin", "uid": "u1"}]}),
        ),
        pod_obj(
            "kube-system",
            "static",
            "gpu-1",
            json!({"annotations": {"kubernetes.io/config.mirror": "abc"}}),
        ),
        pod_obj("default", "elsewhere", "gpu-2", json!({})),
        pod_obj(
            "default",
            "stuck",
            "gpu-1",
            json!({"finalizers": ["example.com/hold"]}),
        ),
    ] {
        api.apply(&obj).unwrap();
    }
    let mut done = pod_obj("default", "done", "gpu-1", json!({}));
    done["status"] = json!({"phase": "Succeeded"});
    api.apply(&done).unwrap();
    api.apply(&json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}
    }))
    .unwrap();
    // A pod already terminating (held by its finalizer).
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("stuck", &DeleteParams::default())
        .await
        .unwrap();

    // Cordon.
    let nodes: Api<Node> = Api::all(client.clone());
    cordon(&nodes, "gpu-1").await.unwrap();
    let n = nodes.get("gpu-1").await.unwrap();
    assert_eq!(n.spec.and_then(|s| s.unschedulable), Some(true));
    cordon(&nodes, "no-such-node").await.expect("404 is Ok");

    // Pass 1, with the retrying client: the PDB-protected pod is reported blocked after
    // EVICTION_WAIT rather than holding the pass for kube's whole retry schedule.
    api.clear_requests();
    let started = Instant::now();
    let p = drain_pass(&client, "gpu-1").await.unwrap();
    // Generous on a loaded machine, yet far below kube's retry schedule for a 429 (minutes).
    assert!(
        started.elapsed() < EVICTION_WAIT * 15,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        p,
        DrainProgress {
            remaining: vec![
                "default/db".into(),
                "default/stuck".into(),
                "default/web".into(),
                "team/batch".into()
            ],
            blocked: vec!["default/db".into()],
        }
    );
    // Evicted: web and batch. Left alone: DaemonSet, mirror, finished, other node, terminating.
    assert_eq!(
        pod_names(&client).await,
        [
            "default/db",
            "default/done",
            "default/elsewhere",
            "default/stuck",
            "kube-system/ds",
            "kube-system/static"
        ]
    );
    let ev = evictions(&api);
    assert!(ev.iter().all(|p| !p.contains("/stuck/")), "{ev:?}");
    assert!(
        ev.iter()
            .any(|p| p.ends_with("/namespaces/default/pods/web/eviction")),
        "{ev:?}"
    );

    // Pass 2, with a client that does not retry: the 429 itself marks the pod blocked.
    let mut cfg = api.config().await.unwrap();
    cfg.default_retry = false;
    let plain = kube::Client::try_from(cfg).unwrap();
    api.clear_requests();
    let p = drain_pass(&plain, "gpu-1").await.unwrap();
    assert_eq!(p.remaining, ["default/db", "default/stuck"]);
    assert_eq!(p.blocked, ["default/db"]);
    let statuses: Vec<u16> = api
        .requests()
        .into_iter()
        .filter(|r| r.subresource.as_deref() == Some("eviction"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429]);

    // The budget lifted and the finalizer released: the drain completes.
    kube::Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        client.clone(),
        "default",
    )
    .delete("db", &DeleteParams::default())
    .await
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let p = drain_pass(&client, "gpu-1").await.unwrap();
    assert_eq!(p.remaining, ["default/db"], "evicted in this pass");
    assert!(p.blocked.is_empty());
    let p = drain_pass(&client, "gpu-1").await.unwrap();
    assert_eq!(p, DrainProgress::default());

    // Delete the Node.
    assert!(delete_node(&nodes, "gpu-1").await.unwrap());
    assert!(!delete_node(&nodes, "gpu-1").await.unwrap());
    assert!(nodes.get_opt("gpu-1").await.unwrap().is_none());
}

#[tokio::test]
async fn teardown_steps_surface_other_api_errors() {
    let api = DevApiServer::start().await.unwrap();
    let mut cfg = api.config().await.unwrap();
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}}))
        .unwrap();
    api.apply(&pod_obj("default", "web", "gpu-1", json!({})))
        .unwrap();

    api.inject(
        tgp_apiserver::Fault::on(tgp_apiserver::VerbMatch::Write)
            .resource("nodes")
            .code(500),
    );
    assert!(cordon(&nodes, "gpu-1").await.is_err());
    api.inject(
        tgp_apiserver::Fault::on(tgp_apiserver::VerbMatch::Write)
            .resource("nodes")
            .code(500),
    );
    assert!(delete_node(&nodes, "gpu-1").await.is_err());
    api.inject(
        tgp_apiserver::Fault::on(tgp_apiserver::VerbMatch::Write)
            .resource("pods")
            .subresource("eviction")
            .code(403),
    );
    let e = drain_pass(&client, "gpu-1").await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 403), "{e:?}");
    api.inject(tgp_apiserver::Fault::on(tgp_apiserver::VerbMatch::Method("GET")).resource("pods"));
    assert!(drain_pass(&client, "gpu-1").await.is_err());
    // And with the faults spent, everything works.
    assert_eq!(
        drain_pass(&client, "gpu-1").await.unwrap().remaining,
        ["default/web"]
    );
    assert!(delete_node(&nodes, "gpu-1").await.unwrap());
}
