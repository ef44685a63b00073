//! Status conditions in the Kubernetes shape (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`) and the rule for updating them: the transition
//! time moves only when the status changes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One condition. `status` is "True", "False" or "Unknown".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    /// A CamelCase word a program can match on.
    pub reason: String,
    /// What happened and, where there is one, what to do about it.
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sets condition `type_` in `conditions`, keeping the transition time if the status is unchanged.
/// Returns true if anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    now: &str,
    generation: Option<i64>,
) -> bool {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let changed = existing.status != status
            || existing.reason != reason
            || existing.message != message
            || existing.observed_generation != generation;
        if existing.status != status {
            existing.last_transition_time = now.to_string();
        }
        existing.status = status;
        existing.reason = reason.to_string();
        existing.message = message;
        existing.observed_generation = generation;
        return changed;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        last_transition_time: now.to_string(),
        observed_generation: generation,
    });
    true
}

/// The condition of type `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True if condition `type_` is present with status "True".
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        assert!(set(
            &mut c,
            "Ready",
            false,
            "Pending",
            "waiting",
            "t1",
            Some(1)
        ));
        assert!(set(
            &mut c,
            "Ready",
            false,
            "Launching",
            "launching",
            "t2",
            Some(1)
        ));
        assert_eq!(c[0].last_transition_time, "t1");
        assert!(set(
            &mut c,
            "Ready",
            true,
            "Verified",
            "running",
            "t3",
            Some(1)
        ));
        assert_eq!(c[0].last_transition_time, "t3");
        assert!(!set(
            &mut c,
            "Ready",
            true,
            "Verified",
            "running",
            "t4",
            Some(1)
        ));
        assert!(is_true(&c, "Ready"));
        assert!(!is_true(&c, "Healthy"));
    }
}
