//! The Vast personality's gateway hooks: endpoint names, Bearer-or-`?api_key=` auth, Vast's
//! per-endpoint minimum intervals (429 with no `Retry-After`, in the body shape each endpoint
//! uses) on the simulated clock, and injected faults rendered the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use crate::auth;
use crate::clock::SimClock;
use crate::faults::Injected;
use crate::ratelimit::MinInterval;
use crate::server::Gateway;

pub const SEARCH: &str = "search";
pub const LAUNCH: &str = "launch";
pub const GET: &str = "get";
pub const LIST: &str = "list";
pub const DELETE: &str = "delete";
pub const USER: &str = "user";
pub const OTHER: &str = "other";

/// Every endpoint key.
pub fn keys() -> Vec<&'static str> {
    vec![SEARCH, LAUNCH, GET, LIST, DELETE, USER, OTHER]
}

/// Which endpoint a call is (trailing slash optional).
pub fn classify(method: &Method, path: &str) -> &'static str {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = path.strip_prefix("/api/v0/") else {
        return OTHER;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::GET | &Method::POST, ["bundles"]) => SEARCH,
        (&Method::PUT, ["asks", id]) if !id.is_empty() => LAUNCH,
        (&Method::GET, ["instances"]) => LIST,
        (&Method::GET, ["instances", id]) if !id.is_empty() => GET,
        (&Method::DELETE, ["instances", id]) if !id.is_empty() => DELETE,
        (&Method::GET, ["users", "current"]) => USER,
        _ => OTHER,
    }
}

/// A 429 in the shape `endpoint` uses; never a `Retry-After`.
pub fn too_frequent(endpoint: &str, interval: Option<Duration>) -> ApiError {
    let threshold = interval.map_or(String::new(), |d| {
        format!(" endpoint threshold={:.1}", d.as_secs_f64())
    });
    let msg = format!("API requests too frequent{threshold}");
    match endpoint {
        LAUNCH => ApiError::DetailTooFrequent(msg),
        DELETE => ApiError::std(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", msg),
        _ => ApiError::TextTooFrequent(msg),
    }
}

/// The Vast gateway.
#[derive(Debug)]
pub struct VastGateway {
    pub api_key: String,
    pub rate_limits: BTreeMap<String, Duration>,
    pub limiter: MinInterval,
    pub clock: Arc<SimClock>,
}

impl Gateway for VastGateway {
    fn personality(&self) -> &'static str {
        "vast"
    }

    fn classify(&self, method: &Method, path: &str) -> Option<&'static str> {
        (!path.starts_with("/_sim/")).then(|| classify(method, path))
    }

    fn authorize(
        &self,
        _endpoint: &str,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let ok = auth::bearer(headers) == Some(self.api_key.as_str())
            || auth::query_param(uri, "api_key").as_deref() == Some(self.api_key.as_str());
        if ok {
            Ok(())
        } else {
            Err(Box::new(ApiError::auth().into_response()))
        }
    }

    fn throttle(
        &self,
        endpoint: &str,
        _headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let Some(interval) = self.rate_limits.get(endpoint).copied() else {
            return Ok(());
        };
        self.limiter
            .admit(&self.api_key, endpoint, interval, self.clock.now())
            .map_err(|_| Box::new(too_frequent(endpoint, Some(interval)).into_response()))
    }

    fn render_fault(&self, endpoint: &str, fault: Injected) -> Response {
        match fault {
            // Vast never sends Retry-After, so an injected one is dropped too.
            Injected::RateLimited { .. } => {
                too_frequent(endpoint, self.rate_limits.get(endpoint).copied()).into_response()
            }
            Injected::Internal => ApiError::internal().into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_with_or_without_slash() {
        assert_eq!(classify(&Method::POST, "/api/v0/bundles/"), SEARCH);
        assert_eq!(classify(&Method::PUT, "/api/v0/asks/123/"), LAUNCH);
        assert_eq!(classify(&Method::GET, "/api/v0/instances/"), LIST);
        assert_eq!(classify(&Method::GET, "/api/v0/instances/5"), GET);
        assert_eq!(classify(&Method::DELETE, "/api/v0/instances/5/"), DELETE);
        assert_eq!(classify(&Method::GET, "/api/v0/users/current"), USER);
        assert_eq!(classify(&Method::PATCH, "/api/v0/users/current"), OTHER);
    }
}
