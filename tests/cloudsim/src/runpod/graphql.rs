//! GraphQL mechanics for the RunPod personality: turning a `POST /graphql` body into an operation
//! whose arguments are plain JSON (inline literals and `$variables` alike), and projecting result
//! objects onto the selection set the client asked for.
//!
//! Real clients differ (runpodctl sends `$input` variables, dstack and runpod-python inline
//! literals), so requests are parsed with a real parser (`graphql-parser`) rather than pattern
//! matched. Fragments (named and inline), aliases and `@skip`/`@include` are supported. There is
//! no schema: result objects are built in full (with a `__typename` key) and a field the object
//! lacks is a validation error, as a real server would report.

use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    parse_query,
};
use serde_json::{Map, Value};

/// Root type of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `query` (or an anonymous selection set).
    Query,
    /// `mutation`.
    Mutation,
}

/// One selected field, fragments expanded and arguments resolved to JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SelField {
    /// The field name.
    pub name: String,
    /// The key in the response (the alias, else the name).
    pub key: String,
    /// Arguments with variables substituted.
    pub args: Map<String, Value>,
    /// Sub-selection (empty for leaves).
    pub sub: Vec<SelField>,
}

/// A parsed, variable-resolved operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Query or mutation.
    pub kind: OpKind,
    /// The root fields.
    pub fields: Vec<SelField>,
}

/// A request-level GraphQL error (the request is not executed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GqlError {
    /// Human-readable message.
    pub message: String,
    /// `extensions.code`.
    pub code: &'static str,
}

impl GqlError {
    fn parse(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "GRAPHQL_PARSE_FAILED",
        }
    }

    /// A validation failure.
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "GRAPHQL_VALIDATION_FAILED",
        }
    }

    fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: "BAD_USER_INPUT",
        }
    }
}

type Doc<'a> = Document<'a, String>;
type GValue<'a> = graphql_parser::query::Value<'a, String>;

/// Parses a GraphQL-over-HTTP JSON body `{"query", "variables"?, "operationName"?}`.
pub fn parse_request(body: &[u8]) -> Result<Operation, GqlError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GqlError::parse(format!("POST body is not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(GqlError::parse("POST body must be a JSON object"));
    };
    let Some(Value::String(query)) = obj.get("query") else {
        return Err(GqlError::parse(
            "POST body must have a string \"query\" (GraphQL operations must contain a non-empty `query`)",
        ));
    };
    let variables = match obj.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(GqlError::input("\"variables\" must be an object")),
    };
    let op_name = match obj.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(GqlError::input("\"operationName\" must be a string")),
    };
    parse_operation(query, &variables, op_name)
}

/// Parses `query` and selects the operation to run.
pub fn parse_operation(
    query: &str,
    variables: &Map<String, Value>,
    op_name: Option<&str>,
) -> Result<Operation, GqlError> {
    let doc: Doc = parse_query::<String>(query)
        .map_err(|e| GqlError::parse(format!("Syntax Error: {}", e.to_string().trim())))?;
    let ops: Vec<&OperationDefinition<String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(o) => Some(o),
            Definition::Fragment(_) => None,
        })
        .collect();
    let name_of = |o: &OperationDefinition<String>| match o {
        OperationDefinition::Query(q) => q.name.clone(),
        OperationDefinition::Mutation(m) => m.name.clone(),
        OperationDefinition::Subscription(s) => s.name.clone(),
        OperationDefinition::SelectionSet(_) => None,
    };
    let op = match op_name {
        Some(n) => ops
            .iter()
            .find(|o| name_of(o).as_deref() == Some(n))
            .ok_or_else(|| GqlError::input(format!("Unknown operation named \"{n}\".")))?,
        None if ops.len() == 1 => &ops[0],
        None if ops.is_empty() => {
            return Err(GqlError::validation("No operation in the document."));
        }
        None => {
            return Err(GqlError::input(
                "Must provide operation name if query contains multiple operations.",
            ));
        }
    };
    let (kind, defs, set) = match op {
        OperationDefinition::SelectionSet(s) => (OpKind::Query, &[][..], s),
        OperationDefinition::Query(q) => {
            (OpKind::Query, &q.variable_definitions[..], &q.selection_set)
        }
        OperationDefinition::Mutation(m) => (
            OpKind::Mutation,
            &m.variable_definitions[..],
            &m.selection_set,
        ),
        OperationDefinition::Subscription(_) => {
            return Err(GqlError::validation("Subscriptions are not supported."));
        }
    };
    let mut vars = Map::new();
    for d in defs {
        let v = match variables.get(&d.name) {
            Some(v) => v.clone(),
            None => match &d.default_value {
                Some(dv) => to_json(dv, &Map::new(), &[])?,
                None => Value::Null,
            },
        };
        if v.is_null() && matches!(d.var_type, graphql_parser::query::Type::NonNullType(_)) {
            return Err(GqlError::input(format!(
                "Variable \"${}\" of required type \"{}\" was not provided.",
                d.name, d.var_type
            )));
        }
        vars.insert(d.name.clone(), v);
    }
    let declared: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    let fragments: Vec<&FragmentDefinition<String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some(f),
            Definition::Operation(_) => None,
        })
        .collect();
    let ctx = Ctx {
        vars: &vars,
        declared: &declared,
        fragments: &fragments,
    };
    let fields = ctx.selection(set, 0)?;
    Ok(Operation { kind, fields })
}

