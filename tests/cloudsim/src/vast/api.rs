//! Vast.ai's wire format: the `{"success": false, "error", "msg"}` error bodies (and the odd
//! ones: `{"detail"}` and plain-text 429s), the offer search filter language, and validation of
//! `PUT /asks/{id}/` bodies.

use std::cmp::Ordering;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error answer of the Vast API.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// `{"success": false, "error", "msg"}` plus extra fields (e.g. `new_contract`, `ask_id`).
    Std {
        status: StatusCode,
        error: &'static str,
        msg: String,
        extra: Map<String, Value>,
    },
    /// 429 with a `{"detail"}` body (create instance).
    DetailTooFrequent(String),
    /// 429 with a plain-text body.
    TextTooFrequent(String),
}

impl ApiError {
    pub fn std(status: StatusCode, error: &'static str, msg: impl Into<String>) -> Self {
        Self::Std {
            status,
            error,
            msg: msg.into(),
            extra: Map::new(),
        }
    }

    /// 400 `invalid_args`.
    pub fn invalid(msg: impl std::fmt::Display) -> Self {
        Self::std(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            format!("error 400/3467: Invalid args: {msg}"),
        )
    }

    /// 401 `auth_error`.
    pub fn auth() -> Self {
        Self::std(StatusCode::UNAUTHORIZED, "auth_error", "Invalid user key")
    }

    /// 404 `not_found` for instances. UNCONFIRMED (`no_such_instance` in older clients).
    pub fn instance_not_found() -> Self {
        Self::std(StatusCode::NOT_FOUND, "not_found", "Instance not found")
    }

    /// 404 `no_such_ask` for an unknown offer id.
    pub fn no_such_ask(id: &str) -> Self {
        Self::std(
            StatusCode::NOT_FOUND,
            "no_such_ask",
            format!("error 404/3603: no_such_ask Instance type by id {id} is not available."),
        )
    }

    /// 410 `no_such_ask` for an offer that is no longer available.
    pub fn ask_gone(id: &str) -> Self {
        Self::std(
            StatusCode::GONE,
            "no_such_ask",
            format!("error 410/3603: no_such_ask Instance type by id {id} is not available."),
        )
    }

    /// 500.
    pub fn internal() -> Self {
        Self::std(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal server error",
        )
    }

    /// With one more body field.
    pub fn with(mut self, key: &str, v: Value) -> Self {
        if let Self::Std { extra, .. } = &mut self {
            extra.insert(key.to_owned(), v);
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Std {
                status,
                error,
                msg,
                extra,
            } => {
                let mut body = json!({"success": false, "error": error, "msg": msg});
                for (k, v) in extra {
                    body[k] = v;
                }
                (status, Json(body)).into_response()
            }
            Self::DetailTooFrequent(m) => {
                (StatusCode::TOO_MANY_REQUESTS, Json(json!({"detail": m}))).into_response()
            }
            Self::TextTooFrequent(m) => (StatusCode::TOO_MANY_REQUESTS, m).into_response(),
        }
    }
}

/// The control keys of a search body (everything else is a field filter).
const CONTROLS: &[&str] = &[
    "limit",
    "type",
    "order",
    "allocated_storage",
    "disable_bundling",
    "extra_ids",
];

/// A parsed search: field filters, order, limit.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub filters: Vec<(String, String, Value)>,
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

