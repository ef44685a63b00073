//! The `/_sim/` controls of the mock cloud: inspection and fault switches for tests and the demo.
//! Not part of the cloud's API: no auth, not recorded in the call log.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use super::api::ApiError;
use super::api::{IdPath, path_id};
use super::endpoint::Endpoint;
use crate::faults::Faults;
use crate::money::{format_usd, parse_usd};

/// The `/_sim` routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/calls", get(calls).delete(clear_calls))
        .route("/_sim/instances", get(instances))
        .route("/_sim/instances/{id}/vanish", post(vanish))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/balance", get(get_balance).put(put_balance))
        .route("/_sim/offers/{id}/stock", put(put_stock))
        .route("/_sim/clock/advance", post(advance))
}

type Body = Result<Bytes, BytesRejection>;

fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::field("body", format!("unreadable body: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::field("body", format!("invalid body: {e}")))
}

async fn calls(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.calls.all()))
}

async fn clear_calls(State(s): State<Arc<Shared>>) -> Json<Value> {
    s.calls.clear();
    Json(json!([]))
}

async fn instances(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "instances": s.state().all(&s.clock) }))
}

async fn vanish(State(s): State<Arc<Shared>>, id: IdPath) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let i = s
        .state()
        .vanish(&id, &s.clock)
        .ok_or_else(|| ApiError::NotFound(format!("no instance {id:?}")))?;
    Ok(Json(json!({ "instance": i })))
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.faults.get()))
}

async fn put_faults(State(s): State<Arc<Shared>>, body: Body) -> Result<Json<Value>, ApiError> {
    let faults: Faults = json_body(body)?;
    faults
        .validate(&Endpoint::keys())
        .map_err(|(field, msg)| ApiError::field(field, msg))?;
    s.faults.set(faults.clone());
    Ok(Json(json!(faults)))
}

fn balance_json(s: &Shared) -> Json<Value> {
    Json(json!({ "balance_usd": format_usd(s.state().balance(s.clock.now())) }))
}

async fn get_balance(State(s): State<Arc<Shared>>) -> Json<Value> {
    balance_json(&s)
}

async fn put_balance(State(s): State<Arc<Shared>>, body: Body) -> Result<Json<Value>, ApiError> {
    let v: Value = json_body(body)?;
    let micro = match v.get("balance_usd") {
        Some(Value::String(x)) => parse_usd(x),
        Some(Value::Number(n)) => n.as_f64().and_then(crate::money::usd_to_micro),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::field(
            "balance_usd",
            "balance_usd must be a non-negative decimal string like \"12.50\"",
        )
    })?;
    s.set_balance(micro);
    Ok(balance_json(&s))
}

async fn put_stock(
    State(s): State<Arc<Shared>>,
    id: IdPath,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let v: Value = json_body(body)?;
    let stock = v
        .get("stock")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ApiError::field("stock", "stock must be a non-negative integer"))?;
    if !s.state().set_stock(&id, stock, s.clock.now()) {
        return Err(ApiError::NotFound(format!("no offer {id:?}")));
    }
    Ok(Json(json!({ "offer_id": id, "stock": stock })))
}

async fn advance(State(s): State<Arc<Shared>>, body: Body) -> Result<Json<Value>, ApiError> {
    let v: Value = json_body(body)?;
    let ms = v
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::field("ms", "ms must be a non-negative integer"))?;
    s.clock.advance(Duration::from_millis(ms));
    Ok(Json(json!({ "now_ms": s.clock.now_ms() })))
}
