//! The "runpod" personality: RunPod's GraphQL API (`POST /graphql`) as described in
//! `provider-apis.md` §1, with real GPU stock, pods, billing and RunPod's failure modes (errors as
//! HTTP 200 + `errors`, the silent deploy failure). [`RunpodCloud`] is the handle tests and the
//! binary hold.

pub mod config;
pub mod endpoint;
pub mod graphql;
pub mod resolve;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::admin::{SimControl, SimCore};
use crate::handle::SimHandle;
use crate::server::{GatewayState, SimServer, with_gateway};

pub use config::{GpuTypeSpec, RunpodConfig};
pub use state::SimPod;

pub(crate) struct Shared {
    core: SimCore,
    state: Mutex<state::RunpodState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, state::RunpodState> {
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
        self.state().vanish(id, now).map(|p| json!(p))
    }
    fn balance_micro_usd(&self) -> u64 {
        self.state().balance(self.core.clock.now())
    }
    fn set_balance_micro_usd(&self, micro: u64) {
        let now = self.core.clock.now();
        self.state().set_balance(micro, now);
    }
    fn set_stock(&self, offer: &str, stock: u32) -> bool {
        let now = self.core.clock.now();
        self.state().set_stock(offer, stock, now)
    }
}

async fn graphql(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let op = match graphql::parse_request(&body) {
        Ok(op) => op,
        Err(e) => return request_error(e),
    };
    let result = {
        let mut st = s.state();
        resolve::execute(&op, &mut st, &s.core.clock, &s.core.faults)
    };
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => request_error(e),
    }
}

/// Request-level errors: 400 with `errors` (UNCONFIRMED status; Apollo-style servers use 400).
fn request_error(e: graphql::GqlError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"message": e.message, "extensions": {"code": e.code}}]})),
    )
        .into_response()
}

async fn no_route() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": [{"message": "Not found: the RunPod simulator serves POST /graphql"}]})),
    )
        .into_response()
}

/// A running simulated RunPod. Dropping it stops the server at once.
pub struct RunpodCloud {
    handle: SimHandle,
    shared: Arc<Shared>,
}

impl std::ops::Deref for RunpodCloud {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for RunpodCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunpodCloud")
            .field("addr", &self.handle.addr())
            .finish_non_exhaustive()
    }
}

impl RunpodCloud {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(cfg: RunpodConfig) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, cfg: RunpodConfig) -> anyhow::Result<Self> {
        cfg.faults
            .validate(&endpoint::keys())
            .map_err(|(field, msg)| anyhow::anyhow!("invalid faults at {field}: {msg}"))?;
        let shared = Arc::new(Shared {
            core: SimCore::new(cfg.faults.clone()),
            state: Mutex::new(state::RunpodState::new(&cfg)),
        });
        let app = Router::new()
            .route("/graphql", post(graphql))
            .merge(crate::admin::router::<Shared>())
            .fallback(no_route)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::RunpodGateway {
                api_key: cfg.api_key.clone(),
                allow_anonymous_catalogue: cfg.allow_anonymous_catalogue,
            }),
            faults: shared.core.faults.clone(),
            calls: shared.core.calls.clone(),
            clock: shared.core.clock.clone(),
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "runpod simulator listening");
        Ok(Self {
            handle: SimHandle::new(server, shared.clone()),
            shared,
        })
    }

    /// `http://127.0.0.1:PORT/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.base_url())
    }

    /// Every pod ever deployed (vanished and terminated ones flagged).
    pub fn instances(&self) -> Vec<SimPod> {
        self.shared.state().all(self.shared.core.clock.now())
    }

    /// Pods neither terminated nor vanished.
    pub fn live_instances(&self) -> Vec<SimPod> {
        self.instances()
            .into_iter()
            .filter(|p| !p.vanished && !p.terminated)
            .collect()
    }

    /// One pod by id.
    pub fn instance(&self, id: &str) -> Option<SimPod> {
        self.instances().into_iter().find(|p| p.id == id)
    }

    /// Makes a pod vanish now; false for an unknown id.
    pub fn vanish(&self, id: &str) -> bool {
        self.shared.vanish_json(id).is_some()
    }

    /// Sets the free GPUs of a type; false for an unknown type.
    pub fn set_stock(&self, gpu_type_id: &str, gpus: u32) -> bool {
        self.shared.set_stock(gpu_type_id, gpus)
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
