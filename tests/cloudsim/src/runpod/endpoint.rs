//! The RunPod personality's gateway hooks: every call is a `POST /graphql`, so calls are named
//! (for faults and the call log) after the operation's root field, read from the body; the key is
//! accepted as `Authorization: Bearer` or the legacy `?api_key=`; injected faults are rendered
//! the way a GraphQL server reports them.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::graphql::parse_request;
use super::resolve::{CATALOGUE_FIELDS, MUTATION_FIELDS, QUERY_FIELDS};
use super::state::SOMETHING_WENT_WRONG;
use crate::auth;
use crate::faults::Injected;
use crate::server::Gateway;

/// Key of calls that are not a recognisable operation (bad JSON, parse errors, unknown fields,
/// other paths).
pub const OTHER: &str = "other";

/// Every endpoint key: the root fields served, plus [`OTHER`].
pub fn keys() -> Vec<&'static str> {
    QUERY_FIELDS
        .iter()
        .chain(MUTATION_FIELDS)
        .copied()
        .chain([OTHER])
        .collect()
}

/// The endpoint key of a GraphQL body: the first root field, except that an operation made only
/// of catalogue fields is named after its first one, and otherwise the first non-catalogue field
/// wins (so a `gpuTypes` + `myself` query is not treated as anonymous-friendly).
pub fn key_of_body(body: &[u8]) -> &'static str {
    let Ok(op) = parse_request(body) else {
        return OTHER;
    };
    let names: Vec<&str> = op
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| *n != "__typename")
        .collect();
    let chosen = names
        .iter()
        .find(|n| !CATALOGUE_FIELDS.contains(n))
        .or_else(|| names.first());
    chosen
        .and_then(|n| keys().into_iter().find(|k| k == n))
        .unwrap_or(OTHER)
}

/// The RunPod gateway.
#[derive(Debug, Clone)]
pub struct RunpodGateway {
    /// The accepted key.
    pub api_key: String,
    /// Catalogue-only operations need no credentials.
    pub allow_anonymous_catalogue: bool,
}

/// 401 in GraphQL form. UNCONFIRMED body: clients only look at the status.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"errors": [{"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}]})),
    )
        .into_response()
}

impl Gateway for RunpodGateway {
    fn personality(&self) -> &'static str {
        "runpod"
    }

    fn classify(&self, _method: &Method, path: &str) -> Option<&'static str> {
        (!path.starts_with("/_sim/")).then_some(OTHER)
    }

    fn wants_body(&self, _endpoint: &'static str) -> bool {
        true
    }

    fn refine(&self, _endpoint: &'static str, body: &[u8]) -> &'static str {
        key_of_body(body)
    }

    fn authorize(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let bearer = auth::bearer(headers);
        let query = auth::query_param(uri, "api_key");
        if bearer == Some(self.api_key.as_str()) || query.as_deref() == Some(self.api_key.as_str())
        {
            return Ok(());
        }
        let presented = auth::has_authorization(headers) || query.is_some();
        if !presented && self.allow_anonymous_catalogue && CATALOGUE_FIELDS.contains(&endpoint) {
            return Ok(());
        }
        Err(Box::new(unauthorized()))
    }

    fn render_fault(&self, _endpoint: &str, fault: Injected) -> Response {
        match fault {
            Injected::RateLimited { retry_after_secs } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"errors": [{"message": "Too many requests, please slow down.", "extensions": {"code": "RATE_LIMITED"}}]})),
                )
                    .into_response();
                if let Some(s) = retry_after_secs
                    && let Ok(v) = HeaderValue::from_str(&s.to_string())
                {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Injected::Internal => (
                StatusCode::OK,
                Json(json!({"data": null, "errors": [{"message": SOMETHING_WENT_WRONG}]})),
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_calls_by_root_field() {
        let q = |s: &str| serde_json::to_vec(&json!({ "query": s })).unwrap();
        assert_eq!(key_of_body(&q("{ gpuTypes { id } }")), "gpuTypes");
        assert_eq!(
            key_of_body(&q("{ gpuTypes { id } myself { id } }")),
            "myself"
        );
        assert_eq!(
            key_of_body(&q("{ countryCodes dataCenters { id } }")),
            "countryCodes"
        );
        assert_eq!(
            key_of_body(&q("mutation { podTerminate(input: {podId: \"x\"}) }")),
            "podTerminate"
        );
        assert_eq!(key_of_body(&q("{ nope }")), OTHER);
        assert_eq!(key_of_body(b"{"), OTHER);
    }
}
