//! GraphQL over the host's HTTP: POST `{"query", "variables"}`, return `data`, and keep the
//! `errors` array apart.
//!
//! GraphQL APIs answer 200 with an `errors` array for most failures, so a plain status check
//! misses them; this helper makes them a typed error that the provider can inspect (messages,
//! `extensions.code`) before falling back to the generic conversion into [`ProviderError`].

use serde::Deserialize;
use serde_json::Value;

use super::{
    DecodeError, HttpError, RequestBuilder, Response, body_snippet, classify_status, post,
};
use crate::types::ProviderError;

/// One entry of a GraphQL `errors` array.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GraphqlErrorEntry {
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Where in the result the error happened, if the server says.
    #[serde(default)]
    pub path: Option<Vec<Value>>,
    /// Vendor-specific details, often `{"code": "..."}`.
    #[serde(default)]
    pub extensions: Option<Value>,
}

impl GraphqlErrorEntry {
    /// `extensions.code`, if present.
    pub fn code(&self) -> Option<&str> {
        self.extensions.as_ref()?.get("code")?.as_str()
    }
}

/// Why a GraphQL call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphqlError {
    /// The host could not perform the request.
    #[error("GraphQL request failed: {0}")]
    Http(HttpError),
    /// An error status without a GraphQL `errors` array, classified by [`classify_status`].
    #[error("GraphQL request failed: {0}")]
    Status(ProviderError),
    /// The server answered with an `errors` array (and possibly partial `data`).
    #[error("GraphQL errors: {}", join_messages(.errors))]
    Errors {
        /// The `errors` array.
        errors: Vec<GraphqlErrorEntry>,
        /// Partial `data`, if the server sent any.
        data: Option<Value>,
    },
    /// The body is not a GraphQL response.
    #[error("{0}")]
    Decode(DecodeError),
}

fn join_messages(errors: &[GraphqlErrorEntry]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<GraphqlError> for ProviderError {
    /// Transport and status errors keep their classification; `UNAUTHENTICATED`/`FORBIDDEN`
    /// error codes become auth errors; other GraphQL errors are internal (map the vendor's
    /// codes yourself before falling back to this).
    fn from(error: GraphqlError) -> Self {
        match error {
            GraphqlError::Http(e) => e.into(),
            GraphqlError::Status(e) => e,
            GraphqlError::Decode(e) => e.into(),
            GraphqlError::Errors { ref errors, .. } => {
                let auth = errors
                    .iter()
                    .any(|e| matches!(e.code(), Some("UNAUTHENTICATED" | "FORBIDDEN")));
                if auth {
                    ProviderError::auth(error.to_string())
                } else {
                    ProviderError::internal(error.to_string())
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Vec<GraphqlErrorEntry>>,
}

/// POSTs `query` with `variables` to `url` and returns `data` (the host adds the provider's
/// credentials). For extra headers or a timeout use [`RequestBuilder::graphql`]:
/// `http::post(url).timeout(10_000).graphql(..)`.
pub fn graphql(url: &str, query: &str, variables: Value) -> Result<Value, GraphqlError> {
    post(url).graphql(query, variables)
}

impl RequestBuilder {
    /// Sends this request (usually a `post`) as a GraphQL query and returns `data`.
    pub fn graphql(self, query: &str, variables: Value) -> Result<Value, GraphqlError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let response = self.json(&body).send().map_err(GraphqlError::Http)?;
        interpret(&response)
    }
}

/// Separates `data` from `errors` in a GraphQL response.
pub(crate) fn interpret(response: &Response) -> Result<Value, GraphqlError> {
    // Statuses that mean the same whatever the body says.
    if matches!(response.status, 401 | 402 | 403 | 429 | 500..=599) {
        return Err(status_error(response));
    }
    let envelope: Envelope = match response.json() {
        Ok(envelope) => envelope,
        Err(e) if response.is_success() => return Err(GraphqlError::Decode(e)),
        Err(_) => return Err(status_error(response)),
    };
    match (envelope.errors, envelope.data) {
        (Some(errors), data) if !errors.is_empty() => Err(GraphqlError::Errors {
            errors,
            data: data.filter(|d| !d.is_null()),
        }),
        _ if !response.is_success() => Err(status_error(response)),
        (_, Some(data)) if !data.is_null() => Ok(data),
        _ => Err(GraphqlError::Decode(DecodeError::Json {
            status: response.status,
            reason: "neither `data` nor `errors`".into(),
            snippet: body_snippet(&response.body),
        })),
    }
}

fn status_error(response: &Response) -> GraphqlError {
    let message = body_snippet(&response.body);
    match classify_status(response.status, response.retry_after_ms(), &message) {
        Some(e) => GraphqlError::Status(e),
        None => GraphqlError::Status(ProviderError::internal(format!(
            "HTTP {}: {message}",
            response.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn returns_data() {
        let data = interpret(&response(200, r#"{"data": {"myself": {"id": "u1"}}}"#)).unwrap();
        assert_eq!(data["myself"]["id"], "u1");
    }

    #[test]
    fn separates_errors_with_partial_data() {
        let err = interpret(&response(
            200,
            r#"{"data": {"a": 1}, "errors": [{"message": "no pod", "extensions": {"code": "NOT_FOUND"}}]}"#,
        ))
        .unwrap_err();
        let GraphqlError::Errors { errors, data } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].message, "no pod");
        assert_eq!(errors[0].code(), Some("NOT_FOUND"));
        assert_eq!(data.as_ref().unwrap()["a"], 1);
        assert_eq!(
            ProviderError::from(err),
            ProviderError::internal("GraphQL errors: no pod")
        );
    }

    #[test]
    fn unauthenticated_code_is_an_auth_error() {
        let err = interpret(&response(
            400,
            r#"{"errors": [{"message": "bad key", "extensions": {"code": "UNAUTHENTICATED"}}]}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(ProviderError::from(err), ProviderError::Auth(m) if m.contains("bad key"))
        );
    }

    #[test]
    fn statuses_are_classified_when_there_are_no_graphql_errors() {
        assert!(matches!(
            interpret(&response(401, "{}")),
            Err(GraphqlError::Status(ProviderError::Auth(_)))
        ));
        assert!(matches!(
            interpret(&response(503, "down")),
            Err(GraphqlError::Status(ProviderError::Transient(_)))
        ));
        assert!(matches!(
            interpret(&response(404, "<html>")),
            Err(GraphqlError::Status(ProviderError::NotFound(_)))
        ));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(
            interpret(&response(200, "<html>")),
            Err(GraphqlError::Decode(_))
        ));
        assert!(matches!(
            interpret(&response(200, r#"{"data": null}"#)),
            Err(GraphqlError::Decode(_))
        ));
    }
}
