//! A Kubernetes Secret's values, whichever of its two fields holds them.
//!
//! The API server folds `stringData` into `data` when a Secret is written, so a Secret read
//! back from a real cluster has `data` only. A Secret that never went through that merge (a
//! fixture, the development API server, an object built in memory) can still carry
//! `stringData`. Every reader of Secrets in tgp (provider credentials, the Talos and Tailscale
//! Secrets, OCI pull secrets) goes through here, so they all see both fields the same way, with
//! the API server's rule: a key in `stringData` overrides the same key in `data`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// The value of `key`, from `stringData` or else `data`.
pub fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .string_data
        .as_ref()
        .and_then(|m| m.get(key))
        .map(|s| s.as_bytes())
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|m| m.get(key))
                .map(|b| b.0.as_slice())
        })
}

/// Every key and value, `stringData` overriding `data`.
pub fn values(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            string_data: Some(
                string_data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_either_field_and_string_data_wins() {
        let s = secret(
            &[("a", "from-data"), ("b", "old")],
            &[("b", "new"), ("c", "text")],
        );
        assert_eq!(value(&s, "a"), Some(&b"from-data"[..]));
        assert_eq!(value(&s, "b"), Some(&b"new"[..]));
        assert_eq!(value(&s, "c"), Some(&b"text"[..]));
        assert_eq!(value(&s, "d"), None);
        let all = values(&s);
        assert_eq!(all.len(), 3);
        assert_eq!(all["b"], b"new");
        assert_eq!(value(&Secret::default(), "a"), None);
        assert!(values(&Secret::default()).is_empty());
    }
}
