//! The RunPod personality over real HTTP on loopback: GraphQL parsing (inline literals and
//! variables), selection-shaped answers, pod lifecycle on the simulated clock, billing, both auth
//! styles and RunPod's failure modes. Time is driven with `RunpodCloud::advance`.

use std::time::Duration;

use serde_json::{Value, json};
use tgp_cloudsim::{Faults, RunpodCloud, RunpodConfig, Switch};

const KEY: &str = "runpod-key";
const H100: &str = "NVIDIA H100 80GB HBM3";
const DEPLOY_VARS: &str = "mutation createPod($input: PodFindAndDeployOnDemandInput!) { podFindAndDeployOnDemand(input: $input) { id desiredStatus costPerHr imageName env machine { podHostId } } }";

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }
}

async fn gql_with(url: String, bearer: Option<&str>, query: &str, vars: Value) -> Answer {
    let mut rb = reqwest::Client::new()
        .post(url)
        .json(&json!({"query": query, "variables": vars}));
    if let Some(k) = bearer {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

async fn gql(c: &RunpodCloud, query: &str, vars: Value) -> Answer {
    gql_with(c.graphql_url(), Some(KEY), query, vars).await
}

fn deploy_input(name: &str) -> Value {
    json!({"input": {
        "cloudType": "SECURE", "gpuCount": 1, "volumeInGb": 0, "containerDiskInGb": 40,
        "gpuTypeId": H100, "name": name, "imageName": "ghcr.io/tgp/worker:1", "dockerArgs": "",
        "ports": "22/tcp,8888/http", "env": [{"key": "TGP_OWNER", "value": "cluster-a"}]
    }})
}

async fn deploy(c: &RunpodCloud, name: &str) -> String {
    let a = gql(c, DEPLOY_VARS, deploy_input(name)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("errors").is_none(), "{}", a.body);
    a.body["data"]["podFindAndDeployOnDemand"]["id"]
        .as_str()
        .expect("pod id")
        .to_owned()
}

async fn pod(c: &RunpodCloud, id: &str) -> Value {
    let q = format!(
        r#"query pod {{ pod(input: {{podId: "{id}"}}) {{ id name desiredStatus uptimeSeconds runtime {{ uptimeInSeconds ports {{ ip isIpPublic privatePort publicPort type }} }} }} }}"#
    );
    let a = gql(c, &q, Value::Null).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["data"]["pod"].clone()
}

async fn terminate(c: &RunpodCloud, id: &str) -> Answer {
    gql(
        c,
        "mutation T($id: String!) { podTerminate(input: {podId: $id}) }",
        json!({"id": id}),
    )
    .await
}

fn slow() -> RunpodConfig {
    RunpodConfig::default().with_delays(Duration::from_secs(60), Duration::from_secs(10))
}

#[tokio::test]
async fn catalogue_answers_only_the_selection_with_stock_aware_prices() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    let q = "query GpuTypes($lowestPriceInput: GpuLowestPriceInput, $gpuTypesInput: GpuTypeFilter) { gpuTypes(input: $gpuTypesInput) { id displayName securePrice lowestPrice(input: $lowestPriceInput) { minimumBidPrice uninterruptablePrice stockStatus } } }";
    let a = gql(&c, q, json!({"gpuTypesInput": {"id": H100}, "lowestPriceInput": {"gpuCount": 1, "secureCloud": true}})).await;
    assert_eq!(a.status, 200);
    let types = a.body["data"]["gpuTypes"].as_array().unwrap();
    assert_eq!(types.len(), 1);
    let t = &types[0];
    assert_eq!(
        t.as_object().unwrap().len(),
        4,
        "only the selected fields: {t}"
    );
    assert_eq!(t["id"], H100);
    assert_eq!(t["securePrice"], 2.99);
    assert_eq!(t["lowestPrice"]["uninterruptablePrice"], 2.99);
    assert_eq!(t["lowestPrice"]["minimumBidPrice"], 1.495);
    assert_eq!(t["lowestPrice"]["stockStatus"], "High");
    assert_eq!(t["lowestPrice"].as_object().unwrap().len(), 3);

    // Inline literals, aliases, and a sold-out type / too many GPUs give stockStatus null.
    let a = gql(&c, r#"{ all: gpuTypes { id one: lowestPrice(input: {gpuCount: 1}) { stockStatus } nine: lowestPrice(input: {gpuCount: 9}) { stockStatus } } }"#, Value::Null).await;
    let all = a.body["data"]["all"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    let a6000 = all.iter().find(|t| t["id"] == "NVIDIA RTX A6000").unwrap();
    assert_eq!(a6000["one"]["stockStatus"], Value::Null);
    assert!(all.iter().all(|t| t["nine"]["stockStatus"].is_null()));

    // Anonymous catalogue reads work; anything else needs a key.
    let anon = gql_with(c.graphql_url(), None, "{ gpuTypes { id } }", Value::Null).await;
    assert_eq!(anon.status, 200);
    let anon = gql_with(
        c.graphql_url(),
        None,
        "{ gpuTypes { id } myself { id } }",
        Value::Null,
    )
    .await;
    assert_eq!(anon.status, 401);

    // Unknown fields are validation errors.
    let a = gql(&c, "{ gpuTypes { id bogus } }", Value::Null).await;
    assert_eq!(a.status, 400);
    assert!(a.error().contains("bogus"), "{}", a.body);
    // The anonymous gpuTypes + myself call is named after `myself`.
    assert_eq!(c.call_count("gpuTypes"), 4);
    assert_eq!(c.call_count("myself"), 1);
}

#[tokio::test]
async fn pod_boots_runs_is_billed_and_listed() {
    let c = RunpodCloud::start(slow()).await.unwrap();
    // Inline literal form (dstack / runpod-python style).
    let q = format!(
        r#"mutation {{ podFindAndDeployOnDemand(input: {{ cloudType: SECURE, gpuCount: 2, containerDiskInGb: 40, gpuTypeId: "{H100}", name: "tgp-a", imageName: "img", ports: "22/tcp", env: [{{key: "K", value: "V"}}] }}) {{ id imageName env desiredStatus machineId machine {{ podHostId }} }} }}"#
    );
    let a = gql(&c, &q, Value::Null).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let p = &a.body["data"]["podFindAndDeployOnDemand"];
    assert_eq!(p["env"], json!(["K=V"]));
    assert_eq!(p["desiredStatus"], "RUNNING");
    assert_eq!(p.as_object().unwrap().len(), 6);
    let id = p["id"].as_str().unwrap().to_owned();

    let booting = pod(&c, &id).await;
    assert_eq!(booting["desiredStatus"], "RUNNING");
    assert_eq!(booting["runtime"], Value::Null);
    let before = c.balance_micro_usd();
    c.advance(Duration::from_secs(60));
    let up = pod(&c, &id).await;
    let ssh = &up["runtime"]["ports"][0];
    assert_eq!(ssh["privatePort"], 22);
    assert_eq!(ssh["isIpPublic"], true);
    assert!(ssh["ip"].as_str().unwrap().starts_with("203.0.113."));
    c.advance(Duration::from_secs(3600));
    assert!(
        pod(&c, &id).await["runtime"]["uptimeInSeconds"]
            .as_u64()
            .unwrap()
            >= 3600
    );
    // Billed from the deploy on: 2 GPUs x 2.99 for ~61 minutes.
    let spent = before - c.balance_micro_usd();
    assert!((6_000_000..=6_200_000).contains(&spent), "spent {spent}");

    let me = gql(
        &c,
        "{ myself { clientBalance currentSpendPerHr pods { id name desiredStatus } } }",
        Value::Null,
    )
    .await;
    let me = &me.body["data"]["myself"];
    assert_eq!(me["currentSpendPerHr"], 5.98);
    assert_eq!(
        me["pods"],
        json!([{"id": id, "name": "tgp-a", "desiredStatus": "RUNNING"}])
    );
    assert!(me["clientBalance"].as_f64().unwrap() < 94.0);
    assert_eq!(c.live_instances().len(), 1);
}

#[tokio::test]
async fn terminate_twice_and_unknown_ids() {
    let c = RunpodCloud::start(slow()).await.unwrap();
    let id = deploy(&c, "tgp-t").await;
    let a = terminate(&c, &id).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({"data": {"podTerminate": null}}));
    assert_eq!(pod(&c, &id).await["desiredStatus"], "TERMINATED");
    // Again while it is still terminating: accepted.
    assert!(terminate(&c, &id).await.body.get("errors").is_none());
    c.advance(Duration::from_secs(10));
    assert_eq!(pod(&c, &id).await, Value::Null);
    let again = terminate(&c, &id).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.error(), "pod not found to terminate");
    assert_eq!(again.body["data"]["podTerminate"], Value::Null);
    assert_eq!(
        terminate(&c, "nosuchpod").await.error(),
        "pod not found to terminate"
    );
    // Billing stopped at the terminate.
    let b = c.balance_micro_usd();
    c.advance(Duration::from_secs(3600));
    assert_eq!(c.balance_micro_usd(), b);
    assert!(c.live_instances().is_empty());
}

#[tokio::test]
async fn both_auth_styles() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    let q = "{ myself { id } }";
    assert_eq!(
        gql_with(c.graphql_url(), Some("wrong"), q, Value::Null)
            .await
            .status,
        401
    );
    assert_eq!(
        gql_with(c.graphql_url(), None, q, Value::Null).await.status,
        401
    );
    let legacy = format!("{}?api_key={KEY}", c.graphql_url());
    assert_eq!(gql_with(legacy, None, q, Value::Null).await.status, 200);
    let bad_legacy = format!("{}?api_key=nope", c.graphql_url());
    let a = gql_with(bad_legacy, None, "{ gpuTypes { id } }", Value::Null).await;
    assert_eq!(
        a.status, 401,
        "a wrong key is refused even for the catalogue"
    );
    assert_eq!(
        gql_with(c.graphql_url(), Some(KEY), q, Value::Null)
            .await
            .status,
        200
    );
    let calls = c.calls();
    assert!(calls.iter().all(|r| r.personality == "runpod"));
    assert!(calls[2].path.contains("api_key="));
}