struct Ctx<'c, 'a> {
    vars: &'c Map<String, Value>,
    declared: &'c [&'c str],
    fragments: &'c [&'c FragmentDefinition<'a, String>],
}

const MAX_DEPTH: usize = 32;

impl Ctx<'_, '_> {
    fn selection(
        &self,
        set: &SelectionSet<String>,
        depth: usize,
    ) -> Result<Vec<SelField>, GqlError> {
        if depth > MAX_DEPTH {
            return Err(GqlError::validation(
                "Query is nested too deeply (or fragments form a cycle).",
            ));
        }
        let mut out = Vec::new();
        for item in &set.items {
            match item {
                Selection::Field(f) => {
                    if !self.included(&f.directives)? {
                        continue;
                    }
                    let mut args = Map::new();
                    for (k, v) in &f.arguments {
                        args.insert(k.clone(), to_json(v, self.vars, self.declared)?);
                    }
                    out.push(SelField {
                        name: f.name.clone(),
                        key: f.alias.clone().unwrap_or_else(|| f.name.clone()),
                        args,
                        sub: self.selection(&f.selection_set, depth + 1)?,
                    });
                }
                Selection::InlineFragment(i) => {
                    if self.included(&i.directives)? {
                        out.extend(self.selection(&i.selection_set, depth + 1)?);
                    }
                }
                Selection::FragmentSpread(s) => {
                    if !self.included(&s.directives)? {
                        continue;
                    }
                    let frag = self
                        .fragments
                        .iter()
                        .find(|f| f.name == s.fragment_name)
                        .ok_or_else(|| {
                            GqlError::validation(format!(
                                "Unknown fragment \"{}\".",
                                s.fragment_name
                            ))
                        })?;
                    out.extend(self.selection(&frag.selection_set, depth + 1)?);
                }
            }
        }
        Ok(out)
    }

    fn included(
        &self,
        directives: &[graphql_parser::query::Directive<String>],
    ) -> Result<bool, GqlError> {
        for d in directives {
            let cond = d
                .arguments
                .iter()
                .find(|(k, _)| k == "if")
                .map(|(_, v)| to_json(v, self.vars, self.declared))
                .transpose()?;
            match (d.name.as_str(), cond) {
                ("skip", Some(Value::Bool(true))) | ("include", Some(Value::Bool(false))) => {
                    return Ok(false);
                }
                ("skip" | "include", Some(Value::Bool(_))) => {}
                ("skip" | "include", _) => {
                    return Err(GqlError::validation(format!(
                        "Directive \"@{}\" needs a Boolean \"if\" argument.",
                        d.name
                    )));
                }
                _ => {}
            }
        }
        Ok(true)
    }
}

/// A GraphQL literal as JSON, variables substituted. Enums become strings.
fn to_json(v: &GValue, vars: &Map<String, Value>, declared: &[&str]) -> Result<Value, GqlError> {
    Ok(match v {
        GValue::Variable(name) => {
            if !declared.contains(&name.as_str()) {
                return Err(GqlError::validation(format!(
                    "Variable \"${name}\" is not defined."
                )));
            }
            vars.get(name).cloned().unwrap_or(Value::Null)
        }
        GValue::Int(n) => n.as_i64().map_or(Value::Null, Value::from),
        GValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        GValue::String(s) => Value::String(s.clone()),
        GValue::Boolean(b) => Value::Bool(*b),
        GValue::Null => Value::Null,
        GValue::Enum(e) => Value::String(e.clone()),
        GValue::List(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(i, vars, declared))
                .collect::<Result<_, _>>()?,
        ),
        GValue::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, vars, declared)?)))
                .collect::<Result<_, GqlError>>()?,
        ),
    })
}

/// Computes fields whose value depends on their arguments (`lowestPrice(input: ...)`): given the
/// parent's full object and the field, `Some(full value)` to use instead of the parent's entry.
pub type ArgHook<'h> = &'h dyn Fn(&Value, &SelField) -> Option<Result<Value, GqlError>>;