impl Search {
    /// Parses the `{field: {op: value}, "order": [[f, "asc"]], "limit": n, "type": ...}` body.
    pub fn parse(v: &Value) -> Result<Self, ApiError> {
        let Value::Object(o) = v else {
            return Err(ApiError::invalid("search query must be a JSON object"));
        };
        let mut s = Search::default();
        for (k, v) in o {
            match k.as_str() {
                "limit" => {
                    s.limit = Some(
                        v.as_u64()
                            .ok_or_else(|| ApiError::invalid("limit must be an integer"))?
                            as usize,
                    )
                }
                "order" => {
                    let items = v.as_array().ok_or_else(|| {
                        ApiError::invalid("order must be a list of [field, asc|desc]")
                    })?;
                    for i in items {
                        let f = i.get(0).and_then(Value::as_str).ok_or_else(|| {
                            ApiError::invalid("order must be a list of [field, asc|desc]")
                        })?;
                        let desc = i.get(1).and_then(Value::as_str) == Some("desc");
                        s.order.push((f.to_owned(), desc));
                    }
                }
                k if CONTROLS.contains(&k) => {}
                field => {
                    let Value::Object(ops) = v else {
                        return Err(ApiError::invalid(format!(
                            "filter {field} must be an object of operators"
                        )));
                    };
                    for (op, arg) in ops {
                        if !["eq", "neq", "gt", "lt", "gte", "lte", "in", "notin", "nin"]
                            .contains(&op.as_str())
                        {
                            return Err(ApiError::invalid(format!(
                                "unknown operator {op} for {field}"
                            )));
                        }
                        s.filters.push((field.to_owned(), op.clone(), arg.clone()));
                    }
                }
            }
        }
        Ok(s)
    }

    /// Whether an offer object passes every filter. A filter on a field the offer lacks is
    /// ignored (UNCONFIRMED: the real server's behaviour is unknown).
    pub fn matches(&self, offer: &Value) -> bool {
        self.filters
            .iter()
            .all(|(field, op, arg)| match offer.get(field) {
                None => true,
                Some(v) => test(v, op, arg),
            })
    }

