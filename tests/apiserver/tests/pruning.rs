//! Pruning of unknown fields, through a real kube::Client: every write of a custom resource
//! loses the fields its CRD's schema does not specify, as on a real cluster, and the client is
//! told per `fieldValidation` (a `Warning` header by default, 400 under `Strict`). Built-in
//! kinds, which the dev server has no schemas for, keep what they are sent.
#![recursion_limit = "256"]

use axum::http::Request;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective,
};
use kube::core::Status;
use serde_json::{Value, json};
use tgp_apiserver::DevApiServer;

/// The schema of one version of `Gadget`: every kind of node pruning treats differently. Only
/// `v1` specifies `spec.legacy`.
fn version_schema(with_legacy: bool) -> Value {
    let mut spec_props = json!({
        "size": {"type": "integer"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "ports": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"port": {"type": "integer"}}
        }},
        "taints": {"type": "array", "items": {"type": "object", "properties": {
            "key": {"type": "string"},
            "matrix": {"type": "array", "items": {"type": "array", "items": {
                "type": "object", "properties": {"x": {"type": "integer"}}
            }}},
        }}},
        "extra": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
        "template": {
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {"image": {"type": "string"}}},
            },
        },
        "port": {"x-kubernetes-int-or-string": true},
    });
    if with_legacy {
        spec_props["legacy"] = json!({"type": "string"});
    }
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                // Holds only because `secret` is pruned before the rules run.
                "x-kubernetes-validations": [{"rule": "!has(self.secret)", "message": "no secret"}],
                "properties": spec_props,
            },
            "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "conditions": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"type": "string"}, "status": {"type": "string"}
                }}},
            }},
        }
    })
}

fn crd() -> CustomResourceDefinition {
    let version = |name: &str, storage: bool, legacy: bool| {
        json!({"name": name, "served": true, "storage": storage, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": version_schema(legacy)}})
    };
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.prune.test"},
        "spec": {
            "group": "prune.test",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [version("v1", true, true), version("v2", false, false)],
        }
    }))
    .expect("the test CRD deserialises")
}

fn resource(version: &str) -> ApiResource {
    ApiResource {
        group: "prune.test".into(),
        version: version.into(),
        api_version: format!("prune.test/{version}"),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    }
}

fn gadget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "prune.test/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a gadget")
}

struct Setup {
    server: DevApiServer,
    client: kube::Client,
    api: Api<DynamicObject>,
}

async fn setup() -> Setup {
    let server = DevApiServer::start().await.expect("server starts");
    server.register_crd(&crd()).expect("the CRD registers");
    let client = server.client().await.expect("client builds");
    let api = Api::namespaced_with(client.clone(), "default", &resource("v1"));
    Setup {
        server,
        client,
        api,
    }
}

/// A raw answer: status code, `Warning` header values, body.
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

/// Send a request built by kube's request builder, with `fieldValidation` added when given
/// (kube's `PostParams` cannot set it), and keep what `Api` hides: the `Warning` headers.
async fn send(
    client: &kube::Client,
    mut req: Request<Vec<u8>>,
    validation: Option<&str>,
) -> Answer {
    if let Some(v) = validation {
        let uri = format!("{}&fieldValidation={v}", req.uri());
        *req.uri_mut() = uri.parse().expect("a URI");
    }
    let res = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("the request is answered");
    let code = res.status().as_u16();
    let warnings = res
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("an ASCII warning").to_string())
        .collect();
    let bytes = res.into_body().collect_bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes).expect("a JSON body");
    Answer {
        code,
        warnings,
        body,
    }
}

fn gadgets(version: &str) -> kube::core::Request {
    kube::core::Request::new(format!(
        "/apis/prune.test/{version}/namespaces/default/gadgets"
    ))
}

