//! Tailscale's wire format: the `{"message": "..."}` error body, the form-encoded OAuth token
//! request, and validation of the create-key body into a typed value. Kept apart from state so the
//! format in `provider-apis.md` §5.5 can be checked against one file.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::config::MAX_KEY_EXPIRY;

/// An error answer of the Tailscale API: a status and `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `message` field.
    pub message: String,
    /// `Retry-After` seconds (429 only).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 for a bad client id/secret at the token endpoint.
    pub fn invalid_client() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid client credentials")
    }

    /// 401 for a missing, unknown or expired access token.
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "API token invalid")
    }

    /// 403 for a token whose scopes do not cover the endpoint.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "calling actor does not have enough permissions to perform this function",
        )
    }

    /// 404 `not found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    /// 429.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        Self {
            retry_after_secs,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        }
    }

    /// 500.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "message": self.message }))).into_response();
        if let Some(s) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs, in order. `None` when a
/// percent escape or the UTF-8 is broken.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

fn form_decode(s: &str) -> Option<String> {
    crate::auth::percent_decode(s)
}

/// A validated `POST /api/v2/tailnet/{tailnet}/keys` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyRequest {
    pub reusable: bool,
    pub ephemeral: bool,
    pub preauthorized: bool,
    pub tags: Vec<String>,
    /// Seconds; `None` when absent or 0 (the API's default of 90 days applies).
    pub expiry_seconds: Option<u64>,
    pub description: String,
}

/// The longest key description the API accepts.
pub const MAX_DESCRIPTION_CHARS: usize = 50;

fn flag(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(format!(
            "capabilities.devices.create.{k} must be a boolean"
        ))),
    }
}

/// Whether `t` is a syntactically valid ACL tag: `tag:` then letters, digits and dashes,
/// starting with a letter.
pub fn valid_tag(t: &str) -> bool {
    let Some(name) = t.strip_prefix("tag:") else {
        return false;
    };
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Formats tags the way the API's messages do (Go's `%v` of a string slice).
pub fn go_list(tags: &[String]) -> String {
    format!("[{}]", tags.join(" "))
}

impl CreateKeyRequest {
    /// Validates the body's shape and ranges. Whether the tags are permitted is checked against
    /// the caller and the ACL later.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let o = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(ApiError::bad_request("request body must be a JSON object")),
            Err(e) => return Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
        };
        let create = o
            .get("capabilities")
            .and_then(|c| c.get("devices"))
            .and_then(|d| d.get("create"))
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("capabilities.devices.create is required"))?;
        let tags = match create.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::bad_request(
                            "capabilities.devices.create.tags must be a list of strings",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "capabilities.devices.create.tags must be a list of strings",
                ));
            }
        };
        if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
            return Err(ApiError::bad_request(format!(
                "tag {bad:?} is invalid: tags look like \"tag:name\""
            )));
        }
        let expiry_seconds = match o.get("expirySeconds") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    ApiError::bad_request("expirySeconds must be a non-negative integer")
                })?;
                if n > MAX_KEY_EXPIRY.as_secs() {
                    return Err(ApiError::bad_request(format!(
                        "expirySeconds must be at most {} (90 days)",
                        MAX_KEY_EXPIRY.as_secs()
                    )));
                }
                (n > 0).then_some(n)
            }
        };
        let description = match o.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::bad_request("description must be a string")),
        };
        // The API documents the description as at most 50 alphanumeric characters, hyphens and
        // spaces (from the API reference as remembered; not in the stored research sources).
        if description.chars().count() > MAX_DESCRIPTION_CHARS
            || !description
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
        {
            return Err(ApiError::bad_request(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} alphanumeric characters, hyphens and spaces"
            )));
        }
        Ok(Self {
            reusable: flag(create, "reusable")?,
            ephemeral: flag(create, "ephemeral")?,
            preauthorized: flag(create, "preauthorized")?,
            tags,
            expiry_seconds,
            description,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f =
            parse_form(b"client_id=a%2Bb&client_secret=x+y&grant_type=client_credentials").unwrap();
        assert_eq!(
            f,
            vec![
                ("client_id".into(), "a+b".into()),
                ("client_secret".into(), "x y".into()),
                ("grant_type".into(), "client_credentials".into()),
            ]
        );
        assert!(parse_form(b"a=%zz").is_none());
        assert_eq!(parse_form(b"").unwrap(), vec![]);
    }

    #[test]
    fn create_key_validation() {
        let ok = br#"{"capabilities":{"devices":{"create":{"reusable":false,"ephemeral":true,"preauthorized":true,"tags":["tag:gpu-worker"]}}},"expirySeconds":600,"description":"tgp node"}"#;
        let r = CreateKeyRequest::parse(ok).unwrap();
        assert!(r.ephemeral && r.preauthorized && !r.reusable);
        assert_eq!(r.tags, vec!["tag:gpu-worker".to_owned()]);
        assert_eq!(r.expiry_seconds, Some(600));
        let msg = |b: &[u8]| CreateKeyRequest::parse(b).unwrap_err().message;
        assert!(msg(b"{}").contains("capabilities.devices.create"));
        assert!(msg(b"[1]").contains("JSON object"));
        assert!(msg(b"{").contains("invalid JSON"));
        assert!(
            msg(br#"{"capabilities":{"devices":{"create":{"tags":["gpu"]}}}}"#).contains("\"gpu\"")
        );
        assert!(
            msg(br#"{"capabilities":{"devices":{"create":{"reusable":"yes"}}}}"#)
                .contains("reusable")
        );
        assert!(
            msg(br#"{"capabilities":{"devices":{"create":{}}},"expirySeconds":-1}"#)
                .contains("expirySeconds")
        );
        assert!(
            msg(br#"{"capabilities":{"devices":{"create":{}}},"expirySeconds":99999999}"#)
                .contains("90 days")
        );
        let long = format!(
            r#"{{"capabilities":{{"devices":{{"create":{{}}}}}},"description":"{}"}}"#,
            "x".repeat(51)
        );
        assert!(msg(long.as_bytes()).contains("at most 50"));
        assert!(
            msg(br#"{"capabilities":{"devices":{"create":{}}},"description":"node/1"}"#)
                .contains("alphanumeric")
        );
        assert!(valid_tag("tag:a-1") && !valid_tag("tag:") && !valid_tag("tag:-a"));
        assert_eq!(go_list(&["tag:a".into(), "tag:b".into()]), "[tag:a tag:b]");
    }
}
