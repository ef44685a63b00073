//! The Vast personality over real HTTP on loopback: offer search, create/show/list/destroy, the
//! status fields, both auth styles, capacity (410), per-endpoint 429s without Retry-After and the
//! low-bid quirk. Time is driven with `VastCloud::advance`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tgp_cloudsim::{Faults, Switch, VastCloud, VastConfig};

const KEY: &str = "vast-key";
const RTX: u64 = 3_000_001;

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn raw(
    c: &VastCloud,
    bearer: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut rb = reqwest::Client::new().request(method, format!("{}/api/v0{path}", c.base_url()));
    if let Some(k) = bearer {
        rb = rb.bearer_auth(k);
    }
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

async fn api(c: &VastCloud, method: Method, path: &str, body: Option<Value>) -> Answer {
    raw(c, Some(KEY), method, path, body).await
}

fn create_body(label: &str) -> Value {
    json!({"client_id": "me", "image": "ghcr.io/tgp/worker:1", "disk": 50, "label": label,
           "env": {"-p 10022:10022": "1", "TGP_OWNER": "cluster-a"}, "onstart": "/bin/sh /tgp/boot.sh",
           "runtype": "ssh_direct", "price": null})
}

async fn create(c: &VastCloud, ask: u64, label: &str) -> u64 {
    let a = api(
        c,
        Method::PUT,
        &format!("/asks/{ask}/"),
        Some(create_body(label)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["success"], true);
    a.body["new_contract"].as_u64().unwrap()
}

async fn show(c: &VastCloud, id: u64) -> Answer {
    api(c, Method::GET, &format!("/instances/{id}/"), None).await
}

fn slow() -> VastConfig {
    VastConfig::instant().with_delays(Duration::from_secs(30), Duration::from_secs(60))
}

#[tokio::test]
async fn search_filters_offers() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let q = json!({"gpu_name": {"in": ["RTX 4090"]}, "num_gpus": {"gte": 1}, "reliability2": {"gte": 0.99},
                   "verified": {"eq": true}, "rentable": {"eq": true}, "type": "ondemand",
                   "order": [["dph_total", "asc"]], "limit": 5});
    let a = api(&c, Method::POST, "/bundles/", Some(q.clone())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let offers = a.body["offers"].as_array().unwrap();
    let ids: Vec<u64> = offers.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        [RTX, 3_000_004],
        "flaky/unverified machine filtered out, cheapest first"
    );
    let o = &offers[0];
    assert_eq!(o["gpu_name"], "RTX 4090");
    assert_eq!(o["dph_total"], 0.4);
    assert_eq!(o["geolocation"], "California, US");
    assert!(o["min_bid"].as_f64().unwrap() < 0.4);
    // GET with ?q= gives the same answer.
    let enc: String = q.to_string().bytes().map(|b| format!("%{b:02X}")).collect();
    let g = api(&c, Method::GET, &format!("/bundles/?q={enc}"), None).await;
    assert_eq!(g.body, a.body);
    // The unrentable A100 is only found when asked for.
    let a = api(
        &c,
        Method::POST,
        "/bundles/",
        Some(json!({"gpu_name": {"eq": "A100 PCIE"}, "rentable": {"eq": true}})),
    )
    .await;
    assert_eq!(a.body["offers"], json!([]));
    let bad = api(
        &c,
        Method::POST,
        "/bundles/",
        Some(json!({"num_gpus": {"about": 1}})),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (400, Some("invalid_args"))
    );
}

#[tokio::test]
async fn instance_loads_runs_is_listed_billed_and_rents_the_machine() {
    let c = VastCloud::start(slow()).await.unwrap();
    let id = create(&c, RTX, "tgp-a").await;
    let a = show(&c, id).await;
    let i = &a.body["instances"];
    assert_eq!(i["actual_status"], Value::Null);
    assert_eq!(i["intended_status"], "running");
    assert_eq!(i["label"], "tgp-a");
    c.advance(Duration::from_secs(30));
    assert_eq!(
        show(&c, id).await.body["instances"]["actual_status"],
        "loading"
    );
    c.advance(Duration::from_secs(60));
    let a = show(&c, id).await;
    let i = &a.body["instances"];
    assert_eq!(i["actual_status"], "running");
    assert_eq!(i["cur_state"], "running");
    assert!(i["public_ipaddr"].as_str().unwrap().starts_with("192.0.2."));
    assert!(i["ports"]["22/tcp"][0]["HostPort"].is_string());
    assert_eq!(i["ports"]["10022/tcp"][0]["HostPort"], "10022");
    assert!(
        i["extra_env"]
            .as_array()
            .unwrap()
            .contains(&json!(["TGP_OWNER", "cluster-a"]))
    );
    let list = api(&c, Method::GET, "/instances/?owner=me", None).await;
    assert_eq!(list.body["instances"][0]["id"], id);
    // The machine is rented: a second create is 410 no_such_ask, and search shows it rented.
    let again = api(
        &c,
        Method::PUT,
        &format!("/asks/{RTX}/"),
        Some(create_body("b")),
    )
    .await;
    assert_eq!(
        (again.status, again.body["error"].as_str()),
        (410, Some("no_such_ask"))
    );
    let s = api(
        &c,
        Method::POST,
        "/bundles/",
        Some(json!({"id": {"eq": RTX}})),
    )
    .await;
    assert_eq!(s.body["offers"][0]["rented"], true);
    let before = c.balance_micro_usd();
    c.advance(Duration::from_secs(3600));
    assert_eq!(before - c.balance_micro_usd(), 400_000);
    let u = api(&c, Method::GET, "/users/current", None).await;
    assert!(u.body["credit"].as_f64().unwrap() < 99.7);
    assert_eq!(
        api(&c, Method::GET, "/users/current/", None).await.status,
        200
    );
}

#[tokio::test]
async fn destroy_twice_and_unknown_ids() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let id = create(&c, RTX, "tgp-d").await;
    let a = api(&c, Method::DELETE, &format!("/instances/{id}/"), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["success"], true);
    let again = api(&c, Method::DELETE, &format!("/instances/{id}/"), None).await;
    assert_eq!(again.status, 404);
    assert_eq!(
        again.body,
        json!({"success": false, "error": "not_found", "msg": "Instance not found"})
    );
    assert_eq!(show(&c, id).await.status, 404);
    assert_eq!(
        api(&c, Method::DELETE, "/instances/12345/", None)
            .await
            .status,
        404
    );
    assert_eq!(
        api(&c, Method::DELETE, "/instances/abc/", None)
            .await
            .status,
        404
    );
    // The machine is free again.
    create(&c, RTX, "tgp-d2").await;
    let unknown = api(&c, Method::PUT, "/asks/42/", Some(create_body("x"))).await;
    assert_eq!(
        (unknown.status, unknown.body["error"].as_str()),
        (404, Some("no_such_ask"))
    );
}

