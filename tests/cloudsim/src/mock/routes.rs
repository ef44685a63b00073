//! The `/v1` handlers of the mock cloud: turn HTTP into calls on [`CloudState`] and back.
//! Auth, generic faults and the call log are applied around them by [`crate::server`]; the
//! `/_sim` routes come from [`crate::admin::router`].

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Shared;
use super::api::{ApiError, LaunchRequest};
use super::api::{IdPath, path_id};
use super::state::{Launched, OfferFilter};
use crate::money::format_usd;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The `/v1` routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/offers", get(offers))
        .route("/v1/instances", get(list).post(launch))
        .route(
            "/v1/instances/{id}",
            get(get_instance).delete(delete_instance),
        )
        .route("/v1/account", get(account))
}

fn params(q: Params) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::field("query", format!("malformed query string: {e}")))
}

async fn offers(
    State(s): State<Arc<Shared>>,
    q: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut filter = OfferFilter::default();
    for (k, v) in params(q)? {
        match k.as_str() {
            "gpu_type" => filter.gpu_type = Some(v),
            "count" => {
                filter.count = Some(v.parse().map_err(|_| {
                    ApiError::field("count", "count must be a non-negative integer")
                })?)
            }
            "spot" => {
                filter.spot = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::field("spot", "spot must be true or false")),
                })
            }
            _ => {}
        }
    }
    let offers = s.state().offers(&filter, s.core.clock.now());
    Ok(Json(json!({ "offers": offers })))
}

async fn launch(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::field("body", format!("unreadable body: {e}")))?;
    let req = LaunchRequest::parse(&body)?;
    let launched = s.state().launch(req, &s.core.clock, &s.core.faults)?;
    match launched {
        Launched::Created(i) | Launched::Ghost(i) => {
            Ok((StatusCode::CREATED, Json(json!({ "instance": i.view() }))).into_response())
        }
        Launched::Lost(i) => {
            tracing::info!(id = %i.id, "lost launch response: instance created, answering 500");
            Err(ApiError::Internal("the cloud failed".into()))
        }
    }
}

async fn get_instance(
    State(s): State<Arc<Shared>>,
    id: IdPath,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path_id(id)?;
    let i = s
        .state()
        .get(&id, &s.core.clock)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(json!({ "instance": i.view() })))
}

async fn delete_instance(
    State(s): State<Arc<Shared>>,
    id: IdPath,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path_id(id)?;
    let i = s
        .state()
        .terminate(&id, &s.core.clock)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(json!({ "instance": i.view() })))
}

async fn list(
    State(s): State<Arc<Shared>>,
    q: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut tags = Vec::new();
    for (k, v) in params(q)? {
        if k == "tag" {
            let (key, value) = v
                .split_once('=')
                .ok_or_else(|| ApiError::field("tag", "tag must look like KEY=VALUE"))?;
            if key.is_empty() {
                return Err(ApiError::field("tag", "tag key must not be empty"));
            }
            tags.push((key.to_owned(), value.to_owned()));
        }
    }
    let views: Vec<_> = s
        .state()
        .list(&tags, &s.core.clock)
        .iter()
        .map(|i| i.view())
        .collect();
    Ok(Json(json!({ "instances": views })))
}

async fn account(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let now = s.core.clock.now();
    let st = s.state();
    Json(json!({
        "balance_usd": format_usd(st.balance(now)),
        "spend_usd_per_hour": format_usd(st.spend_per_hour(now)),
    }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no instance {id:?}"))
}

/// Unknown paths: 404 `not_found`.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Known path, wrong method: 405 with an `invalid_request` body naming `method`.
pub async fn wrong_method(method: Method, uri: Uri) -> Response {
    let mut r = ApiError::field(
        "method",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