fn warning(path: &str) -> String {
    format!(r#"299 - "unknown field \"{path}\"""#)
}

/// A refused write's `Status`, checked to be 400 `BadRequest`.
fn bad_request<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{s:?}");
            s
        }
        other => panic!("expected a 400 BadRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn create_drops_what_the_schema_does_not_specify_at_every_depth() {
    let Setup {
        server: _server,
        client,
        api,
    } = setup().await;
    let sent = json!({
        "apiVersion": "prune.test/v1", "kind": "Gadget",
        "metadata": {"name": "g", "labels": {"app": "x"}},
        "rootExtra": 1,
        "spec": {
            "size": 1,
            "unknownTop": "x",
            "secret": "pruned before the CEL rule sees it",
            "labels": {"any": "key", "is": "kept"},
            "ports": {"http": {"port": 80, "protocol": "TCP"}},
            "taints": [{"key": "k", "effect": "E", "matrix": [[{"x": 1, "y": 2}], []]}],
            "extra": {"free": {"deep": [1, {"x": null}]}, "known": {"a": "1", "b": 2}},
            "template": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"image": "i", "command": ["x"]}, "status": {}},
            "port": "http",
        },
        "status": {"phase": "Ready", "bogus": 1},
    });
    let req = gadgets("v1")
        .create(&PostParams::default(), serde_json::to_vec(&sent).unwrap())
        .unwrap();
    let a = send(&client, req, None).await;
    assert_eq!(a.code, 201, "{}", a.body);
    let expected_spec = json!({
        "size": 1,
        "labels": {"any": "key", "is": "kept"},
        "ports": {"http": {"port": 80}},
        "taints": [{"key": "k", "matrix": [[{"x": 1}], []]}],
        "extra": {"free": {"deep": [1, {"x": null}]}, "known": {"a": "1"}},
        "template": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"image": "i"}},
        "port": "http",
    });
    assert_eq!(a.body["spec"], expected_spec);
    assert_eq!(a.body.get("rootExtra"), None);
    assert_eq!(a.body["metadata"]["labels"], json!({"app": "x"}));
    // The status of a kind with a status subresource is dropped on create anyway; its unknown
    // field is still reported, as kube-apiserver reports it when decoding the request.
    assert_eq!(a.body.get("status"), None);
    let mut expected = [
        "rootExtra",
        "spec.ports.http.protocol",
        "spec.secret",
        "spec.taints[0].effect",
        "spec.taints[0].matrix[0][0].y",
        "spec.template.spec.command",
        "spec.template.status",
        "spec.unknownTop",
        "spec.extra.known.b",
        "status.bogus",
    ]
    .map(warning)
    .to_vec();
    expected.sort();
    let mut got = a.warnings.clone();
    got.sort();
    assert_eq!(got, expected);
    // What is stored is what was answered.
    assert_eq!(api.get("g").await.unwrap().data["spec"], expected_spec);
}