#[tokio::test]
async fn bearer_and_query_key() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let a = raw(&c, Some("wrong"), Method::GET, "/instances/", None).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.body,
        json!({"success": false, "error": "auth_error", "msg": "Invalid user key"})
    );
    assert_eq!(
        raw(&c, None, Method::GET, "/instances/", None).await.status,
        401
    );
    assert_eq!(
        raw(
            &c,
            None,
            Method::GET,
            &format!("/instances/?api_key={KEY}"),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        raw(&c, None, Method::GET, "/instances/?api_key=nope", None)
            .await
            .status,
        401
    );
    assert!(
        c.calls()
            .iter()
            .all(|r| r.personality == "vast" && r.endpoint == "list")
    );
}

#[tokio::test]
async fn capacity_and_credit_errors() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let a = api(&c, Method::PUT, "/asks/3000005/", Some(create_body("gone"))).await;
    assert_eq!(a.status, 410);
    c.set_faults(Faults::none().capacity_exhausted(Switch::Next(1)));
    assert_eq!(
        api(
            &c,
            Method::PUT,
            &format!("/asks/{RTX}/"),
            Some(create_body("x"))
        )
        .await
        .status,
        410
    );
    assert!(c.set_rentable(RTX, false));
    assert_eq!(
        api(
            &c,
            Method::PUT,
            &format!("/asks/{RTX}/"),
            Some(create_body("x"))
        )
        .await
        .status,
        410
    );
    assert!(c.set_rentable(RTX, true));
    c.set_balance(100_000);
    let a = api(
        &c,
        Method::PUT,
        &format!("/asks/{RTX}/"),
        Some(create_body("poor")),
    )
    .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (400, Some("insufficient_credit"))
    );
    assert!(c.instances().is_empty());
}

