//! The HTTP front end: path resolution, query parameters, verbs, and the request log.
//!
//! Exists to translate Kubernetes REST URLs (`/api/v1/namespaces/{ns}/pods/{name}/status`,
//! `/apis/{g}/{v}/{plural}`, ...) into store operations and to answer exactly the JSON
//! shapes kube-rs decodes (objects, `*List`, watch lines, `Status`), with the `Warning`
//! headers kube-apiserver adds to writes (unknown fields pruned under `fieldValidation=Warn`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::error::ApiError;
use crate::hooks::{Hooks, RecordedRequest};
use crate::patch::PatchKind;
use crate::registry::ResourceType;
use crate::schema::FieldValidation;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Part, Preconditions, Store, WatchStart, WriteOptions, Written};
use crate::watch::{self, WatchRequest};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub hooks: Arc<Hooks>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub server_address: String,
}

/// The router: one fallback handler resolving every path.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// A resolved request target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version,
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList {
        group: String,
        version: String,
    },
    Resource {
        /// Boxed: a resource type (with its compiled schemas) is large.
        rt: Box<ResourceType>,
        version: String,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn resolve(store: &Store, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Ok(Target::Version),
        ["api"] => return Ok(Target::CoreVersions),
        ["apis"] => return Ok(Target::GroupList),
        ["apis", g] => return Ok(Target::Group(g.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(ApiError::NotFound(format!(
                "the server could not find the requested resource (path {path})"
            )));
        }
    };
    if rest.is_empty() {
        return Ok(Target::ResourceList {
            group: group.into(),
            version: version.into(),
        });
    }
    let reg = store.registry();
    let unknown = |p: &str| {
        ApiError::NotFound(format!(
            "the server could not find the requested resource ({p} in {group}/{version})"
        ))
    };
    // `/namespaces/{ns}/{plural}[/{name}[/{sub}]]` when {plural} is a namespaced kind here.
    if rest[0] == "namespaces"
        && rest.len() >= 3
        && let Some(rt) = reg.lookup(group, version, rest[2]).filter(|t| t.namespaced)
    {
        if rest.len() > 5 {
            return Err(unknown(rest[2]));
        }
        return Ok(Target::Resource {
            rt: Box::new(rt.clone()),
            version: version.into(),
            namespace: Some(rest[1].to_string()),
            name: rest.get(3).map(|s| s.to_string()),
            sub: rest.get(4).map(|s| s.to_string()),
        });
    }
    let rt = reg
        .lookup(group, version, rest[0])
        .ok_or_else(|| unknown(rest[0]))?;
    if rest.len() > 3 || (rt.namespaced && rest.len() > 1) {
        // Named namespaced objects must be addressed under /namespaces/{ns}.
        return Err(unknown(rest[0]));
    }
    Ok(Target::Resource {
        rt: Box::new(rt.clone()),
        version: version.into(),
        namespace: None,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let target = resolve(&state.store, &path);
    let (resource, sub, name) = match &target {
        Ok(Target::Resource { rt, sub, name, .. }) => {
            (Some(rt.plural.clone()), sub.clone(), name.clone())
        }
        _ => (None, None, None),
    };
    let response = match state.hooks.take_fault(
        &method,
        resource.as_deref(),
        sub.as_deref(),
        name.as_deref(),
    ) {
        Some(err) => err.into_response(),
        None => match target {
            Ok(t) => match serve(&state, &method, t, &query, &headers, &body) {
                Ok(r) => r,
                Err(e) => e.into_response(),
            },
            Err(e) => e.into_response(),
        },
    };
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "request");
    state.hooks.record(RecordedRequest {
        method: method.to_string(),
        path,
        query: uri.query().unwrap_or_default().to_string(),
        status,
        resource,
        subresource: sub,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        handled_at: std::time::Instant::now(),
    });
    response
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, axum::Json(v)).into_response()
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
    })
}

