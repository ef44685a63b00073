//! The mock cloud's endpoints and its gateway hooks: how calls are named for faults and the call
//! log, how the key is checked, and how injected faults look in this cloud's error format.

use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use crate::faults::Injected;
use crate::server::Gateway;

/// The endpoints of the mock cloud API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v1/offers`
    Offers,
    /// `POST /v1/instances`
    Launch,
    /// `GET /v1/instances/{id}`
    Get,
    /// `DELETE /v1/instances/{id}`
    Delete,
    /// `GET /v1/instances`
    List,
    /// `GET /v1/account`
    Account,
}

/// Key of `/v1` calls that match no endpoint.
pub const OTHER: &str = "other";

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Offers,
        Endpoint::Launch,
        Endpoint::Get,
        Endpoint::Delete,
        Endpoint::List,
        Endpoint::Account,
    ];

    /// The key used in fault sets and call records.
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::Offers => "offers",
            Endpoint::Launch => "launch",
            Endpoint::Get => "get",
            Endpoint::Delete => "delete",
            Endpoint::List => "list",
            Endpoint::Account => "account",
        }
    }

    /// Every key.
    pub fn keys() -> Vec<&'static str> {
        Self::ALL.iter().map(|e| e.key()).collect()
    }

    /// Which endpoint a `/v1` call is, if any.
    pub fn classify(method: &Method, path: &str) -> Option<Endpoint> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let rest = path.strip_prefix("/v1/")?;
        let segs: Vec<&str> = rest.split('/').collect();
        match (method, segs.as_slice()) {
            (&Method::GET, ["offers"]) => Some(Endpoint::Offers),
            (&Method::GET, ["account"]) => Some(Endpoint::Account),
            (&Method::GET, ["instances"]) => Some(Endpoint::List),
            (&Method::POST, ["instances"]) => Some(Endpoint::Launch),
            (&Method::GET, ["instances", id]) if !id.is_empty() => Some(Endpoint::Get),
            (&Method::DELETE, ["instances", id]) if !id.is_empty() => Some(Endpoint::Delete),
            _ => None,
        }
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.key().to_owned()
    }
}

impl AsRef<str> for Endpoint {
    fn as_ref(&self) -> &str {
        self.key()
    }
}

/// The mock cloud's [`Gateway`].
#[derive(Debug, Clone)]
pub struct MockGateway {
    /// The accepted Bearer key.
    pub api_key: String,
}

impl Gateway for MockGateway {
    fn personality(&self) -> &'static str {
        "mock"
    }

    fn classify(&self, method: &Method, path: &str) -> Option<&'static str> {
        if path != "/v1" && !path.starts_with("/v1/") {
            return None;
        }
        Some(Endpoint::classify(method, path).map_or(OTHER, Endpoint::key))
    }

    fn authorize(
        &self,
        _endpoint: &str,
        headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented == Some(self.api_key.as_str()) {
            Ok(())
        } else {
            Err(Box::new(ApiError::Unauthorized.into_response()))
        }
    }

    fn render_fault(&self, _endpoint: &str, fault: Injected) -> Response {
        match fault {
            Injected::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }.into_response()
            }
            Injected::Internal => {
                ApiError::Internal("injected fault: the cloud failed".into()).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/offers"),
            Some(Endpoint::Offers)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/instances"),
            Some(Endpoint::Launch)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/instances/i-1"),
            Some(Endpoint::Get)
        );
        assert_eq!(
            Endpoint::classify(&Method::DELETE, "/v1/instances/i-1"),
            Some(Endpoint::Delete)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/instances"),
            Some(Endpoint::List)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/account"),
            Some(Endpoint::Account)
        );
        assert_eq!(Endpoint::classify(&Method::PUT, "/v1/account"), None);
        let g = MockGateway {
            api_key: "k".into(),
        };
        assert_eq!(g.classify(&Method::GET, "/_sim/calls"), None);
        assert_eq!(g.classify(&Method::GET, "/v1/nope"), Some(OTHER));
    }
}
