//! Lambda Cloud's wire format: the `{"error": {code, message, suggestion}}` envelope with the codes
//! and HTTP statuses of OpenAPI 1.8.3, and validation of launch/terminate bodies into typed values.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error answer of the Lambda API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub suggestion: Option<&'static str>,
    /// `Retry-After` (injected 429s only).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        suggestion: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            suggestion,
            retry_after_secs: None,
        }
    }

    /// 401 `global/invalid-api-key`.
    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            Some("Check your API key or create a new one, then try again."),
        )
    }

    /// 403 `global/account-inactive`.
    pub fn account_inactive() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "global/account-inactive",
            "Your account is inactive.",
            Some(
                "Make sure you have verified your email address and have a valid payment method. Contact Support if problems continue.",
            ),
        )
    }

    /// 400 `global/invalid-parameters`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "global/invalid-parameters",
            message,
            None,
        )
    }

    /// 404 `global/object-does-not-exist`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "global/object-does-not-exist",
            message,
            None,
        )
    }

    /// 400 `instance-operations/launch/insufficient-capacity`.
    pub fn insufficient_capacity() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "instance-operations/launch/insufficient-capacity",
            "Not enough capacity to fulfill launch request.",
            Some("Choose an instance type with more availability, or try again later."),
        )
    }

    /// 400 `global/quota-exceeded`.
    pub fn quota_exceeded() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "global/quota-exceeded",
            "Quota exceeded.",
            Some("Contact Support to increase your quota."),
        )
    }

    /// 500 `global/internal-error`.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "global/internal-error",
            "An internal server error occurred.",
            None,
        )
    }

    /// 429. UNCONFIRMED body and code: the spec does not show one.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: Option<u64>) -> Self {
        Self {
            retry_after_secs,
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "global/too-many-requests",
                message,
                Some("Slow down and try again."),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(s) = self.suggestion {
            err["suggestion"] = json!(s);
        }
        let mut r = (self.status, Json(json!({ "error": err }))).into_response();
        if let Some(s) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// The public region codes of 1.8.3 (`PublicRegionCode`) with descriptions.
pub const REGIONS: &[(&str, &str)] = &[
    ("europe-central-1", "Germany"),
    ("asia-south-1", "India"),
    ("australia-east-1", "Australia"),
    ("me-west-1", "Israel"),
    ("asia-northeast-1", "Tokyo, Japan"),
    ("asia-northeast-2", "Seoul, South Korea"),
    ("us-east-1", "Virginia, USA"),
    ("us-west-2", "Arizona, USA"),
    ("us-west-1", "California, USA"),
    ("us-south-1", "Texas, USA"),
    ("us-west-3", "Utah, USA"),
    ("us-midwest-1", "Illinois, USA"),
    ("us-east-2", "Washington DC, USA"),
    ("us-south-2", "North Texas, USA"),
    ("us-south-3", "Central Texas, USA"),
    ("us-east-3", "Georgia, USA"),
    ("us-midwest-2", "Ohio, USA"),
];

/// `{name, description}` of a region code.
pub fn region_json(code: &str) -> Value {
    let desc = REGIONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(code, |(_, d)| d);
    json!({"name": code, "description": desc})
}

/// A validated launch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub region_name: String,
    pub instance_type_name: String,
    pub ssh_key_name: String,
    pub file_system_names: Vec<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub user_data: Option<String>,
    pub tags: Vec<(String, String)>,
    pub quantity: u32,
}

fn opt_string(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a string"))),
    }
}

fn string_list(o: &Map<String, Value>, k: &str) -> Result<Option<Vec<String>>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid(format!("{k} must be a list of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a list of strings"))),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::invalid("Invalid request data.")),
        Err(e) => Err(ApiError::invalid(format!("Invalid request data: {e}"))),
    }
}

fn valid_hostname(h: &str) -> bool {
    let b = h.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn valid_tag_key(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() >= 2
        && b.len() <= 55
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b':')
}

