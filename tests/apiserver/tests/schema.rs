//! CRD schema and CEL checks on writes, through a real kube::Client: invalid custom resources
//! are refused with 422 `Invalid` as kube-apiserver words it, and nothing is stored.
#![recursion_limit = "256"]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::core::response::StatusCause;
use serde_json::{Value, json};
use tgp_apiserver::{ApiError, DevApiServer};

const PRICE: &str = r"^[0-9]+(\.[0-9]{1,6})?$";
const EFFECT: &str = "^(NoSchedule|PreferNoSchedule|NoExecute)$";

/// A namespaced `Widget` (group `schema.test`) whose schema carries every kind of rule.
fn crd_json() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.schema.test"},
        "spec": {
            "group": "schema.test",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "x-kubernetes-validations": [
                                {"rule": "!has(self.idleTimeout) || (has(self.bootstrap) && self.bootstrap.mode == 'talos')",
                                 "message": "idleTimeout needs bootstrap.mode: talos"},
                                {"rule": "[has(self.path), has(self.url)].filter(x, x).size() == 1",
                                 "message": "set exactly one of path, url"},
                                {"rule": "self.size <= 10 || self.allowLarge == true"},
                            ],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1},
                                "allowLarge": {"type": "boolean"},
                                "price": {"type": "string", "pattern": PRICE},
                                "mode": {"type": "string", "enum": ["fast", "slow"]},
                                "region": {"type": "string", "x-kubernetes-validations": [
                                    {"rule": "self == oldSelf", "message": "region is immutable"}
                                ]},
                                "idleTimeout": {"type": "string"},
                                "bootstrap": {"type": "object", "properties": {
                                    "mode": {"type": "string", "enum": ["talos", "none"]}
                                }},
                                "path": {"type": "string"},
                                "url": {"type": "string"},
                                "taints": {"type": "array", "items": {
                                    "type": "object",
                                    "required": ["key"],
                                    "properties": {
                                        "key": {"type": "string"},
                                        "effect": {"type": "string", "pattern": EFFECT}
                                    }
                                }},
                                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 8}},
                                "port": {"x-kubernetes-int-or-string": true},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {"type": "string", "enum": ["Pending", "Ready"]},
                                "nodes": {"type": "integer", "minimum": 0}
                            }
                        }
                    }
                }}
            }]
        }
    })
}

fn crd() -> CustomResourceDefinition {
    serde_json::from_value(crd_json()).expect("the test CRD deserialises")
}

fn resource() -> ApiResource {
    ApiResource {
        group: "schema.test".into(),
        version: "v1".into(),
        api_version: "schema.test/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

/// A valid spec: every optional part filled in.
fn good_spec() -> Value {
    json!({
        "size": 3,
        "price": "4.25",
        "mode": "fast",
        "region": "eu",
        "idleTimeout": "30m",
        "bootstrap": {"mode": "talos"},
        "path": "/plugins/a.wasm",
        "taints": [{"key": "gpu", "effect": "NoSchedule"}, {"key": "other"}],
        "labels": {"team": "ml"},
        "port": 8080,
        "extra": {"anything": [1, {"goes": null}], "here": true},
    })
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "schema.test/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a widget")
}

async fn setup() -> (DevApiServer, Api<DynamicObject>) {
    let server = DevApiServer::start().await.expect("server starts");
    server.register_crd(&crd()).expect("the CRD registers");
    let client = server.client().await.expect("client builds");
    let api = Api::namespaced_with(client, "default", &resource());
    (server, api)
}

/// The 422 `Invalid` Status of a refused write.
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
            s
        }
        other => panic!("expected a 422 Invalid, got {other:?}"),
    }
}

/// The cause naming `field`.
fn cause<'a>(s: &'a Status, field: &str) -> &'a StatusCause {
    let causes = &s.details.as_ref().expect("details").causes;
    causes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no cause for {field} in {causes:?}"))
}

