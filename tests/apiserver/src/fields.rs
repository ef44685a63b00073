//! Field ownership ("managedFields") for server-side apply.
//!
//! Exists because kube-lease-manager relies on SSA conflicts for mutual exclusion:
//! two managers applying a different `spec.holderIdentity` must see the second one
//! fail with 409 Conflict. We track, per object, which field manager owns which
//! leaf field and raise conflicts like the real server; lists are atomic leaves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A path of object keys from the root to a leaf.
pub type FieldPath = Vec<String>;

/// How a manager came to own its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

/// Ownership of one object's fields, by (manager, operation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedFields {
    entries: BTreeMap<(String, Operation), BTreeSet<FieldPath>>,
}

/// A failed apply: the fields another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflicts(pub Vec<(String, FieldPath)>);

impl ApplyConflicts {
    /// The real server's message wording.
    pub fn message(&self) -> String {
        let n = self.0.len();
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
            .collect();
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            parts.join("; ")
        )
    }
}

const OWNED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// Flatten an object into its leaf fields (objects recurse; lists and scalars are leaves).
/// Identity and server-managed metadata are not ownable and are skipped.
pub fn leaves(obj: &Value) -> BTreeMap<FieldPath, Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Value::Object(meta) = v {
                        for key in OWNED_METADATA {
                            if let Some(x) = meta.get(key) {
                                walk(x, vec!["metadata".into(), key.into()], &mut out);
                            }
                        }
                    }
                }
                _ => walk(v, vec![k.clone()], &mut out),
            }
        }
    }
    out
}

fn walk(v: &Value, path: FieldPath, out: &mut BTreeMap<FieldPath, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(x, p, out);
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// Remove the field at `path` from `doc` (no-op if absent).
pub fn remove_path(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = doc;
    for p in parents {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        m.remove(last);
    }
}

impl ManagedFields {
    /// Record a non-apply write by `manager`: changed or added leaves become its own,
    /// removed leaves are dropped from everyone.
    pub fn record_update(&mut self, manager: &str, old: &Value, new: &Value) {
        let old_l = leaves(old);
        let new_l = leaves(new);
        let changed: Vec<FieldPath> = new_l
            .iter()
            .filter(|(p, v)| old_l.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .collect();
        for set in self.entries.values_mut() {
            for p in &changed {
                set.remove(p);
            }
        }
        if !changed.is_empty() {
            self.entries
                .entry((manager.to_string(), Operation::Update))
                .or_default()
                .extend(changed);
        }
        self.prune(new);
    }

    /// Server-side apply of `applied` by `manager` onto `current`; returns the merged
    /// object or the conflicts (unless `force`).
    pub fn apply(
        &mut self,
        manager: &str,
        current: &Value,
        applied: &Value,
        force: bool,
    ) -> Result<Value, ApplyConflicts> {
        let cur_l = leaves(current);
        let app_l = leaves(applied);
        let mut conflicts = Vec::new();
        let mut changed = Vec::new();
        for (p, v) in &app_l {
            if cur_l.get(p) == Some(v) {
                continue;
            }
            changed.push(p.clone());
            for ((m, _), set) in &self.entries {
                if m != manager && set.contains(p) {
                    conflicts.push((m.clone(), p.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            conflicts.sort();
            conflicts.dedup();
            return Err(ApplyConflicts(conflicts));
        }
        let mut merged = current.clone();
        crate::patch::apply_merge(&mut merged, applied);
        // Fields this manager applied before but no longer applies are removed,
        // unless someone else also owns them.
        let key = (manager.to_string(), Operation::Apply);
        let previous = self.entries.get(&key).cloned().unwrap_or_default();
        for p in previous.iter().filter(|p| !app_l.contains_key(*p)) {
            let shared = self.entries.iter().any(|(k, s)| *k != key && s.contains(p));
            if !shared {
                remove_path(&mut merged, p);
            }
        }
        for (k, set) in self.entries.iter_mut() {
            if k.0 != manager {
                for p in &changed {
                    set.remove(p);
                }
            }
        }
        self.entries.insert(key, app_l.keys().cloned().collect());
        self.prune(&merged);
        Ok(merged)
    }

    /// Drop ownership of fields no longer present and managers owning nothing.
    pub fn prune(&mut self, obj: &Value) {
        let present = leaves(obj);
        for set in self.entries.values_mut() {
            set.retain(|p| present.contains_key(p));
        }
        self.entries.retain(|_, s| !s.is_empty());
    }

    /// Managers and the number of fields each owns (for tests/debugging).
    pub fn managers(&self) -> Vec<(String, Operation, usize)> {
        self.entries
            .iter()
            .map(|((m, o), s)| (m.clone(), *o, s.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_conflicts_on_foreign_field_with_other_value() {
        let mut mf = ManagedFields::default();
        let empty = json!({"metadata": {"name": "l"}});
        let a = mf
            .apply("a", &empty, &json!({"spec": {"holder": "a"}}), false)
            .unwrap();
        let err = mf
            .apply("b", &a, &json!({"spec": {"holder": "b"}}), false)
            .unwrap_err();
        assert_eq!(
            err.0,
            vec![(
                "a".to_string(),
                vec!["spec".to_string(), "holder".to_string()]
            )]
        );
        // Same value: shared ownership, no conflict.
        mf.apply("b", &a, &json!({"spec": {"holder": "a"}}), false)
            .unwrap();
        // Force takes over.
        let forced = mf
            .apply("c", &a, &json!({"spec": {"holder": "c"}}), true)
            .unwrap();
        assert_eq!(forced["spec"]["holder"], "c");
    }

    #[test]
    fn removal_by_update_frees_the_field() {
        let mut mf = ManagedFields::default();
        let a = mf
            .apply("a", &json!({}), &json!({"spec": {"holder": "a"}}), false)
            .unwrap();
        let released = json!({"spec": {}});
        mf.record_update("a", &a, &released);
        let b = mf
            .apply("b", &released, &json!({"spec": {"holder": "b"}}), false)
            .unwrap();
        assert_eq!(b["spec"]["holder"], "b");
    }

    #[test]
    fn dropped_applied_fields_are_removed() {
        let mut mf = ManagedFields::default();
        let a = mf
            .apply("a", &json!({}), &json!({"spec": {"x": 1, "y": 2}}), false)
            .unwrap();
        let a2 = mf
            .apply("a", &a, &json!({"spec": {"x": 1}}), false)
            .unwrap();
        assert_eq!(a2, json!({"spec": {"x": 1}}));
    }
}
