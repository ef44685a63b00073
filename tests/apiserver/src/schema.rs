//! CRD schema checks: the admission rules of a CustomResourceDefinition, enforced on writes.
//!
//! Exists so that tests against the dev server see invalid custom resources refused the way a
//! real kube-apiserver refuses them (422 `Invalid`, one cause per field, the same wording),
//! instead of storing anything a client sends and leaving the CRD's rules untested.
//!
//! A [`Schema`] is one CRD version's `openAPIV3Schema`, compiled once when the CRD is
//! registered (regular expressions and CEL programs included; a pattern or rule that does not
//! compile refuses the CRD). [`Schema::check`] then checks the object as it would be stored:
//! - `type` (object, array, string, integer, number, boolean), `nullable`, `required`,
//!   `properties`, `additionalProperties` (the schema of map values), `items`;
//! - `enum`, `pattern`, `minimum`/`maximum` with `exclusiveMinimum`/`exclusiveMaximum`,
//!   `multipleOf`, `minLength`/`maxLength`, `minItems`/`maxItems`,
//!   `minProperties`/`maxProperties`, and `allOf`/`anyOf`/`oneOf`/`not`;
//! - `x-kubernetes-int-or-string` (an integer or a string), `x-kubernetes-preserve-unknown-fields`
//!   and `x-kubernetes-embedded-resource` (only what their properties say is checked);
//! - `x-kubernetes-validations`: CEL rules with `self` bound to the value at the rule's node,
//!   `message`, `messageExpression`, `reason` and `fieldPath`. Transition rules (those naming
//!   `oldSelf`) run only on updates where the old object had a value there; old values are
//!   matched through object properties, map keys and `x-kubernetes-list-type: map` keys. As in
//!   kube-apiserver, rules are skipped when the schema check found a blocking error (wrong
//!   type, missing required field, unsupported enum value, too long, too many).
//!
//! Like kube-apiserver (validation ratcheting, on by default since 1.30), an update is not
//! refused for a value it leaves unchanged: only changed values, and transition rules, are
//! checked against the old object.
//!
//! Before any of that, [`Schema::prune`] (in [`prune`]) drops the fields the schema does not
//! specify, as kube-apiserver does when it decodes a custom resource.
//!
//! Not done: defaulting, `format`,
//! `uniqueItems` and list-type set/map uniqueness, the metadata of embedded resources,
//! `optionalOldSelf` (such rules are treated as ordinary transition rules), and Kubernetes'
//! own CEL libraries (quantity, url, ip, ...) and timestamps/durations: a rule calling them
//! fails when it is evaluated. The standard CEL functions and macros, `matches`, and the
//! strings and lists extensions are available.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    ValidationRule,
};
use regex::Regex;
use serde_json::Value;

use crate::error::{FieldError, FieldErrorKind, go_float, go_quote, go_value};

pub mod prune;

pub use prune::FieldValidation;

/// The CEL environment rules are compiled and run in (standard library, strings, lists).
static CEL_ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // Both only declare new functions on a fresh environment; they cannot clash.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    Arc::new(env)
});

/// The compiled schemas of one custom kind, by version name.
#[derive(Clone, Default)]
pub struct Schemas(BTreeMap<String, Arc<Schema>>);

impl Schemas {
    /// Compile the schema of every served version of `crd` that has one.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<Schemas, Vec<FieldError>> {
        let mut out = BTreeMap::new();
        let mut errs = Vec::new();
        for (i, v) in crd.spec.versions.iter().enumerate() {
            let Some(props) = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            else {
                continue;
            };
            if !v.served {
                continue;
            }
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            match Schema::compile(props, &path) {
                Ok(s) => {
                    out.insert(v.name.clone(), Arc::new(s));
                }
                Err(e) => errs.extend(e),
            }
        }
        if errs.is_empty() {
            Ok(Schemas(out))
        } else {
            Err(errs)
        }
    }

    /// The schema of a version, if it has one.
    pub fn get(&self, version: &str) -> Option<&Schema> {
        self.0.get(version).map(Arc::as_ref)
    }
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Equal when they are the same compiled schemas (compiled programs cannot be compared).
impl PartialEq for Schemas {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }
}