#[tokio::test]
async fn rate_limits_answer_429_without_retry_after() {
    // Intervals are on the simulated clock (which also follows real time), so they are wide.
    let cfg = VastConfig::instant()
        .with_rate_limit("launch", Duration::from_secs(45))
        .with_rate_limit("delete", Duration::from_secs(30));
    let c = VastCloud::start(cfg).await.unwrap();
    let id = create(&c, RTX, "a").await;
    let a = api(&c, Method::PUT, "/asks/3000004/", Some(create_body("b"))).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_none());
    assert_eq!(
        a.body,
        json!({"detail": "API requests too frequent endpoint threshold=45.0"})
    );
    assert_eq!(
        api(&c, Method::GET, &format!("/instances/{id}/"), None)
            .await
            .status,
        200,
        "other endpoints are separate"
    );
    assert_eq!(
        api(&c, Method::DELETE, &format!("/instances/{id}/"), None)
            .await
            .status,
        200
    );
    let d = api(&c, Method::DELETE, &format!("/instances/{id}/"), None).await;
    assert_eq!(d.status, 429);
    assert_eq!(d.body["error"], "rate_limit_exceeded");
    c.advance(Duration::from_secs(46));
    create(&c, 3_000_004, "b").await;

    // Injected 429s: plain text, and no Retry-After even when the fault asks for one.
    c.set_faults(
        Faults::none()
            .rate_limit_next("list", 1, Some(9))
            .fail_next("user", 1),
    );
    let a = api(&c, Method::GET, "/instances/", None).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_none());
    assert_eq!(a.body, Value::String("API requests too frequent".into()));
    assert_eq!(
        api(&c, Method::GET, "/users/current/", None).await.status,
        500
    );
}

#[tokio::test]
async fn low_bid_leaves_a_stopped_instance_that_delete_removes() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let mut b = create_body("spot");
    b["price"] = json!(0.05); // min_bid is 0.16
    let a = api(&c, Method::PUT, &format!("/asks/{RTX}/"), Some(b)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["success"], false);
    let id = a.body["new_contract"]
        .as_u64()
        .expect("the error still carries new_contract");
    c.advance(Duration::from_secs(3600));
    let i = show(&c, id).await.body["instances"].clone();
    assert_eq!(
        (
            i["cur_state"].as_str(),
            i["intended_status"].as_str(),
            i["next_state"].as_str()
        ),
        (Some("stopped"), Some("stopped"), Some("stopped"))
    );
    assert_eq!(i["is_bid"], true);
    assert_eq!(
        c.instances()[0].billed_micro_usd,
        0,
        "a stopped contract is not billed"
    );
    assert!(c.instances()[0].outbid);
    assert_eq!(
        c.live_instances().len(),
        1,
        "the contract exists until destroyed"
    );
    assert_eq!(
        api(&c, Method::DELETE, &format!("/instances/{id}/"), None)
            .await
            .status,
        200
    );
    assert!(c.live_instances().is_empty());
    assert_eq!(show(&c, id).await.status, 404);
    // A bid at or above the floor runs.
    let mut b = create_body("spot-ok");
    b["price"] = json!(0.2);
    let a = api(&c, Method::PUT, &format!("/asks/{RTX}/"), Some(b)).await;
    assert_eq!(a.body["success"], true);
    let id = a.body["new_contract"].as_u64().unwrap();
    assert_eq!(
        show(&c, id).await.body["instances"]["actual_status"],
        "running"
    );
}

#[tokio::test]
async fn instances_vanish_and_silent_creates_never_exist() {
    let c = VastCloud::start(VastConfig::instant()).await.unwrap();
    let a = create(&c, RTX, "a").await;
    assert!(c.vanish(a));
    assert_eq!(show(&c, a).await.status, 404);
    c.set_faults(
        Faults::none()
            .silent_launch_failure(Switch::Next(1))
            .vanish_after_running(Duration::from_secs(60)),
    );
    let ghost = create(&c, 3_000_003, "ghost").await;
    assert_eq!(show(&c, ghost).await.status, 404);
    let b = create(&c, 3_000_003, "b").await;
    assert_eq!(
        show(&c, b).await.body["instances"]["actual_status"],
        "running"
    );
    c.advance(Duration::from_secs(61));
    assert_eq!(show(&c, b).await.status, 404);
    assert_eq!(
        api(&c, Method::GET, "/instances/", None).await.body["instances"],
        json!([])
    );
}
