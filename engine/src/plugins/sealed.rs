//! Sealed bootstrap documents (contract 0.3): the host fills the user-data into a launch request
//! body; the plugin only learns its size.
//!
//! The bootstrap document carries the cluster's join secrets (Talos bootstrap and trustd tokens,
//! the cluster secret, CA material, the Tailscale auth key), so it must never enter the sandbox.
//! A plugin writes a placeholder (`{{user-data}}`, `{{user-data:json}}`, `{{user-data:base64}}`)
//! in the body of a request it makes during `launch`; the host replaces it, only for that call
//! and only in requests bound for a granted host (the allow-list is checked before anything is
//! filled in). A placeholder in a URL or a header, an unknown encoding, or a placeholder outside
//! a launch with a document is refused. Everything handed back to the plugin during the call is
//! scrubbed of the document and of each of its secrets.

use std::fmt;

use base64::Engine as _;

use super::bindings::http_api::HttpError;
use super::bindings::{BootstrapDelivery, SealedDocument};
use super::grants::SecretValue;

/// Every placeholder starts with this.
const PREFIX: &[u8] = b"{{user-data";
/// The percent-encoded form of [`PREFIX`] (`{` is `%7B`), as it appears in a URL.
const PREFIX_ENCODED: &str = "%7buser-data";

/// A bootstrap document held by the host for one launch.
#[derive(Clone)]
pub struct UserData {
    content: SecretValue,
    delivery: BootstrapDelivery,
    /// Values inside the document that must be redacted on their own too (tokens, keys).
    secrets: Vec<SecretValue>,
}

impl UserData {
    /// A document in `delivery`'s format.
    pub fn new(content: impl Into<String>, delivery: BootstrapDelivery) -> Self {
        Self {
            content: SecretValue::new(content.into()),
            delivery,
            secrets: Vec::new(),
        }
    }

    /// Adds values inside the document (join tokens, keys) that are redacted on their own.
    pub fn with_secrets(mut self, values: impl IntoIterator<Item = SecretValue>) -> Self {
        self.secrets.extend(values);
        self
    }

    /// What the plugin learns: the size and the format.
    pub fn sealed(&self) -> SealedDocument {
        SealedDocument {
            size: self.content.expose().len() as u64,
            delivery: self.delivery,
        }
    }

    /// The document in each form the host inserts it (raw, JSON-escaped, base64) and every
    /// secret in it, for redaction: an echo of the launch body must not hand any of them back.
    pub fn redaction_values(&self) -> Vec<SecretValue> {
        let content = self.content.expose();
        let json = serde_json::to_string(content)
            .map(|q| q[1..q.len() - 1].to_owned())
            .unwrap_or_default();
        let base64 = base64::engine::general_purpose::STANDARD.encode(content);
        [
            self.content.clone(),
            SecretValue::new(json),
            SecretValue::new(base64),
        ]
        .into_iter()
        .chain(self.secrets.iter().cloned())
        .collect()
    }
}

impl fmt::Debug for UserData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserData")
            .field("size", &self.content.expose().len())
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Whether `bytes` hold a user-data placeholder.
fn has_placeholder(bytes: &[u8]) -> bool {
    bytes.windows(PREFIX.len()).any(|w| w == PREFIX)
}

/// Refuses a placeholder in a URL or a header value: the document goes in bodies only.
pub fn refuse_outside_body(url: &str, header_values: &[&str]) -> Result<(), HttpError> {
    if has_placeholder(url.as_bytes()) || url.to_ascii_lowercase().contains(PREFIX_ENCODED) {
        return Err(HttpError::Invalid(
            "a user-data placeholder may appear only in a request body".into(),
        ));
    }
    if header_values.iter().any(|v| has_placeholder(v.as_bytes())) {
        return Err(HttpError::Invalid(
            "a user-data placeholder may appear only in a request body".into(),
        ));
    }
    Ok(())
}