#[tokio::test]
async fn valid_objects_are_accepted_as_sent() {
    let (_server, api) = setup().await;
    let created = api
        .create(&PostParams::default(), &widget("full", good_spec()))
        .await
        .expect("a valid widget is admitted");
    assert_eq!(
        created.data["spec"],
        good_spec(),
        "nothing pruned (all is specified) or defaulted"
    );
    // The other branch of each rule, a string port, and the fewest fields.
    let spec = json!({"size": 20, "allowLarge": true, "url": "https://x", "port": "http",
        "bootstrap": {"mode": "none"}});
    api.create(&PostParams::default(), &widget("other", spec))
        .await
        .expect("the other branches are admitted");
    api.create(
        &PostParams::default(),
        &widget("least", json!({"size": 1, "path": "/p"})),
    )
    .await
    .expect("the fewest fields are admitted");
}

#[tokio::test]
async fn each_violation_is_refused_with_its_field_and_message() {
    let (server, api) = setup().await;
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str, &str, String)> = vec![
        (
            "required",
            |s| {
                s.as_object_mut().unwrap().remove("size");
            },
            "spec.size",
            "FieldValueRequired",
            "spec.size: Required value".into(),
        ),
        (
            "pattern",
            |s| s["price"] = json!("abc"),
            "spec.price",
            "FieldValueInvalid",
            format!(r#"spec.price: Invalid value: "abc": spec.price in body should match '{PRICE}'"#),
        ),
        (
            "enum",
            |s| s["mode"] = json!("medium"),
            "spec.mode",
            "FieldValueNotSupported",
            r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#.into(),
        ),
        (
            "minimum",
            |s| s["size"] = json!(0),
            "spec.size",
            "FieldValueInvalid",
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
                .into(),
        ),
        (
            "nested-pattern",
            |s| s["taints"][1]["effect"] = json!("Sometimes"),
            "spec.taints[1].effect",
            "FieldValueInvalid",
            format!(r#"spec.taints[1].effect in body should match '{EFFECT}'"#),
        ),
        (
            "nested-required",
            |s| s["taints"][0].as_object_mut().unwrap().clear(),
            "spec.taints[0].key",
            "FieldValueRequired",
            "spec.taints[0].key: Required value".into(),
        ),
        (
            "map-value",
            |s| s["labels"]["team"] = json!("research-and-development"),
            "spec.labels.team",
            "FieldValueTooLong",
            "spec.labels.team: Too long: may not be more than 8 bytes".into(),
        ),
        (
            "int-or-string",
            |s| s["port"] = json!(true),
            "spec.port",
            "FieldValueTypeInvalid",
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
                .into(),
        ),
        (
            "type",
            |s| s["size"] = json!("three"),
            "spec.size",
            "FieldValueTypeInvalid",
            r#"spec.size in body must be of type integer: "string""#.into(),
        ),
        (
            "cel-implication",
            |s| {
                s.as_object_mut().unwrap().remove("bootstrap");
            },
            "spec",
            "FieldValueInvalid",
            r#"spec: Invalid value: "object": idleTimeout needs bootstrap.mode: talos"#.into(),
        ),
        (
            "cel-exactly-one-both",
            |s| s["url"] = json!("https://x"),
            "spec",
            "FieldValueInvalid",
            r#"spec: Invalid value: "object": set exactly one of path, url"#.into(),
        ),
        (
            "cel-exactly-one-none",
            |s| {
                s.as_object_mut().unwrap().remove("path");
            },
            "spec",
            "FieldValueInvalid",
            "set exactly one of path, url".into(),
        ),
        (
            "cel-default-message",
            |s| s["size"] = json!(20),
            "spec",
            "FieldValueInvalid",
            "spec: Invalid value: \"object\": No such key: allowLarge evaluating rule: self.size <= 10 || self.allowLarge == true".into(),
        ),
        (
            "cel-false-without-message",
            |s| {
                s["size"] = json!(20);
                s["allowLarge"] = json!(false);
            },
            "spec",
            "FieldValueInvalid",
            r#"spec: Invalid value: "object": failed rule: self.size <= 10 || self.allowLarge == true"#
                .into(),
        ),
    ];
    for (name, edit, field, reason, message) in &cases {
        let mut spec = good_spec();
        edit(&mut spec);
        let s = refused(
            api.create(&PostParams::default(), &widget(name, spec))
                .await,
        );
        let c = cause(&s, field);
        assert_eq!(c.reason, *reason, "{name}: {c:?}");
        assert!(
            s.message
                .starts_with(&format!(r#"Widget.schema.test "{name}" is invalid: "#)),
            "{name}: {}",
            s.message
        );
        assert!(
            s.message.contains(message.as_str()),
            "{name}: {}",
            s.message
        );
        let details = s.details.as_ref().unwrap();
        assert_eq!(
            (
                details.name.as_str(),
                details.group.as_str(),
                details.kind.as_str()
            ),
            (*name, "schema.test", "Widget")
        );
    }

    // Several failures: all of them, as `[a, b]`.
    let mut spec = good_spec();
    spec["price"] = json!("x");
    spec["url"] = json!("https://x");
    let s = refused(
        api.create(&PostParams::default(), &widget("several", spec))
            .await,
    );
    assert_eq!(
        s.message,
        format!(
            r#"Widget.schema.test "several" is invalid: [spec.price: Invalid value: "x": spec.price in body should match '{PRICE}', spec: Invalid value: "object": set exactly one of path, url]"#
        )
    );
    // A blocking error (a wrong type) leaves the CEL rules unevaluated, as in kube-apiserver.
    let mut spec = good_spec();
    spec["size"] = json!("big");
    spec["url"] = json!("https://x");
    let s = refused(
        api.create(&PostParams::default(), &widget("blocking", spec))
            .await,
    );
    assert!(
        s.message.contains("some validation rules were not checked"),
        "{}",
        s.message
    );
    assert!(!s.message.contains("set exactly one"), "{}", s.message);
    // The object root: `spec` is required.
    let no_spec: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "schema.test/v1", "kind": "Widget", "metadata": {"name": "no-spec"}
    }))
    .unwrap();
    let s = refused(api.create(&PostParams::default(), &no_spec).await);
    assert_eq!(cause(&s, "spec").reason, "FieldValueRequired");
    // Dry runs are checked too.
    let mut spec = good_spec();
    spec["mode"] = json!("x");
    refused(
        api.create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &widget("dry", spec),
        )
        .await,
    );

    // Nothing refused was stored.
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "refused objects are not stored"
    );
    assert!(server.get("widgets", "default", "pattern").is_err());
}

