//! Pruning of unknown fields: what kube-apiserver does to a custom resource when it decodes a
//! write, before defaulting and validation.
//!
//! Exists because a real API server silently drops every field a CRD's structural schema does
//! not specify. Without this, an operator could write a field its own CRD lacks (a status
//! field, say), read it back from the dev server, and pass its tests, while a real cluster
//! would never store it. The dev server drops such fields too, and tells the client the way
//! kube-apiserver does, following the request's `fieldValidation` directive
//! ([`FieldValidation`]).
//!
//! The rules are apiextensions-apiserver's pruning algorithm:
//! - at the root of the object, `apiVersion`, `kind` and `metadata` are never pruned
//!   (metadata is ObjectMeta, which the store handles);
//! - an object node keeps the keys in its `properties` (each pruned by its own schema); with
//!   an `additionalProperties` schema it keeps every key and prunes each value by that schema;
//!   with `additionalProperties: true` it keeps every key, but objects inside the values keep
//!   nothing (they have no schema);
//! - `x-kubernetes-preserve-unknown-fields: true` keeps unknown keys at that node (and in the
//!   items of its arrays), but values under listed properties are still pruned;
//! - `x-kubernetes-embedded-resource: true` nodes also keep `apiVersion` and `kind` (strings)
//!   and `metadata` (an object) besides their properties;
//! - `x-kubernetes-int-or-string` nodes are leaves; an array prunes each item by `items`;
//! - `allOf`/`anyOf`/`oneOf`/`not` declare no fields (in a structural schema every field they
//!   name is also specified outside them).
//!
//! Pruned fields are reported as paths from the root: `spec.foo`, `spec.taints[0].bar`.

use serde_json::{Map, Value};

use super::{Node, Schema, child};
use crate::error::{ApiError, go_quote};

/// The fields kept at the root of every object, whatever the schema says.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Kubernetes' `fieldValidation` directive: what a write that names unknown fields gets. The
/// fields are dropped in every case; only what the client is told differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and answer a `Warning: 299 - "unknown field \"spec.foo\""` header per field
    /// (kube-apiserver's default).
    #[default]
    Warn,
    /// Refuse the write with 400 `BadRequest`, naming every unknown field.
    Strict,
}

impl FieldValidation {
    /// The query parameter's value (`""`: the default, `Warn`). `options` names the request's
    /// options kind for the refusal (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
    pub fn parse(value: &str, options: &str) -> Result<Self, ApiError> {
        match value {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::Invalid(format!(
                r#"{options}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: {}: supported values: "Ignore", "Strict", "Warn""#,
                go_quote(other)
            ))),
        }
    }

    /// What the directive makes of the `unknown` fields (paths) of a write of `kind` at
    /// `version`: the warnings for the client, or the `Strict` refusal (kube-apiserver's
    /// wording: `... cannot be handled as a Widget: strict decoding error: unknown field
    /// "spec.foo"`).
    pub fn judge(
        self,
        unknown: &[String],
        kind: &str,
        version: &str,
    ) -> Result<Vec<String>, ApiError> {
        let messages = || {
            unknown
                .iter()
                .map(|p| format!("unknown field {}", go_quote(p)))
                .collect::<Vec<_>>()
        };
        match self {
            FieldValidation::Ignore => Ok(Vec::new()),
            FieldValidation::Warn => Ok(messages()),
            FieldValidation::Strict if unknown.is_empty() => Ok(Vec::new()),
            FieldValidation::Strict => Err(ApiError::BadRequest(format!(
                "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
                go_quote(version),
                messages().join(", ")
            ))),
        }
    }
}

impl Schema {
    /// Drop from `obj` (a whole object) every field the schema does not specify. Returns the
    /// paths of the dropped fields, in the order met (keys in map order).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        if self.root.preserve_unknown {
            keep_unknown(&self.root, obj, "", true, &mut pruned);
        } else if let Value::Object(map) = obj {
            prune_object(&self.root, map, "", true, &mut pruned);
        }
        pruned
    }
}

