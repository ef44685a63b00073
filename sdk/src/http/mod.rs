//! HTTP through the host, with a small request builder.
//!
//! A plugin has no sockets: the host performs each request (only to hosts on the provider's
//! allow-list), applies the provider's credentials itself and owns the request's framing. This
//! module makes that read like an HTTP client:
//!
//! ```no_run
//! # use tgp_provider_sdk::{http, ProviderError};
//! # #[derive(serde::Deserialize)] struct Offers {}
//! # fn f() -> Result<(), ProviderError> {
//! let offers: Offers = http::get("https://api.example.com/v1/offers")
//!     .query("gpu_type", "H100-SXM")
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```
//!
//! ## Credentials
//! A plugin never holds or places a credential. It declares how its vendor authenticates
//! ([`crate::ProviderInfo::auth`] with an [`crate::AuthScheme`]: bearer, HTTP Basic, a key in a
//! header or query parameter, OAuth2 client credentials) and the host adds the credentials to
//! every request bound for the provider's hosts. A request that sets the header the credentials
//! go in, or a framing header (`host`, `content-length`, `transfer-encoding`, `connection`,
//! `accept-encoding`, ...), is refused with [`HttpError::Invalid`]. When the host has no usable
//! credentials it answers [`HttpError::Unauthenticated`], which becomes
//! [`ProviderError::Auth`].
//!
//! ## Bootstrap documents
//! During `launch`, the placeholders of [`crate::user_data`] in a request body are replaced by
//! the host with the sealed bootstrap document; the plugin never sees its content.

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

    /// Adds a header. Framing headers and the header the credentials go in are the host's: a
    /// request setting one is refused with [`HttpError::Invalid`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
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
    /// Timeouts and connection failures are worth retrying; missing credentials are `auth`; the
    /// rest is a plugin or setup bug.
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
            HttpError::Unauthenticated(m) => {
                ProviderError::auth(format!("no usable credentials: {m}"))
            }
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
    fn builds_get_with_query_and_timeout() {
        let req = get("http://127.0.0.1:1/v1/instances")
            .query("tag", "tgp.io/cluster=c 1")
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
            vec![("Accept".to_string(), "application/json".to_string())]
        );
        assert_eq!(req.timeout_ms, Some(5000));
        assert_eq!(req.body, None);
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
        assert!(
            matches!(ProviderError::from(HttpError::Unauthenticated("secret api_key is not configured".into())), ProviderError::Auth(m) if m.contains("api_key")),
            "missing credentials are an auth error, as the contract says"
        );
    }
}
