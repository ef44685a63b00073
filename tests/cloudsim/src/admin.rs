//! The `/_sim/` controls shared by the mock, RunPod, Lambda and Vast personalities.
//!
//! Tests and the demo need to inspect and steer a simulator over HTTP (call log, instances,
//! faults, balance, stock, clock) in one format whatever cloud it imitates, so this router is
//! generic over [`SimControl`]. Not part of any cloud's API: no auth, not in the call log, errors
//! in a neutral `{"error": {"code", "message", "field"}}` shape.
//! Malformed input gets that shape too: a fault set is read strictly (a repeated or unknown
//! key is a 400 naming `body`), and an `{id}` that does not decode to UTF-8 is a 400 naming `id`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::calllog::CallLog;
use crate::clock::SimClock;
use crate::faults::{FaultEngine, Faults};
use crate::money::{format_usd, parse_usd, usd_to_micro};

/// The machinery every personality instance owns.
#[derive(Debug)]
pub struct SimCore {
    /// Fault set.
    pub faults: Arc<FaultEngine>,
    /// Call log.
    pub calls: Arc<CallLog>,
    /// Simulated clock.
    pub clock: Arc<SimClock>,
}

impl SimCore {
    /// A fresh core with `faults` in force.
    pub fn new(faults: Faults) -> Self {
        Self {
            faults: Arc::new(FaultEngine::new(faults)),
            calls: Arc::new(CallLog::default()),
            clock: Arc::new(SimClock::new()),
        }
    }
}

/// What the admin routes need from a personality.
pub trait SimControl: Send + Sync + 'static {
    /// Its machinery.
    fn core(&self) -> &SimCore;
    /// Its endpoint keys (for validating fault sets).
    fn endpoint_keys(&self) -> Vec<&'static str>;
    /// Every instance, full simulator view, as JSON.
    fn instances_json(&self) -> Value;
    /// Vanishes an instance now; its view, or `None` for an unknown id.
    fn vanish_json(&self, id: &str) -> Option<Value>;
    /// The balance now, micro-USD.
    fn balance_micro_usd(&self) -> u64;
    /// Sets the balance as of now.
    fn set_balance_micro_usd(&self, micro: u64);
    /// Sets the stock of an offer/type now; false for an unknown one.
    fn set_stock(&self, offer: &str, stock: u32) -> bool;
}

/// The answer when an `{id}` path segment cannot be read (it percent-decodes to bytes that are
/// not UTF-8): the neutral error shape, naming `id`.
fn bad_id(rejection: PathRejection) -> Response {
    AdminError::field("id", format!("unreadable id: {rejection}")).into_response()
}

/// The `/_sim` routes.
pub fn router<S: SimControl>() -> Router<Arc<S>> {
    Router::new()
        .route("/_sim/calls", get(calls::<S>).delete(clear_calls::<S>))
        .route("/_sim/instances", get(instances::<S>))
        .route("/_sim/instances/{id}/vanish", post(vanish::<S>))
        .route("/_sim/faults", get(get_faults::<S>).put(put_faults::<S>))
        .route("/_sim/balance", get(get_balance::<S>).put(put_balance::<S>))
        .route("/_sim/offers/{id}/stock", put(put_stock::<S>))
        .route("/_sim/clock/advance", post(advance::<S>))
}

/// An admin error.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400 naming a field.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 404.
    #[error("{0}")]
    NotFound(String),
}

impl AdminError {
    /// A 400 naming `field`.
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": "invalid_request", "message": message, "field": field}}),
            ),
            Self::NotFound(m) => (
                StatusCode::NOT_FOUND,
                json!({"error": {"code": "not_found", "message": m}}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

type Body = Result<Bytes, BytesRejection>;
type IdPath = Result<Path<String>, PathRejection>;

fn body_bytes(body: Body) -> Result<Bytes, AdminError> {
    body.map_err(|e| AdminError::field("body", format!("unreadable body: {e}")))
}

/// `body` as JSON of type `T`, or a 400 naming `body`.
fn json_value<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::field("body", format!("invalid body: {e}")))
}

fn json_body(body: Body) -> Result<Value, AdminError> {
    json_value(&body_bytes(body)?)
}

async fn calls<S: SimControl>(State(s): State<Arc<S>>) -> Json<Value> {
    Json(json!(s.core().calls.all()))
}

async fn clear_calls<S: SimControl>(State(s): State<Arc<S>>) -> Json<Value> {
    s.core().calls.clear();
    Json(json!([]))
}

async fn instances<S: SimControl>(State(s): State<Arc<S>>) -> Json<Value> {
    Json(json!({ "instances": s.instances_json() }))
}

async fn vanish<S: SimControl>(State(s): State<Arc<S>>, id: IdPath) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    match s.vanish_json(&id) {
        Some(i) => Json(json!({ "instance": i })).into_response(),
        None => AdminError::NotFound(format!("no instance {id:?}")).into_response(),
    }
}

async fn get_faults<S: SimControl>(State(s): State<Arc<S>>) -> Json<Value> {
    Json(json!(s.core().faults.get()))
}

async fn put_faults<S: SimControl>(
    State(s): State<Arc<S>>,
    body: Body,
) -> Result<Json<Value>, AdminError> {
    let faults: Faults = json_value(&body_bytes(body)?)?;
    faults
        .validate(&s.endpoint_keys())
        .map_err(|(field, msg)| AdminError::field(field, msg))?;
    s.core().faults.set(faults.clone());
    Ok(Json(json!(faults)))
}

fn balance_json<S: SimControl>(s: &S) -> Json<Value> {
    Json(json!({ "balance_usd": format_usd(s.balance_micro_usd()) }))
}

async fn get_balance<S: SimControl>(State(s): State<Arc<S>>) -> Json<Value> {
    balance_json(&*s)
}

async fn put_balance<S: SimControl>(
    State(s): State<Arc<S>>,
    body: Body,
) -> Result<Json<Value>, AdminError> {
    let v = json_body(body)?;
    let micro = match v.get("balance_usd") {
        Some(Value::String(x)) => parse_usd(x),
        Some(Value::Number(n)) => n.as_f64().and_then(usd_to_micro),
        _ => None,
    }
    .ok_or_else(|| {
        AdminError::field(
            "balance_usd",
            "balance_usd must be a non-negative decimal string like \"12.50\"",
        )
    })?;
    s.set_balance_micro_usd(micro);
    Ok(balance_json(&*s))
}

async fn put_stock<S: SimControl>(State(s): State<Arc<S>>, id: IdPath, body: Body) -> Response {
    match id {
        Ok(Path(id)) => set_stock(&*s, id, body).into_response(),
        Err(e) => bad_id(e),
    }
}

fn set_stock<S: SimControl>(s: &S, id: String, body: Body) -> Result<Json<Value>, AdminError> {
    let v = json_body(body)?;
    let stock = v
        .get("stock")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| AdminError::field("stock", "stock must be a non-negative integer"))?;
    if !s.set_stock(&id, stock) {
        return Err(AdminError::NotFound(format!("no offer {id:?}")));
    }
    Ok(Json(json!({ "offer_id": id, "stock": stock })))
}

async fn advance<S: SimControl>(
    State(s): State<Arc<S>>,
    body: Body,
) -> Result<Json<Value>, AdminError> {
    let v = json_body(body)?;
    let ms = v
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| AdminError::field("ms", "ms must be a non-negative integer"))?;
    s.core().clock.advance(Duration::from_millis(ms));
    Ok(Json(json!({ "now_ms": s.core().clock.now_ms() })))
}
