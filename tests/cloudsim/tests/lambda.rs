//! The Lambda personality over real HTTP on loopback: the v1 envelopes, catalogue map, launch with
//! its SSH-key rule, status progression, terminate, both auth styles, capacity, quota and Lambda's
//! rate limits (driven on the simulated clock with `LambdaCloud::advance`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tgp_cloudsim::{Faults, LambdaCloud, LambdaConfig, Switch};

const KEY: &str = "lambda-key";
const H100: &str = "gpu_1x_h100_sxm5";

enum Auth<'a> {
    Bearer(&'a str),
    Basic(&'a str),
    None,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn call(
    c: &LambdaCloud,
    auth: Auth<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut rb = reqwest::Client::new().request(method, format!("{}/api/v1{path}", c.base_url()));
    rb = match auth {
        Auth::Bearer(k) => rb.bearer_auth(k),
        Auth::Basic(k) => rb.basic_auth(k, Some("")),
        Auth::None => rb,
    };
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn api(c: &LambdaCloud, method: Method, path: &str, body: Option<Value>) -> Answer {
    call(c, Auth::Bearer(KEY), method, path, body).await
}

fn launch_body(name: &str) -> Value {
    json!({"region_name": "us-east-1", "instance_type_name": H100, "ssh_key_names": ["tgp"],
           "file_system_names": [], "name": name, "quantity": 1, "user_data": "#cloud-config\n",
           "tags": [{"key": "tgp-owner", "value": "cluster-a"}]})
}

async fn launch(c: &LambdaCloud, name: &str) -> String {
    let a = api(
        c,
        Method::POST,
        "/instance-operations/launch",
        Some(launch_body(name)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

fn slow() -> LambdaConfig {
    LambdaConfig::instant().with_delays(Duration::from_secs(120), Duration::from_secs(30))
}

#[tokio::test]
async fn catalogue_is_a_map_with_capacity_regions() {
    let c = LambdaCloud::start(LambdaConfig::instant()).await.unwrap();
    let a = api(&c, Method::GET, "/instance-types", None).await;
    assert_eq!(a.status, 200);
    let h = &a.body["data"][H100];
    assert_eq!(h["instance_type"]["price_cents_per_hour"], 329);
    assert_eq!(h["instance_type"]["specs"]["gpus"], 1);
    assert_eq!(h["instance_type"]["gpu_description"], "H100 (80 GB SXM5)");
    let regions: Vec<&str> = h["regions_with_capacity_available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["us-east-1", "us-west-1"]);
    assert_eq!(
        h["regions_with_capacity_available"][0]["description"],
        "Virginia, USA"
    );
    assert_eq!(
        a.body["data"]["gpu_1x_a10"]["regions_with_capacity_available"],
        json!([])
    );
    let keys = api(&c, Method::GET, "/ssh-keys", None).await;
    assert_eq!(keys.body["data"][0]["name"], "tgp");
}

#[tokio::test]
async fn launch_boots_to_active_with_ip_is_listed_and_billed() {
    let c = LambdaCloud::start(slow()).await.unwrap();
    let id = launch(&c, "tgp-a").await;
    assert_eq!(id.len(), 32);
    let a = api(&c, Method::GET, &format!("/instances/{id}"), None).await;
    assert_eq!(a.body["data"]["status"], "booting");
    assert!(a.body["data"].get("ip").is_none(), "no ip while booting");
    assert_eq!(
        a.body["data"]["tags"],
        json!([{"key": "tgp-owner", "value": "cluster-a"}])
    );
    assert_eq!(a.body["data"]["ssh_key_names"], json!(["tgp"]));
    c.advance(Duration::from_secs(120));
    let a = api(&c, Method::GET, &format!("/instances/{id}"), None).await;
    assert_eq!(a.body["data"]["status"], "active");
    assert!(
        a.body["data"]["ip"]
            .as_str()
            .unwrap()
            .starts_with("198.51.100.")
    );
    assert_eq!(a.body["data"]["name"], "tgp-a");
    assert_eq!(a.body["data"]["region"]["name"], "us-east-1");
    let list = api(&c, Method::GET, "/instances", None).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["data"][0]["id"], id.as_str());
    let before = c.balance_micro_usd();
    c.advance(Duration::from_secs(3600));
    assert_eq!(before - c.balance_micro_usd(), 3_290_000);
    assert_eq!(
        c.instances()[0].user_data.as_deref(),
        Some("#cloud-config\n")
    );
    // Capacity is taken: us-east-1 had 4.
    let t = api(&c, Method::GET, "/instance-types", None).await;
    assert!(
        t.body["data"][H100]["regions_with_capacity_available"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "us-east-1")
    );
}

#[tokio::test]
async fn terminate_twice_and_unknown_ids() {
    let c = LambdaCloud::start(slow()).await.unwrap();
    let id = launch(&c, "tgp-t").await;
    c.advance(Duration::from_secs(120));
    let body = json!({"instance_ids": [id]});
    let a = api(
        &c,
        Method::POST,
        "/instance-operations/terminate",
        Some(body.clone()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["data"]["terminated_instances"][0]["status"],
        "terminating"
    );
    let again = api(
        &c,
        Method::POST,
        "/instance-operations/terminate",
        Some(body.clone()),
    )
    .await;
    assert_eq!(again.status, 200);
    c.advance(Duration::from_secs(30));
    let a = api(&c, Method::GET, &format!("/instances/{id}"), None).await;
    assert_eq!(a.body["data"]["status"], "terminated");
    let b = c.balance_micro_usd();
    c.advance(Duration::from_secs(600));
    assert_eq!(c.balance_micro_usd(), b, "no billing after terminate");
    let gone = api(&c, Method::GET, &format!("/instances/{id}"), None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.code(), "global/object-does-not-exist");
    let late = api(
        &c,
        Method::POST,
        "/instance-operations/terminate",
        Some(body),
    )
    .await;
    assert_eq!(late.status, 404);
    let unknown = api(
        &c,
        Method::POST,
        "/instance-operations/terminate",
        Some(json!({"instance_ids": ["nope"]})),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), "global/object-does-not-exist");
    assert!(c.live_instances().is_empty());
}

#[tokio::test]
async fn bearer_and_basic_auth() {
    let c = LambdaCloud::start(LambdaConfig::instant()).await.unwrap();
    assert_eq!(
        call(&c, Auth::Basic(KEY), Method::GET, "/instances", None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&c, Auth::Bearer(KEY), Method::GET, "/instances", None)
            .await
            .status,
        200
    );
    for bad in [Auth::Basic("wrong"), Auth::Bearer("wrong"), Auth::None] {
        let a = call(&c, bad, Method::GET, "/instances", None).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.code(), "global/invalid-api-key");
        assert_eq!(
            a.body["error"]["message"],
            "API key was invalid, expired, or deleted."
        );
    }
    assert!(
        c.calls()
            .iter()
            .all(|r| r.personality == "lambda" && r.endpoint == "list")
    );
}

#[tokio::test]
async fn ssh_key_rule_is_enforced() {
    let c = LambdaCloud::start(LambdaConfig::instant()).await.unwrap();
    for keys in [json!([]), json!(["tgp", "tgp"]), Value::Null] {
        let mut b = launch_body("k");
        b["ssh_key_names"] = keys;
        let a = api(&c, Method::POST, "/instance-operations/launch", Some(b)).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert_eq!(a.code(), "global/invalid-parameters");
    }
    let mut b = launch_body("k");
    b["ssh_key_names"] = json!(["nobody"]);
    let a = api(&c, Method::POST, "/instance-operations/launch", Some(b)).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.code(), "global/object-does-not-exist");
    assert!(c.instances().is_empty());
}

#[tokio::test]
async fn capacity_quota_and_account_errors() {
    let c = LambdaCloud::start(LambdaConfig::instant()).await.unwrap();
    let mut b = launch_body("a10");
    b["instance_type_name"] = json!("gpu_1x_a10");
    let a = api(&c, Method::POST, "/instance-operations/launch", Some(b)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "instance-operations/launch/insufficient-capacity");
    assert_eq!(
        a.body["error"]["message"],
        "Not enough capacity to fulfill launch request."
    );
    // 8x H100 has exactly one in us-east-1.
    let mut b = launch_body("big");
    b["instance_type_name"] = json!("gpu_8x_h100_sxm5");
    assert_eq!(
        api(
            &c,
            Method::POST,
            "/instance-operations/launch",
            Some(b.clone())
        )
        .await
        .status,
        200
    );
    assert_eq!(
        api(&c, Method::POST, "/instance-operations/launch", Some(b))
            .await
            .code(),
        "instance-operations/launch/insufficient-capacity"
    );

    c.set_faults(Faults::none().capacity_exhausted(Switch::Next(1)));
    assert_eq!(
        api(
            &c,
            Method::POST,
            "/instance-operations/launch",
            Some(launch_body("x"))
        )
        .await
        .code(),
        "instance-operations/launch/insufficient-capacity"
    );
    c.set_faults(Faults::none().insufficient_balance(Switch::Next(1)));
    let a = api(
        &c,
        Method::POST,
        "/instance-operations/launch",
        Some(launch_body("x")),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "global/account-inactive"));

    // Quota: 10 live instances by default.
    assert!(c.set_capacity(H100, "us-east-1", 20));
    for i in 0..9 {
        launch(&c, &format!("q{i}")).await;
    }
    let a = api(
        &c,
        Method::POST,
        "/instance-operations/launch",
        Some(launch_body("over")),
    )
    .await;
    assert_eq!((a.status, a.code()), (400, "global/quota-exceeded"));
}

#[tokio::test]
async fn rate_limits_one_per_second_and_one_launch_per_twelve() {
    // The limits are measured on the simulated clock, which also follows real time: widen them
    // (30 s / 300 s) so that a slow machine cannot make a "too soon" call legal.
    let cfg =
        LambdaConfig::instant().with_rate_limits(Duration::from_secs(30), Duration::from_secs(300));
    let c = LambdaCloud::start(cfg).await.unwrap();
    assert_eq!(api(&c, Method::GET, "/instances", None).await.status, 200);
    let a = api(&c, Method::GET, "/instances", None).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_none());
    c.advance(Duration::from_secs(31));
    assert_eq!(
        api(
            &c,
            Method::POST,
            "/instance-operations/launch",
            Some(launch_body("a"))
        )
        .await
        .status,
        200
    );
    c.advance(Duration::from_secs(31));
    let a = api(
        &c,
        Method::POST,
        "/instance-operations/launch",
        Some(launch_body("b")),
    )
    .await;
    assert_eq!(a.status, 429, "second launch within the launch interval");
    c.advance(Duration::from_secs(31));
    assert_eq!(
        api(&c, Method::GET, "/instances", None).await.status,
        200,
        "other calls still pass"
    );
    c.advance(Duration::from_secs(300));
    assert_eq!(
        api(
            &c,
            Method::POST,
            "/instance-operations/launch",
            Some(launch_body("b"))
        )
        .await
        .status,
        200
    );
    assert_eq!(c.live_instances().len(), 2);

    // Injected 429s carry Retry-After when asked.
    c.advance(Duration::from_secs(31));
    c.set_faults(
        Faults::none()
            .rate_limit_next("list", 1, Some(5))
            .fail_next("get", 1),
    );
    let a = api(&c, Method::GET, "/instances", None).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers.get("retry-after").unwrap(), "5");
    c.advance(Duration::from_secs(31));
    let a = api(&c, Method::GET, "/instances/x", None).await;
    assert_eq!((a.status, a.code()), (500, "global/internal-error"));
}

#[tokio::test]
async fn instances_vanish_and_silent_launches_never_exist() {
    let c = LambdaCloud::start(LambdaConfig::instant()).await.unwrap();
    let a = launch(&c, "a").await;
    assert!(c.vanish(&a));
    assert_eq!(
        api(&c, Method::GET, &format!("/instances/{a}"), None)
            .await
            .status,
        404
    );
    c.set_faults(
        Faults::none()
            .vanish_after_running(Duration::from_secs(60))
            .silent_launch_failure(Switch::Next(1)),
    );
    let ghost = launch(&c, "ghost").await;
    assert_eq!(
        api(&c, Method::GET, &format!("/instances/{ghost}"), None)
            .await
            .status,
        404
    );
    let b = launch(&c, "b").await;
    assert_eq!(
        api(&c, Method::GET, &format!("/instances/{b}"), None)
            .await
            .body["data"]["status"],
        "active"
    );
    c.advance(Duration::from_secs(61));
    assert_eq!(
        api(&c, Method::GET, &format!("/instances/{b}"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        api(&c, Method::GET, "/instances", None).await.body["data"],
        json!([])
    );
    assert_eq!(c.call_count("launch"), 3);
}
