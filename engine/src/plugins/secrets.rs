//! Secret placeholders: substitution into outgoing requests and redaction of everything coming
//! back, so a plugin never holds a secret value and cannot be tricked into leaking one (an echo
//! server reflecting the `Authorization` header gets the placeholder back, not the key).

use std::collections::BTreeMap;

use super::grants::SecretValue;

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// The placeholder a plugin writes for secret `name`.
pub fn placeholder(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// A placeholder naming a secret that was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown secret `{0}` (not granted to this provider)")]
pub struct UnknownSecret(pub String);

/// Replaces every `{{secret:NAME}}` in `text` with the granted value.
pub fn substitute(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<String, UnknownSecret> {
    substitute_with(text, secrets, |v| v.to_string())
}

/// Like [`substitute`], for a URL: each value is percent-encoded, so a key holding `&`, `=` or
/// `#` cannot change the query's structure.
pub fn substitute_url(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<String, UnknownSecret> {
    substitute_with(text, secrets, |v| {
        url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
    })
}

fn substitute_with(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
    encode: impl Fn(&str) -> String,
) -> Result<String, UnknownSecret> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = secrets
            .get(name)
            .ok_or_else(|| UnknownSecret(name.to_owned()))?;
        out.push_str(&encode(value.expose()));
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces every occurrence of a secret value in `text` by its placeholder.
pub fn redact_str(text: &str, secrets: &BTreeMap<String, SecretValue>) -> String {
    let mut out = text.to_owned();
    for (name, value) in secrets {
        let v = value.expose();
        if !v.is_empty() && out.contains(v) {
            out = out.replace(v, &placeholder(name));
        }
    }
    out
}

/// Replaces every occurrence of a secret value in `bytes` by its placeholder.
pub fn redact_bytes(bytes: Vec<u8>, secrets: &BTreeMap<String, SecretValue>) -> Vec<u8> {
    let mut out = bytes;
    for (name, value) in secrets {
        let needle = value.expose().as_bytes();
        if needle.is_empty() || out.len() < needle.len() {
            continue;
        }
        if !out.windows(needle.len()).any(|w| w == needle) {
            continue;
        }
        let replacement = placeholder(name);
        let mut replaced = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(needle) {
                replaced.extend_from_slice(replacement.as_bytes());
                i += needle.len();
            } else {
                replaced.push(out[i]);
                i += 1;
            }
        }
        out = replaced;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, SecretValue> {
        BTreeMap::from([("api_key".to_owned(), SecretValue::new("s3cr3t"))])
    }

    #[test]
    fn url_substitution_encodes_the_value() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), SecretValue::from("a&b=c"));
        assert_eq!(
            substitute_url("https://h/p?key={{secret:k}}&x=1", &m).unwrap(),
            "https://h/p?key=a%26b%3Dc&x=1"
        );
    }

    #[test]
    fn substitutes_and_redacts() {
        let s = secrets();
        assert_eq!(
            substitute("Bearer {{secret:api_key}}", &s).as_deref(),
            Ok("Bearer s3cr3t")
        );
        assert_eq!(
            substitute("{{secret:nope}}", &s),
            Err(UnknownSecret("nope".into()))
        );
        assert_eq!(
            substitute("plain {{secret:", &s).as_deref(),
            Ok("plain {{secret:")
        );
        assert_eq!(
            redact_str("x s3cr3t y s3cr3t", &s),
            "x {{secret:api_key}} y {{secret:api_key}}"
        );
        assert_eq!(
            redact_bytes(b"as3cr3tb".to_vec(), &s),
            b"a{{secret:api_key}}b".to_vec()
        );
    }
}
