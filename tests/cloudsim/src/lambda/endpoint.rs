//! The Lambda personality's gateway hooks: endpoint names, Bearer-or-Basic auth, Lambda's own rate
//! limits (one request per second per key, one launch per 12 s) on the simulated clock, and
//! injected faults in Lambda's error envelope.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use crate::auth;
use crate::clock::SimClock;
use crate::faults::Injected;
use crate::ratelimit::MinInterval;
use crate::server::Gateway;

pub const INSTANCE_TYPES: &str = "instance_types";
pub const LAUNCH: &str = "launch";
pub const TERMINATE: &str = "terminate";
pub const LIST: &str = "list";
pub const GET: &str = "get";
pub const SSH_KEYS: &str = "ssh_keys";
pub const OTHER: &str = "other";

/// Every endpoint key.
pub fn keys() -> Vec<&'static str> {
    vec![
        INSTANCE_TYPES,
        LAUNCH,
        TERMINATE,
        LIST,
        GET,
        SSH_KEYS,
        OTHER,
    ]
}

/// Which endpoint a call is.
pub fn classify(method: &Method, path: &str) -> &'static str {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return OTHER;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["instance-types"]) => INSTANCE_TYPES,
        (&Method::POST, ["instance-operations", "launch"]) => LAUNCH,
        (&Method::POST, ["instance-operations", "terminate"]) => TERMINATE,
        (&Method::GET, ["instances"]) => LIST,
        (&Method::GET, ["instances", id]) if !id.is_empty() => GET,
        (&Method::GET, ["ssh-keys"]) => SSH_KEYS,
        _ => OTHER,
    }
}

/// The Lambda gateway.
#[derive(Debug)]
pub struct LambdaGateway {
    pub api_key: String,
    pub request_interval: Duration,
    pub launch_interval: Duration,
    pub limiter: MinInterval,
    pub clock: Arc<SimClock>,
}

impl Gateway for LambdaGateway {
    fn personality(&self) -> &'static str {
        "lambda"
    }

    fn classify(&self, method: &Method, path: &str) -> Option<&'static str> {
        (!path.starts_with("/_sim/")).then(|| classify(method, path))
    }

    fn authorize(
        &self,
        _endpoint: &str,
        headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let ok = auth::bearer(headers) == Some(self.api_key.as_str())
            || auth::basic_user(headers).as_deref() == Some(self.api_key.as_str());
        if ok {
            Ok(())
        } else {
            Err(Box::new(ApiError::invalid_api_key().into_response()))
        }
    }

    fn throttle(
        &self,
        endpoint: &str,
        _headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let now = self.clock.now();
        let key = self.api_key.as_str();
        let launch = endpoint == LAUNCH;
        if !self
            .limiter
            .would_admit(key, "*", self.request_interval, now)
        {
            return Err(Box::new(
                ApiError::rate_limited("Too many requests: at most one request per second.", None)
                    .into_response(),
            ));
        }
        if launch
            && !self
                .limiter
                .would_admit(key, LAUNCH, self.launch_interval, now)
        {
            return Err(Box::new(
                ApiError::rate_limited(
                    "Too many requests: at most one launch every 12 seconds.",
                    None,
                )
                .into_response(),
            ));
        }
        let _ = self.limiter.admit(key, "*", self.request_interval, now);
        if launch {
            let _ = self.limiter.admit(key, LAUNCH, self.launch_interval, now);
        }
        Ok(())
    }

    fn render_fault(&self, _endpoint: &str, fault: Injected) -> Response {
        match fault {
            Injected::RateLimited { retry_after_secs } => {
                ApiError::rate_limited("Too many requests.", retry_after_secs).into_response()
            }
            Injected::Internal => ApiError::internal().into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            classify(&Method::GET, "/api/v1/instance-types"),
            INSTANCE_TYPES
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/instance-operations/launch"),
            LAUNCH
        );
        assert_eq!(classify(&Method::GET, "/api/v1/instances/abc"), GET);
        assert_eq!(classify(&Method::GET, "/api/v1/instances/"), LIST);
        assert_eq!(classify(&Method::DELETE, "/api/v1/instances/abc"), OTHER);
        assert_eq!(classify(&Method::GET, "/v1/instances"), OTHER);
    }
}
