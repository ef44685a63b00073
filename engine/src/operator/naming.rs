//! Names and ownership tags for instances, derived from the request so they can be found again.
//!
//! The instance name is a pure function of the request's UID and the attempt number, and every
//! instance carries the cluster id and request UID as tags: after a crash between the launch
//! call and the status write, the operator lists instances by tag and adopts the one it started
//! instead of launching a second.

use crate::plugins::Tag;

/// Tag key naming the cluster that owns an instance.
pub const CLUSTER_TAG: &str = "tgp.io/cluster";
/// Tag key carrying the owning GPURequest's UID.
pub const REQUEST_TAG: &str = "tgp.io/request-uid";
/// Tag key carrying the owning GPURequest's name (informational).
pub const REQUEST_NAME_TAG: &str = "tgp.io/request";

/// `tgp-<first 12 hex of uid>-<attempt>`: short, DNS-safe, unique per attempt.
pub fn instance_name(request_uid: &str, attempt: usize) -> String {
    let short: String = request_uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("tgp-{}-{attempt}", short.to_ascii_lowercase())
}

/// The tags every instance launched for a request carries.
pub fn ownership_tags(cluster_id: &str, request_uid: &str, request_name: &str) -> Vec<Tag> {
    vec![
        Tag {
            key: CLUSTER_TAG.into(),
            value: cluster_id.into(),
        },
        Tag {
            key: REQUEST_TAG.into(),
            value: request_uid.into(),
        },
        Tag {
            key: REQUEST_NAME_TAG.into(),
            value: request_name.into(),
        },
    ]
}

/// The value of tag `key`, if present.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_dns_safe() {
        let a = instance_name("3F2504E0-4F89-11D3-9A0C-0305E82C3301", 1);
        assert_eq!(a, "tgp-3f2504e04f89-1");
        assert_eq!(a, instance_name("3F2504E0-4F89-11D3-9A0C-0305E82C3301", 1));
        assert_ne!(a, instance_name("3F2504E0-4F89-11D3-9A0C-0305E82C3301", 2));
    }

    #[test]
    fn tags_carry_cluster_and_request() {
        let tags = ownership_tags("c1", "uid-1", "train");
        assert_eq!(tag_value(&tags, CLUSTER_TAG), Some("c1"));
        assert_eq!(tag_value(&tags, REQUEST_TAG), Some("uid-1"));
    }
}