/// Prune `v` (at `path`) by its schema node.
fn prune(n: &Node, v: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if n.preserve_unknown {
        return keep_unknown(n, v, path, false, pruned);
    }
    if n.int_or_string {
        return;
    }
    match v {
        Value::Object(map) => prune_object(n, map, path, false, pruned),
        Value::Array(items) => {
            for (i, x) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                match n.items.as_deref() {
                    Some(item) => prune(item, x, &at, pruned),
                    None => prune_unspecified(x, &at, pruned),
                }
            }
        }
        _ => {}
    }
}

/// An object node without `x-kubernetes-preserve-unknown-fields`: keys it does not specify go.
fn prune_object(
    n: &Node,
    map: &mut Map<String, Value>,
    path: &str,
    root: bool,
    pruned: &mut Vec<String>,
) {
    map.retain(|k, x| {
        if kept_as_resource_field(n, root, k, x) {
            return true;
        }
        let at = child(path, k);
        if let Some(sub) = n.properties.get(k).or(n.additional.as_deref()) {
            prune(sub, x, &at, pruned);
            true
        } else if n.additional_any {
            prune_unspecified(x, &at, pruned);
            true
        } else {
            pruned.push(at);
            false
        }
    });
}

/// A node with `x-kubernetes-preserve-unknown-fields: true`: every key stays, the values of
/// the keys it specifies are pruned by their schemas, and the items of an array are treated
/// the same way (by `items`).
fn keep_unknown(n: &Node, v: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if (root || n.embedded) && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(sub) = n.properties.get(k).or(n.additional.as_deref()) {
                    prune(sub, x, &child(path, k), pruned);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = n.items.as_deref() {
                for (i, x) in items.iter_mut().enumerate() {
                    keep_unknown(item, x, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// `apiVersion`, `kind` and `metadata` of the object itself (always) or of an embedded
/// resource (when they have the right type): kept, and not pruned by the CRD's schema.
fn kept_as_resource_field(n: &Node, root: bool, key: &str, v: &Value) -> bool {
    match key {
        "apiVersion" | "kind" => root || (n.embedded && v.is_string()),
        "metadata" => root || (n.embedded && v.is_object()),
        _ => false,
    }
}

/// A value with no schema at all (under `additionalProperties: true`, or an item of an array
/// without `items`): an object there keeps nothing.
fn prune_unspecified(v: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            pruned.extend(map.keys().map(|k| child(path, k)));
            map.clear();
        }
        Value::Array(items) => {
            for (i, x) in items.iter_mut().enumerate() {
                prune_unspecified(x, &format!("{path}[{i}]"), pruned);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        let props: JSONSchemaProps = serde_json::from_value(v).expect("a schema");
        Schema::compile(&props, "s").expect("it compiles")
    }

    /// Prune `obj`; the pruned object and the paths.
    fn pruned(s: &Schema, mut obj: Value) -> (Value, Vec<String>) {
        let paths = s.prune(&mut obj);
        (obj, paths)
    }

    #[test]
    fn root_keeps_resource_fields_and_listed_properties_only() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        }));
        let (obj, paths) = pruned(
            &s,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
                "spec": {"a": "1", "b": 2}, "status": {"c": 3}, "extra": true}),
        );
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
                "spec": {"a": "1"}})
        );
        assert_eq!(paths, ["extra", "spec.b", "status"]);
    }

    #[test]
    fn maps_arrays_and_leaves() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "ports": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"port": {"type": "integer"}}
                }},
                "taints": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"},
                    "nested": {"type": "array", "items": {"type": "array", "items": {
                        "type": "object", "properties": {"x": {"type": "integer"}}
                    }}},
                }}},
                "untyped": {"type": "array"},
                "port": {"x-kubernetes-int-or-string": true},
                "empty": {"type": "object"},
                "anything": {"type": "object", "additionalProperties": true},
            }}}
        }));
        let (obj, paths) = pruned(
            &s,
            json!({"spec": {
                "labels": {"a": "b", "c": "d"},
                "ports": {"http": {"port": 80, "name": "http"}},
                "taints": [{"key": "k", "effect": "E"}, {"nested": [[{"x": 1, "y": 2}], []]}],
                "untyped": [1, {"z": 1}],
                "port": "http",
                "empty": {"gone": 1},
                "anything": {"k": "v", "o": {"inner": 1}},
            }}),
        );
        assert_eq!(
            obj,
            json!({"spec": {
                "labels": {"a": "b", "c": "d"},
                "ports": {"http": {"port": 80}},
                "taints": [{"key": "k"}, {"nested": [[{"x": 1}], []]}],
                "untyped": [1, {}],
                "port": "http",
                "empty": {},
                "anything": {"k": "v", "o": {}},
            }})
        );
        assert_eq!(
            paths,
            [
                "spec.anything.o.inner",
                "spec.empty.gone",
                "spec.ports.http.name",
                "spec.taints[0].effect",
                "spec.taints[1].nested[0][0].y",
                "spec.untyped[1].z",
            ]
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknown_keys_but_prunes_listed_ones() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
                },
                "list": {
                    "type": "array",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "items": {"type": "object", "properties": {"k": {"type": "object", "properties": {}}}},
                },
            }}}
        }));
        let (obj, paths) = pruned(
            &s,
            json!({"spec": {
                "free": {"anything": {"deep": [1, {"x": null}]}, "known": {"a": "1", "b": 2}},
                "list": [{"other": 1, "k": {"drop": 1}}],
            }}),
        );
        assert_eq!(
            obj,
            json!({"spec": {
                "free": {"anything": {"deep": [1, {"x": null}]}, "known": {"a": "1"}},
                "list": [{"other": 1, "k": {}}],
            }})
        );
        assert_eq!(paths, ["spec.free.known.b", "spec.list[0].k.drop"]);

        // At the root: nothing unknown is dropped anywhere but below listed properties.
        let s = schema(
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object", "properties": {}}}}),
        );
        let (obj, paths) = pruned(&s, json!({"spec": {"x": 1}, "other": {"y": 2}}));
        assert_eq!(obj, json!({"spec": {}, "other": {"y": 2}}));
        assert_eq!(paths, ["spec.x"]);
    }

    #[test]
    fn embedded_resources_keep_their_type_and_metadata() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {
                        "metadata": {"type": "object"},
                        "spec": {"type": "object", "properties": {"image": {"type": "string"}}},
                    },
                },
                "raw": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true,
                },
            }}}
        }));
        let (obj, paths) = pruned(
            &s,
            json!({"spec": {
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                    "spec": {"image": "i", "command": ["x"]}, "status": {}},
                "raw": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}},
            }}),
        );
        assert_eq!(
            obj,
            json!({"spec": {
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                    "spec": {"image": "i"}},
                "raw": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}},
            }})
        );
        assert_eq!(
            paths,
            ["spec.template.spec.command", "spec.template.status"]
        );
        // A kind that is not a string is not the embedded resource's kind: it goes.
        let (obj, paths) = pruned(&s, json!({"spec": {"template": {"kind": 7}}}));
        assert_eq!(obj, json!({"spec": {"template": {}}}));
        assert_eq!(paths, ["spec.template.kind"]);
    }

    #[test]
    fn field_validation_directives() {
        let unknown = vec!["spec.foo".to_string(), "status.b\"ar".to_string()];
        assert_eq!(
            FieldValidation::Warn.judge(&unknown, "Widget", "v1"),
            Ok(vec![
                r#"unknown field "spec.foo""#.to_string(),
                r#"unknown field "status.b\"ar""#.to_string()
            ])
        );
        assert_eq!(
            FieldValidation::Ignore.judge(&unknown, "Widget", "v1"),
            Ok(vec![])
        );
        assert_eq!(
            FieldValidation::Strict.judge(&[], "Widget", "v1"),
            Ok(vec![])
        );
        let e = FieldValidation::Strict
            .judge(&unknown, "Widget", "v1")
            .unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.to_string(),
            r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.foo", unknown field "status.b\"ar""#
        );
        assert_eq!(
            FieldValidation::parse("", "CreateOptions"),
            Ok(FieldValidation::Warn)
        );
        assert_eq!(
            FieldValidation::parse("Strict", "CreateOptions"),
            Ok(FieldValidation::Strict)
        );
        let e = FieldValidation::parse("strict", "PatchOptions").unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(
            e.to_string()
                .starts_with(r#"PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict""#),
            "{e}"
        );
    }
}
