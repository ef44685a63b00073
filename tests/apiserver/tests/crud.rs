//! CRUD, concurrency, generation/status and finalizer semantics through a real kube::Client.

mod common;

use axum::http as http_req;
use common::{GpuRequest, GpuRequestSpec, GpuRequestStatus, server_with_crd};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use serde_json::json;
use std::collections::BTreeMap;
use tgp_apiserver::{DevApiServer, Fault, VerbMatch};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

fn api_err(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn configmap_crud_and_conflicts() {
    let server = DevApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "team-a");

    let created = api
        .create(&PostParams::default(), &cm("one", &[("app", "gpu")]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("team-a"));
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();

    let (code, reason) = api_err(
        api.create(&PostParams::default(), &cm("one", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // Replace with the current resourceVersion succeeds and bumps it.
    let mut upd = created.clone();
    upd.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let replaced = api
        .replace("one", &PostParams::default(), &upd)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(replaced.metadata.uid.as_deref(), Some(uid.as_str()));

    // Replace with the stale one is a 409 Conflict.
    let (code, reason) = api_err(
        api.replace("one", &PostParams::default(), &upd)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    // A no-op write keeps the resourceVersion.
    let same = api
        .replace("one", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        replaced.metadata.resource_version
    );

    // Merge, JSON and apply patches.
    let merged = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["m"], "1");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "v3"}]))
            .unwrap();
    let jsoned = api
        .patch("one", &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .unwrap();
    assert_eq!(jsoned.data.as_ref().unwrap()["k"], "v3");
    let applied = api
        .patch("two", &PatchParams::apply("tester"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"a": "b"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.as_ref().unwrap()["a"], "b");
    let applied2 = api
        .patch("two", &PatchParams::apply("tester"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"c": "d"}})))
        .await
        .unwrap();
    assert_eq!(
        applied2.data.as_ref().unwrap().get("a"),
        None,
        "fields dropped from an apply are removed"
    );
    assert_eq!(applied2.data.as_ref().unwrap()["c"], "d");

    // Patch with a stale resourceVersion in the body is a conflict.
    let (code, _) = api_err(
        api.patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 409);

    // List (namespace-scoped and cluster-wide), then delete.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let all: Api<ConfigMap> = Api::all(server.client().await.unwrap());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let (code, reason) = api_err(api.get("one").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn label_and_field_selectors_and_paging() {
    let server = DevApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    for (n, app, tier) in [
        ("a", "gpu", "1"),
        ("b", "gpu", "2"),
        ("c", "cpu", "1"),
        ("d", "none", ""),
    ] {
        let mut labels = vec![("app", app)];
        if !tier.is_empty() {
            labels.push(("tier", tier));
        }
        api.create(&PostParams::default(), &cm(n, &labels))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&q("app=gpu")).await.unwrap()), ["a", "b"]);
    assert_eq!(
        names(api.list(&q("app==gpu,tier!=2")).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        names(api.list(&q("app in (cpu,none)")).await.unwrap()),
        ["c", "d"]
    );
    assert_eq!(
        names(api.list(&q("app notin (gpu)")).await.unwrap()),
        ["c", "d"]
    );
    assert_eq!(names(api.list(&q("tier")).await.unwrap()), ["a", "b", "c"]);
    assert_eq!(names(api.list(&q("!tier")).await.unwrap()), ["d"]);
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.namespace=other"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    let (code, _) = api_err(api.list(&q("app in gpu")).await.unwrap_err());
    assert_eq!(code, 400);

    // Paging with limit/continue.
    let p1 = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(names(p1.clone()), ["a", "b", "c"]);
    let token = p1.metadata.continue_.clone().expect("continue token");
    let p2 = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(p2.clone()), ["d"]);
    assert!(p2.metadata.continue_.as_deref().unwrap_or("").is_empty());
}