/// Projects a full result onto a selection. Objects must carry `__typename`; arrays are mapped;
/// `null` stays `null`. A field the object lacks is a validation error, as is a sub-selection on a
/// scalar or a missing sub-selection on an object.
pub fn project(full: &Value, sel: &[SelField], hook: ArgHook) -> Result<Value, GqlError> {
    match full {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| project(i, sel, hook))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(obj) => {
            let type_name = obj
                .get("__typename")
                .and_then(Value::as_str)
                .unwrap_or("Object");
            if sel.is_empty() {
                return Err(GqlError::validation(format!(
                    "Field of type \"{type_name}\" must have a selection of subfields."
                )));
            }
            let mut out = Map::new();
            for f in sel {
                let value = match hook(full, f) {
                    Some(v) => v?,
                    None => obj.get(&f.name).cloned().ok_or_else(|| {
                        GqlError::validation(format!(
                            "Cannot query field \"{}\" on type \"{type_name}\".",
                            f.name
                        ))
                    })?,
                };
                let projected = if is_composite(&value) || (value.is_array() && !f.sub.is_empty()) {
                    project(&value, &f.sub, hook)?
                } else if !f.sub.is_empty() && !value.is_null() {
                    return Err(GqlError::validation(format!(
                        "Field \"{}\" must not have a selection since its type has no subfields.",
                        f.name
                    )));
                } else {
                    value
                };
                merge(&mut out, &f.key, projected);
            }
            Ok(Value::Object(out))
        }
        scalar if scalar_with_selection(scalar) && !sel.is_empty() => Err(GqlError::validation(
            "A field with a selection of subfields has a scalar type.",
        )),
        scalar => Ok(scalar.clone()),
    }
}

/// An object, or a list holding one (lists of scalars are leaves).
fn is_composite(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(|i| i.is_object() || i.is_array()),
        _ => false,
    }
}

/// A scalar where a selection of subfields was given (lists are looked into).
fn scalar_with_selection(v: &Value) -> bool {
    match v {
        Value::Null | Value::Object(_) => false,
        Value::Array(items) => items.iter().any(scalar_with_selection),
        _ => true,
    }
}

/// The same response key selected twice (e.g. via a fragment) merges its sub-selections.
fn merge(out: &mut Map<String, Value>, key: &str, v: Value) {
    match (out.get_mut(key), v) {
        (Some(Value::Object(a)), Value::Object(b)) => {
            for (k, v) in b {
                merge(a, &k, v);
            }
        }
        (_, v) => {
            out.insert(key.to_owned(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_hook(_: &Value, _: &SelField) -> Option<Result<Value, GqlError>> {
        None
    }

    #[test]
    fn inline_literals_and_variables_agree() {
        let inline = parse_operation(
            r#"mutation { podTerminate(input: {podId: "abc", n: 2, f: 0.5, e: SECURE, l: [1]}) }"#,
            &Map::new(),
            None,
        )
        .unwrap();
        let vars = json!({"input": {"podId": "abc", "n": 2, "f": 0.5, "e": "SECURE", "l": [1]}});
        let with_vars = parse_operation(
            "mutation Kill($input: PodTerminateInput!) { podTerminate(input: $input) }",
            vars.as_object().unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(inline, with_vars);
        assert_eq!(inline.kind, OpKind::Mutation);
    }

    #[test]
    fn rejects_bad_documents() {
        let e = parse_operation("query { pod(", &Map::new(), None).unwrap_err();
        assert_eq!(e.code, "GRAPHQL_PARSE_FAILED");
        let e = parse_operation("query { pod(input: $x) { id } }", &Map::new(), None).unwrap_err();
        assert_eq!(e.code, "GRAPHQL_VALIDATION_FAILED");
        let e = parse_operation(
            "query Q($x: String!) { pod(input: {podId: $x}) { id } }",
            &Map::new(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.code, "BAD_USER_INPUT");
        let e = parse_operation("query A { a } query B { b }", &Map::new(), None).unwrap_err();
        assert_eq!(e.code, "BAD_USER_INPUT");
        assert!(parse_request(b"not json").is_err());
        assert!(parse_request(br#"{"query": 1}"#).is_err());
    }

    #[test]
    fn projects_aliases_fragments_and_directives() {
        let op = parse_operation(
            "query { p: pod { ...F id @skip(if: true) runtime { uptimeInSeconds } } } fragment F on Pod { name }",
            &Map::new(),
            None,
        )
        .unwrap();
        let full =
            json!({"__typename": "Pod", "id": "x", "name": "n", "runtime": null, "extra": 1});
        let out = project(&full, &op.fields[0].sub, &no_hook).unwrap();
        assert_eq!(out, json!({"name": "n", "runtime": null}));
        assert_eq!(op.fields[0].key, "p");
        let bad = parse_operation("{ pod { nope } }", &Map::new(), None).unwrap();
        let e = project(&full, &bad.fields[0].sub, &no_hook).unwrap_err();
        assert!(
            e.message
                .contains("Cannot query field \"nope\" on type \"Pod\""),
            "{e}"
        );
        let leafy = parse_operation("{ pod { name { x } } }", &Map::new(), None).unwrap();
        assert!(project(&full, &leafy.fields[0].sub, &no_hook).is_err());
    }
}
