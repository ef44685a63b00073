//! The admission rules of tgp's own CRDs (OpenAPI patterns and ranges, CEL rules), applied by
//! the development API server the way a real API server applies them: a bad GPURequest or
//! GPUProvider is refused when it is applied, with a message naming the field, before the
//! operator ever sees it. (The operator checks the same things again; see the operator tests.)

use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};
use tgp::crd::{GPUProvider, GPURequest};
use tgp_apiserver::DevApiServer;

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

async fn server() -> (DevApiServer, Client) {
    let server = DevApiServer::start().await.expect("start the API server");
    server
        .register_crd(&GPURequest::crd())
        .expect("GPURequest CRD");
    server
        .register_crd(&GPUProvider::crd())
        .expect("GPUProvider CRD");
    let client = server.client().await.expect("client");
    (server, client)
}

/// A change to an object, for a table of bad cases.
type Edit<'a> = &'a dyn Fn(&mut Value);

/// The request of `examples/gpurequest.yaml`, as JSON.
fn example_request() -> Value {
    let yaml = include_str!("../../../examples/gpurequest.yaml");
    serde_yaml::from_str(yaml).expect("examples/gpurequest.yaml parses")
}

fn provider(name: &str, module: Value) -> Value {
    json!({
        "apiVersion": "tgp.io/v1alpha1",
        "kind": "GPUProvider",
        "metadata": {"name": name},
        "spec": {"module": module, "allowedHosts": ["https://api.example.com"]}
    })
}

/// Creates `object`; `Ok` or the API server's (code, message).
async fn create<K>(client: &Client, object: Value) -> Result<(), (u16, String)>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    let typed: K = serde_json::from_value(object).expect("the object deserialises");
    let api: Api<K> = Api::all(client.clone());
    match api.create(&PostParams::default(), &typed).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err((status.code, status.message)),
        Err(other) => panic!("expected an API answer, got {other:?}"),
    }
}

/// Asserts `result` is a 422 whose message contains every one of `parts`.
fn assert_refused(result: Result<(), (u16, String)>, parts: &[&str]) {
    let (code, message) = result.expect_err("the API server should refuse this object");
    assert_eq!(code, 422, "{message}");
    for part in parts {
        assert!(message.contains(part), "missing {part:?} in: {message}");
    }
}

#[tokio::test]
async fn the_example_request_is_admitted_and_bad_requests_are_refused() {
    let (_server, client) = server().await;
    let ok = example_request();
    create::<GPURequest>(&client, ok.clone())
        .await
        .expect("examples/gpurequest.yaml is admitted");

    let bad = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = ok.clone();
        v["metadata"]["name"] = json!(name);
        edit(&mut v);
        v
    };

    // CEL: idleTimeout only with bootstrap mode talos.
    let r = bad("idle-no-talos", &|v| {
        v["spec"]["bootstrap"]["mode"] = json!("none");
    });
    assert_refused(
        create::<GPURequest>(&client, r).await,
        &["spec", "idleTimeout needs bootstrap.mode: talos"],
    );
    // Without idleTimeout, a request with no bootstrap is fine.
    let r = bad("no-talos", &|v| {
        v["spec"]["bootstrap"]["mode"] = json!("none");
        v["spec"].as_object_mut().unwrap().remove("idleTimeout");
    });
    create::<GPURequest>(&client, r)
        .await
        .expect("no idleTimeout, no talos: admitted");

    // Patterns and ranges, each naming its field.
    let cases: [(&str, Edit, &str); 5] = [
        (
            "price",
            &|v| v["spec"]["maxHourlyPrice"] = json!("4 dollars"),
            "spec.maxHourlyPrice",
        ),
        (
            "lifetime",
            &|v| v["spec"]["maxLifetime"] = json!("8 hours"),
            "spec.maxLifetime",
        ),
        (
            "taint",
            &|v| v["spec"]["nodeTaints"][0]["effect"] = json!("Sometimes"),
            "spec.nodeTaints[0].effect",
        ),
        (
            "count",
            &|v| v["spec"]["gpuCount"] = json!(0),
            "spec.gpuCount",
        ),
        (
            "too-many",
            &|v| v["spec"]["gpuCount"] = json!(65),
            "spec.gpuCount",
        ),
    ];
    for (name, edit, field) in cases {
        assert_refused(
            create::<GPURequest>(&client, bad(name, edit)).await,
            &[field],
        );
    }

    // Nothing refused was stored.
    let api: Api<GPURequest> = Api::all(client.clone());
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["no-talos", "train-llm"]);
}

#[tokio::test]
async fn module_sources_need_exactly_one_source_and_a_digest() {
    let (_server, client) = server().await;
    create::<GPUProvider>(
        &client,
        provider("by-path", json!({"path": "/plugins/mock.wasm"})),
    )
    .await
    .expect("a path source needs no digest");
    create::<GPUProvider>(
        &client,
        provider(
            "by-url",
            json!({"url": "https://modules.example.com/mock.wasm", "digest": DIGEST}),
        ),
    )
    .await
    .expect("an https URL with a digest");

    assert_refused(
        create::<GPUProvider>(
            &client,
            provider(
                "two",
                json!({"path": "/plugins/mock.wasm", "url": "https://m.example.com/x.wasm", "digest": DIGEST}),
            ),
        )
        .await,
        &["spec.module", "set exactly one of path, configMap, url, oci"],
    );
    assert_refused(
        create::<GPUProvider>(&client, provider("none", json!({"digest": DIGEST}))).await,
        &[
            "spec.module",
            "set exactly one of path, configMap, url, oci",
        ],
    );
    assert_refused(
        create::<GPUProvider>(
            &client,
            provider("no-digest", json!({"url": "https://m.example.com/x.wasm"})),
        )
        .await,
        &["spec.module", "digest (sha256:<hex>) is required"],
    );
    assert_refused(
        create::<GPUProvider>(
            &client,
            provider(
                "plain-http",
                json!({"url": "http://modules.example.com/x.wasm", "digest": DIGEST}),
            ),
        )
        .await,
        &["spec.module.url"],
    );
    assert_refused(
        create::<GPUProvider>(
            &client,
            provider(
                "short-digest",
                json!({"url": "https://m.example.com/x.wasm", "digest": "sha256:abc"}),
            ),
        )
        .await,
        &["spec.module.digest"],
    );
    assert_refused(
        create::<GPUProvider>(
            &client,
            provider(
                "timeout",
                json!({"path": "/plugins/mock.wasm", "timeoutSeconds": 0}),
            ),
        )
        .await,
        &["spec.module.timeoutSeconds"],
    );
    // http is accepted for loopback module servers (tests, development).
    create::<GPUProvider>(
        &client,
        provider(
            "loopback",
            json!({"url": "http://127.0.0.1:8080/mock.wasm", "digest": DIGEST}),
        ),
    )
    .await
    .expect("loopback http is admitted");
}
