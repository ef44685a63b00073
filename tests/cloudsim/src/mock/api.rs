//! The mock cloud's wire format: error bodies, the offer and instance objects, and the validation
//! of launch requests into typed values. Kept apart from state so the contract in
//! `docs/mock-cloud-api.md` can be checked against one file.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// An error answer of the mock cloud.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`.
    #[error("{message}")]
    InvalidRequest {
        field: Option<String>,
        message: String,
    },
    /// 401 `unauthorized`.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// 402 `insufficient_balance`.
    #[error("{0}")]
    InsufficientBalance(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 429 `rate_limited`.
    #[error("rate limited, slow down")]
    RateLimited { retry_after_secs: Option<u64> },
    /// 503 `capacity_exhausted`.
    #[error("{0}")]
    CapacityExhausted(String),
    /// 500 `internal`.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InsufficientBalance(_) => StatusCode::PAYMENT_REQUIRED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::CapacityExhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::InsufficientBalance(_) => "insufficient_balance",
            Self::NotFound(_) => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::CapacityExhausted(_) => "capacity_exhausted",
            Self::Internal(_) => "internal",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = match &self {
            Self::InvalidRequest { field, .. } => field.as_deref(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field,
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if let Self::RateLimited {
            retry_after_secs: Some(s),
        } = self
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A `{id}` path segment, or why it could not be read.
pub type IdPath = Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>;

/// The id of an [`IdPath`], or a 400 naming `id`.
pub fn path_id(p: IdPath) -> Result<String, ApiError> {
    p.map(|axum::extract::Path(id)| id)
        .map_err(|e| ApiError::field("id", format!("unreadable id: {e}")))
}

/// The offer object.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    pub id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub region: String,
    pub hourly_price_usd: String,
    pub spot: bool,
    pub stock: u32,
}

/// The instance object.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub offer_id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub region: String,
    pub hourly_price_usd: String,
    pub spot: bool,
    pub status: String,
    pub public_ip: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub created_at: String,
}

/// A validated `POST /v1/instances` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub offer_id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub image: Option<String>,
}

impl LaunchRequest {
    /// Parses and validates a launch body, naming the offending field on failure. Unknown fields
    /// are ignored, as most real APIs do.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::field("body", format!("request body is not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(ApiError::field(
                "body",
                "request body must be a JSON object",
            ));
        };
        let offer_id = required_string(&obj, "offer_id")?;
        let name = required_string(&obj, "name")?;
        if name.trim().is_empty() {
            return Err(ApiError::field("name", "name must not be empty"));
        }
        if offer_id.is_empty() {
            return Err(ApiError::field("offer_id", "offer_id must not be empty"));
        }
        let mut tags = BTreeMap::new();
        match obj.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if k.is_empty() {
                        return Err(ApiError::field("tags", "tag keys must not be empty"));
                    }
                    let Value::String(v) = v else {
                        return Err(ApiError::field(
                            format!("tags.{k}"),
                            "tag values must be strings",
                        ));
                    };
                    tags.insert(k.clone(), v.clone());
                }
            }
            Some(_) => return Err(ApiError::field("tags", "tags must be an object of strings")),
        }
        Ok(Self {
            offer_id,
            name,
            tags,
            user_data: optional_string(&obj, "user_data")?,
            image: optional_string(&obj, "image")?,
        })
    }
}

fn required_string(obj: &serde_json::Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::field(field, format!("{field} is required"))),
        Some(_) => Err(ApiError::field(field, format!("{field} must be a string"))),
    }
}

fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::field(field, format!("{field} must be a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> Option<String> {
        match LaunchRequest::parse(body.as_bytes()) {
            Err(ApiError::InvalidRequest { field, .. }) => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn names_the_culprit() {
        assert_eq!(field_of("{"), Some("body".into()));
        assert_eq!(field_of("[]"), Some("body".into()));
        assert_eq!(field_of(r#"{"name":"a"}"#), Some("offer_id".into()));
        assert_eq!(
            field_of(r#"{"offer_id":5,"name":"a"}"#),
            Some("offer_id".into())
        );
        assert_eq!(
            field_of(r#"{"offer_id":"o","name":""}"#),
            Some("name".into())
        );
        assert_eq!(
            field_of(r#"{"offer_id":"o","name":"a","tags":{"k":1}}"#),
            Some("tags.k".into())
        );
        assert_eq!(
            field_of(r#"{"offer_id":"o","name":"a","tags":[]}"#),
            Some("tags".into())
        );
        assert_eq!(
            field_of(r#"{"offer_id":"o","name":"a","user_data":1}"#),
            Some("user_data".into())
        );
    }

    #[test]
    fn parses_a_full_request() {
        let r = LaunchRequest::parse(
            br##"{"offer_id":"o","name":"n","tags":{"a":"b"},"user_data":"#!","image":"img","extra":1}"##,
        )
        .unwrap();
        assert_eq!(r.tags.get("a").map(String::as_str), Some("b"));
        assert_eq!(r.user_data.as_deref(), Some("#!"));
        assert_eq!(r.image.as_deref(), Some("img"));
    }
}
