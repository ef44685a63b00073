//! Ownership tags on Lambda instances: Lambda has tags (OpenAPI 1.8.3), but restricts their keys
//! to `^[a-z][a-z0-9-:]+$` (at most 55 characters) and values to 128 characters, while the
//! engine's keys look like `tgp.io/cluster`.
//!
//! Keys are therefore escaped reversibly: `[a-z0-9-]` stay as they are, `.` becomes `:d`, `/`
//! becomes `:s`, `:` becomes `:c`, and any other byte becomes `:x` and two lower-case hex digits
//! (`tgp.io/cluster` -> `tgp:dio:scluster`). A key whose escaped form does not start with a letter
//! or is shorter than two characters gets the prefix `k:0`. Values are sent unchanged. A tag that
//! cannot be carried (escaped key over 55 or value over 128 characters) refuses the launch rather
//! than dropping ownership. Tags whose keys are not in this escaped form are not ours and are
//! ignored when reading.

use tgp_provider_sdk::{ProviderError, Tag};

use crate::api::ApiTag;

/// Longest tag key Lambda accepts.
pub const MAX_KEY: usize = 55;
/// Longest tag value Lambda accepts.
pub const MAX_VALUE: usize = 128;
const PREFIX: &str = "k:0";

/// The Lambda form of a tag key.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            '.' => out.push_str(":d"),
            '/' => out.push_str(":s"),
            ':' => out.push_str(":c"),
            other => {
                let mut buf = [0u8; 4];
                for b in other.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!(":x{b:02x}"));
                }
            }
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) || out.len() < 2 {
        out.insert_str(0, PREFIX);
    }
    out
}

/// The original key of an escaped Lambda tag key; `None` when it is not in the escaped form.
pub fn decode_key(encoded: &str) -> Option<String> {
    let body = encoded.strip_prefix(PREFIX).unwrap_or(encoded);
    let mut bytes = Vec::with_capacity(body.len());
    let mut it = body.bytes();
    while let Some(b) = it.next() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => bytes.push(b),
            b':' => match it.next()? {
                b'd' => bytes.push(b'.'),
                b's' => bytes.push(b'/'),
                b'c' => bytes.push(b':'),
                b'x' => {
                    let hex = [it.next()?, it.next()?];
                    let hex = std::str::from_utf8(&hex).ok()?;
                    bytes.push(u8::from_str_radix(hex, 16).ok()?);
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// The launch body's tags, or `invalid-request` on `tags` when one cannot be carried.
pub fn encode(tags: &[Tag]) -> Result<Vec<ApiTag>, ProviderError> {
    tags.iter()
        .map(|t| {
            let key = encode_key(&t.key);
            if key.len() > MAX_KEY {
                return Err(ProviderError::invalid(
                    "tags",
                    format!("tag key `{}` is too long for Lambda once escaped ({} > {MAX_KEY} characters)", t.key, key.len()),
                ));
            }
            if t.value.chars().count() > MAX_VALUE {
                return Err(ProviderError::invalid(
                    "tags",
                    format!("the value of tag `{}` is longer than Lambda's {MAX_VALUE} characters", t.key),
                ));
            }
            Ok(ApiTag { key, value: t.value.clone() })
        })
        .collect()
}

/// The engine's tags among an instance's Lambda tags.
pub fn decode(tags: &[ApiTag]) -> Vec<Tag> {
    tags.iter()
        .filter_map(|t| Some(Tag::new(decode_key(&t.key)?, t.value.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda_key_is_valid(k: &str) -> bool {
        let b = k.as_bytes();
        b.len() >= 2
            && b.len() <= MAX_KEY
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b':')
    }

    #[test]
    fn engine_keys_escape_readably_and_validly() {
        assert_eq!(encode_key("tgp.io/cluster"), "tgp:dio:scluster");
        assert_eq!(encode_key("tgp.io/request-uid"), "tgp:dio:srequest-uid");
        for key in [
            "tgp.io/cluster",
            "tgp.io/request-uid",
            "tgp.io/request",
            "a",
            "9lives",
            "Owner",
            ".x",
            "é/ü",
            "a:b",
            "x",
        ] {
            let encoded = encode_key(key);
            assert!(lambda_key_is_valid(&encoded), "{key} -> {encoded}");
            assert_eq!(decode_key(&encoded).as_deref(), Some(key), "{encoded}");
        }
    }

    #[test]
    fn foreign_keys_are_not_ours() {
        for foreign in ["env:prod", "Name", "a:x4", "a:xzz", "a b"] {
            assert_eq!(decode_key(foreign), None, "{foreign}");
        }
        assert_eq!(decode_key("team"), Some("team".into()));
    }

    #[test]
    fn tags_round_trip_or_refuse() {
        let tags = vec![
            Tag::new("tgp.io/cluster", "c1"),
            Tag::new("tgp.io/request", "ns/name"),
        ];
        let api = encode(&tags).unwrap();
        assert_eq!(api[0].key, "tgp:dio:scluster");
        assert_eq!(decode(&api), tags);
        let long_key = Tag::new("k".repeat(56), "v");
        assert!(
            matches!(encode(&[long_key]), Err(ProviderError::InvalidRequest(f)) if f.field == "tags")
        );
        let long_value = Tag::new("k", "v".repeat(129));
        assert!(
            matches!(encode(&[long_value]), Err(ProviderError::InvalidRequest(f)) if f.field == "tags")
        );
    }
}
