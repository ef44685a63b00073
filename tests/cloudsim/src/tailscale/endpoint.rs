//! The Tailscale personality's gateway hooks: endpoint names, access-token auth (the token
//! endpoint itself takes client credentials in its body, checked by its handler), scope checks,
//! and injected faults as `{"message"}` errors.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::api::ApiError;
use crate::faults::Injected;
use crate::server::Gateway;

pub const OAUTH_TOKEN: &str = "oauth_token";
pub const CREATE_KEY: &str = "create_key";
pub const LIST_KEYS: &str = "list_keys";
pub const GET_KEY: &str = "get_key";
pub const DELETE_KEY: &str = "delete_key";
pub const LIST_DEVICES: &str = "list_devices";
pub const GET_DEVICE: &str = "get_device";
pub const DELETE_DEVICE: &str = "delete_device";
pub const OTHER: &str = "other";

/// Every endpoint key.
pub fn keys() -> Vec<&'static str> {
    vec![
        OAUTH_TOKEN,
        CREATE_KEY,
        LIST_KEYS,
        GET_KEY,
        DELETE_KEY,
        LIST_DEVICES,
        GET_DEVICE,
        DELETE_DEVICE,
        OTHER,
    ]
}

/// Which endpoint a call is.
pub fn classify(method: &Method, path: &str) -> &'static str {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = path.strip_prefix("/api/v2/") else {
        return OTHER;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::POST, ["oauth", "token"]) => OAUTH_TOKEN,
        (&Method::POST, ["tailnet", t, "keys"]) if !t.is_empty() => CREATE_KEY,
        (&Method::GET, ["tailnet", t, "keys"]) if !t.is_empty() => LIST_KEYS,
        (&Method::GET, ["tailnet", t, "keys", id]) if !t.is_empty() && !id.is_empty() => GET_KEY,
        (&Method::DELETE, ["tailnet", t, "keys", id]) if !t.is_empty() && !id.is_empty() => {
            DELETE_KEY
        }
        (&Method::GET, ["tailnet", t, "devices"]) if !t.is_empty() => LIST_DEVICES,
        (&Method::GET, ["device", id]) if !id.is_empty() => GET_DEVICE,
        (&Method::DELETE, ["device", id]) if !id.is_empty() => DELETE_DEVICE,
        _ => OTHER,
    }
}

/// The scope an endpoint needs, if any.
fn scope_of(endpoint: &str) -> Option<&'static str> {
    match endpoint {
        CREATE_KEY | LIST_KEYS | GET_KEY | DELETE_KEY => Some("auth_keys"),
        LIST_DEVICES | GET_DEVICE | DELETE_DEVICE => Some("devices"),
        _ => None,
    }
}

/// The Tailscale gateway.
pub(crate) struct TailscaleGateway {
    pub(crate) shared: Arc<Shared>,
}

impl Gateway for TailscaleGateway {
    fn personality(&self) -> &'static str {
        "tailscale"
    }

    fn classify(&self, method: &Method, path: &str) -> Option<&'static str> {
        (!path.starts_with("/_sim/")).then(|| classify(method, path))
    }

    fn authorize(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let Some(scope) = scope_of(endpoint) else {
            return Ok(());
        };
        let actor = self
            .shared
            .actor(headers)
            .ok_or_else(|| Box::new(ApiError::invalid_token().into_response()))?;
        if actor.allows(scope) {
            Ok(())
        } else {
            Err(Box::new(ApiError::forbidden().into_response()))
        }
    }

    fn render_fault(&self, _endpoint: &str, fault: Injected) -> Response {
        match fault {
            Injected::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs).into_response()
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
        assert_eq!(classify(&Method::POST, "/api/v2/oauth/token"), OAUTH_TOKEN);
        assert_eq!(
            classify(&Method::POST, "/api/v2/tailnet/-/keys"),
            CREATE_KEY
        );
        assert_eq!(classify(&Method::GET, "/api/v2/tailnet/-/keys/"), LIST_KEYS);
        assert_eq!(classify(&Method::GET, "/api/v2/tailnet/x/keys/k1"), GET_KEY);
        assert_eq!(
            classify(&Method::DELETE, "/api/v2/tailnet/-/keys/k1"),
            DELETE_KEY
        );
        assert_eq!(
            classify(&Method::GET, "/api/v2/tailnet/-/devices"),
            LIST_DEVICES
        );
        assert_eq!(classify(&Method::GET, "/api/v2/device/123"), GET_DEVICE);
        assert_eq!(
            classify(&Method::DELETE, "/api/v2/device/n1CNTRL"),
            DELETE_DEVICE
        );
        assert_eq!(classify(&Method::PUT, "/api/v2/device/1"), OTHER);
        assert_eq!(classify(&Method::GET, "/api/v2/tailnet//keys"), OTHER);
        assert_eq!(classify(&Method::GET, "/v2/device/1"), OTHER);
    }
}
