//! How ownership tags ride on a RunPod pod, which has no tags of its own.
//!
//! The pod's `name` is the engine's instance name, and the tags travel in the pod's environment:
//! `TGP_TAGS` holds them as one JSON object (`{"tgp.io/cluster":"c1",...}`), so any key or value
//! survives unchanged, and `TGP_GPU_TYPE`/`TGP_REGION` record what was launched (RunPod's pod
//! object only shows a GPU display name). RunPod returns `env` as `"KEY=VALUE"` strings, so decoding
//! splits at the first `=`. Pods without a readable `TGP_TAGS` carry no tags: they are never ours.

use std::collections::BTreeMap;

use tgp_provider_sdk::Tag;

/// Environment variable carrying the ownership tags.
pub const TAGS_VAR: &str = "TGP_TAGS";
/// Environment variable carrying the canonical GPU type.
pub const GPU_VAR: &str = "TGP_GPU_TYPE";
/// Environment variable carrying the offer's region.
pub const REGION_VAR: &str = "TGP_REGION";
/// Environment variable carrying the engine's bootstrap document (pods have no user-data).
pub const USER_DATA_VAR: &str = "TGP_USER_DATA";

/// The value of `TGP_TAGS` for `tags` (a later duplicate key wins, as in a map).
pub fn encode(tags: &[Tag]) -> String {
    let map: BTreeMap<&str, &str> = tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// The tags in a `TGP_TAGS` value; nothing for an unreadable value.
pub fn decode(value: &str) -> Vec<Tag> {
    serde_json::from_str::<BTreeMap<String, String>>(value)
        .map(|m| m.into_iter().map(|(k, v)| Tag::new(k, v)).collect())
        .unwrap_or_default()
}

/// The value of `name` in RunPod's `["KEY=VALUE", ...]` environment listing.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().find_map(|entry| {
        let (key, value) = entry.split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_the_environment() {
        let tags = vec![
            Tag::new("tgp.io/cluster", "c1"),
            Tag::new("tgp.io/request", "a=b;c \"quoted\""),
        ];
        let value = encode(&tags);
        let env = vec![
            "OTHER=x".to_string(),
            format!("{TAGS_VAR}={value}"),
            format!("{GPU_VAR}=H100-SXM"),
        ];
        let found = env_value(&env, TAGS_VAR).unwrap();
        assert_eq!(decode(found), tags);
        assert_eq!(env_value(&env, GPU_VAR), Some("H100-SXM"));
        assert_eq!(env_value(&env, "MISSING"), None);
    }

    #[test]
    fn unreadable_values_carry_no_tags() {
        assert!(decode("not json").is_empty());
        assert!(decode(r#"{"a": 1}"#).is_empty());
        assert_eq!(encode(&[]), "{}");
    }
}
