//! The "lambda" personality: Lambda Cloud's REST API v1 (`/api/v1/`, OpenAPI 1.8.3, as described
//! in `provider-apis.md` §2) with real capacity, SSH keys, instance lifecycle, rate limits and the
//! `{"data"}` / `{"error"}` envelopes. [`LambdaCloud`] is the handle tests and the binary hold.

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
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::admin::{SimControl, SimCore};
use crate::handle::SimHandle;
use crate::ratelimit::MinInterval;
use crate::server::{GatewayState, SimServer, with_gateway};
use api::ApiError;

pub use config::{LambdaConfig, LambdaTypeSpec, SshKeySpec};
pub use state::SimLambdaInstance;

pub(crate) struct Shared {
    core: SimCore,
    state: Mutex<state::LambdaState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, state::LambdaState> {
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
    /// `offer` is `TYPE@REGION`.
    fn set_stock(&self, offer: &str, stock: u32) -> bool {
        let Some((ty, region)) = offer.split_once('@') else {
            return false;
        };
        let now = self.core.clock.now();
        self.state().set_capacity(ty, region, stock, now)
    }
}

type S = State<Arc<Shared>>;

fn data(v: Value) -> Response {
    Json(json!({ "data": v })).into_response()
}

async fn instance_types(State(s): S) -> Response {
    data(s.state().instance_types(s.core.clock.now()))
}

async fn ssh_keys(State(s): S) -> Response {
    data(s.state().ssh_keys())
}

async fn launch(State(s): S, body: Bytes) -> Result<Response, ApiError> {
    let req = api::LaunchRequest::parse(&body)?;
    match s.state().launch(req, &s.core.clock, &s.core.faults)? {
        state::Launched::Created(ids) | state::Launched::Ghost(ids) => {
            Ok(data(json!({ "instance_ids": ids })))
        }
        state::Launched::Lost => Err(ApiError::internal()),
    }
}

async fn terminate(State(s): S, body: Bytes) -> Result<Response, ApiError> {
    let ids = api::parse_terminate(&body)?;
    let now = s.core.clock.now();
    let done = s.state().terminate(&ids, now)?;
    Ok(data(json!({ "terminated_instances": done })))
}

async fn list(State(s): S) -> Response {
    data(json!(s.state().list(s.core.clock.now())))
}

async fn get_instance(State(s): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    s.state()
        .get(&id, s.core.clock.now())
        .map(data)
        .ok_or_else(|| ApiError::not_found("Specified instance does not exist."))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let mut r =
        ApiError::invalid(format!("{method} is not allowed on {}", uri.path())).into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// A running simulated Lambda Cloud. Dropping it stops the server at once.
pub struct LambdaCloud {
    handle: SimHandle,
    shared: Arc<Shared>,
}

impl std::ops::Deref for LambdaCloud {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for LambdaCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaCloud")
            .field("addr", &self.handle.addr())
            .finish_non_exhaustive()
    }
}

impl LambdaCloud {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(cfg: LambdaConfig) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, cfg: LambdaConfig) -> anyhow::Result<Self> {
        cfg.faults
            .validate(&endpoint::keys())
            .map_err(|(field, msg)| anyhow::anyhow!("invalid faults at {field}: {msg}"))?;
        let shared = Arc::new(Shared {
            core: SimCore::new(cfg.faults.clone()),
            state: Mutex::new(state::LambdaState::new(&cfg)),
        });
        let app = Router::new()
            .route("/api/v1/instance-types", get(instance_types))
            .route("/api/v1/instance-operations/launch", post(launch))
            .route("/api/v1/instance-operations/terminate", post(terminate))
            .route("/api/v1/instances", get(list))
            .route("/api/v1/instances/{id}", get(get_instance))
            .route("/api/v1/ssh-keys", get(ssh_keys))
            .merge(crate::admin::router::<Shared>())
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::LambdaGateway {
                api_key: cfg.api_key.clone(),
                request_interval: cfg.request_interval,
                launch_interval: cfg.launch_interval,
                limiter: MinInterval::new(),
                clock: shared.core.clock.clone(),
            }),
            faults: shared.core.faults.clone(),
            calls: shared.core.calls.clone(),
            clock: shared.core.clock.clone(),
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "lambda simulator listening");
        Ok(Self {
            handle: SimHandle::new(server, shared.clone()),
            shared,
        })
    }

    /// Every instance ever launched (vanished ones flagged).
    pub fn instances(&self) -> Vec<SimLambdaInstance> {
        self.shared.state().all(self.shared.core.clock.now())
    }

    /// Instances neither terminated nor vanished.
    pub fn live_instances(&self) -> Vec<SimLambdaInstance> {
        self.instances()
            .into_iter()
            .filter(|i| !i.vanished && i.status != "terminated")
            .collect()
    }

    pub fn vanish(&self, id: &str) -> bool {
        self.shared.vanish_json(id).is_some()
    }

    /// Sets the capacity of a type in a region now; false for an unknown type.
    pub fn set_capacity(&self, instance_type: &str, region: &str, n: u32) -> bool {
        self.shared
            .set_stock(&format!("{instance_type}@{region}"), n)
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