#[tokio::test]
async fn capacity_disk_balance_and_bid_errors() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    let mut input = deploy_input("x");
    input["input"]["gpuTypeId"] = json!("NVIDIA RTX A6000");
    let a = gql(&c, DEPLOY_VARS, input).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.error(),
        "There are no longer any instances available with the requested specifications. Please refresh and try again."
    );
    assert_eq!(a.body["data"]["podFindAndDeployOnDemand"], Value::Null);

    // Stock is real: 16 H100s, an 8-GPU pod twice, then none left.
    let mut eight = deploy_input("big");
    eight["input"]["gpuCount"] = json!(8);
    assert!(
        gql(&c, DEPLOY_VARS, eight.clone())
            .await
            .body
            .get("errors")
            .is_none()
    );
    assert!(
        gql(&c, DEPLOY_VARS, eight.clone())
            .await
            .body
            .get("errors")
            .is_none()
    );
    assert!(
        gql(&c, DEPLOY_VARS, deploy_input("one-more"))
            .await
            .error()
            .starts_with("There are no longer")
    );
    assert!(c.set_stock(H100, 4));

    let mut disk = deploy_input("disk");
    disk["input"]["containerDiskInGb"] = json!(5000);
    assert_eq!(
        gql(&c, DEPLOY_VARS, disk).await.error(),
        "There are no longer any instances available with enough disk space."
    );

    c.set_faults(
        Faults::none()
            .capacity_exhausted(Switch::Next(1))
            .insufficient_balance(Switch::Off),
    );
    assert!(
        gql(&c, DEPLOY_VARS, deploy_input("f"))
            .await
            .error()
            .starts_with("There are no longer")
    );
    c.set_balance(0);
    assert_eq!(
        gql(&c, DEPLOY_VARS, deploy_input("poor")).await.error(),
        "Insufficient balance"
    );
    c.set_balance(50_000_000);

    // Spot: bid under the floor refused; at the floor accepted and INTERRUPTABLE.
    let spot = "mutation($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id podType costPerHr } }";
    let mut low = deploy_input("spot");
    low["input"]["bidPerGpu"] = json!(0.5);
    assert!(gql(&c, spot, low.clone()).await.error().contains("bid"));
    low["input"]["bidPerGpu"] = json!(1.6);
    let a = gql(&c, spot, low).await;
    assert_eq!(
        a.body["data"]["podRentInterruptable"]["podType"], "INTERRUPTABLE",
        "{}",
        a.body
    );
    assert_eq!(a.body["data"]["podRentInterruptable"]["costPerHr"], 1.6);
    assert_eq!(c.live_instances().len(), 3);
}

