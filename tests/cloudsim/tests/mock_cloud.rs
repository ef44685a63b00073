//! End-to-end tests of the mock cloud over real HTTP on loopback: the contract of
//! `docs/mock-cloud-api.md` plus every fault kind. Time-dependent checks drive the simulated clock
//! (`MockCloud::advance`) or poll with generous deadlines; nothing asserts an upper bound on time.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tgp_cloudsim::{Endpoint, Faults, MockCloud, MockCloudConfig, OfferSpec, Switch};

const HOUR: Duration = Duration::from_secs(3600);
const H100: &str = "h100-sxm-1x-us-east-1";

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
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
    fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
    fn instance(&self) -> &Value {
        &self.body["instance"]
    }
    fn status_str(&self) -> &str {
        self.body["instance"]["status"].as_str().unwrap_or("")
    }
}

impl Api {
    fn new(cloud: &MockCloud) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: cloud.base_url(),
            key: Some("mock-key".into()),
        }
    }

    fn with_key(cloud: &MockCloud, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..Self::new(cloud)
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<RawBody>) -> Answer {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(k);
        }
        rb = match body {
            Some(RawBody::Json(v)) => rb.json(&v),
            Some(RawBody::Text(t)) => rb.header("content-type", "application/json").body(t),
            None => rb,
        };
        let resp = rb.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }
    async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(RawBody::Json(body)))
            .await
    }
    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(RawBody::Json(body)))
            .await
    }
    async fn launch(&self, offer: &str, name: &str, tags: Value) -> Answer {
        self.post(
            "/v1/instances",
            json!({"offer_id": offer, "name": name, "tags": tags}),
        )
        .await
    }
    async fn launch_ok(&self, offer: &str, name: &str, tags: Value) -> String {
        let a = self.launch(offer, name, tags).await;
        assert_eq!(a.status, 201, "launch failed: {}", a.body);
        a.instance()["id"].as_str().expect("id").to_owned()
    }
    async fn list(&self, query: &str) -> Vec<Value> {
        let a = self.get(&format!("/v1/instances{query}")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["instances"].as_array().expect("instances").clone()
    }
    async fn balance(&self) -> String {
        let a = self.get("/v1/account").await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["balance_usd"].as_str().expect("balance").to_owned()
    }
    async fn stock(&self, offer: &str) -> u64 {
        let a = self.get("/v1/offers").await;
        a.body["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == offer)
            .expect("offer")["stock"]
            .as_u64()
            .unwrap()
    }
}

enum RawBody {
    Json(Value),
    Text(String),
}

/// Delays long enough that nothing moves unless a test advances the clock.
fn frozen() -> MockCloudConfig {
    MockCloudConfig::default().with_delays(HOUR, HOUR, HOUR)
}

async fn start(cfg: MockCloudConfig) -> (MockCloud, Api) {
    let cloud = MockCloud::start(cfg).await.expect("simulator starts");
    let api = Api::new(&cloud);
    (cloud, api)
}

#[tokio::test]
async fn lifecycle_moves_pending_booting_running_with_the_clock() {
    let (cloud, api) = start(frozen()).await;
    let a = api
        .post(
            "/v1/instances",
            json!({"offer_id": H100, "name": "tgp-a", "tags": {"tgp.io/cluster": "c1"}, "user_data": "#cloud-config", "image": "ubuntu"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let inst = a.instance();
    assert_eq!(inst["status"], "pending");
    assert_eq!(inst["public_ip"], Value::Null);
    assert_eq!(inst["offer_id"], H100);
    assert_eq!(inst["gpu_type"], "H100-SXM");
    assert_eq!(inst["hourly_price_usd"], "2.49");
    assert_eq!(inst["tags"]["tgp.io/cluster"], "c1");
    assert!(inst["created_at"].as_str().unwrap().ends_with('Z'));
    let id = inst["id"].as_str().unwrap().to_owned();

    cloud.advance(HOUR);
    let g = api.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(g.status_str(), "booting");
    let ip = g.instance()["public_ip"]
        .as_str()
        .expect("ip once booting")
        .to_owned();
    assert!(ip.starts_with("203.0.113."), "{ip}");

    cloud.advance(HOUR);
    let g = api.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(g.status_str(), "running");
    assert_eq!(g.instance()["public_ip"], ip.as_str());

    let sim = cloud.instance(&id).expect("in the simulator's state");
    assert_eq!(sim.user_data.as_deref(), Some("#cloud-config"));
    assert_eq!(sim.image.as_deref(), Some("ubuntu"));
    assert_eq!(cloud.live_instances().len(), 1);
}

#[tokio::test]
async fn lifecycle_with_short_real_delays_reaches_running() {
    let cfg = MockCloudConfig::default().with_delays(
        Duration::from_millis(20),
        Duration::from_millis(20),
        Duration::from_millis(20),
    );
    let (_cloud, api) = start(cfg).await;
    let id = api.launch_ok(H100, "tgp-b", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let s = api
            .get(&format!("/v1/instances/{id}"))
            .await
            .status_str()
            .to_owned();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never reached running: {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Statuses only move forward.
    let order = ["pending", "booting", "running"];
    let idx: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("known status"))
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    assert_eq!(api.delete(&format!("/v1/instances/{id}")).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get(&format!("/v1/instances/{id}")).await.status_str() != "terminated" {
        assert!(Instant::now() < deadline, "never terminated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn listing_filters_by_tags() {
    let (_cloud, api) = start(MockCloudConfig::instant()).await;
    let a = api
        .launch_ok(H100, "a", json!({"tgp.io/cluster": "c1", "pool": "x"}))
        .await;
    let b = api
        .launch_ok(H100, "b", json!({"tgp.io/cluster": "c1", "pool": "y"}))
        .await;
    let c = api
        .launch_ok(H100, "c", json!({"tgp.io/cluster": "c2"}))
        .await;
    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    assert_eq!(
        ids(api.list("?tag=tgp.io/cluster=c1").await),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        ids(api.list("?tag=tgp.io/cluster=c1&tag=pool=y").await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(api.list("?tag=tgp.io/cluster=c3").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(api.list("").await),
        vec![a.clone(), b.clone(), c.clone()]
    );

    // Terminated instances stay listed, with status terminated.
    assert_eq!(api.delete(&format!("/v1/instances/{c}")).await.status, 200);
    let listed = api.list("?tag=tgp.io/cluster=c2").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "terminated");

    let bad = api.get("/v1/instances?tag=novalue").await;
    assert_eq!(
        (bad.status, bad.code(), bad.field()),
        (400, "invalid_request", "tag")
    );
}

#[tokio::test]
async fn terminate_is_idempotent_and_unknown_ids_are_404() {
    let (cloud, api) =
        start(MockCloudConfig::instant().with_delays(Duration::ZERO, Duration::ZERO, HOUR)).await;
    let id = api.launch_ok(H100, "a", json!({})).await;
    let path = format!("/v1/instances/{id}");
    let d1 = api.delete(&path).await;
    assert_eq!((d1.status, d1.status_str()), (200, "stopping"));
    let d2 = api.delete(&path).await;
    assert_eq!((d2.status, d2.status_str()), (200, "stopping"));
    cloud.advance(HOUR);
    assert_eq!(api.get(&path).await.status_str(), "terminated");
    let d3 = api.delete(&path).await;
    assert_eq!((d3.status, d3.status_str()), (200, "terminated"));
    assert!(cloud.live_instances().is_empty());

    let unknown = api.delete("/v1/instances/i-999999").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(api.get("/v1/instances/i-999999").await.status, 404);
}

#[tokio::test]
async fn auth_is_required_on_v1_but_not_on_sim() {
    let (cloud, _api) = start(MockCloudConfig::instant()).await;
    for key in [None, Some("wrong"), Some("")] {
        let api = Api::with_key(&cloud, key);
        let a = api.get("/v1/offers").await;
        assert_eq!((a.status, a.code()), (401, "unauthorized"), "key {key:?}");
        let l = api.launch(H100, "a", json!({})).await;
        assert_eq!(l.status, 401);
    }
    assert!(
        cloud.instances().is_empty(),
        "unauthorized launches create nothing"
    );
    assert_eq!(cloud.call_count(Endpoint::Offers), 3);
    assert!(
        cloud
            .calls()
            .iter()
            .filter(|c| c.endpoint == "offers")
            .all(|c| c.status == 401)
    );
    let sim = Api::with_key(&cloud, None).get("/_sim/instances").await;
    assert_eq!(sim.status, 200);
}

#[tokio::test]
async fn invalid_launch_bodies_name_the_field() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    let cases: Vec<(RawBody, &str)> = vec![
        (RawBody::Text("{not json".into()), "body"),
        (RawBody::Json(json!([1, 2])), "body"),
        (RawBody::Json(json!({"name": "a"})), "offer_id"),
        (
            RawBody::Json(json!({"offer_id": 7, "name": "a"})),
            "offer_id",
        ),
        (RawBody::Json(json!({"offer_id": H100})), "name"),
        (RawBody::Json(json!({"offer_id": H100, "name": ""})), "name"),
        (
            RawBody::Json(json!({"offer_id": H100, "name": "a", "tags": ["x"]})),
            "tags",
        ),
        (
            RawBody::Json(json!({"offer_id": H100, "name": "a", "tags": {"k": 1}})),
            "tags.k",
        ),
        (
            RawBody::Json(json!({"offer_id": H100, "name": "a", "user_data": 5})),
            "user_data",
        ),
    ];
    for (body, field) in cases {
        let a = api.send(Method::POST, "/v1/instances", Some(body)).await;
        assert_eq!(
            (a.status, a.code(), a.field()),
            (400, "invalid_request", field),
            "{}",
            a.body
        );
    }
    let unknown = api.launch("no-such-offer", "a", json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert!(cloud.instances().is_empty());
}

#[tokio::test]
async fn offers_filter_and_reject_bad_filters() {
    let (_cloud, api) = start(MockCloudConfig::default()).await;
    let all = api.get("/v1/offers").await.body["offers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(all, OfferSpec::default_catalogue().len());
    let h = api
        .get("/v1/offers?gpu_type=H100-SXM&count=1&spot=false")
        .await;
    let offers = h.body["offers"].as_array().unwrap();
    assert!(!offers.is_empty());
    assert!(
        offers
            .iter()
            .all(|o| o["gpu_type"] == "H100-SXM" && o["gpu_count"] == 1 && o["spot"] == false)
    );
    assert!(
        offers
            .iter()
            .any(|o| o["id"] == H100 && o["hourly_price_usd"] == "2.49" && o["stock"] == 4)
    );
    let spot = api.get("/v1/offers?spot=true").await;
    assert!(
        spot.body["offers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["spot"] == true)
    );
    for (q, field) in [("count=two", "count"), ("spot=yes", "spot")] {
        let a = api.get(&format!("/v1/offers?{q}")).await;
        assert_eq!(
            (a.status, a.code(), a.field()),
            (400, "invalid_request", field)
        );
    }
}

#[tokio::test]
async fn balance_goes_down_while_running_and_stops_after_termination() {
    let (cloud, api) = start(frozen()).await;
    assert_eq!(api.balance().await, "100.00");
    let id = api.launch_ok(H100, "a", json!({})).await;
    cloud.advance(HOUR * 2); // pending and booting are free
    assert_eq!(api.balance().await, "100.00");
    let acct = api.get("/v1/account").await;
    assert_eq!(acct.body["spend_usd_per_hour"], "2.49");
    cloud.advance(HOUR);
    assert_eq!(api.balance().await, "97.51");
    cloud.advance(Duration::from_secs(1800));
    assert_eq!(api.balance().await, "96.265");
    assert_eq!(api.delete(&format!("/v1/instances/{id}")).await.status, 200);
    cloud.advance(HOUR * 5);
    assert_eq!(
        api.balance().await,
        "96.265",
        "stopping and terminated time is not billed"
    );
    assert_eq!(
        api.get("/v1/account").await.body["spend_usd_per_hour"],
        "0.00"
    );
    assert_eq!(cloud.instance(&id).unwrap().billed_micro_usd, 3_735_000);
}

#[tokio::test]
async fn launch_needs_one_hour_of_balance() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    cloud.set_balance(2_480_000);
    let a = api.launch(H100, "a", json!({})).await;
    assert_eq!((a.status, a.code()), (402, "insufficient_balance"));
    cloud.set_balance(2_490_000);
    api.launch_ok(H100, "a", json!({})).await;

    let put = api
        .put("/_sim/balance", json!({"balance_usd": "0.00"}))
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(api.balance().await, "0.00");
    assert_eq!(api.launch(H100, "b", json!({})).await.status, 402);
    let bad = api
        .put("/_sim/balance", json!({"balance_usd": "lots"}))
        .await;
    assert_eq!((bad.status, bad.field()), (400, "balance_usd"));
    assert_eq!(cloud.instances().len(), 1);
}

#[tokio::test]
async fn stock_is_held_while_instances_live() {
    let offer = OfferSpec::new("L40S", 1, "test-1", 990_000, false, 1);
    let cfg = MockCloudConfig::instant().with_offers(vec![offer.clone()]);
    let (cloud, api) = start(cfg).await;
    assert_eq!(api.stock(&offer.id).await, 1);
    let id = api.launch_ok(&offer.id, "a", json!({})).await;
    assert_eq!(api.stock(&offer.id).await, 0);
    let a = api.launch(&offer.id, "b", json!({})).await;
    assert_eq!((a.status, a.code()), (503, "capacity_exhausted"));
    assert_eq!(api.delete(&format!("/v1/instances/{id}")).await.status, 200);
    assert_eq!(api.stock(&offer.id).await, 1, "termination restores stock");
    api.launch_ok(&offer.id, "c", json!({})).await;

    assert!(cloud.set_stock(&offer.id, 3));
    assert_eq!(api.stock(&offer.id).await, 3);
    assert!(!cloud.set_stock("nope", 3));
    cloud.add_offer(OfferSpec::new("B200", 8, "test-1", 40_000_000, false, 2));
    assert_eq!(api.stock("b200-8x-test-1").await, 2);
}

#[tokio::test]
async fn fail_next_gives_500_then_recovers() {
    let cfg = MockCloudConfig::instant().with_faults(Faults::none().fail_next(Endpoint::Launch, 2));
    let (cloud, api) = start(cfg).await;
    for _ in 0..2 {
        let a = api.launch(H100, "a", json!({})).await;
        assert_eq!((a.status, a.code()), (500, "internal"));
    }
    assert!(
        cloud.instances().is_empty(),
        "failed launches create nothing"
    );
    api.launch_ok(H100, "a", json!({})).await;
    assert_eq!(
        api.get("/v1/offers").await.status,
        200,
        "other endpoints unaffected"
    );
    assert_eq!(cloud.call_count(Endpoint::Launch), 3);
    let statuses: Vec<u16> = cloud
        .calls()
        .iter()
        .filter(|c| c.endpoint == "launch")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 201]);
}

#[tokio::test]
async fn error_rate_one_always_fails_and_zero_never() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    cloud.set_faults(
        Faults::none()
            .error_rate(Endpoint::Offers, 1.0)
            .with_seed(3),
    );
    for _ in 0..5 {
        assert_eq!(api.get("/v1/offers").await.status, 500);
    }
    cloud.set_faults(Faults::none().error_rate(Endpoint::Offers, 0.0));
    assert_eq!(api.get("/v1/offers").await.status, 200);
}

#[tokio::test]
async fn rate_limiting_sends_retry_after_when_configured() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    cloud.set_faults(Faults::none().rate_limit_next("*", 2, Some(7)));
    for path in ["/v1/offers", "/v1/account"] {
        let a = api.get(path).await;
        assert_eq!((a.status, a.code()), (429, "rate_limited"));
        assert_eq!(
            a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
    assert_eq!(api.get("/v1/offers").await.status, 200);

    cloud.set_faults(Faults::none().rate_limit_next(Endpoint::Get, 1, None));
    let a = api.get("/v1/instances/i-000001").await;
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_none());
    assert_eq!(api.get("/v1/instances/i-000001").await.status, 404);
}

#[tokio::test]
async fn latency_delays_answers() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    cloud.set_faults(Faults::none().latency(Endpoint::Account, Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(api.get("/v1/account").await.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn insufficient_balance_and_capacity_faults() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    cloud.set_faults(Faults::none().insufficient_balance(Switch::Next(1)));
    assert_eq!(
        api.launch(H100, "a", json!({})).await.code(),
        "insufficient_balance"
    );
    api.launch_ok(H100, "a", json!({})).await;

    cloud.set_faults(Faults::none().capacity_exhausted(Switch::Always));
    for _ in 0..3 {
        let a = api.launch(H100, "b", json!({})).await;
        assert_eq!((a.status, a.code()), (503, "capacity_exhausted"));
    }
    cloud.set_faults(Faults::none());
    api.launch_ok(H100, "b", json!({})).await;
}

#[tokio::test]
async fn silent_launch_failure_creates_nothing() {
    let cfg = MockCloudConfig::instant()
        .with_faults(Faults::none().silent_launch_failure(Switch::Next(1)));
    let (cloud, api) = start(cfg).await;
    let stock = api.stock(H100).await;
    let a = api
        .launch(H100, "ghost", json!({"tgp.io/cluster": "c1"}))
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.status_str(), "pending");
    let ghost = a.instance()["id"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&format!("/v1/instances/{ghost}")).await.status, 404);
    assert!(api.list("?tag=tgp.io/cluster=c1").await.is_empty());
    assert_eq!(
        api.delete(&format!("/v1/instances/{ghost}")).await.status,
        404
    );
    assert_eq!(api.stock(H100).await, stock);
    assert!(cloud.instances().is_empty());
    cloud.advance(HOUR);
    assert_eq!(api.balance().await, "100.00");
    // The switch ran out: the next launch is real and gets a fresh id.
    let real = api.launch_ok(H100, "real", json!({})).await;
    assert_ne!(real, ghost);
    assert_eq!(api.get(&format!("/v1/instances/{real}")).await.status, 200);
}

#[tokio::test]
async fn lost_launch_response_creates_an_orphan() {
    let cfg = MockCloudConfig::instant()
        .with_faults(Faults::none().lost_launch_response(Switch::Next(1)));
    let (_cloud, api) = start(cfg).await;
    let a = api
        .launch(H100, "orphan", json!({"tgp.io/cluster": "c1"}))
        .await;
    assert_eq!((a.status, a.code()), (500, "internal"));
    let listed = api.list("?tag=tgp.io/cluster=c1").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "orphan");
}

#[tokio::test]
async fn instances_vanish_after_running_and_on_demand() {
    let cfg = frozen().with_faults(Faults::none().vanish_after_running(HOUR));
    let (cloud, api) = start(cfg).await;
    let stock = api.stock(H100).await;
    let id = api.launch_ok(H100, "a", json!({"c": "1"})).await;
    cloud.advance(HOUR * 2);
    assert_eq!(
        api.get(&format!("/v1/instances/{id}")).await.status_str(),
        "running"
    );
    cloud.advance(HOUR);
    let g = api.get(&format!("/v1/instances/{id}")).await;
    assert_eq!((g.status, g.code()), (404, "not_found"));
    assert!(api.list("?tag=c=1").await.is_empty());
    assert_eq!(api.delete(&format!("/v1/instances/{id}")).await.status, 404);
    assert_eq!(api.stock(H100).await, stock);
    assert_eq!(api.balance().await, "97.51", "billed up to the vanishing");
    assert!(cloud.instance(&id).unwrap().vanished);
    assert!(cloud.live_instances().is_empty());

    cloud.set_faults(Faults::none());
    let b = api.launch_ok(H100, "b", json!({})).await;
    assert!(cloud.vanish(&b));
    assert_eq!(api.get(&format!("/v1/instances/{b}")).await.status, 404);
    assert!(!cloud.vanish("i-999999"));
    let c = api.launch_ok(H100, "c", json!({})).await;
    let v = api
        .send(Method::POST, &format!("/_sim/instances/{c}/vanish"), None)
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(api.get(&format!("/v1/instances/{c}")).await.status, 404);
}

#[tokio::test]
async fn faults_can_be_replaced_over_http() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    let put = api
        .put(
            "/_sim/faults",
            json!({"endpoints": {"launch": {"fail_next": 1}, "get": {"rate_limit_next": 1, "retry_after_secs": 1}},
                   "silent_launch_failure": 1}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(api.launch(H100, "a", json!({})).await.status, 500);
    let ghost = api.launch(H100, "a", json!({})).await;
    assert_eq!(ghost.status, 201);
    assert!(cloud.instances().is_empty());
    assert_eq!(api.get("/v1/instances/i-000001").await.status, 429);
    assert_eq!(cloud.faults().endpoints["get"].rate_limit_next, 0);

    for (body, field) in [
        (
            json!({"endpoints": {"lunch": {"fail_next": 1}}}),
            "endpoints.lunch",
        ),
        (
            json!({"endpoints": {"get": {"error_rate": 2.0}}}),
            "endpoints.get.error_rate",
        ),
        (json!({"no_such_fault": true}), "body"),
    ] {
        let a = api.put("/_sim/faults", body).await;
        assert_eq!(
            (a.status, a.code(), a.field()),
            (400, "invalid_request", field),
            "{}",
            a.body
        );
    }
}

/// The `/_sim` routes answer in the documented `{"error": {code, message, field}}` shape, also for
/// malformed input: a fault set with a repeated key, an id that is not UTF-8 once decoded, wrong
/// methods, bad numbers.
#[tokio::test]
async fn sim_routes_reject_bad_input_in_the_mock_error_format() {
    let (cloud, api) = start(frozen()).await;
    for text in [
        r#"{"seed": 1, "seed": 2}"#,
        r#"{"no_such_fault": true}"#,
        "{",
    ] {
        let a = api
            .send(
                Method::PUT,
                "/_sim/faults",
                Some(RawBody::Text(text.into())),
            )
            .await;
        assert_eq!(
            (a.status, a.code(), a.field()),
            (400, "invalid_request", "body"),
            "{text}: {}",
            a.body
        );
        let msg = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("invalid body: "), "{text}: {msg}");
    }
    assert_eq!(
        cloud.faults(),
        Faults::none(),
        "refused sets change nothing"
    );

    for (method, path, body) in [
        (Method::POST, "/_sim/instances/%FF/vanish", None),
        (
            Method::PUT,
            "/_sim/offers/%FF/stock",
            Some(RawBody::Json(json!({"stock": 1}))),
        ),
    ] {
        let a = api.send(method, path, body).await;
        assert_eq!(
            (a.status, a.code(), a.field()),
            (400, "invalid_request", "id"),
            "{path}: {}",
            a.body
        );
    }

    let unknown = api
        .send(Method::POST, "/_sim/instances/i-999999/vanish", None)
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let no_offer = api
        .put("/_sim/offers/nope/stock", json!({"stock": 1}))
        .await;
    assert_eq!((no_offer.status, no_offer.code()), (404, "not_found"));
    let bad_stock = api
        .put(&format!("/_sim/offers/{H100}/stock"), json!({"stock": -1}))
        .await;
    assert_eq!((bad_stock.status, bad_stock.field()), (400, "stock"));
    let stock = api
        .put(&format!("/_sim/offers/{H100}/stock"), json!({"stock": 2}))
        .await;
    assert_eq!(stock.body, json!({"offer_id": H100, "stock": 2}));
    assert_eq!(api.stock(H100).await, 2);

    let bad_ms = api.post("/_sim/clock/advance", json!({"ms": "soon"})).await;
    assert_eq!((bad_ms.status, bad_ms.field()), (400, "ms"));
    let moved = api.post("/_sim/clock/advance", json!({"ms": 1000})).await;
    assert_eq!(moved.status, 200);
    assert!(
        moved.body["now_ms"].as_u64().unwrap() >= 1000,
        "{}",
        moved.body
    );

    let set = api.put("/_sim/balance", json!({"balance_usd": 12.5})).await;
    assert_eq!(set.body, json!({"balance_usd": "12.50"}));
    assert_eq!(api.get("/_sim/balance").await.body, set.body);
    assert_eq!(cloud.balance_micro_usd(), 12_500_000);

    let wrong = api.send(Method::PUT, "/_sim/calls", None).await;
    assert_eq!(
        (wrong.status, wrong.code(), wrong.field()),
        (405, "invalid_request", "method")
    );
    assert!(!cloud.calls().is_empty());
    assert_eq!(api.delete("/_sim/calls").await.body, json!([]));
    assert!(cloud.calls().is_empty());
}

#[tokio::test]
async fn call_log_records_v1_calls_only() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    api.get("/v1/offers?gpu_type=L40S").await;
    let id = api.launch_ok(H100, "a", json!({})).await;
    api.get(&format!("/v1/instances/{id}")).await;
    api.delete(&format!("/v1/instances/{id}")).await;
    api.list("").await;
    api.balance().await;
    api.get("/_sim/instances").await;
    api.get("/v1/nowhere").await;
    for e in Endpoint::ALL {
        assert_eq!(cloud.call_count(e), 1, "{e:?}");
    }
    let calls = api.get("/_sim/calls").await.body;
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 7);
    assert_eq!(calls[0]["method"], "GET");
    assert_eq!(calls[0]["path"], "/v1/offers?gpu_type=L40S");
    assert_eq!(calls[0]["status"], 200);
    assert!(calls[0]["at_ms"].is_u64());
    assert_eq!(calls[6]["status"], 404);
    assert_eq!(cloud.calls()[1].endpoint, "launch");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let (cloud, api) = start(MockCloudConfig::instant()).await;
    assert_eq!(api.get("/v1/account").await.status, 200);
    let base = cloud.base_url();
    cloud.shutdown().await;
    let err = reqwest::Client::new()
        .get(format!("{base}/v1/account"))
        .send()
        .await;
    assert!(err.is_err(), "still serving after shutdown");
}

#[tokio::test]
async fn binary_serves_the_mock_cloud() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tgp-cloudsim"))
        .args([
            "mock",
            "--port",
            "0",
            "--api-key",
            "k2",
            "--boot-delay-ms",
            "0",
            "--run-delay-ms",
            "0",
            "--balance-usd",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("prints its URL in time")
        .unwrap()
        .expect("a line");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let acct: Value = http
        .get(format!("{url}/v1/account"))
        .bearer_auth("k2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acct["balance_usd"], "5.00");
    let denied = http
        .get(format!("{url}/v1/account"))
        .bearer_auth("mock-key")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn concurrent_launches_never_oversell_stock() {
    let offer = OfferSpec::new("A100-80GB", 1, "test-1", 1_000_000, false, 5);
    let (cloud, api) = start(MockCloudConfig::instant().with_offers(vec![offer.clone()])).await;
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for n in 0..20 {
        let api = api.clone();
        let id = offer.id.clone();
        tasks.push(tokio::spawn(async move {
            api.launch(&id, &format!("n{n}"), json!({})).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(cloud.live_instances().len(), 5);
    assert_eq!(api.stock(&offer.id).await, 0);
}
