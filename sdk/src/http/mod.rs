//! HTTP through the host, with a small request builder.
//!
//! A plugin has no sockets: the host performs each request (only to hosts on the provider's
//! allow-list) and substitutes secret placeholders. This module makes that read like an HTTP
//! client:
//!
//! ```no_run
//! # use tgp_provider_sdk::{http, ProviderError};
//! # #[derive(serde::Deserialize)] struct Offers {}
//! # fn f() -> Result<(), ProviderError> {
//! let offers: Offers = http::get("https://api.example.com/v1/offers")
//!     .bearer_secret("api_key")
//!     .query("gpu_type", "H100-SXM")
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```
//!
//! ## Secrets
//! A plugin never holds a credential. It writes the placeholder `{{secret:NAME}}` (see
//! [`secret`]) where the credential goes, in a header value or in the URL, and the host replaces
//! it with the secret's value, only for requests to the provider's allowed hosts. Helpers:
//! [`RequestBuilder::bearer_secret`] (`Authorization: Bearer {{secret:NAME}}`),
//! [`RequestBuilder::header`] with [`secret`] for other header schemes, and
//! [`RequestBuilder::query_secret`] for APIs that take the key in the query string. Query values
//! are percent-encoded, which would hide a placeholder from the host, so `query_secret` writes
//! the placeholder verbatim (braces and all) instead; the host substitutes the value in place.
//! A placeholder in a body is *not* substituted.

mod graphql;
mod status;
mod url;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::__bindings::tgp::provider::http::HttpError;
pub use graphql::{GraphqlError, GraphqlErrorEntry, graphql};
pub use status::{body_snippet, classify_status, error_for_status, parse_retry_after};
pub use url::encode_component;

use crate::types::ProviderError;

/// The placeholder the host replaces with the secret `name`: `{{secret:NAME}}`.
pub fn secret(name: &str) -> String {
    let mut placeholder = String::with_capacity(name.len() + 11);
    push_secret(&mut placeholder, name);
    placeholder
}

/// Appends the placeholder of secret `name` to `out`.
fn push_secret(out: &mut String, name: &str) {
    out.push_str("{{secret:");
    out.push_str(name);
    out.push_str("}}");
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A request as handed to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    pub method: String,
    /// Full URL, query string included.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Per-request timeout; the host caps it.
    pub timeout_ms: Option<u32>,
}

/// Builds a [`Request`]; start with [`get`], [`post`], [`put`], [`patch`] or [`delete`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until `.send()`"]
pub struct RequestBuilder {
    method: &'static str,
    url: String,
    /// Encoded `key=value` pairs joined by `&`, appended to `url` by `build`.
    query: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
    /// The first error met while building, reported by `build`/`send`.
    error: Option<HttpError>,
}

/// A `GET` request to `url`.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new("GET", url)
}
/// A `POST` request to `url`.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new("POST", url)
}
/// A `PUT` request to `url`.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new("PUT", url)
}
/// A `PATCH` request to `url`.
pub fn patch(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new("PATCH", url)
}
/// A `DELETE` request to `url`.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new("DELETE", url)
}

impl RequestBuilder {
    fn new(method: &'static str, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            query: String::new(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
            error: None,
        }
    }

    fn fail(&mut self, error: HttpError) {
        self.error.get_or_insert(error);
    }

    /// Adds a header. The value may contain a [`secret`] placeholder.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer {{secret:NAME}}`.
    pub fn bearer_secret(mut self, secret_name: &str) -> Self {
        if !valid_secret_name(secret_name) {
            self.fail(HttpError::Invalid(format!(
                "invalid secret name `{secret_name}`"
            )));
            return self;
        }
        let mut value = String::with_capacity(20 + secret_name.len());
        value.push_str("Bearer ");
        push_secret(&mut value, secret_name);
        self.header("Authorization", value)
    }

    /// Starts the next `key=` of the query string.
    fn query_key(&mut self, key: &str) {
        if !self.query.is_empty() {
            self.query.push('&');
        }
        url::encode_into(&mut self.query, key);
        self.query.push('=');
    }

    /// Adds a query parameter; key and value are percent-encoded.
    pub fn query(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.query_key(key);
        url::encode_into(&mut self.query, value.as_ref());
        self
    }

    /// Adds the query parameter `key={{secret:NAME}}`, placeholder unencoded so that the host
    /// can substitute it (see the module docs).
    pub fn query_secret(mut self, key: &str, secret_name: &str) -> Self {
        if !valid_secret_name(secret_name) {
            self.fail(HttpError::Invalid(format!(
                "invalid secret name `{secret_name}`"
            )));
            return self;
        }
        self.query_key(key);
        push_secret(&mut self.query, secret_name);
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.header("Content-Type", "application/json")
            }
            Err(e) => {
                self.fail(HttpError::Invalid(format!(
                    "cannot encode the JSON body: {e}"
                )));
                self
            }
        }
    }

    /// Sets a raw body (set `Content-Type` yourself).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Sets the request timeout in milliseconds (the host caps it).
    pub fn timeout(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The request as it will be handed to the host (with `Accept: application/json` unless an
    /// `Accept` header was set), or the first error met while building.
    pub fn build(self) -> Result<Request, HttpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut headers = self.headers;
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
        {
            headers.push(("Accept".into(), "application/json".into()));
        }
        Ok(Request {
            method: self.method.to_string(),
            url: if self.query.is_empty() {
                self.url
            } else {
                url::append_query(&self.url, &self.query)
            },
            headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        })
    }

    /// Sends the request through the host. Any status is `Ok`; see
    /// [`Response::error_for_status`]. (The host logs each request at debug level, with the
    /// provider's name, so the plugin does not spend a log line on it.)
    pub fn send(self) -> Result<Response, HttpError> {
        crate::host::send(self.build()?)
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values as received, except the framing and hop-by-hop headers
    /// (`content-length`, `transfer-encoding`, `connection`, `te`, `trailer`, `upgrade`): the
    /// host hands over the whole body, which is the body's length.
    pub headers: Vec<(String, String)>,
    /// Body bytes (the host caps their size).
    pub body: Vec<u8>,
}

/// A response body that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not UTF-8.
    #[error("HTTP {status}: the body is not UTF-8")]
    NotUtf8 {
        /// The response's status.
        status: u16,
    },
    /// The body is not the expected JSON.
    #[error("HTTP {status}: unexpected body ({reason}): {snippet}")]
    Json {
        /// The response's status.
        status: u16,
        /// serde_json's explanation.
        reason: String,
        /// The start of the body.
        snippet: String,
    },
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in milliseconds, if present and given in seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after").and_then(parse_retry_after)
    }

    /// The body as text.
    pub fn text(&self) -> Result<&str, DecodeError> {
        std::str::from_utf8(&self.body).map_err(|_| DecodeError::NotUtf8 {
            status: self.status,
        })
    }

    /// The body decoded as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let fail = |reason: String| DecodeError::Json {
            status: self.status,
            reason,
            snippet: body_snippet(&self.body),
        };
        // JSON is UTF-8: checking the whole body once spares serde_json a check of every string.
        let text = std::str::from_utf8(&self.body)
            .map_err(|e| fail(format!("the body is not UTF-8: {e}")))?;
        serde_json::from_str(text).map_err(|e| fail(e.to_string()))
    }

    /// `Err` with the fallback classification of an error status ([`classify_status`]),
    /// `Ok(self)` otherwise.
    pub fn error_for_status(self) -> Result<Self, ProviderError> {
        error_for_status(self)
    }
}