#[tokio::test]
async fn injected_rate_limits_and_errors() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    c.set_faults(
        Faults::none()
            .rate_limit_next("podFindAndDeployOnDemand", 1, Some(3))
            .fail_next("myself", 1),
    );
    let a = gql(&c, DEPLOY_VARS, deploy_input("rl")).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers.get("retry-after").unwrap(), "3");
    assert!(c.live_instances().is_empty(), "a 429 changes nothing");
    deploy(&c, "rl").await;
    let a = gql(&c, "{ myself { id } }", Value::Null).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.error(),
        "Something went wrong. Please try again later or contact support."
    );
    assert_eq!(
        gql(&c, "{ myself { id } }", Value::Null).await.body["data"]["myself"]["id"],
        "user_sim0001"
    );
    assert_eq!(c.call_count("podFindAndDeployOnDemand"), 2);
}

#[tokio::test]
async fn silent_failure_returns_an_id_for_a_pod_that_never_exists() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    c.set_faults(Faults::none().silent_launch_failure(Switch::Next(1)));
    let before = c.balance_micro_usd();
    let ghost = deploy(&c, "ghost").await;
    c.advance(Duration::from_secs(3600));
    assert_eq!(pod(&c, &ghost).await, Value::Null);
    assert_eq!(
        terminate(&c, &ghost).await.error(),
        "pod not found to terminate"
    );
    assert_eq!(c.balance_micro_usd(), before, "nothing billed");
    assert!(c.instances().is_empty());
    let real = deploy(&c, "real").await;
    assert_ne!(real, ghost);
    assert!(pod(&c, &real).await["runtime"].is_object());
}

#[tokio::test]
async fn pods_vanish_by_hand_or_after_running() {
    let c = RunpodCloud::start(RunpodConfig::instant()).await.unwrap();
    let a = deploy(&c, "a").await;
    assert!(c.vanish(&a));
    assert_eq!(pod(&c, &a).await, Value::Null);
    assert!(!c.vanish("nope"));
    c.set_faults(Faults::none().vanish_after_running(Duration::from_secs(120)));
    let b = deploy(&c, "b").await;
    c.advance(Duration::from_secs(60));
    assert!(pod(&c, &b).await.is_object());
    c.advance(Duration::from_secs(61));
    assert_eq!(pod(&c, &b).await, Value::Null);
    let me = gql(&c, "{ myself { pods { id } } }", Value::Null).await;
    assert_eq!(me.body["data"]["myself"]["pods"], json!([]));
    let b_bill = c.instance(&b).unwrap().billed_micro_usd;
    c.advance(Duration::from_secs(3600));
    assert_eq!(c.instance(&b).unwrap().billed_micro_usd, b_bill);
}