    /// Sorts by `order`.
    pub fn sort(&self, offers: &mut [Value]) {
        offers.sort_by(|a, b| {
            for (f, desc) in &self.order {
                let o = cmp(&a[f], &b[f]).unwrap_or(Ordering::Equal);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
}

fn cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eq(a: &Value, b: &Value) -> bool {
    cmp(a, b) == Some(Ordering::Equal)
}

fn test(v: &Value, op: &str, arg: &Value) -> bool {
    let list = || arg.as_array().cloned().unwrap_or_else(|| vec![arg.clone()]);
    match op {
        "eq" => eq(v, arg),
        "neq" => !eq(v, arg),
        "gt" => cmp(v, arg) == Some(Ordering::Greater),
        "lt" => cmp(v, arg) == Some(Ordering::Less),
        "gte" => matches!(cmp(v, arg), Some(Ordering::Greater | Ordering::Equal)),
        "lte" => matches!(cmp(v, arg), Some(Ordering::Less | Ordering::Equal)),
        "in" => list().iter().any(|x| eq(v, x)),
        _ => !list().iter().any(|x| eq(v, x)),
    }
}

/// A validated create-instance body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub image: String,
    pub label: Option<String>,
    pub disk_gb: f64,
    pub onstart: Option<String>,
    pub args: Vec<String>,
    /// `env` as pairs (object form, or parsed from the Docker-flag string form).
    pub env: Vec<(String, String)>,
    /// Interruptible bid, USD per hour for the machine.
    pub price: Option<f64>,
}

fn opt_str(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a string"))),
    }
}

/// `"-e A=1 -p 8000:8000"` -> `[("A","1"), ("-p 8000:8000","1")]`.
fn env_from_flags(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = s.split_whitespace();
    while let Some(t) = it.next() {
        match t {
            "-e" => {
                if let Some(kv) = it.next() {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    out.push((k.to_owned(), v.to_owned()));
                }
            }
            "-p" => {
                if let Some(p) = it.next() {
                    out.push((format!("-p {p}"), "1".to_owned()));
                }
            }
            _ => {}
        }
    }
    out
}

impl CreateRequest {
    /// Validates a `PUT /asks/{id}/` body per `create_instance.yaml`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let o = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => o,
            _ => return Err(ApiError::invalid("body must be a JSON object")),
        };
        let image = opt_str(&o, "image")?;
        let template = opt_str(&o, "template_hash_id")?;
        let image = match (image, template) {
            (Some(i), _) if !i.is_empty() => i,
            (_, Some(t)) => format!("template:{t}"),
            _ => return Err(ApiError::invalid("image is required")),
        };
        if image.len() > 1024 {
            return Err(ApiError::invalid("image is longer than 1024 characters"));
        }
        let label = opt_str(&o, "label")?;
        if label.as_ref().is_some_and(|l| l.chars().count() > 256) {
            return Err(ApiError::invalid("label is longer than 256 characters"));
        }
        let disk_gb = match o.get("disk") {
            None | Some(Value::Null) => 8.0,
            Some(v) => v
                .as_f64()
                .filter(|d| *d >= 8.0)
                .ok_or_else(|| ApiError::invalid("disk must be a number >= 8"))?,
        };
        let onstart = opt_str(&o, "onstart")?;
        let args: Vec<String> = match o.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::invalid("args must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid("args must be a list of strings")),
        };
        let args_str = opt_str(&o, "args_str")?.unwrap_or_default();
        let script_len = onstart.as_ref().map_or(0, String::len)
            + args.iter().map(String::len).sum::<usize>()
            + args_str.len();
        if script_len > 4096 {
            return Err(ApiError::invalid(
                "args, args_str and onstart combined exceed 4096 characters",
            ));
        }
        let env = match o.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => env_from_flags(s),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect::<Result<_, ApiError>>()?,
            Some(_) => return Err(ApiError::invalid("env must be an object or a string")),
        };
        if env.iter().any(|(k, v)| k.len() + v.len() > 256)
            || env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > 32_768
        {
            return Err(ApiError::invalid(
                "env entries are limited to 256 characters each, 32768 in total",
            ));
        }
        let price = match o.get("price") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(p) if (0.001..=128.0).contains(&p) => Some(p),
                _ => {
                    return Err(ApiError::std(
                        StatusCode::BAD_REQUEST,
                        "invalid_price",
                        "error 400/3467: Invalid args: price must be between 0.001 and 128.0",
                    ));
                }
            },
        };
        Ok(Self {
            image,
            label,
            disk_gb,
            onstart,
            args,
            env,
            price,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_filters_and_orders() {
        let s = Search::parse(&json!({"gpu_name": {"in": ["RTX 4090"]}, "num_gpus": {"gte": 2}, "rentable": {"eq": true}, "order": [["dph_total", "desc"]], "type": "ondemand", "limit": 3})).unwrap();
        assert!(s.matches(&json!({"gpu_name": "RTX 4090", "num_gpus": 4, "rentable": true})));
        assert!(!s.matches(&json!({"gpu_name": "RTX 4090", "num_gpus": 1, "rentable": true})));
        assert!(!s.matches(&json!({"gpu_name": "H100 SXM", "num_gpus": 4, "rentable": true})));
        let mut v = vec![json!({"dph_total": 1.0}), json!({"dph_total": 3.0})];
        s.sort(&mut v);
        assert_eq!(v[0]["dph_total"], 3.0);
        assert!(Search::parse(&json!({"x": {"like": 1}})).is_err());
        assert!(Search::parse(&json!([])).is_err());
    }

    #[test]
    fn create_body_forms() {
        let r = CreateRequest::parse(br#"{"image":"i","env":"-e A=1 -p 8000:8000","price":0.2}"#)
            .unwrap();
        assert_eq!(
            r.env,
            vec![
                ("A".into(), "1".into()),
                ("-p 8000:8000".into(), "1".into())
            ]
        );
        assert_eq!(r.price, Some(0.2));
        let r = CreateRequest::parse(br#"{"image":"i","env":{"B":"2"},"disk":50}"#).unwrap();
        assert_eq!(r.env, vec![("B".into(), "2".into())]);
        assert!(CreateRequest::parse(br#"{"disk":50}"#).is_err());
        assert!(CreateRequest::parse(br#"{"image":"i","disk":2}"#).is_err());
        assert!(matches!(
            CreateRequest::parse(br#"{"image":"i","price":500}"#),
            Err(ApiError::Std {
                error: "invalid_price",
                ..
            })
        ));
        let long = format!(r#"{{"image":"i","onstart":"{}"}}"#, "x".repeat(5000));
        assert!(CreateRequest::parse(long.as_bytes()).is_err());
    }
}
