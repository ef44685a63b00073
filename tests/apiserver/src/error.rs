//! Typed API errors and their Kubernetes `Status` wire form.
//!
//! Exists so every failure the dev server reports reaches kube-rs exactly as a real
//! API server would phrase it (`kind: Status`, `reason`, `code`), because kube-rs and
//! the code under test branch on `reason`/`code` (e.g. `AlreadyExists`, `Conflict`).
//! [`FieldError`] is the apiserver's `field.Error`: one reason an object is invalid, worded
//! and aggregated the way kube-apiserver words it (`spec.x: Invalid value: "a": ...`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered to a client as a `meta.k8s.io/v1` `Status` object.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// 422 for an object that failed field validation (e.g. its CRD's schema), with one
    /// `details.causes` entry per error: what `apierrors.NewInvalid` answers.
    #[error("{}", invalid_message(.group, .kind, .name, .causes))]
    InvalidObject {
        group: String,
        kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 410: the requested resourceVersion is older than the retained history.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    /// An arbitrary status injected by a test hook.
    #[error("{message}")]
    Injected { code: u16, message: String },
}

impl ApiError {
    /// HTTP status code of this error.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Invalid(_) | ApiError::InvalidObject { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired(_) => 410,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::Injected { code, .. } => *code,
        }
    }

    /// The Kubernetes `StatusReason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Invalid(_) | ApiError::InvalidObject { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired(_) => "Expired",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
            ApiError::Injected { code, .. } => reason_for_code(*code),
        }
    }

    /// The `Status` object body.
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let ApiError::InvalidObject {
            group,
            kind,
            name,
            causes,
        } = self
        {
            let causes: Vec<Value> = causes
                .iter()
                .map(|c| json!({"reason": c.kind.reason(), "message": c.body(), "field": c.field}))
                .collect();
            body["details"] = json!({"name": name, "group": group, "kind": kind, "causes": causes});
        }
        body
    }
}

/// Best-effort reason string for an arbitrary HTTP code (used by injected faults).
pub fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status_body())).into_response()
    }
}

/// Conventional "not found" message, as the real server words it.
pub fn not_found(plural: &str, group: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{} \"{}\" not found",
        qualified(plural, group),
        name
    ))
}

/// Conventional optimistic-concurrency conflict message.
pub fn conflict_modified(plural: &str, group: &str, name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
        qualified(plural, group),
        name
    ))
}

/// `plural.group` (or just `plural` for the core group), as in real messages.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// The kind of a [`FieldError`] (Go's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    /// A value of the wrong JSON type (worded like `Invalid`).
    TypeInvalid,
    NotSupported,
    Forbidden,
    Duplicate,
    TooLong,
    TooMany,
}

impl FieldErrorKind {
    /// The `reason` of a `Status` cause (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    fn text(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
        }
    }

    /// Whether the message shows the bad value (as Go's `ErrorBody` decides).
    fn shows_value(self) -> bool {
        !matches!(
            self,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        )
    }
}

/// One reason an object is invalid: `{field}: {kind}: {value}: {detail}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// Dotted path from the object root (`spec.nodeTaints[0].effect`); `<nil>` for the root.
    pub field: String,
    /// The bad value as Go prints it (`"abc"`, `0`, `"object"`); `None` when not shown.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// An error at `path` (`""` is the root); `value` is already printed ([`go_value`]).
    pub fn new(
        kind: FieldErrorKind,
        path: &str,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: if path.is_empty() {
                "<nil>".into()
            } else {
                path.into()
            },
            value,
            detail: detail.into(),
        }
    }

    /// The message without the field (a `Status` cause's `message`).
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        if self.kind.shows_value()
            && let Some(v) = &self.value
        {
            s = format!("{s}: {v}");
        }
        if !self.detail.is_empty() {
            s = format!("{s}: {}", self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// `Kind.group "name" is invalid: ...`, several errors (without repeats) as `[a, b]`.
fn invalid_message(group: &str, kind: &str, name: &str, causes: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for c in causes {
        let m = c.to_string();
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    let qualified_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    match messages.as_slice() {
        [] => format!("{qualified_kind} \"{name}\" is invalid"),
        [one] => format!("{qualified_kind} \"{name}\" is invalid: {one}"),
        many => format!(
            "{qualified_kind} \"{name}\" is invalid: [{}]",
            many.join(", ")
        ),
    }
}

/// A JSON value printed as Go's `field.Error` prints a bad value: strings quoted, numbers
/// and booleans bare (floats as `%v` does), anything else as JSON.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => go_float(f),
            _ => n.to_string(),
        },
        Value::Null => go_quote("null"),
        other => other.to_string(),
    }
}

/// A string quoted as Go's `%q` does (close enough: JSON escaping).
pub fn go_quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A float as Go's `%v` prints it: shortest digits, exponent form (`1e+06`) from 1e6 on
/// and below 1e-4.
pub fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return match f {
            f if f.is_nan() => "NaN".into(),
            f if f == f64::INFINITY => "+Inf".into(),
            f if f == f64::NEG_INFINITY => "-Inf".into(),
            _ => "0".into(),
        };
    }
    let exp = f.abs().log10().floor();
    if !(-4.0..6.0).contains(&exp) {
        let e = format!("{f:e}");
        match e.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => e,
        }
    } else {
        format!("{f}")
    }
}
