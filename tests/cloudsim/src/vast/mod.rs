//! The "vast" personality: Vast.ai's REST API v0 (`/api/v0/`, as described in `provider-apis.md`
//! §3) with real offers, contracts, credit, per-endpoint rate limits and the low-bid quirk.
//! [`VastCloud`] is the handle tests and the binary hold.

pub mod api;
pub mod config;
pub mod endpoint;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

use crate::admin::{SimControl, SimCore};
use crate::handle::SimHandle;
use crate::money::MICRO;
use crate::ratelimit::MinInterval;
use crate::server::{GatewayState, SimServer, with_gateway};
use api::ApiError;

pub use config::{VastConfig, VastOfferSpec};
pub use state::SimVastInstance;

pub(crate) struct Shared {
    core: SimCore,
    state: Mutex<state::VastState>,
    api_key: String,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, state::VastState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SimControl for Shared {
    fn core(&self) -> &SimCore {
        &self.core
    }
    fn endpoint_keys(&self) -> Vec<&'static str> {
        endpoint::keys()
    }
    fn instances_json(&self) -> Value {
        json!(self.state().all(self.core.clock.now()))
    }
    fn vanish_json(&self, id: &str) -> Option<Value> {
        let now = self.core.clock.now();
        self.state().vanish(id, now).map(|i| json!(i))
    }
    fn balance_micro_usd(&self) -> u64 {
        self.state().balance(self.core.clock.now())
    }
    fn set_balance_micro_usd(&self, micro: u64) {
        let now = self.core.clock.now();
        self.state().set_balance(micro, now);
    }
    /// Offers are single machines: stock 0 makes one unrentable, anything else rentable.
    fn set_stock(&self, offer: &str, stock: u32) -> bool {
        offer
            .parse()
            .is_ok_and(|id| self.state().set_rentable(id, stock > 0))
    }
}

type S = State<Arc<Shared>>;

async fn search_post(State(s): S, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?
    };
    search(&s, &v)
}

async fn search_get(State(s): S, uri: Uri) -> Result<Response, ApiError> {
    let v = match crate::auth::query_param(&uri, "q") {
        Some(q) => serde_json::from_str(&q)
            .map_err(|e| ApiError::invalid(format!("q is not JSON: {e}")))?,
        None => json!({}),
    };
    search(&s, &v)
}

fn search(s: &Shared, v: &Value) -> Result<Response, ApiError> {
    let q = api::Search::parse(v)?;
    let offers = s.state().search(&q, s.core.clock.now());
    Ok(Json(json!({ "offers": offers })).into_response())
}

async fn create(State(s): S, Path(ask): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let req = api::CreateRequest::parse(&body)?;
    match s.state().create(&ask, req, &s.core.clock, &s.core.faults)? {
        state::Created::Ok(id) | state::Created::Ghost(id) => {
            Ok(Json(json!({"success": true, "new_contract": id})).into_response())
        }
        state::Created::Lost => Err(ApiError::internal()),
    }
}

async fn list(State(s): S) -> Response {
    Json(json!({ "instances": s.state().list(s.core.clock.now()) })).into_response()
}

async fn get_instance(State(s): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = s
        .state()
        .get(&id, s.core.clock.now())
        .ok_or_else(ApiError::instance_not_found)?;
    Ok(Json(json!({ "instances": v })).into_response())
}

async fn destroy(State(s): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    let now = s.core.clock.now();
    s.state().destroy(&id, now)?;
    Ok(Json(json!({"success": true, "msg": format!("destroying instance {id}.")})).into_response())
}

async fn user(State(s): S) -> Response {
    let credit = s.state().balance(s.core.clock.now()) as f64 / MICRO as f64;
    Json(json!({
        "id": 424_242, "key_id": 4242, "username": "tgp-sim", "email": "sim@example.invalid",
        "balance": credit, "credit": credit, "balance_threshold": 0.0, "balance_threshold_enabled": false,
        "can_pay": true, "has_billing": true, "ssh_key": null, "sid": "sim", "api_key": s.api_key,
    }))
    .into_response()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::std(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::std(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_args",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A running simulated Vast.ai. Dropping it stops the server at once.
pub struct VastCloud {
    handle: SimHandle,
    shared: Arc<Shared>,
}

impl std::ops::Deref for VastCloud {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for VastCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VastCloud")
            .field("addr", &self.handle.addr())
            .finish_non_exhaustive()
    }
}

impl VastCloud {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(cfg: VastConfig) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, cfg: VastConfig) -> anyhow::Result<Self> {
        let keys = endpoint::keys();
        cfg.faults
            .validate(&keys)
            .map_err(|(field, msg)| anyhow::anyhow!("invalid faults at {field}: {msg}"))?;
        if let Some(k) = cfg.rate_limits.keys().find(|k| !keys.contains(&k.as_str())) {
            anyhow::bail!("unknown endpoint key {k:?} in rate_limits; known: {keys:?}");
        }
        let shared = Arc::new(Shared {
            core: SimCore::new(cfg.faults.clone()),
            state: Mutex::new(state::VastState::new(&cfg)),
            api_key: cfg.api_key.clone(),
        });
        let mut app = Router::new();
        for slash in ["", "/"] {
            app = app
                .route(
                    &format!("/api/v0/bundles{slash}"),
                    get(search_get).post(search_post),
                )
                .route(&format!("/api/v0/asks/{{id}}{slash}"), put(create))
                .route(&format!("/api/v0/instances{slash}"), get(list))
                .route(
                    &format!("/api/v0/instances/{{id}}{slash}"),
                    get(get_instance).delete(destroy),
                )
                .route(&format!("/api/v0/users/current{slash}"), get(user));
        }
        let app = app
            .merge(crate::admin::router::<Shared>())
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::VastGateway {
                api_key: cfg.api_key.clone(),
                rate_limits: cfg.rate_limits.clone(),
                limiter: MinInterval::new(),
                clock: shared.core.clock.clone(),
            }),
            faults: shared.core.faults.clone(),
            calls: shared.core.calls.clone(),
            clock: shared.core.clock.clone(),
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "vast simulator listening");
        Ok(Self {
            handle: SimHandle::new(server, shared.clone()),
            shared,
        })
    }

    /// Every contract ever created (destroyed and vanished ones flagged).
    pub fn instances(&self) -> Vec<SimVastInstance> {
        self.shared.state().all(self.shared.core.clock.now())
    }

    /// Contracts neither destroyed nor vanished (outbid ones included: they exist).
    pub fn live_instances(&self) -> Vec<SimVastInstance> {
        self.instances()
            .into_iter()
            .filter(|i| !i.destroyed && !i.vanished)
            .collect()
    }

    pub fn vanish(&self, id: u64) -> bool {
        self.shared.vanish_json(&id.to_string()).is_some()
    }

    /// Makes an offer rentable or not; false for an unknown id.
    pub fn set_rentable(&self, offer_id: u64, rentable: bool) -> bool {
        self.shared.state().set_rentable(offer_id, rentable)
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
