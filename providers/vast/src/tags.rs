//! How ownership tags ride on a Vast instance, which has a free-text `label` (at most 256
//! characters) and no tags.
//!
//! The label is `NAME|KEY=VALUE&KEY=VALUE`, each part percent-encoded (RFC 3986 unreserved
//! characters stay readable), e.g. `tgp-3f25-1|tgp.io%2Fcluster=c1&tgp.io%2Frequest-uid=...`.
//! Keeping everything in the label means `GET /instances/` alone tells which instances are ours.
//! A label that would exceed 256 characters refuses the launch (`invalid-request` on `tags`)
//! rather than dropping ownership; labels not in this form carry no tags and are never ours.

use tgp_provider_sdk::http::encode_component;
use tgp_provider_sdk::{ProviderError, Tag};

/// Longest label Vast accepts.
pub const MAX_LABEL: usize = 256;

/// The label for an instance `name` carrying `tags`.
pub fn encode_label(name: &str, tags: &[Tag]) -> Result<String, ProviderError> {
    let pairs: Vec<String> = tags
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                encode_component(&t.key),
                encode_component(&t.value)
            )
        })
        .collect();
    let label = format!("{}|{}", encode_component(name), pairs.join("&"));
    if label.chars().count() > MAX_LABEL {
        return Err(ProviderError::invalid(
            "tags",
            format!(
                "the instance name and tags need {} characters in a Vast label (at most {MAX_LABEL})",
                label.chars().count()
            ),
        ));
    }
    Ok(label)
}

/// The instance name and tags of a label; `None` when the label is not in our form.
pub fn decode_label(label: &str) -> Option<(String, Vec<Tag>)> {
    let (name, pairs) = label.split_once('|')?;
    let mut tags = Vec::new();
    for pair in pairs.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        tags.push(Tag::new(percent_decode(key)?, percent_decode(value)?));
    }
    Some((percent_decode(name)?, tags))
}

/// Percent-decoding; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        let tags = vec![
            Tag::new("tgp.io/cluster", "c1"),
            Tag::new("tgp.io/request", "ns/a=b&c|d é"),
        ];
        let label = encode_label("tgp-3f25-1", &tags).unwrap();
        assert!(
            label.starts_with("tgp-3f25-1|tgp.io%2Fcluster=c1&"),
            "{label}"
        );
        assert_eq!(decode_label(&label), Some(("tgp-3f25-1".to_string(), tags)));
        assert_eq!(
            decode_label(&encode_label("n", &[]).unwrap()),
            Some(("n".into(), vec![]))
        );
    }

    #[test]
    fn foreign_labels_are_not_ours() {
        for foreign in ["my box", "a|b", "a|k=%zz", "a|k=%e9"] {
            assert_eq!(decode_label(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn overlong_labels_refuse() {
        let err = encode_label("n", &[Tag::new("k", "v".repeat(300))]).unwrap_err();
        assert!(matches!(err, ProviderError::InvalidRequest(f) if f.field == "tags"));
    }
}