#[tokio::test]
async fn writes_that_would_make_an_object_invalid_are_refused_and_change_nothing() {
    let (server, api) = setup().await;
    let before = api
        .create(&PostParams::default(), &widget("w", good_spec()))
        .await
        .unwrap();
    let rv = server.store().resource_version();

    let pp = PatchParams::default();
    let s = refused(
        api.patch("w", &pp, &Patch::Merge(json!({"spec": {"price": "cheap"}})))
            .await,
    );
    assert_eq!(cause(&s, "spec.price").reason, "FieldValueInvalid");
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/taints/0/effect", "value": "Always"}
    ]))
    .unwrap();
    let s = refused(api.patch("w", &pp, &Patch::Json::<()>(jp)).await);
    cause(&s, "spec.taints[0].effect");
    let s = refused(
        api.patch(
            "w",
            &pp,
            &Patch::Strategic(json!({"spec": {"url": "https://x"}})),
        )
        .await,
    );
    assert!(
        s.message.contains("set exactly one of path, url"),
        "{}",
        s.message
    );
    let apply = json!({"apiVersion": "schema.test/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 0, "path": "/p"}});
    let s = refused(
        api.patch(
            "w",
            &PatchParams::apply("tester").force(),
            &Patch::Apply(apply),
        )
        .await,
    );
    cause(&s, "spec.size");
    let mut replaced = before.clone();
    replaced.data["spec"]["labels"] = json!({"team": 7});
    let s = refused(api.replace("w", &PostParams::default(), &replaced).await);
    assert_eq!(
        cause(&s, "spec.labels.team").reason,
        "FieldValueTypeInvalid"
    );
    assert_eq!(
        server.store().resource_version(),
        rv,
        "no write happened and no event was sent"
    );
    let after = api.get("w").await.unwrap();
    assert_eq!(after.data["spec"], before.data["spec"]);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // A valid patch still goes through.
    let ok = api
        .patch("w", &pp, &Patch::Merge(json!({"spec": {"price": "5"}})))
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["price"], "5");
}

