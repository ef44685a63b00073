//! The `/_sim/` controls of the Tailscale personality, for the demo and for tests driving the
//! simulator over HTTP: call log, faults, clock, the full key/device views, the event log, and
//! `POST /_sim/enrol` (what a booting machine's `tailscale up --authkey` does). Not part of the
//! API: no auth, not in the call log, errors in the neutral `{"error": {...}}` shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::endpoint;
use super::state::SimEventKind;
use crate::admin::AdminError;
use crate::faults::Faults;

/// The `/_sim` routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/calls", get(calls).delete(clear_calls))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/keys", get(keys))
        .route("/_sim/devices", get(devices))
        .route("/_sim/events", get(events))
        .route("/_sim/enrol", post(enrol))
}

type S = State<Arc<Shared>>;
type Body = Result<Bytes, BytesRejection>;

fn json_body(body: Body) -> Result<Value, AdminError> {
    let invalid = |message: String| AdminError::Invalid {
        field: "body".into(),
        message,
    };
    let body = body.map_err(|e| invalid(format!("unreadable body: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid body: {e}")))
}

fn string_field(v: &Value, k: &str) -> Result<String, AdminError> {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| AdminError::Invalid {
            field: k.into(),
            message: format!("{k} must be a string"),
        })
}

async fn calls(State(s): S) -> Json<Value> {
    Json(json!(s.core.calls.all()))
}

async fn clear_calls(State(s): S) -> Json<Value> {
    s.core.calls.clear();
    Json(json!([]))
}

async fn get_faults(State(s): S) -> Json<Value> {
    Json(json!(s.core.faults.get()))
}

async fn put_faults(State(s): S, body: Body) -> Result<Json<Value>, AdminError> {
    let faults: Faults =
        serde_json::from_value(json_body(body)?).map_err(|e| AdminError::Invalid {
            field: "body".into(),
            message: format!("invalid faults: {e}"),
        })?;
    faults
        .validate(&endpoint::keys())
        .map_err(|(field, message)| AdminError::Invalid { field, message })?;
    s.core.faults.set(faults.clone());
    Ok(Json(json!(faults)))
}

async fn advance(State(s): S, body: Body) -> Result<Json<Value>, AdminError> {
    let v = json_body(body)?;
    let ms = v
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| AdminError::Invalid {
            field: "ms".into(),
            message: "ms must be a non-negative integer".into(),
        })?;
    s.core.clock.advance(Duration::from_millis(ms));
    Ok(Json(json!({ "now_ms": s.core.clock.now_ms() })))
}

async fn keys(State(s): S) -> Json<Value> {
    Json(json!({ "keys": s.state().keys(&s.core.clock) }))
}

async fn devices(State(s): S) -> Json<Value> {
    Json(json!({ "devices": s.state().devices() }))
}

fn event_json(k: &SimEventKind) -> Value {
    match k {
        SimEventKind::KeyCreated { id } => json!({"kind": "key_created", "id": id}),
        SimEventKind::KeyUsed { id } => json!({"kind": "key_used", "id": id}),
        SimEventKind::KeyRevoked { id } => json!({"kind": "key_revoked", "id": id}),
        SimEventKind::KeyDeleted { id } => json!({"kind": "key_deleted", "id": id}),
        SimEventKind::DeviceCreated { id, hostname } => {
            json!({"kind": "device_created", "id": id, "hostname": hostname})
        }
        SimEventKind::DeviceDeleted { id, hostname } => {
            json!({"kind": "device_deleted", "id": id, "hostname": hostname})
        }
    }
}

async fn events(State(s): S) -> Json<Value> {
    let events: Vec<Value> = s
        .state()
        .events()
        .iter()
        .map(|e| event_json(&e.kind))
        .collect();
    Json(json!({ "events": events }))
}

/// `{"auth_key", "hostname", "advertise_tags"?}` → 200 `{"device"}`, or 403 `{"error": {"code": "enrol_refused",
/// "reason"}}`.
async fn enrol(State(s): S, body: Body) -> Result<Response, AdminError> {
    let v = json_body(body)?;
    let key = string_field(&v, "auth_key")?;
    let hostname = string_field(&v, "hostname")?;
    let tags: Vec<String> = match v.get("advertise_tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => serde_json::from_value(t.clone()).map_err(|_| AdminError::Invalid {
            field: "advertise_tags".into(),
            message: "advertise_tags must be a list of strings".into(),
        })?,
    };
    let r = s
        .state()
        .enrol(&key, &hostname, &tags, &s.cfg, &s.core.clock);
    Ok(match r {
        Ok(d) => Json(json!({ "device": d })).into_response(),
        Err(refusal) => (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {
                "code": "enrol_refused",
                "message": refusal.to_string(),
                "reason": refusal,
            }})),
        )
            .into_response(),
    })
}