impl LaunchRequest {
    /// Validates `POST /instance-operations/launch`. The SSH key's existence and the type/region
    /// are checked against state later.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let o = object(body)?;
        let region_name = opt_string(&o, "region_name")?
            .ok_or_else(|| ApiError::invalid("region_name is required"))?;
        if !REGIONS.iter().any(|(c, _)| *c == region_name) {
            return Err(ApiError::invalid(format!(
                "region_name {region_name:?} is not a valid region"
            )));
        }
        let instance_type_name = opt_string(&o, "instance_type_name")?
            .ok_or_else(|| ApiError::invalid("instance_type_name is required"))?;
        let keys = string_list(&o, "ssh_key_names")?
            .ok_or_else(|| ApiError::invalid("ssh_key_names is required"))?;
        let [ssh_key_name] = <[String; 1]>::try_from(keys)
            .map_err(|_| ApiError::invalid("Currently, exactly one SSH key must be specified."))?;
        let name = opt_string(&o, "name")?;
        if name.as_ref().is_some_and(|n| n.chars().count() > 64) {
            return Err(ApiError::invalid("name must be at most 64 characters"));
        }
        let hostname = opt_string(&o, "hostname")?;
        if hostname.as_deref().is_some_and(|h| !valid_hostname(h)) {
            return Err(ApiError::invalid(
                "hostname must match ^[a-z0-9][0-9a-z-]{0,62}$",
            ));
        }
        let user_data = opt_string(&o, "user_data")?;
        if user_data.as_ref().is_some_and(|u| u.len() > 1024 * 1024) {
            return Err(ApiError::invalid("user_data cannot exceed 1MB"));
        }
        let mut tags = Vec::new();
        match o.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for t in items {
                    let (Some(k), Some(v)) = (
                        t.get("key").and_then(Value::as_str),
                        t.get("value").and_then(Value::as_str),
                    ) else {
                        return Err(ApiError::invalid(
                            "tags must be a list of {key, value} strings",
                        ));
                    };
                    if !valid_tag_key(k) || v.chars().count() > 128 {
                        return Err(ApiError::invalid(format!(
                            "invalid tag {k:?}: keys match ^[a-z][a-z0-9-:]+$ (at most 55), values at most 128 characters"
                        )));
                    }
                    tags.push((k.to_owned(), v.to_owned()));
                }
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "tags must be a list of {key, value} strings",
                ));
            }
        }
        let quantity = match o.get("quantity") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=64).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| ApiError::invalid("quantity must be a positive integer"))?,
        };
        Ok(Self {
            region_name,
            instance_type_name,
            ssh_key_name,
            file_system_names: string_list(&o, "file_system_names")?.unwrap_or_default(),
            name,
            hostname,
            user_data,
            tags,
            quantity,
        })
    }
}

/// Validates `POST /instance-operations/terminate`: `{"instance_ids": [..]}`, non-empty.
pub fn parse_terminate(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let o = object(body)?;
    let ids = string_list(&o, "instance_ids")?
        .ok_or_else(|| ApiError::invalid("instance_ids is required"))?;
    if ids.is_empty() {
        return Err(ApiError::invalid("instance_ids must not be empty"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_validation() {
        let ok = br#"{"region_name":"us-east-1","instance_type_name":"t","ssh_key_names":["k"],"tags":[{"key":"tgp-owner","value":"a"}],"quantity":1}"#;
        let r = LaunchRequest::parse(ok).unwrap();
        assert_eq!(r.ssh_key_name, "k");
        assert_eq!(r.tags, vec![("tgp-owner".into(), "a".into())]);
        let msg = |b: &[u8]| LaunchRequest::parse(b).unwrap_err().message;
        assert_eq!(
            msg(br#"{"region_name":"us-east-1","instance_type_name":"t","ssh_key_names":[]}"#),
            "Currently, exactly one SSH key must be specified."
        );
        assert_eq!(msg(br#"{"region_name":"us-east-1","instance_type_name":"t","ssh_key_names":["a","b"]}"#), "Currently, exactly one SSH key must be specified.");
        assert!(
            msg(br#"{"region_name":"mars-1","instance_type_name":"t","ssh_key_names":["a"]}"#)
                .contains("region")
        );
        assert!(msg(br#"{"region_name":"us-east-1","instance_type_name":"t","ssh_key_names":["a"],"tags":[{"key":"Bad","value":"x"}]}"#).contains("tag"));
        assert!(msg(b"[]").contains("Invalid request data"));
        assert_eq!(
            parse_terminate(br#"{"instance_ids":["a"]}"#).unwrap(),
            vec!["a".to_owned()]
        );
        assert!(parse_terminate(br#"{"instance_ids":[]}"#).is_err());
    }
}