impl From<HttpError> for ProviderError {
    /// Timeouts and connection failures are worth retrying; the rest is a plugin or setup bug.
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Timeout => ProviderError::transient("the request timed out"),
            HttpError::Connect(m) => ProviderError::transient(format!("connection failed: {m}")),
            HttpError::Denied(m) => {
                ProviderError::internal(format!("the host refused the request: {m}"))
            }
            HttpError::TooLarge(n) => ProviderError::internal(format!(
                "the response body exceeded the host's cap ({n} bytes)"
            )),
            HttpError::Invalid(m) => ProviderError::internal(format!("invalid request: {m}")),
        }
    }
}

impl From<DecodeError> for ProviderError {
    /// An undecodable answer is an unexpected answer from the provider's API.
    fn from(error: DecodeError) -> Self {
        ProviderError::internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_placeholder_has_the_contract_shape() {
        assert_eq!(secret("api_key"), "{{secret:api_key}}");
    }

    #[test]
    fn builds_get_with_query_auth_and_timeout() {
        let req = get("http://127.0.0.1:1/v1/instances")
            .query("tag", "tgp.io/cluster=c 1")
            .bearer_secret("api_key")
            .timeout(5000)
            .build()
            .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(
            req.url,
            "http://127.0.0.1:1/v1/instances?tag=tgp.io%2Fcluster%3Dc%201"
        );
        assert_eq!(
            req.headers,
            vec![
                (
                    "Authorization".to_string(),
                    "Bearer {{secret:api_key}}".to_string()
                ),
                ("Accept".to_string(), "application/json".to_string()),
            ]
        );
        assert_eq!(req.timeout_ms, Some(5000));
        assert_eq!(req.body, None);
    }

    #[test]
    fn query_secret_keeps_the_placeholder_verbatim() {
        let req = post("https://api.example.com/graphql")
            .query_secret("api_key", "runpod")
            .build()
            .unwrap();
        assert_eq!(
            req.url,
            "https://api.example.com/graphql?api_key={{secret:runpod}}"
        );
        let bad = get("https://x").query_secret("k", "a}}b").build();
        assert!(matches!(bad, Err(HttpError::Invalid(_))));
        let bad = get("https://x").bearer_secret("").build();
        assert!(matches!(bad, Err(HttpError::Invalid(_))));
    }

    #[test]
    fn json_body_sets_content_type() {
        let req = post("http://h/v1")
            .json(&serde_json::json!({"a": 1}))
            .header("Accept", "*/*")
            .build()
            .unwrap();
        assert_eq!(req.body.as_deref(), Some(br#"{"a":1}"#.as_slice()));
        assert!(
            req.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert_eq!(
            req.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("accept"))
                .count(),
            1
        );
    }

    #[test]
    fn json_encoding_failures_surface_at_build() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), 3); // tuple keys cannot be JSON object keys
        assert!(matches!(
            post("http://h").json(&map).build(),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn sending_natively_is_denied_not_a_panic() {
        let err = get("http://h/v1").send().unwrap_err();
        assert!(matches!(err, HttpError::Denied(_)));
        assert!(matches!(
            ProviderError::from(err),
            ProviderError::Internal(_)
        ));
    }

    #[test]
    fn responses_decode_and_expose_headers() {
        let resp = Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"n": 2}"#.to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-missing"), None);
        assert_eq!(resp.text(), Ok(r#"{"n": 2}"#));
        let v: serde_json::Value = resp.json().unwrap();
        assert_eq!(v["n"], 2);
        let bad = resp.json::<Vec<u8>>().unwrap_err();
        assert!(matches!(&bad, DecodeError::Json { status: 200, .. }));
        assert!(matches!(
            ProviderError::from(bad),
            ProviderError::Internal(_)
        ));
        let binary = Response {
            status: 200,
            headers: vec![],
            body: vec![0xff],
        };
        assert_eq!(binary.text(), Err(DecodeError::NotUtf8 { status: 200 }));
        assert!(matches!(
            binary.json::<serde_json::Value>(),
            Err(DecodeError::Json { status: 200, reason, .. }) if reason.contains("UTF-8")
        ));
    }

    #[test]
    fn http_errors_map_to_provider_errors() {
        assert!(matches!(
            ProviderError::from(HttpError::Timeout),
            ProviderError::Transient(_)
        ));
        assert!(
            matches!(ProviderError::from(HttpError::Connect("refused".into())), ProviderError::Transient(m) if m.contains("refused"))
        );
        assert!(
            matches!(ProviderError::from(HttpError::Denied("host".into())), ProviderError::Internal(m) if m.contains("host"))
        );
        assert!(
            matches!(ProviderError::from(HttpError::TooLarge(9)), ProviderError::Internal(m) if m.contains('9'))
        );
    }
}