impl Eq for Schemas {}

/// One version's `openAPIV3Schema`, compiled.
pub struct Schema {
    root: Node,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "string" => JsonType::String,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "boolean" => JsonType::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
        }
    }

    fn admits(self, v: &Value) -> bool {
        match (self, v) {
            (JsonType::Object, Value::Object(_))
            | (JsonType::Array, Value::Array(_))
            | (JsonType::String, Value::String(_))
            | (JsonType::Number, Value::Number(_))
            | (JsonType::Boolean, Value::Bool(_)) => true,
            // As in Go, 2.0 is an integer.
            (JsonType::Integer, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }
}

/// The JSON type name of a value, as kube-openapi names it in messages.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

/// One compiled schema node.
#[derive(Default)]
struct Node {
    ty: Option<JsonType>,
    nullable: bool,
    int_or_string: bool,
    /// `x-kubernetes-preserve-unknown-fields: true`: fields not specified here are kept.
    preserve_unknown: bool,
    /// `x-kubernetes-embedded-resource: true`: `apiVersion`, `kind` and `metadata` are kept.
    embedded: bool,
    required: Vec<String>,
    properties: BTreeMap<String, Node>,
    /// The schema of values under keys not in `properties` (maps).
    additional: Option<Box<Node>>,
    /// `additionalProperties: true`: any key, its value without a schema.
    additional_any: bool,
    items: Option<Box<Node>>,
    enumeration: Option<Vec<Value>>,
    pattern: Option<Regex>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    multiple_of: Option<f64>,
    min_length: Option<i64>,
    max_length: Option<i64>,
    min_items: Option<i64>,
    max_items: Option<i64>,
    min_properties: Option<i64>,
    max_properties: Option<i64>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    /// `x-kubernetes-list-map-keys` of a `x-kubernetes-list-type: map` list (old items are
    /// matched to new ones by these keys for transition rules).
    map_keys: Vec<String>,
    rules: Vec<Rule>,
    /// Some rule is here or below.
    has_rules: bool,
    /// Some transition rule is here or below.
    has_transitions: bool,
}

/// One compiled `x-kubernetes-validations` rule.
struct Rule {
    source: String,
    program: cel::Program,
    message: Option<String>,
    message_expression: Option<cel::Program>,
    /// Names `oldSelf`: run only on updates with an old value.
    transition: bool,
    field_path: Option<String>,
    reason: FieldErrorKind,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn non_negative(v: Option<i64>, path: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    if let Some(n) = v
        && n < 0
    {
        errs.push(FieldError::new(
            FieldErrorKind::Invalid,
            path,
            Some(n.to_string()),
            "must not be negative",
        ));
    }
    v
}

impl Schema {
    /// Compile `props`; errors name their place under `path` (e.g.
    /// `spec.versions[0].schema.openAPIV3Schema.properties[spec].pattern`).
    pub fn compile(props: &JSONSchemaProps, path: &str) -> Result<Schema, Vec<FieldError>> {
        let mut errs = Vec::new();
        let root = compile_node(props, path, &mut errs);
        if errs.is_empty() {
            Ok(Schema { root })
        } else {
            Err(errs)
        }
    }

    /// Check `new` (the object as it would be stored) against the schema; `old` is the stored
    /// object on updates. Errors are in kube-apiserver's words, field paths from the root.
    pub fn check(&self, new: &Value, old: Option<&Value>) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        validate(&self.root, new, old, "", &mut errs);
        if self.root.has_rules {
            let blocking = errs.iter().any(|e| {
                matches!(
                    e.kind,
                    FieldErrorKind::NotSupported
                        | FieldErrorKind::Required
                        | FieldErrorKind::TooLong
                        | FieldErrorKind::TooMany
                        | FieldErrorKind::TypeInvalid
                )
            });
            if blocking {
                errs.push(FieldError::new(
                    FieldErrorKind::Invalid,
                    "",
                    Some(go_quote("null")),
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            } else {
                run_rules(&self.root, new, old, "", false, &mut errs);
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

fn compile_node(p: &JSONSchemaProps, path: &str, errs: &mut Vec<FieldError>) -> Node {
    let mut n = Node {
        nullable: p.nullable.unwrap_or(false),
        int_or_string: p.x_kubernetes_int_or_string.unwrap_or(false),
        preserve_unknown: p.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
        embedded: p.x_kubernetes_embedded_resource.unwrap_or(false),
        required: p.required.clone().unwrap_or_default(),
        enumeration: p
            .enum_
            .as_ref()
            .map(|e| e.iter().map(|j| j.0.clone()).collect()),
        minimum: p.minimum.map(|value| Bound {
            value,
            exclusive: p.exclusive_minimum.unwrap_or(false),
        }),
        maximum: p.maximum.map(|value| Bound {
            value,
            exclusive: p.exclusive_maximum.unwrap_or(false),
        }),
        multiple_of: p.multiple_of,
        min_length: non_negative(p.min_length, &child(path, "minLength"), errs),
        max_length: non_negative(p.max_length, &child(path, "maxLength"), errs),
        min_items: non_negative(p.min_items, &child(path, "minItems"), errs),
        max_items: non_negative(p.max_items, &child(path, "maxItems"), errs),
        min_properties: non_negative(p.min_properties, &child(path, "minProperties"), errs),
        max_properties: non_negative(p.max_properties, &child(path, "maxProperties"), errs),
        ..Node::default()
    };
    if let Some(t) = p.type_.as_deref().filter(|t| !t.is_empty()) {
        n.ty = JsonType::parse(t);
        if n.ty.is_none() {
            errs.push(FieldError::new(
                FieldErrorKind::NotSupported,
                &child(path, "type"),
                Some(go_quote(t)),
                r#"supported values: "array", "boolean", "integer", "number", "object", "string""#,
            ));
        }
    }
    if p.x_kubernetes_embedded_resource == Some(true) && n.ty.is_none() {
        n.ty = Some(JsonType::Object);
    }
    if let Some(pattern) = &p.pattern {
        match Regex::new(pattern) {
            Ok(re) => n.pattern = Some(re),
            Err(e) => errs.push(FieldError::new(
                FieldErrorKind::Invalid,
                &child(path, "pattern"),
                Some(go_quote(pattern)),
                format!("must be a valid regular expression, but isn't: {e}"),
            )),
        }
    }
    for (k, sub) in p.properties.iter().flatten() {
        let node = compile_node(sub, &format!("{path}.properties[{k}]"), errs);
        n.properties.insert(k.clone(), node);
    }
    match &p.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(sub)) => {
            n.additional = Some(Box::new(compile_node(
                sub,
                &child(path, "additionalProperties"),
                errs,
            )));
        }
        Some(JSONSchemaPropsOrBool::Bool(any)) => n.additional_any = *any,
        None => {}
    }
    match &p.items {
        Some(JSONSchemaPropsOrArray::Schema(sub)) => {
            n.items = Some(Box::new(compile_node(sub, &child(path, "items"), errs)));
        }
        Some(JSONSchemaPropsOrArray::Schemas(_)) => errs.push(FieldError::new(
            FieldErrorKind::Forbidden,
            &child(path, "items"),
            None,
            "items must be a schema object and not an array",
        )),
        None => {}
    }
    let junctor = |list: &Option<Vec<JSONSchemaProps>>, name: &str, errs: &mut Vec<FieldError>| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, sub)| compile_node(sub, &format!("{path}.{name}[{i}]"), errs))
            .collect::<Vec<_>>()
    };
    n.all_of = junctor(&p.all_of, "allOf", errs);
    n.any_of = junctor(&p.any_of, "anyOf", errs);
    n.one_of = junctor(&p.one_of, "oneOf", errs);
    if let Some(sub) = &p.not {
        n.not = Some(Box::new(compile_node(sub, &child(path, "not"), errs)));
    }
    if p.x_kubernetes_list_type.as_deref() == Some("map") {
        n.map_keys = p.x_kubernetes_list_map_keys.clone().unwrap_or_default();
    }
    for (i, rule) in p.x_kubernetes_validations.iter().flatten().enumerate() {
        let rule_path = format!("{path}.x-kubernetes-validations[{i}]");
        if let Some(r) = compile_rule(rule, &rule_path, errs) {
            n.rules.push(r);
        }
    }
    let below = n
        .properties
        .values()
        .chain(n.additional.as_deref())
        .chain(n.items.as_deref());
    let (mut rules, mut transitions) = (!n.rules.is_empty(), n.rules.iter().any(|r| r.transition));
    for c in below {
        rules |= c.has_rules;
        transitions |= c.has_transitions;
    }
    n.has_rules = rules;
    n.has_transitions = transitions;
    n
}

fn compile_rule(rule: &ValidationRule, path: &str, errs: &mut Vec<FieldError>) -> Option<Rule> {
    let env = &*CEL_ENV;
    let program = match env.compile(&rule.rule) {
        Ok(p) => p,
        Err(e) => {
            errs.push(FieldError::new(
                FieldErrorKind::Invalid,
                &child(path, "rule"),
                Some(go_quote(&rule.rule)),
                format!("compilation failed: {e}"),
            ));
            return None;
        }
    };
    let message_expression = match rule.message_expression.as_deref() {
        Some(src) if !src.trim().is_empty() => match env.compile(src) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(FieldError::new(
                    FieldErrorKind::Invalid,
                    &child(path, "messageExpression"),
                    Some(go_quote(src)),
                    format!("messageExpression compilation failed: {e}"),
                ));
                return None;
            }
        },
        _ => None,
    };
    let reason = match rule.reason.as_deref() {
        None | Some("FieldValueInvalid") => FieldErrorKind::Invalid,
        Some("FieldValueForbidden") => FieldErrorKind::Forbidden,
        Some("FieldValueRequired") => FieldErrorKind::Required,
        Some("FieldValueDuplicate") => FieldErrorKind::Duplicate,
        Some(other) => {
            errs.push(FieldError::new(
                FieldErrorKind::NotSupported,
                &child(path, "reason"),
                Some(go_quote(other)),
                r#"supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#,
            ));
            return None;
        }
    };
    Some(Rule {
        source: rule.rule.clone(),
        transition: program.references().has_variable("oldSelf"),
        program,
        message: rule.message.clone().filter(|m| !m.trim().is_empty()),
        message_expression,
        field_path: rule
            .field_path
            .as_deref()
            .map(|f| f.trim_start_matches('.').to_string())
            .filter(|f| !f.is_empty()),
        reason,
    })
}