#[tokio::test]
async fn status_writes_are_checked_against_the_status_schema() {
    let (server, api) = setup().await;
    api.create(&PostParams::default(), &widget("w", good_spec()))
        .await
        .unwrap();
    let pp = PatchParams::default();
    api.patch_status(
        "w",
        &pp,
        &Patch::Merge(json!({"status": {"phase": "Pending", "nodes": 0}})),
    )
    .await
    .expect("a valid status is admitted");
    let rv = server.store().resource_version();
    let s = refused(
        api.patch_status(
            "w",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Lost"}})),
        )
        .await,
    );
    assert_eq!(
        cause(&s, "status.phase").message,
        r#"Unsupported value: "Lost": supported values: "Pending", "Ready""#
    );
    let mut current = api.get_status("w").await.unwrap();
    current.data["status"]["nodes"] = json!(-1);
    let s = refused(
        api.replace_status("w", &PostParams::default(), &current)
            .await,
    );
    cause(&s, "status.nodes");
    assert_eq!(server.store().resource_version(), rv);
    assert_eq!(
        api.get_status("w").await.unwrap().data["status"],
        json!({"phase": "Pending", "nodes": 0})
    );
}

#[tokio::test]
async fn transition_rules_run_on_updates_only() {
    let (_server, api) = setup().await;
    let pp = PatchParams::default();
    // On create there is no old value: `self == oldSelf` is not evaluated (it would fail,
    // `oldSelf` being undeclared).
    api.create(&PostParams::default(), &widget("w", good_spec()))
        .await
        .expect("the transition rule is not evaluated on create");
    let s = refused(
        api.patch("w", &pp, &Patch::Merge(json!({"spec": {"region": "us"}})))
            .await,
    );
    assert_eq!(
        cause(&s, "spec.region").message,
        r#"Invalid value: "string": region is immutable"#
    );
    api.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 4}})))
        .await
        .expect("other fields may change");
    // A value added by an update had no old value: not a transition.
    let mut spec = good_spec();
    spec.as_object_mut().unwrap().remove("region");
    api.create(&PostParams::default(), &widget("late", spec))
        .await
        .unwrap();
    api.patch(
        "late",
        &pp,
        &Patch::Merge(json!({"spec": {"region": "us"}})),
    )
    .await
    .expect("setting the region the first time is allowed");
}

#[tokio::test]
async fn a_crd_whose_rule_does_not_compile_is_refused() {
    let server = DevApiServer::start().await.unwrap();
    let mut bad = crd_json();
    let rules = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-validations";
    bad.pointer_mut(rules).unwrap()[1]["rule"] = json!("self.path ==");
    let bad: CustomResourceDefinition = serde_json::from_value(bad).unwrap();
    let err = server.register_crd(&bad).unwrap_err();
    let ApiError::InvalidObject { kind, causes, .. } = &err else {
        panic!("expected InvalidObject, got {err:?}");
    };
    assert_eq!(kind, "CustomResourceDefinition");
    assert_eq!(
        causes[0].field,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule"
    );
    assert!(err.to_string().contains(r#""self.path ==""#), "{err}");
    assert!(err.to_string().contains("compilation failed"), "{err}");

    // Over HTTP too, and the kind is not served.
    let client = server.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let s = refused(crds.create(&PostParams::default(), &bad).await);
    assert!(s.message.contains("self.path =="), "{}", s.message);
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource());
    match widgets.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("the kind should not be served: {other:?}"),
    }
    // A bad pattern is refused the same way; the good CRD then registers.
    let mut bad = crd_json();
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["price"]
        ["pattern"] = json!("([0-9]");
    let bad: CustomResourceDefinition = serde_json::from_value(bad).unwrap();
    assert_eq!(server.register_crd(&bad).unwrap_err().code(), 422);
    server.register_crd(&crd()).unwrap();
}

/// With the checks off (a cluster without them, or objects stored before a rule existed) an
/// invalid object is stored as sent; turned back on, the same write is refused again.
#[tokio::test]
async fn schema_checks_can_be_turned_off_to_store_what_admission_would_refuse() {
    let (server, api) = setup().await;
    let mut spec = good_spec();
    spec["price"] = json!("cheap");
    server.set_schema_checks(false);
    let stored = api
        .create(&PostParams::default(), &widget("unchecked", spec.clone()))
        .await
        .expect("stored without checks");
    assert_eq!(stored.data["spec"]["price"], "cheap");
    server.set_schema_checks(true);
    let status = refused(
        api.create(&PostParams::default(), &widget("checked", spec))
            .await,
    );
    cause(&status, "spec.price");
}