fn bool_param(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The options of a write; `options` names their kind (`CreateOptions`, `UpdateOptions`,
/// `PatchOptions`) for a refused `fieldValidation`.
fn write_options(
    q: &HashMap<String, String>,
    version: &str,
    options: &str,
) -> Result<WriteOptions, ApiError> {
    let validation = q.get("fieldValidation").map(String::as_str).unwrap_or("");
    Ok(WriteOptions {
        field_manager: q.get("fieldManager").filter(|s| !s.is_empty()).cloned(),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        force: bool_param(q, "force"),
        version: Some(version.to_string()),
        field_validation: FieldValidation::parse(validation, options)?,
    })
}

/// The answer to a write: the object, presented, with one `Warning: 299 - "..."` header per
/// warning, as kube-apiserver sends them.
fn written(code: StatusCode, w: &Written, present: impl Fn(&Value) -> Value) -> Response {
    let mut response = json_response(code, present(&w.object));
    for text in &w.warnings {
        // `go_quote` escapes quotes and control characters; a value the header still cannot
        // carry (DEL) is left out rather than failing the write.
        match HeaderValue::from_str(&format!("299 - {}", crate::error::go_quote(text))) {
            Ok(v) => {
                response.headers_mut().append(header::WARNING, v);
            }
            Err(_) => tracing::debug!(warning = %text, "warning not sendable as a header"),
        }
    }
    response
}

fn metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn serve(
    state: &AppState,
    method: &Method,
    target: Target,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let store = &state.store;
    match target {
        Target::Version => Ok(ok(discovery::version())),
        Target::CoreVersions => Ok(ok(discovery::core_versions(&state.server_address))),
        Target::GroupList => Ok(ok(discovery::group_list(&store.registry()))),
        Target::Group(g) => discovery::group(&store.registry(), &g)
            .map(ok)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "the server could not find the requested resource (group {g})"
                ))
            }),
        Target::ResourceList { group, version } => {
            discovery::resource_list(&store.registry(), &group, &version)
                .map(ok)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "the server could not find the requested resource ({group}/{version})"
                    ))
                })
        }
        Target::Resource {
            rt,
            version,
            namespace,
            name,
            sub,
        } => {
            let ns = namespace.clone().unwrap_or_default();
            let meta_only = metadata_only(headers);
            let present = |v: &Value| watch::present(&rt, &version, v, meta_only);
            let part = match sub.as_deref() {
                None => Part::Main,
                Some("status") if rt.status_subresource => Part::Status,
                Some("eviction") if rt.group.is_empty() && rt.plural == "pods" => {
                    if *method != Method::POST {
                        return Err(ApiError::MethodNotAllowed(format!(
                            "{method} is not supported on pods/eviction"
                        )));
                    }
                    let name = name.unwrap_or_default();
                    store.evict(&ns, &name)?;
                    return Ok(json_response(
                        StatusCode::CREATED,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                    ));
                }
                Some(other) => {
                    return Err(ApiError::NotFound(format!(
                        "the server could not find the requested resource ({}/{other})",
                        rt.plural
                    )));
                }
            };
            match (method.clone(), name) {
                (Method::GET, Some(name)) => Ok(ok(present(&store.get(&rt, &ns, &name)?))),
                (Method::GET, None) if bool_param(q, "watch") => {
                    let labels = LabelSelector::parse(
                        q.get("labelSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let fields = FieldSelector::parse(
                        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let send_initial = bool_param(q, "sendInitialEvents");
                    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
                    let start = if send_initial || rv.is_empty() || rv == "0" {
                        WatchStart::CurrentState
                    } else {
                        WatchStart::After(rv.parse().map_err(|_| {
                            ApiError::BadRequest(format!("invalid resource version: {rv}"))
                        })?)
                    };
                    let timeout = q
                        .get("timeoutSeconds")
                        .and_then(|t| t.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(watch::DEFAULT_TIMEOUT);
                    let req = WatchRequest {
                        rt: *rt,
                        version,
                        namespace,
                        labels,
                        fields,
                        start,
                        send_initial_events: send_initial,
                        bookmarks: bool_param(q, "allowWatchBookmarks"),
                        timeout,
                        metadata_only: meta_only,
                    };
                    let body = watch::stream(store, req, state.shutdown.clone());
                    Ok(Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .header(header::CACHE_CONTROL, "no-cache, private")
                        .body(body)
                        .unwrap_or_else(|_| Response::new(Body::empty())))
                }
                (Method::GET, None) => {
                    if part != Part::Main {
                        return Err(ApiError::MethodNotAllowed(
                            "cannot list a subresource".into(),
                        ));
                    }
                    let labels = LabelSelector::parse(
                        q.get("labelSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let fields = FieldSelector::parse(
                        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let limit = match q.get("limit") {
                        Some(l) => Some(
                            l.parse::<usize>()
                                .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?,
                        ),
                        None => None,
                    };
                    let page = store.list(
                        &rt,
                        namespace.as_deref(),
                        &labels,
                        &fields,
                        limit,
                        q.get("continue").map(String::as_str),
                    )?;
                    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
                    if let Some(c) = page.continue_token {
                        meta["continue"] = json!(c);
                    }
                    if let Some(r) = page.remaining {
                        meta["remainingItemCount"] = json!(r);
                    }
                    let (kind, api_version) = if meta_only {
                        (
                            "PartialObjectMetadataList".to_string(),
                            "meta.k8s.io/v1".to_string(),
                        )
                    } else {
                        (format!("{}List", rt.kind), rt.api_version(&version))
                    };
                    let items: Vec<Value> = page.items.iter().map(present).collect();
                    Ok(ok(
                        json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}),
                    ))
                }
                (Method::POST, None) => {
                    if part != Part::Main {
                        return Err(ApiError::MethodNotAllowed(
                            "POST is not supported on this subresource".into(),
                        ));
                    }
                    let opts = write_options(q, &version, "CreateOptions")?;
                    let created = store.create(&rt, &ns, parse_json(body)?, &opts)?;
                    Ok(written(StatusCode::CREATED, &created, present))
                }
                (Method::PUT, Some(name)) => {
                    let opts = write_options(q, &version, "UpdateOptions")?;
                    let replaced =
                        store.replace(&rt, &ns, &name, parse_json(body)?, part, &opts)?;
                    Ok(written(StatusCode::OK, &replaced, present))
                }
                (Method::PATCH, Some(name)) => {
                    let ct = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let kind = PatchKind::from_content_type(ct)?;
                    let patch = kind.parse_body(body)?;
                    let opts = write_options(q, &version, "PatchOptions")?;
                    let existed = store.get(&rt, &ns, &name).is_ok();
                    let out = store.patch(&rt, &ns, &name, kind, &patch, part, &opts)?;
                    let code = if existed {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    };
                    Ok(written(code, &out, present))
                }
                (Method::DELETE, Some(name)) => {
                    if part != Part::Main {
                        return Err(ApiError::MethodNotAllowed(
                            "DELETE is not supported on this subresource".into(),
                        ));
                    }
                    let pre = delete_preconditions(body)?;
                    let d = store.delete(
                        &rt,
                        &ns,
                        &name,
                        &pre,
                        q.get("dryRun").is_some_and(|v| v == "All"),
                    )?;
                    let code = if d.gone {
                        StatusCode::OK
                    } else {
                        StatusCode::ACCEPTED
                    };
                    Ok(json_response(code, present(&d.object)))
                }
                (Method::DELETE, None) => {
                    let labels = LabelSelector::parse(
                        q.get("labelSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let fields = FieldSelector::parse(
                        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
                    )?;
                    let gone =
                        store.delete_collection(&rt, namespace.as_deref(), &labels, &fields)?;
                    let items: Vec<Value> = gone.iter().map(present).collect();
                    Ok(ok(
                        json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(&version), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items}),
                    ))
                }
                (m, _) => Err(ApiError::MethodNotAllowed(format!(
                    "the server does not allow this method on the requested resource ({m})"
                ))),
            }
        }
    }
}

fn delete_preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.is_empty() {
        return Ok(Preconditions::default());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?;
    let p = v.get("preconditions");
    Ok(Preconditions {
        uid: p
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: p
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(String::from),
    })
}