/// The body with its placeholders replaced by `doc` (borrowed when it holds none). Without a
/// document (not a launch, or a launch without user-data) a placeholder is refused.
pub fn fill(body: Vec<u8>, doc: Option<&UserData>) -> Result<Vec<u8>, HttpError> {
    if !has_placeholder(&body) {
        return Ok(body);
    }
    let Some(doc) = doc else {
        return Err(HttpError::Invalid(
            "user-data placeholders are filled only in `launch`, when the engine sent a document"
                .into(),
        ));
    };
    let content = doc.content.expose();
    let mut out = Vec::with_capacity(body.len() + content.len() * 2);
    let mut rest = body.as_slice();
    while let Some(at) = rest.windows(PREFIX.len()).position(|w| w == PREFIX) {
        out.extend_from_slice(&rest[..at]);
        let tail = &rest[at..];
        let Some(end) = tail.windows(2).position(|w| w == b"}}") else {
            return Err(HttpError::Invalid(
                "unterminated user-data placeholder".into(),
            ));
        };
        let placeholder = &tail[..end + 2];
        match placeholder {
            b"{{user-data}}" => out.extend_from_slice(content.as_bytes()),
            b"{{user-data:json}}" => {
                let quoted = serde_json::to_string(content)
                    .map_err(|e| HttpError::Invalid(format!("cannot encode user-data: {e}")))?;
                out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
            }
            b"{{user-data:base64}}" => out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(content)
                    .as_bytes(),
            ),
            other => {
                let shown: String = String::from_utf8_lossy(other).chars().take(40).collect();
                return Err(HttpError::Invalid(format!(
                    "unknown user-data placeholder `{}`; use {{{{user-data}}}}, \
                     {{{{user-data:json}}}} or {{{{user-data:base64}}}}",
                    shown.escape_default()
                )));
            }
        }
        rest = &tail[end + 2..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> UserData {
        UserData::new("a \"quoted\"\nline", BootstrapDelivery::CloudInit)
            .with_secrets([SecretValue::new("tok")])
    }

    #[test]
    fn fills_each_encoding() {
        let body =
            br#"{"raw":"{{user-data}}","json":"{{user-data:json}}","b64":"{{user-data:base64}}"}"#;
        let filled = String::from_utf8(fill(body.to_vec(), Some(&doc())).unwrap()).unwrap();
        assert_eq!(
            filled,
            format!(
                r#"{{"raw":"a "quoted"
line","json":"a \"quoted\"\nline","b64":"{}"}}"#,
                base64::engine::general_purpose::STANDARD.encode("a \"quoted\"\nline")
            )
        );
        let parsed: serde_json::Value = serde_json::from_str(
            &String::from_utf8(
                fill(br#"{"u":"{{user-data:json}}"}"#.to_vec(), Some(&doc())).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            parsed["u"], "a \"quoted\"\nline",
            "the JSON form round-trips"
        );
    }

    #[test]
    fn refuses_what_it_cannot_fill() {
        assert!(matches!(
            fill(b"{{user-data}}".to_vec(), None),
            Err(HttpError::Invalid(m)) if m.contains("launch")
        ));
        assert!(matches!(
            fill(b"{{user-data:hex}}".to_vec(), Some(&doc())),
            Err(HttpError::Invalid(m)) if m.contains("unknown")
        ));
        assert!(matches!(
            fill(b"{{user-data".to_vec(), Some(&doc())),
            Err(HttpError::Invalid(_))
        ));
        assert_eq!(
            fill(b"no placeholder".to_vec(), None).unwrap(),
            b"no placeholder"
        );
        assert!(refuse_outside_body("https://h/p?x={{user-data}}", &[]).is_err());
        assert!(refuse_outside_body("https://h/p?x=%7B%7Buser-data%7D%7D", &[]).is_err());
        assert!(refuse_outside_body("https://h/p", &["{{user-data:json}}"]).is_err());
        assert!(refuse_outside_body("https://h/p", &["ok"]).is_ok());
    }

    #[test]
    fn the_plugin_learns_only_size_and_format() {
        let d = doc();
        assert_eq!(
            d.sealed(),
            SealedDocument {
                size: 15,
                delivery: BootstrapDelivery::CloudInit
            }
        );
        assert!(!format!("{d:?}").contains("quoted"));
        let values: Vec<String> = d
            .redaction_values()
            .iter()
            .map(|v| v.expose().to_owned())
            .collect();
        assert_eq!(
            values,
            [
                "a \"quoted\"\nline".to_string(),
                "a \\\"quoted\\\"\\nline".to_string(),
                base64::engine::general_purpose::STANDARD.encode("a \"quoted\"\nline"),
                "tok".to_string()
            ]
        );
    }
}
