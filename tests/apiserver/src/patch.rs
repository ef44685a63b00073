//! Applying PATCH bodies by content type.
//!
//! Exists because kube-rs sends four patch flavours (`Patch::Merge`, `Patch::Json`,
//! `Patch::Strategic`, `Patch::Apply`) and the code under test (notably
//! `kube::runtime::finalizer`) depends on their exact semantics, e.g. a JSON-patch
//! `test` of `null` against an absent `/metadata/finalizers` succeeding as in Go.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::error::ApiError;

/// The patch flavour, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    /// Classify a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got \"{other}\")"
            ))),
        }
    }

    /// Parse a body of this flavour into JSON.
    pub fn parse_body(self, body: &[u8]) -> Result<Value, ApiError> {
        match self {
            PatchKind::Apply => serde_yaml::from_slice::<Value>(body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}"))),
            _ => serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}"))),
        }
    }
}

/// RFC 7386 JSON merge patch (strategic merge is approximated by this, minus `$` directives).
pub fn merge_patch(doc: &mut Value, patch: &Value, strategic: bool) {
    if strategic {
        let mut p = patch.clone();
        strip_directives(&mut p);
        json_patch::merge(doc, &p);
    } else {
        json_patch::merge(doc, patch);
    }
}

/// Remove strategic-merge directives (`$patch`, `$setElementOrder/...`, `$retainKeys`).
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// RFC 6902 JSON patch with Kubernetes' quirk: `test` of `null` passes on a missing path.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: Vec<PatchOperation> = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::BadRequest(format!("error decoding JSON patch: {e}")))?;
    for (i, op) in ops.iter().enumerate() {
        if let PatchOperation::Test(t) = op
            && t.value.is_null()
            && doc.pointer(&t.path.to_string()).is_none()
        {
            continue;
        }
        json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| {
            let msg = match op {
                PatchOperation::Test(_) => format!("the server rejected our request due to an error in our request: testing value {} failed: {}", op_path(op), e.kind),
                _ => format!("the server rejected our request due to an error in our request: operation {i} ({}) failed: {}", op_path(op), e.kind),
            };
            ApiError::Invalid(msg)
        })?;
    }
    Ok(())
}

fn op_path(op: &PatchOperation) -> String {
    match op {
        PatchOperation::Add(o) => o.path.to_string(),
        PatchOperation::Remove(o) => o.path.to_string(),
        PatchOperation::Replace(o) => o.path.to_string(),
        PatchOperation::Move(o) => o.path.to_string(),
        PatchOperation::Copy(o) => o.path.to_string(),
        PatchOperation::Test(o) => o.path.to_string(),
    }
}

/// Deep-merge `applied` into `doc` the way server-side apply treats maps: objects merge
/// key by key, everything else (scalars, lists) is replaced. Lists are atomic here
/// (real SSA merges keyed lists; documented approximation).
pub fn apply_merge(doc: &mut Value, applied: &Value) {
    match (doc, applied) {
        (Value::Object(d), Value::Object(a)) => {
            for (k, v) in a {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        apply_merge(existing, v)
                    }
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, a) => *d = a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_null_on_missing_path_passes() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let p = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]);
        json_patch(&mut doc, &p).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
    }

    #[test]
    fn failing_test_is_invalid() {
        let mut doc = json!({"metadata": {"finalizers": ["y"]}});
        let p = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        assert_eq!(json_patch(&mut doc, &p).unwrap_err().code(), 422);
    }

    #[test]
    fn merge_and_strategic() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(
            &mut doc,
            &json!({"b": {"c": null, "$retainKeys": ["d"]}}),
            true,
        );
        assert_eq!(doc, json!({"a": 1, "b": {"d": 3}}));
    }

    #[test]
    fn unknown_content_type() {
        assert_eq!(
            PatchKind::from_content_type("text/plain")
                .unwrap_err()
                .code(),
            415
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml; charset=utf-8").unwrap(),
            PatchKind::Apply
        );
    }
}