/// The schema check of one value (no CEL): errors into `errs`. With `old` equal to `v`
/// nothing is reported (ratcheting).
fn validate(n: &Node, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    if old == Some(v) {
        return;
    }
    if v.is_null() {
        if !n.nullable && (n.ty.is_some() || n.int_or_string) {
            errs.push(type_error(n, v, path));
        }
        return;
    }
    if n.int_or_string {
        if !(v.is_string() || JsonType::Integer.admits(v)) {
            errs.push(type_error(n, v, path));
            return;
        }
    } else if let Some(t) = n.ty
        && !t.admits(v)
    {
        errs.push(type_error(n, v, path));
        return;
    }
    if let Some(allowed) = &n.enumeration
        && !allowed.iter().any(|a| json_equal(a, v))
    {
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => go_quote(s),
                other => go_quote(&other.to_string()),
            })
            .collect();
        errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            path,
            Some(go_value(v)),
            format!("supported values: {}", values.join(", ")),
        ));
    }
    match v {
        Value::String(s) => validate_string(n, s, path, errs),
        Value::Number(num) => {
            if let Some(f) = num.as_f64() {
                validate_number(n, f, v, path, errs);
            }
        }
        Value::Array(items) => {
            let bounds = (n.min_items, n.max_items);
            check_size(items.len(), bounds, "items", path, v, errs);
            if let Some(item) = &n.items {
                for (i, x) in items.iter().enumerate() {
                    let prev = old.and_then(|o| old_item(n, o, x));
                    validate(item, x, prev, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => {
            for r in &n.required {
                if field(n, map, r).is_none() {
                    errs.push(FieldError::new(
                        FieldErrorKind::Required,
                        &child(path, r),
                        None,
                        "",
                    ));
                }
            }
            let len = map.keys().filter(|k| field(n, map, k).is_some()).count();
            let bounds = (n.min_properties, n.max_properties);
            check_size(len, bounds, "properties", path, v, errs);
            for (k, x) in map {
                if let Some(sub) = n.properties.get(k).or(n.additional.as_deref())
                    && !dropped_null(sub, x)
                {
                    validate(sub, x, old.and_then(|o| o.get(k)), &child(path, k), errs);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    validate_junctors(n, v, path, errs);
}

fn validate_string(n: &Node, s: &str, path: &str, errs: &mut Vec<FieldError>) {
    let v = Value::String(s.to_string());
    let chars = s.chars().count() as i64;
    if let Some(min) = n.min_length
        && chars < min
    {
        errs.push(invalid(
            path,
            &v,
            format!("{} should be at least {min} chars long", body_path(path)),
        ));
    }
    if let Some(max) = n.max_length
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errs.push(FieldError::new(
            FieldErrorKind::TooLong,
            path,
            None,
            format!("may not be more than {max} {unit}"),
        ));
    }
    if let Some(re) = &n.pattern
        && !re.is_match(s)
    {
        errs.push(invalid(
            path,
            &v,
            format!("{} should match '{}'", body_path(path), re.as_str()),
        ));
    }
}

fn validate_number(n: &Node, f: f64, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    // Each bound with the side a value may not pass (-1: below, 1: above), worded as
    // kube-openapi words it.
    let bounds = [
        (n.minimum, -1.0, "greater than"),
        (n.maximum, 1.0, "less than"),
    ];
    for (bound, side, op) in bounds {
        let Some(b) = bound else { continue };
        let past = (f - b.value) * side;
        if past > 0.0 || (b.exclusive && past == 0.0) {
            let or_equal = if b.exclusive { "" } else { " or equal to" };
            let limit = go_float(b.value);
            let detail = format!("{} should be {op}{or_equal} {limit}", body_path(path));
            errs.push(invalid(path, v, detail));
        }
    }
    if let Some(m) = n.multiple_of
        && m != 0.0
        && (f / m).fract() != 0.0
    {
        errs.push(invalid(
            path,
            v,
            format!(
                "{} should be a multiple of {}",
                body_path(path),
                go_float(m)
            ),
        ));
    }
}

/// `allOf`, `anyOf`, `oneOf` and `not`, worded as kube-openapi's composite errors.
fn validate_junctors(n: &Node, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let run = |sub: &Node| {
        let mut e = Vec::new();
        validate(sub, v, None, path, &mut e);
        e
    };
    let composite =
        |detail: String| FieldError::new(FieldErrorKind::Invalid, "", Some(go_quote("")), detail);
    let quoted = go_quote(path);
    let mut failed_all = false;
    for sub in &n.all_of {
        let e = run(sub);
        failed_all |= !e.is_empty();
        errs.extend(e);
    }
    if failed_all {
        errs.push(composite(format!(
            "{quoted} must validate all the schemas (allOf)"
        )));
    }
    if !n.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = n.any_of.iter().map(run).collect();
        if results.iter().all(|e| !e.is_empty()) {
            errs.push(composite(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
            errs.extend(results.into_iter().next().unwrap_or_default());
        }
    }
    if !n.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = n.one_of.iter().map(run).collect();
        let valid = results.iter().filter(|e| e.is_empty()).count();
        if valid == 0 {
            errs.push(composite(format!(
                "{quoted} must validate one and only one schema (oneOf). Found none valid"
            )));
            errs.extend(results.into_iter().next().unwrap_or_default());
        } else if valid > 1 {
            errs.push(composite(format!(
                "{quoted} must validate one and only one schema (oneOf). Found {valid} valid alternatives"
            )));
        }
    }
    if let Some(not) = &n.not
        && run(not).is_empty()
    {
        errs.push(composite(format!(
            "{quoted} must not validate the schema (not)"
        )));
    }
}

/// `spec.x in body`, the subject of kube-openapi's messages.
fn body_path(path: &str) -> String {
    format!("{path} in body")
}

fn invalid(path: &str, v: &Value, detail: String) -> FieldError {
    FieldError::new(FieldErrorKind::Invalid, path, Some(go_value(v)), detail)
}

/// `minItems`/`maxItems` (`unit`: items) or `minProperties`/`maxProperties` (properties).
fn check_size(
    len: usize,
    (min, max): (Option<i64>, Option<i64>),
    unit: &str,
    path: &str,
    v: &Value,
    errs: &mut Vec<FieldError>,
) {
    let len = len as i64;
    if let Some(min) = min
        && len < min
    {
        let detail = format!("{} should have at least {min} {unit}", body_path(path));
        errs.push(invalid(path, v, detail));
    }
    if let Some(max) = max
        && len > max
    {
        // kube-apiserver words both as `field.TooMany`, in items.
        let unit = if max == 1 { "item" } else { "items" };
        errs.push(FieldError::new(
            FieldErrorKind::TooMany,
            path,
            Some(len.to_string()),
            format!("must have at most {max} {unit}"),
        ));
    }
}

fn type_error(n: &Node, v: &Value, path: &str) -> FieldError {
    let expected = if n.int_or_string {
        "integer,string"
    } else {
        n.ty.map(JsonType::name).unwrap_or_default()
    };
    let actual = type_of(v);
    FieldError::new(
        FieldErrorKind::TypeInvalid,
        path,
        Some(go_quote(actual)),
        format!(
            "{} must be of type {expected}: {}",
            body_path(path),
            go_quote(actual)
        ),
    )
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Whether `v`, an object field with schema `n`, is a `null` kube-apiserver drops before
/// validating (a field that is not nullable): such a field counts as absent.
fn dropped_null(n: &Node, v: &Value) -> bool {
    v.is_null() && !n.nullable
}

/// An object's field as kube-apiserver sees it (a dropped `null` is absent).
fn field<'a>(n: &Node, map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    let v = map.get(key)?;
    match n.properties.get(key).or(n.additional.as_deref()) {
        Some(sub) if dropped_null(sub, v) => None,
        _ => Some(v),
    }
}

/// The old item of a `x-kubernetes-list-type: map` list with the same keys as `item`.
fn old_item<'a>(n: &Node, old_list: &'a Value, item: &Value) -> Option<&'a Value> {
    if n.map_keys.is_empty() {
        return None;
    }
    old_list.as_array()?.iter().find(|o| {
        n.map_keys
            .iter()
            .all(|k| o.get(k).is_some() && o.get(k) == item.get(k))
    })
}

/// The CEL rules of `n` and below. `unchanged`: `v` equals the old value (only transition
/// rules run then).
fn run_rules(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    unchanged: bool,
    errs: &mut Vec<FieldError>,
) {
    if !n.has_rules || v.is_null() {
        return;
    }
    let unchanged = unchanged || old == Some(v);
    if unchanged && !n.has_transitions {
        return;
    }
    if !n.rules.is_empty() {
        let this = to_cel(v, Some(n));
        let previous = old.filter(|o| !o.is_null()).map(|o| to_cel(o, Some(n)));
        for rule in &n.rules {
            if (rule.transition && previous.is_none()) || (!rule.transition && unchanged) {
                continue;
            }
            if let Some(e) = run_rule(n, rule, &this, previous.as_ref(), path) {
                errs.push(e);
            }
        }
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if let Some(sub) = n.properties.get(k).or(n.additional.as_deref()) {
                    let prev = old.and_then(|o| o.get(k));
                    run_rules(sub, x, prev, &child(path, k), unchanged, errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &n.items {
                for (i, x) in items.iter().enumerate() {
                    let prev = old.and_then(|o| old_item(n, o, x));
                    let unchanged = unchanged && prev == Some(x);
                    run_rules(item, x, prev, &format!("{path}[{i}]"), unchanged, errs);
                }
            }
        }
        _ => {}
    }
}

/// Evaluate one rule with `self` (and `oldSelf`): `None` when it holds.
fn run_rule(
    n: &Node,
    rule: &Rule,
    this: &cel::Value,
    previous: Option<&cel::Value>,
    path: &str,
) -> Option<FieldError> {
    let mut ctx = cel::Context::with_env(CEL_ENV.clone());
    ctx.add_variable_from_value("self", this.clone());
    if let Some(p) = previous {
        ctx.add_variable_from_value("oldSelf", p.clone());
    }
    let rule_text = || {
        rule.message
            .as_deref()
            .unwrap_or(&rule.source)
            .trim()
            .to_string()
    };
    let detail = match rule.program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => return None,
        Ok(_) => rule
            .message_expression
            .as_ref()
            .and_then(|m| match m.execute(&ctx) {
                Ok(cel::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                _ => None,
            })
            .or_else(|| rule.message.as_ref().map(|m| m.trim().to_string()))
            .unwrap_or_else(|| format!("failed rule: {}", rule.source.trim())),
        Err(e) => format!("{e} evaluating rule: {}", rule_text()),
    };
    let field = match &rule.field_path {
        Some(f) => child(path, f),
        None => path.to_string(),
    };
    let ty = if n.int_or_string {
        ""
    } else {
        n.ty.map(JsonType::name).unwrap_or_default()
    };
    let value = match rule.reason {
        FieldErrorKind::Required | FieldErrorKind::Forbidden => None,
        _ => Some(go_quote(ty)),
    };
    Some(FieldError::new(rule.reason, &field, value, detail))
}

/// A JSON value as a CEL value (integers as `int`, as Kubernetes binds them). Object fields
/// that are dropped `null`s (see [`dropped_null`]) are left out, so `has()` is false for them.
fn to_cel(v: &Value, n: Option<&Node>) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(num) => match (num.as_i64(), num.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(num.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => {
            let items = n.and_then(|n| n.items.as_deref());
            cel::Value::List(Arc::new(a.iter().map(|x| to_cel(x, items)).collect()))
        }
        Value::Object(m) => {
            let map: HashMap<cel::objects::Key, cel::Value> = m
                .iter()
                .filter_map(|(k, x)| {
                    let sub = n.and_then(|n| n.properties.get(k).or(n.additional.as_deref()));
                    if sub.is_some_and(|s| dropped_null(s, x)) {
                        return None;
                    }
                    Some((
                        cel::objects::Key::String(Arc::new(k.clone())),
                        to_cel(x, sub),
                    ))
                })
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Result<Schema, Vec<FieldError>> {
        let props: JSONSchemaProps = serde_json::from_value(v).unwrap();
        Schema::compile(&props, "s")
    }

    /// The error messages, sorted.
    fn messages(r: Result<(), Vec<FieldError>>) -> Vec<String> {
        let mut m: Vec<String> = r
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        m.sort();
        m
    }

    #[test]
    fn keywords() {
        let s = schema(json!({
            "type": "object",
            "required": ["spec"],
            "properties": {"spec": {"type": "object", "properties": {
                "price": {"type": "string", "pattern": "^[0-9]+$"},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "count": {"type": "integer", "minimum": 1, "maximum": 64},
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                "name": {"type": "string", "maxLength": 3, "minLength": 1},
                "list": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "opt": {"type": "string", "nullable": true},
            }}}
        }))
        .unwrap();
        let ok = json!({"spec": {"price": "4", "mode": "a", "count": 2, "ratio": 0.5, "name": "abc",
            "list": ["x"], "labels": {"a": "b"}, "port": "http", "free": {"any": [1, {"x": null}]}, "opt": null}});
        assert_eq!(s.check(&ok, None), Ok(()));
        assert_eq!(
            s.check(&json!({"spec": {"port": 8080, "count": 2.0}}), None),
            Ok(())
        );
        let bad = json!({"spec": {"price": "4 dollars", "mode": "c", "count": 0, "ratio": 0, "name": "abcd",
            "list": ["x", "y"], "labels": {"a": 1}, "port": true}});
        assert_eq!(
            messages(s.check(&bad, None)),
            [
                r#"spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1"#,
                r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
                r#"spec.list: Too many: 2: must have at most 1 item"#,
                r#"spec.mode: Unsupported value: "c": supported values: "a", "b""#,
                r#"spec.name: Too long: may not be more than 3 bytes"#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
                r#"spec.price: Invalid value: "4 dollars": spec.price in body should match '^[0-9]+$'"#,
                r#"spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"#,
            ]
        );
        assert_eq!(
            messages(s.check(&json!({"kind": "X"}), None)),
            ["spec: Required value"]
        );
        assert_eq!(
            messages(s.check(&json!({"spec": {"count": 65, "ratio": 1e7}}), None)),
            [
                "spec.count: Invalid value: 65: spec.count in body should be less than or equal to 64"
            ]
        );
    }

    #[test]
    fn rules_and_transitions() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "!has(self.a) || (has(self.b) && self.b.mode == 'x')", "message": "a needs b.mode x"},
                    {"rule": "self.c == oldSelf.c", "message": "c is immutable"},
                    {"rule": "self.b.mode != 'y'"},
                ],
                "properties": {
                    "a": {"type": "string"},
                    "b": {"type": "object", "properties": {"mode": {"type": "string"}}},
                    "c": {"type": "string"},
                }
            }}
        }))
        .unwrap();
        let v = |spec: Value| json!({"spec": spec});
        assert_eq!(
            s.check(&v(json!({"c": "1", "b": {"mode": "x"}})), None),
            Ok(())
        );
        assert_eq!(
            messages(s.check(&v(json!({"a": "1", "b": {"mode": "y"}})), None)),
            [
                r#"spec: Invalid value: "object": a needs b.mode x"#,
                r#"spec: Invalid value: "object": failed rule: self.b.mode != 'y'"#,
            ]
        );
        assert_eq!(
            messages(s.check(&v(json!({})), None)),
            [
                r#"spec: Invalid value: "object": No such key: b evaluating rule: self.b.mode != 'y'"#
            ]
        );
        let old = v(json!({"c": "1", "b": {"mode": "x"}}));
        assert_eq!(
            messages(s.check(&v(json!({"c": "2", "b": {"mode": "x"}})), Some(&old))),
            [r#"spec: Invalid value: "object": c is immutable"#]
        );
        // An invalid value left unchanged by an update is not refused again (ratcheting),
        // but is as soon as it changes.
        let stored = v(json!({"a": "1", "b": {"mode": "y"}, "c": "1"}));
        let mut edited = stored.clone();
        edited["status"] = json!({"x": 1});
        assert_eq!(s.check(&edited, Some(&stored)), Ok(()));
        edited["spec"]["d"] = json!(1);
        assert_eq!(messages(s.check(&edited, Some(&stored))).len(), 2);
    }

    #[test]
    fn nulls_of_fields_that_are_not_nullable_count_as_absent() {
        let s = schema(json!({
            "type": "object",
            "required": ["a"],
            "x-kubernetes-validations": [{"rule": "!has(self.b)", "message": "no b"}],
            "properties": {
                "a": {"type": "string"},
                "b": {"type": "string"},
                "c": {"type": "string", "nullable": true},
                "list": {"type": "array", "items": {"type": "string"}},
            }
        }))
        .unwrap();
        assert_eq!(
            s.check(&json!({"a": "x", "b": null, "c": null}), None),
            Ok(())
        );
        assert_eq!(
            messages(s.check(&json!({"a": null}), None)),
            [
                r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#,
                "a: Required value",
            ]
        );
        let m = messages(s.check(&json!({"a": "x", "list": [null]}), None));
        assert_eq!(
            m[1],
            r#"list[0]: Invalid value: "null": list[0] in body must be of type string: "null""#
        );
    }

    #[test]
    fn bad_schemas_are_refused() {
        let e = schema(json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==", "message": "m"}]}))
            .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "s.x-kubernetes-validations[0].rule");
        assert!(e[0].to_string().contains("compilation failed"), "{}", e[0]);
        let e = schema(
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(a"}}}),
        )
        .unwrap_err();
        assert_eq!(e[0].field, "s.properties[a].pattern");
    }

    #[test]
    fn go_number_format() {
        assert_eq!(go_float(64.0), "64");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(0.00001), "1e-05");
    }
}