#[tokio::test]
async fn nodes_are_cluster_scoped_and_keep_status() {
    let server = DevApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "gpu-node-1", "labels": {"tgp.io/gpu": "true"}},
        "status": {"allocatable": {"nvidia.com/gpu": "4"}}
    }))
    .unwrap();
    let created = nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(created.metadata.namespace, None);
    assert_eq!(
        created.status.unwrap().allocatable.unwrap()["nvidia.com/gpu"].0,
        "4"
    );
    // Status is a subresource: a main-resource patch cannot change it.
    let patched = nodes
        .patch("gpu-node-1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": true}, "status": {"allocatable": {"nvidia.com/gpu": "0"}}})))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().unschedulable, Some(true));
    assert_eq!(
        patched.status.unwrap().allocatable.unwrap()["nvidia.com/gpu"].0,
        "4"
    );
    let st = nodes
        .patch_status(
            "gpu-node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"nvidia.com/gpu": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        st.status.unwrap().allocatable.unwrap()["nvidia.com/gpu"].0,
        "2"
    );
    assert_eq!(
        nodes
            .list(&ListParams::default().labels("tgp.io/gpu=true"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    nodes
        .delete("gpu-node-1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(nodes.get_opt("gpu-node-1").await.unwrap().is_none());
}

#[tokio::test]
async fn crd_generation_and_status_subresource() {
    let (server, client) = server_with_crd().await;
    let api: Api<GpuRequest> = Api::all(client);
    let mut obj = GpuRequest::new("req-1", GpuRequestSpec { count: 1 });
    obj.status = Some(GpuRequestStatus {
        phase: Some("Bogus".into()),
        observed_generation: None,
    });
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.status, None, "status is dropped on create");

    let st = api
        .patch_status(
            "req-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Pending"}, "spec": {"count": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        st.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(st.spec.count, 1, "status writes ignore spec");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let sp = api
        .patch(
            "req-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"count": 2}, "status": {"phase": "Ignored"}})),
        )
        .await
        .unwrap();
    assert_eq!(sp.metadata.generation, Some(2));
    assert_eq!(
        sp.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending"),
        "main writes ignore status"
    );

    let lb = api
        .patch(
            "req-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        lb.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );

    // Replace status via PUT.
    let mut cur = api.get("req-1").await.unwrap();
    cur.status = Some(GpuRequestStatus {
        phase: Some("Ready".into()),
        observed_generation: Some(2),
    });
    let put = api
        .replace_status("req-1", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(put.status.unwrap().phase.as_deref(), Some("Ready"));

    // Injected faults hit exactly the selected requests.
    server.inject(
        Fault::on(VerbMatch::Write)
            .resource("gpurequests")
            .subresource("status")
            .code(500)
            .times(1),
    );
    let (code, _) = api_err(
        api.patch_status(
            "req-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "X"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 500);
    api.patch_status(
        "req-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "X"}})),
    )
    .await
    .unwrap();
    let log = server.requests();
    assert!(log.iter().any(|r| r.method == "PATCH"
        && r.path == "/apis/tgp.io/v1alpha1/gpurequests/req-1/status"
        && r.status == 500));

    // Direct store access.
    assert_eq!(
        server.get("gpurequests", "", "req-1").unwrap()["status"]["phase"],
        "X"
    );
}

#[tokio::test]
async fn finalizers_and_deletion_timestamp() {
    let server = DevApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let mut c = cm("fin", &[]);
    c.metadata.finalizers = Some(vec!["tgp.io/a".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();

    api.delete("fin", &DeleteParams::default()).await.unwrap();
    let marked = api.get("fin").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));

    // Adding a finalizer while deleting is refused.
    let (code, reason) = api_err(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["tgp.io/a", "tgp.io/b"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));

    // Other updates still work; removing the last finalizer deletes the object.
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "z"}})),
    )
    .await
    .unwrap();
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("fin").await.unwrap().is_none());
}

#[tokio::test]
async fn eviction_respects_pdb_then_deletes() {
    let server = DevApiServer::start().await.unwrap();
    // kube retries 429 (the PDB answer) with backoff by default; see it directly instead.
    let mut config = server.config().await.unwrap();
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p1", "labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    server
        .apply(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pdb", "namespace": "default"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}}))
        .unwrap();
    let (code, reason) = api_err(pods.evict("p1", &Default::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (429, "TooManyRequests"));
    server
        .apply(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pdb", "namespace": "default"}, "spec": {"minAvailable": 0, "selector": {"matchLabels": {"app": "x"}}}}))
        .unwrap();
    pods.evict("p1", &Default::default()).await.unwrap();
    assert!(pods.get_opt("p1").await.unwrap().is_none());
}

#[tokio::test]
async fn bad_input_gets_status_errors() {
    let server = DevApiServer::start().await.unwrap();
    let http =
        kube::Client::try_from(kube::Config::new(server.base_url().parse().unwrap())).unwrap();
    let send = |req: http_req::Request<Vec<u8>>| {
        let http = http.clone();
        async move { http.request::<serde_json::Value>(req).await }
    };
    let bad_json = http_req::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .unwrap();
    let (code, reason) = api_err(send(bad_json).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    let bad_name = http_req::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(br#"{"metadata":{"name":"Bad_Name"}}"#.to_vec())
        .unwrap();
    assert_eq!(api_err(send(bad_name).await.unwrap_err()).1, "Invalid");
    let unknown = http_req::Request::get("/apis/nope.io/v1/things")
        .body(vec![])
        .unwrap();
    assert_eq!(api_err(send(unknown).await.unwrap_err()).0, 404);
    let bad_patch = http_req::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "text/plain")
        .body(b"x".to_vec())
        .unwrap();
    assert_eq!(api_err(send(bad_patch).await.unwrap_err()).0, 415);
    let version = server
        .client()
        .await
        .unwrap()
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn crd_posted_over_http_is_served_and_discoverable() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let server = DevApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &GpuRequest::crd())
        .await
        .unwrap();
    let established = created
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let api: Api<GpuRequest> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &GpuRequest::new("x", GpuRequestSpec { count: 1 }),
    )
    .await
    .unwrap();
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "tgp.io"));
    // Deleting the CRD stops serving the kind.
    crds.delete("gpurequests.tgp.io", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_err(api.get("x").await.unwrap_err()).0, 404);
}