#[tokio::test]
async fn updates_and_every_patch_type_drop_unknown_fields() {
    let Setup { server, api, .. } = setup().await;
    api.create(&PostParams::default(), &gadget("g", json!({"size": 1})))
        .await
        .unwrap();
    let pp = PatchParams::default();

    // PUT.
    let mut current = api.get("g").await.unwrap();
    current.data["spec"]["fromPut"] = json!(1);
    current.data["spec"]["size"] = json!(2);
    let put = api
        .replace("g", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(put.data["spec"], json!({"size": 2}));

    // Merge patch.
    let merged = api
        .patch(
            "g",
            &pp,
            &Patch::Merge(json!({"spec": {"size": 3, "fromMerge": {"a": 1}, "taints": [{"key": "k", "x": 1}]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data["spec"],
        json!({"size": 3, "taints": [{"key": "k"}]})
    );

    // JSON patch.
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/fromJsonPatch", "value": true},
        {"op": "add", "path": "/spec/labels", "value": {"a": "b"}},
    ]))
    .unwrap();
    let patched = api.patch("g", &pp, &Patch::Json::<()>(jp)).await.unwrap();
    assert_eq!(
        patched.data["spec"],
        json!({"size": 3, "taints": [{"key": "k"}], "labels": {"a": "b"}})
    );

    // Server-side apply: the unknown field is neither stored nor owned.
    let apply = json!({"apiVersion": "prune.test/v1", "kind": "Gadget", "metadata": {"name": "g"},
        "spec": {"size": 4, "fromApply": "x"}});
    let applied = api
        .patch(
            "g",
            &PatchParams::apply("applier").force(),
            &Patch::Apply(apply.clone()),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["size"], 4);
    assert_eq!(applied.data["spec"].get("fromApply"), None);
    let rt = server.store().resource("prune.test", "gadgets").unwrap();
    let owned: Vec<_> = server
        .store()
        .managers(&rt, "default", "g")
        .into_iter()
        .filter(|(m, ..)| m == "applier")
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(owned, [1], "the applier owns spec.size only");

    // Server-side apply that creates the object.
    let created = api
        .patch(
            "new",
            &PatchParams::apply("applier"),
            &Patch::Apply(json!({"apiVersion": "prune.test/v1", "kind": "Gadget",
                "metadata": {"name": "new"}, "spec": {"size": 1, "nope": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"], json!({"size": 1}));

    // A write that adds nothing but unknown fields changes nothing: no new resourceVersion.
    let rv = server.store().resource_version();
    let same = api
        .patch("g", &pp, &Patch::Merge(json!({"spec": {"onlyUnknown": 1}})))
        .await
        .unwrap();
    assert_eq!(server.store().resource_version(), rv);
    assert_eq!(
        same.metadata.resource_version,
        applied.metadata.resource_version
    );
}

#[tokio::test]
async fn status_writes_drop_unknown_status_fields() {
    let Setup {
        server: _server,
        api,
        ..
    } = setup().await;
    api.create(&PostParams::default(), &gadget("g", json!({"size": 1})))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let s = api
        .patch_status(
            "g",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Ready", "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Fine"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        s.data["status"],
        json!({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}),
        "observedGeneration and reason are not in this CRD's status schema"
    );
    let mut current = api.get_status("g").await.unwrap();
    current.data["status"]["lastSeen"] = json!("now");
    current.data["status"]["phase"] = json!("Gone");
    let s = api
        .replace_status("g", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Gone");
    assert_eq!(s.data["status"].get("lastSeen"), None);
    let s = api
        .patch_status(
            "g",
            &PatchParams::apply("status-applier").force(),
            &Patch::Apply(json!({"apiVersion": "prune.test/v1", "kind": "Gadget",
                "metadata": {"name": "g"}, "status": {"phase": "Applied", "extra": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Applied");
    assert_eq!(s.data["status"].get("extra"), None);
    assert_eq!(s.data["spec"], json!({"size": 1}), "spec untouched");
}

#[tokio::test]
async fn strict_field_validation_refuses_unknown_fields_with_their_paths() {
    let Setup {
        server,
        client,
        api,
    } = setup().await;
    api.create(&PostParams::default(), &gadget("g", json!({"size": 1})))
        .await
        .unwrap();
    let rv = server.store().resource_version();
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    let s = bad_request(
        api.patch(
            "g",
            &strict,
            &Patch::Merge(
                json!({"spec": {"size": 2, "foo": 1, "taints": [{"key": "k", "bar": 1}]}}),
            ),
        )
        .await,
    );
    assert_eq!(
        s.message,
        r#"Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: unknown field "spec.foo", unknown field "spec.taints[0].bar""#
    );
    let strict_apply = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("applier")
    };
    let s = bad_request(
        api.patch(
            "g",
            &strict_apply,
            &Patch::Apply(json!({"apiVersion": "prune.test/v1", "kind": "Gadget",
                "metadata": {"name": "g"}, "spec": {"size": 2, "foo": 1}})),
        )
        .await,
    );
    assert!(
        s.message.contains(r#"unknown field "spec.foo""#),
        "{}",
        s.message
    );
    let s = bad_request(
        api.patch_status(
            "g",
            &strict,
            &Patch::Merge(json!({"status": {"phase": "Ready", "foo": 1}})),
        )
        .await,
    );
    assert!(
        s.message.contains(r#"unknown field "status.foo""#),
        "{}",
        s.message
    );
    assert_eq!(server.store().resource_version(), rv, "nothing was written");
    assert_eq!(api.get("g").await.unwrap().data["spec"], json!({"size": 1}));

    // Create and replace (kube's PostParams cannot ask for Strict: raw requests).
    let body = serde_json::to_vec(&gadget("strict", json!({"size": 1, "foo": 1}))).unwrap();
    let req = gadgets("v1").create(&PostParams::default(), body).unwrap();
    let a = send(&client, req, Some("Strict")).await;
    assert_eq!(
        (a.code, a.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .ends_with(r#"strict decoding error: unknown field "spec.foo""#),
        "{}",
        a.body
    );
    assert!(api.get_opt("strict").await.unwrap().is_none());
    let mut current = api.get("g").await.unwrap();
    current.data["spec"]["foo"] = json!(1);
    let req = gadgets("v1")
        .replace(
            "g",
            &PostParams::default(),
            serde_json::to_vec(&current).unwrap(),
        )
        .unwrap();
    assert_eq!(send(&client, req, Some("Strict")).await.code, 400);

    // Strict passes what the schema specifies; a directive that does not exist is refused.
    let ok = api
        .patch("g", &strict, &Patch::Merge(json!({"spec": {"size": 5}})))
        .await
        .unwrap();
    assert_eq!(ok.data["spec"], json!({"size": 5}));
    let body = serde_json::to_vec(&gadget("odd", json!({"size": 1}))).unwrap();
    let req = gadgets("v1").create(&PostParams::default(), body).unwrap();
    let a = send(&client, req, Some("Loud")).await;
    assert_eq!(a.code, 422, "{}", a.body);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains(r#"fieldValidation: Unsupported value: "Loud""#),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn warn_is_the_default_and_ignore_is_silent() {
    let Setup {
        server: _server,
        client,
        api,
    } = setup().await;
    api.create(&PostParams::default(), &gadget("g", json!({"size": 1})))
        .await
        .unwrap();
    let patch = || {
        gadgets("v1")
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"foo": 1, "bar": {"baz": 2}}})),
            )
            .unwrap()
    };
    for directive in [None, Some("Warn")] {
        let a = send(&client, patch(), directive).await;
        assert_eq!(a.code, 200, "{}", a.body);
        assert_eq!(
            a.warnings,
            [warning("spec.bar"), warning("spec.foo")],
            "{directive:?}"
        );
        assert_eq!(a.body["spec"], json!({"size": 1}));
    }
    let a = send(&client, patch(), Some("Ignore")).await;
    assert_eq!((a.code, a.warnings.len()), (200, 0));
    assert_eq!(a.body["spec"], json!({"size": 1}));
    // A write without unknown fields has no warning.
    let req = gadgets("v1")
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .unwrap();
    assert!(send(&client, req, None).await.warnings.is_empty());
}

#[tokio::test]
async fn the_schema_of_the_version_written_applies() {
    let Setup {
        server: _server,
        client,
        api,
    } = setup().await;
    api.create(
        &PostParams::default(),
        &gadget("g", json!({"size": 1, "legacy": "v1 specifies it"})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("g").await.unwrap().data["spec"]["legacy"],
        "v1 specifies it"
    );
    let v2: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource("v2"));
    let mut obj = gadget("h", json!({"size": 1, "legacy": "v2 does not"}));
    obj.types.as_mut().unwrap().api_version = "prune.test/v2".into();
    let created = v2.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": 1}));
    let patched = v2
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data["spec"],
        json!({"size": 2}),
        "a write through v2 prunes what only v1 specifies"
    );
}

#[tokio::test]
async fn pruning_has_its_own_switch() {
    let Setup { server, api, .. } = setup().await;
    // Checks off (a server without CEL rules) still prunes: every v1 CRD server does.
    server.set_schema_checks(false);
    let g = api
        .create(
            &PostParams::default(),
            &gadget("checks-off", json!({"size": "big", "foo": 1})),
        )
        .await
        .unwrap();
    assert_eq!(g.data["spec"], json!({"size": "big"}));
    server.set_schema_checks(true);
    // Pruning off keeps what is sent, and even Strict says nothing.
    server.set_pruning(false);
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    api.create(&PostParams::default(), &gadget("kept", json!({"size": 1})))
        .await
        .unwrap();
    let kept = api
        .patch("kept", &strict, &Patch::Merge(json!({"spec": {"foo": 1}})))
        .await
        .unwrap();
    assert_eq!(kept.data["spec"], json!({"size": 1, "foo": 1}));
    server.set_pruning(true);
    let pruned = api
        .patch(
            "kept",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(
        pruned.data["spec"],
        json!({"size": 2}),
        "the next write prunes what was stored unpruned"
    );
}

#[tokio::test]
async fn built_in_kinds_keep_unknown_fields() {
    let Setup { server, client, .. } = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "b"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.patch("cm", &strict, &Patch::Merge(json!({"notAField": {"x": 1}})))
        .await
        .expect("no schema, nothing unknown");
    assert_eq!(
        server.get("configmaps", "default", "cm").unwrap()["notAField"],
        json!({"x": 1})
    );
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch(
        "p",
        &strict,
        &Patch::Merge(json!({"spec": {"madeUp": true}})),
    )
    .await
    .unwrap();
    assert_eq!(
        server.get("pods", "default", "p").unwrap()["spec"]["madeUp"],
        true
    );
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {}})).unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    leases
        .patch("l", &strict, &Patch::Merge(json!({"spec": {"madeUp": 1}})))
        .await
        .unwrap();
    assert_eq!(
        server.get("leases", "default", "l").unwrap()["spec"]["madeUp"],
        1
    );
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "n",
            &strict,
            &Patch::Merge(json!({"status": {"madeUp": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(server.get("nodes", "", "n").unwrap()["status"]["madeUp"], 1);
}
