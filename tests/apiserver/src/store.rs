//! The in-memory object store: objects, resourceVersions, write semantics, event history.
//!
//! Exists as the single source of truth behind the HTTP front end and the test API.
//! It implements the write rules controllers depend on: optimistic concurrency,
//! generation vs status subresource, finalizers and graceful deletion, no-op writes,
//! server-side-apply ownership, and a per-kind event history so watchers can resume.
//! A client's create or update of a custom resource first has the fields its CRD's schema does
//! not specify pruned (`Locked::prune`, [`crate::schema::prune`]), as kube-apiserver does when
//! it decodes the request; every create and update then reaches one place (`Locked::write`),
//! where custom resources are checked against their CRD's schema ([`crate::schema`]) before
//! anything is stored.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, conflict_modified, not_found, qualified};
use crate::fields::{ManagedFields, Operation};
use crate::meta::{self, finalizers, meta_mut, meta_str};
use crate::patch::{self, PatchKind};
use crate::registry::{Registry, ResourceType};
use crate::schema::FieldValidation;
use crate::selector::{FieldSelector, LabelSelector};

/// Events kept per kind for resuming watchers.
pub const HISTORY_PER_KIND: usize = 1000;
const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";
/// Field manager recorded when a client gives none.
pub const DEFAULT_MANAGER: &str = "unknown";

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in history and broadcast to watchers.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// Storage key of the kind (`group/plural`).
    pub key: String,
    pub rv: u64,
    pub kind: EventType,
    pub object: Value,
    /// The object before the change (for selector transitions).
    pub previous: Option<Value>,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub field_manager: Option<String>,
    pub dry_run: bool,
    pub force: bool,
    /// The API version the write addresses: a custom resource is pruned and checked by this
    /// version's schema (`None`: the preferred version).
    pub version: Option<String>,
    /// What the client is told of fields its CRD's schema does not specify (they are dropped
    /// in any case; `Warn` by default, as kube-apiserver's `fieldValidation`).
    pub field_validation: FieldValidation,
}

/// A successful write: the object as stored (or as it would be, for a dry run or a no-op),
/// and the warnings kube-apiserver would send in `Warning` headers (e.g. `unknown field
/// "spec.foo"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

impl WriteOptions {
    fn manager(&self) -> &str {
        self.field_manager.as_deref().unwrap_or(DEFAULT_MANAGER)
    }
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Result of a delete: the object, and whether it is gone (`true`) or only marked.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub object: Value,
    pub gone: bool,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED for current state, then changes (rv unset or "0").
    CurrentState,
    /// Changes strictly after this resourceVersion.
    After(u64),
}

/// A registered watch: what to send first, and the live feed.
pub struct Subscription {
    /// Synthetic ADDED objects (current state), for `WatchStart::CurrentState`.
    pub initial: Vec<Value>,
    /// Missed events from history, in order.
    pub backlog: Vec<Arc<StoreEvent>>,
    pub live: broadcast::Receiver<Arc<StoreEvent>>,
    /// Global resourceVersion at subscription time (live events are newer).
    pub start_rv: u64,
}

/// A list result page.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

#[derive(Debug, Clone)]
struct Stored {
    object: Value,
    fields: ManagedFields,
}

#[derive(Debug, Default)]
struct History {
    events: VecDeque<Arc<StoreEvent>>,
    /// Highest rv dropped from this history (watches from below it are expired).
    compacted_through: u64,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    rv: u64,
    /// type key -> (namespace, name) -> object
    objects: BTreeMap<String, BTreeMap<(String, String), Stored>>,
    history: BTreeMap<String, History>,
    /// Whether clients' writes of custom resources are checked against their CRD's schema
    /// (on unless a test turns it off; see [`Store::set_schema_checks`]).
    schema_checks: bool,
    /// Whether clients' writes of custom resources lose the fields their CRD's schema does not
    /// specify (on unless a test turns it off; see [`Store::set_pruning`]).
    pruning: bool,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<StoreEvent>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn ns_key(rt: &ResourceType, ns: &str) -> String {
    if rt.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

impl Store {
    /// Turns the schema and CEL checks of custom resources on or off (on by default). Off
    /// stands for objects that reached the cluster without them: a cluster whose API server
    /// predates CEL validation rules, or objects stored before their CRD gained a rule. Tests
    /// use it to exercise the operator's own checks of what admission should have refused.
    /// It does not turn pruning off (see [`Store::set_pruning`]).
    pub fn set_schema_checks(&self, enabled: bool) {
        self.lock().schema_checks = enabled;
    }

    /// Turns the pruning of unknown fields of custom resources on or off (on by default). A
    /// sibling of [`Store::set_schema_checks`], not part of it: every real API server prunes
    /// (CRDs of `apiextensions.k8s.io/v1` must have structural schemas), including those that
    /// predate CEL rules, so a test that turns the checks off still gets pruning. Off stores
    /// unknown fields as sent and never reports them, whatever `fieldValidation` says.
    pub fn set_pruning(&self, enabled: bool) {
        self.lock().pruning = enabled;
    }

    /// A store with the built-in kinds and the `default`, `kube-system` namespaces.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(16_384);
        let store = Store {
            inner: Mutex::new(Inner {
                registry: Registry::with_builtins(),
                rv: 0,
                objects: BTreeMap::new(),
                history: BTreeMap::new(),
                schema_checks: true,
                pruning: true,
            }),
            tx,
        };
        if let Some(ns_type) = store.resource("", "namespaces") {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let _ = store.create(
                    &ns_type,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &WriteOptions::default(),
                );
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave partial writes (we mutate at the end).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the registry.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// Resolve a type by group and plural (any version).
    pub fn resource(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.lock()
            .registry
            .all()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    /// Resolve a type by group and kind.
    pub fn resource_for_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.lock().registry.by_kind(group, kind).cloned()
    }

    /// Register a kind from a CRD without storing the CRD object.
    pub fn register_type(&self, rt: ResourceType) {
        self.lock().registry.insert(rt);
    }

    /// Register a CRD: stores the CRD object (as `POST .../customresourcedefinitions` does)
    /// and serves its kind. Re-registering replaces it.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) -> Result<Value, ApiError> {
        let crd_type = self
            .resource("apiextensions.k8s.io", "customresourcedefinitions")
            .ok_or_else(|| ApiError::Internal("CRD type missing".into()))?;
        let value = serde_json::to_value(crd).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        match self.create(&crd_type, "", value.clone(), &WriteOptions::default()) {
            Err(ApiError::AlreadyExists(_)) => {
                let mut v = value;
                meta_mut(&mut v).remove("resourceVersion");
                self.replace(
                    &crd_type,
                    "",
                    &name,
                    v,
                    Part::Main,
                    &WriteOptions::default(),
                )
            }
            other => other,
        }
        .map(|w| w.object)
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drop all retained watch history, so any watch from an older resourceVersion
    /// gets 410 Expired (for tests of watcher recovery).
    pub fn compact(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for h in inner.history.values_mut() {
            h.events.clear();
            h.compacted_through = rv;
        }
    }

    /// Get one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        stored(&self.lock(), rt, ns, name).map(|s| s.object.clone())
    }

    /// Field managers of an object (for tests).
    pub fn managers(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Vec<(String, Operation, usize)> {
        stored(&self.lock(), rt, ns, name)
            .map(|s| s.fields.managers())
            .unwrap_or_default()
    }

    /// List objects (all namespaces when `ns` is `None`), with paging.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let start_after = continue_token
            .filter(|t| !t.is_empty())
            .map(decode_continue)
            .transpose()?;
        let inner = self.lock();
        let mut items = Vec::new();
        let mut continue_out = None;
        let mut remaining = None;
        if let Some(objs) = inner.objects.get(&rt.key()) {
            let mut matching = objs
                .iter()
                .filter(|((o_ns, _), _)| ns.is_none_or(|n| !rt.namespaced || o_ns == n))
                .filter(|(k, _)| start_after.as_ref().is_none_or(|after| *k > after))
                .filter(|(_, s)| labels.matches(&s.object) && fields.matches(&s.object));
            for (k, s) in matching.by_ref() {
                items.push(s.object.clone());
                if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                    continue_out = Some(k.clone());
                    break;
                }
            }
            if let Some(k) = continue_out.take() {
                let rest = matching.count();
                if rest > 0 {
                    continue_out = Some(k);
                    remaining = Some(rest);
                }
            }
        }
        Ok(ListPage {
            items,
            resource_version: inner.rv,
            continue_token: continue_out.map(|(n, m)| encode_continue(&n, &m)),
            remaining,
        })
    }

    /// Create an object (POST).
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut w = self.locked();
        let object = w.create(rt, ns, body, opts, Operation::Update)?;
        Ok(w.written(object))
    }

    /// Replace an object or its status (PUT).
    pub fn replace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request must be an object".into(),
            ));
        }
        let mut w = self.locked();
        let old = w.lookup(rt, ns, name)?;
        if let Some(rv) = meta_str(&body, "resourceVersion").filter(|s| !s.is_empty())
            && Some(rv) != meta_str(&old.object, "resourceVersion")
        {
            return Err(conflict_modified(&rt.plural, &rt.group, name));
        }
        let object = w.update(rt, &old, body, part, opts, Ownership::Update)?;
        Ok(w.written(object))
    }

    /// Patch an object or its status (PATCH). Server-side apply creates missing objects.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut w = self.locked();
        let existing = w.lookup(rt, ns, name);
        if kind == PatchKind::Apply {
            if opts.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::Invalid("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into()));
            }
            if !body.is_object() {
                return Err(ApiError::BadRequest("apply patch must be an object".into()));
            }
            if let Some(n) = meta_str(body, "name")
                && n != name
            {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            let object = match existing {
                Err(ApiError::NotFound(_)) if part == Part::Main => {
                    let mut obj = body.clone();
                    meta_mut(&mut obj).insert("name".into(), json!(name));
                    w.create(rt, ns, obj, opts, Operation::Apply)
                }
                Err(e) => Err(e),
                Ok(old) => {
                    let mut applied = body.clone();
                    // Unknown fields go before ownership and conflicts see them (a Strict
                    // refusal comes first, as in kube-apiserver).
                    w.prune(rt, &mut applied, opts)?;
                    if rt.status_subresource {
                        scope_to_part(&mut applied, part);
                    }
                    let mut fields = old.fields.clone();
                    let merged = fields
                        .apply(opts.manager(), &old.object, &applied, opts.force)
                        .map_err(|c| ApiError::Conflict(c.message()))?;
                    w.update(rt, &old, merged, part, opts, Ownership::Applied(fields))
                }
            }?;
            return Ok(w.written(object));
        }
        let old = existing?;
        let mut doc = old.object.clone();
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut doc, body, false),
            PatchKind::Strategic => patch::merge_patch(&mut doc, body, true),
            PatchKind::Json => patch::json_patch(&mut doc, body)?,
            PatchKind::Apply => unreachable!("handled above"),
        }
        if !doc.is_object() {
            return Err(ApiError::BadRequest(
                "patch result must be an object".into(),
            ));
        }
        // A resourceVersion in the patched result acts as a precondition.
        if meta_str(&doc, "resourceVersion") != meta_str(&old.object, "resourceVersion") {
            return Err(conflict_modified(&rt.plural, &rt.group, name));
        }
        let object = w.update(rt, &old, doc, part, opts, Ownership::Update)?;
        Ok(w.written(object))
    }

    /// Delete an object: immediate without finalizers, else marked with `deletionTimestamp`.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        self.locked().delete(rt, ns, name, pre, dry_run)
    }

    /// Delete every matching object in a namespace (or cluster-wide).
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<Vec<Value>, ApiError> {
        let page = self.list(rt, ns, labels, fields, None, None)?;
        let mut w = self.locked();
        let mut out = Vec::new();
        for item in page.items {
            let name = meta_str(&item, "name").unwrap_or_default().to_string();
            let item_ns = meta_str(&item, "namespace").unwrap_or_default().to_string();
            if let Ok(d) = w.delete(rt, &item_ns, &name, &Preconditions::default(), false) {
                out.push(d.object);
            }
        }
        Ok(out)
    }

    /// Subscribe to changes of one kind.
    pub fn watch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        start: WatchStart,
    ) -> Result<Subscription, ApiError> {
        let inner = self.lock();
        let live = self.tx.subscribe();
        let key = rt.key();
        let in_ns =
            |o: &Value| ns.is_none_or(|n| !rt.namespaced || meta_str(o, "namespace") == Some(n));
        let mut sub = Subscription {
            initial: Vec::new(),
            backlog: Vec::new(),
            live,
            start_rv: inner.rv,
        };
        match start {
            WatchStart::CurrentState => {
                if let Some(objs) = inner.objects.get(&key) {
                    sub.initial = objs
                        .values()
                        .map(|s| s.object.clone())
                        .filter(|o| in_ns(o))
                        .collect();
                }
            }
            WatchStart::After(rv) => {
                let empty = History::default();
                let h = inner.history.get(&key).unwrap_or(&empty);
                if rv < h.compacted_through {
                    return Err(ApiError::Expired(format!(
                        "too old resource version: {rv} ({})",
                        h.compacted_through + 1
                    )));
                }
                sub.backlog = h.events.iter().filter(|e| e.rv > rv).cloned().collect();
            }
        }
        Ok(sub)
    }

    /// Evict a pod, honouring PodDisruptionBudgets (minimally), then delete it.
    pub fn evict(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let pods = self
            .resource("", "pods")
            .ok_or_else(|| ApiError::Internal("pods type missing".into()))?;
        let pdbs = self.resource("policy", "poddisruptionbudgets");
        let mut w = self.locked();
        let inner = &w.inner;
        let pod = stored(inner, &pods, ns, name)?.object.clone();
        if let Some(pdbs) = pdbs
            && let Some(all) = inner.objects.get(&pdbs.key())
        {
            let pod_list: Vec<&Value> = inner
                .objects
                .get(&pods.key())
                .map(|m| {
                    m.values()
                        .map(|s| &s.object)
                        .filter(|p| meta_str(p, "namespace") == Some(ns))
                        .collect()
                })
                .unwrap_or_default();
            for pdb in all
                .values()
                .map(|s| &s.object)
                .filter(|p| meta_str(p, "namespace") == Some(ns))
            {
                let Some(sel) = pdb.pointer("/spec/selector") else {
                    continue;
                };
                if !selector_matches(sel, &pod) {
                    continue;
                }
                let healthy = pod_list
                    .iter()
                    .filter(|p| {
                        selector_matches(sel, p)
                            && p.pointer("/metadata/deletionTimestamp").is_none()
                    })
                    .count() as i64;
                let allowed = match pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                {
                    Some(a) => a,
                    None => match pdb.pointer("/spec/minAvailable").and_then(Value::as_i64) {
                        Some(min) => healthy - min,
                        None => pdb
                            .pointer("/spec/maxUnavailable")
                            .and_then(Value::as_i64)
                            .unwrap_or(1),
                    },
                };
                if allowed <= 0 {
                    return Err(ApiError::TooManyRequests(format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {} healthy pods and has {} currently",
                        meta_str(pdb, "name").unwrap_or_default(),
                        pdb.pointer("/spec/minAvailable")
                            .and_then(Value::as_i64)
                            .unwrap_or(healthy),
                        healthy
                    )));
                }
            }
        }
        w.delete(&pods, ns, name, &Preconditions::default(), false)?;
        Ok(())
    }
}

/// Match a `metav1.LabelSelector` (matchLabels + matchExpressions) against an object.
fn selector_matches(sel: &Value, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let ml_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let me_ok = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => get(key).is_some_and(|v| values.contains(&v)),
                    "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                    "Exists" => get(key).is_some(),
                    "DoesNotExist" => get(key).is_none(),
                    _ => false,
                }
            })
        });
    ml_ok && me_ok
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid".into());
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect();
    let s = String::from_utf8(bytes?).map_err(|_| bad())?;
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

/// A stored object, or 404.
fn stored<'a>(
    inner: &'a Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<&'a Stored, ApiError> {
    inner
        .objects
        .get(&rt.key())
        .and_then(|m| m.get(&(ns_key(rt, ns), name.to_string())))
        .ok_or_else(|| not_found(&rt.plural, &rt.group, name))
}

/// Keep only the part a status-subresource write may touch.
fn scope_to_part(obj: &mut Value, part: Part) {
    if let Some(m) = obj.as_object_mut() {
        match part {
            Part::Main => {
                m.remove("status");
            }
            Part::Status => m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind"),
        }
    }
}

/// Combine old and new according to the status-subresource rules.
fn merge_part(rt: &ResourceType, old: &Value, mut new: Value, part: Part) -> Value {
    if !rt.status_subresource {
        return new;
    }
    match part {
        Part::Main => {
            if let Some(m) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        }
        Part::Status => {
            let mut out = old.clone();
            if let Some(m) = out.as_object_mut() {
                match new.get_mut("status").map(Value::take) {
                    Some(s) if !s.is_null() => m.insert("status".into(), s),
                    _ => m.remove("status"),
                };
            }
            out
        }
    }
}

/// Validate and complete an updated object: identity fields are preserved from `old`,
/// finalizers may not be added during deletion, generation follows spec changes.
fn prepare_update(
    rt: &ResourceType,
    ns: &str,
    name: &str,
    old: &Value,
    mut new: Value,
) -> Result<Value, ApiError> {
    if let Some(n) = meta_str(&new, "name")
        && n != name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if rt.namespaced
        && let Some(n) = meta_str(&new, "namespace")
        && n != ns
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    if let Some(m) = new.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            old.get("apiVersion").cloned().unwrap_or(Value::Null),
        );
        m.insert("kind".into(), json!(rt.kind));
    }
    meta::normalize_metadata(&mut new);
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    {
        let m = meta_mut(&mut new);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    if old_meta.contains_key("deletionTimestamp") {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::Invalid(format!(
                "{} \"{}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {:?}",
                qualified(&rt.plural, &rt.group),
                name,
                added
            )));
        }
    }
    if meta::spec_part(&new) != meta::spec_part(old) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    Ok(new)
}

/// How an update records field ownership.
enum Ownership {
    /// An ordinary update: the writing manager owns the fields it changed.
    Update,
    /// Server-side apply: ownership already merged; fields gone from the result are pruned.
    Applied(ManagedFields),
}

/// Who writes an object.
#[derive(Clone, Copy)]
enum By<'a> {
    /// A client: checked against the schema of the version it addresses.
    Client(&'a WriteOptions),
    /// The server itself (marking a deletion), which kube-apiserver does not validate.
    Server,
}

/// The store, locked for a change: every create, update and delete goes through here.
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    tx: &'a broadcast::Sender<Arc<StoreEvent>>,
    /// Warnings for the client of this change (unknown fields pruned).
    warnings: Vec<String>,
}

impl Store {
    fn locked(&self) -> Locked<'_> {
        Locked {
            inner: self.lock(),
            tx: &self.tx,
            warnings: Vec::new(),
        }
    }
}

impl Locked<'_> {
    /// The change's result for the client: `object` and the warnings gathered.
    fn written(self, object: Value) -> Written {
        Written {
            object,
            warnings: self.warnings,
        }
    }

    /// Drop the fields of a client's custom resource that the schema of the version it
    /// addresses does not specify, as kube-apiserver does when it decodes the request (so
    /// before the status-subresource rules, ownership, validation and storage see it). The
    /// dropped fields become warnings, or refuse the write under `fieldValidation=Strict`.
    fn prune(
        &mut self,
        rt: &ResourceType,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        if !self.inner.pruning {
            return Ok(());
        }
        let warnings = rt.prune(obj, opts.version.as_deref(), opts.field_validation)?;
        self.warnings.extend(warnings);
        Ok(())
    }

    fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Stored, ApiError> {
        stored(&self.inner, rt, ns, name).cloned()
    }

    /// Complete a new object (unknown fields pruned; name, namespace, uid, timestamps,
    /// generation) and write it.
    fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
        op: Operation,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request must be an object".into(),
            ));
        }
        if let Some(k) = body.get("kind").and_then(Value::as_str)
            && k != rt.kind
        {
            return Err(ApiError::BadRequest(format!(
                "the kind of the object ({k}) does not match the resource ({})",
                rt.kind
            )));
        }
        self.prune(rt, &mut body, opts)?;
        meta::normalize_metadata(&mut body);
        let name = match meta_str(&body, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&body, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => format!("{prefix}{}", meta::random_suffix()),
                None => {
                    return Err(ApiError::Invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        qualified(&rt.plural, &rt.group)
                    )));
                }
            },
        };
        if !meta::valid_name(&name) {
            return Err(ApiError::Invalid(format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                qualified(&rt.plural, &rt.group)
            )));
        }
        let ns = if rt.namespaced {
            let body_ns = meta_str(&body, "namespace").filter(|n| !n.is_empty());
            match (ns, body_ns) {
                ("", Some(b)) => b.to_string(),
                ("", None) => "default".to_string(),
                (u, Some(b)) if u != b => return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into())),
                (u, _) => u.to_string(),
            }
        } else {
            String::new()
        };
        if self
            .inner
            .objects
            .get(&rt.key())
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
        {
            return Err(ApiError::AlreadyExists(format!(
                "{} \"{name}\" already exists",
                qualified(&rt.plural, &rt.group)
            )));
        }
        if let Some(m) = body.as_object_mut() {
            m.insert("apiVersion".into(), json!(rt.preferred_api_version()));
            m.insert("kind".into(), json!(rt.kind));
            if rt.status_subresource && rt.custom {
                m.remove("status");
            }
            if rt.key() == "/namespaces" {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        {
            let m = meta_mut(&mut body);
            m.insert("name".into(), json!(name));
            if rt.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(meta::new_uid()));
            m.insert("creationTimestamp".into(), meta::now_rfc3339());
            m.insert("generation".into(), json!(1));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        if rt.key() == CRD_KEY {
            mark_crd_established(&mut body);
        }
        let mut fields = ManagedFields::default();
        match op {
            Operation::Update => fields.record_update(opts.manager(), &Value::Null, &body),
            Operation::Apply => {
                let applied = body.clone();
                let _ = fields.apply(opts.manager(), &json!({}), &applied, true);
            }
        }
        self.write(rt, None, body, fields, By::Client(opts))
    }

    /// Update `old` with `doc` (the whole object, or its status for `Part::Status`): unknown
    /// fields pruned, identity fields kept, generation bumped on spec changes, ownership
    /// recorded; then write it.
    fn update(
        &mut self,
        rt: &ResourceType,
        old: &Stored,
        doc: Value,
        part: Part,
        opts: &WriteOptions,
        ownership: Ownership,
    ) -> Result<Value, ApiError> {
        let mut doc = doc;
        self.prune(rt, &mut doc, opts)?;
        let ns = meta_str(&old.object, "namespace").unwrap_or_default();
        let name = meta_str(&old.object, "name").unwrap_or_default();
        let candidate = merge_part(rt, &old.object, doc, part);
        let new = prepare_update(rt, ns, name, &old.object, candidate)?;
        let fields = match ownership {
            Ownership::Update => {
                let mut fields = old.fields.clone();
                fields.record_update(opts.manager(), &old.object, &new);
                fields
            }
            Ownership::Applied(mut fields) => {
                fields.prune(&new);
                fields
            }
        };
        self.write(rt, Some(old), new, fields, By::Client(opts))
    }

    /// The one place where objects are created and updated: a CRD's kind is compiled, a client's
    /// write is checked against the kind's schema, then (unless it changes nothing or is a dry
    /// run) the object gets a resourceVersion, is stored, and watchers get its event. An update
    /// that leaves a deleted object without finalizers removes it.
    fn write(
        &mut self,
        rt: &ResourceType,
        old: Option<&Stored>,
        mut new: Value,
        fields: ManagedFields,
        by: By<'_>,
    ) -> Result<Value, ApiError> {
        let old_object = old.map(|s| &s.object);
        let finished = old.is_some()
            && new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).is_empty();
        let served = match rt.key() == CRD_KEY && !finished {
            true => Some(self.crd_kind(&new, old_object)?),
            false => None,
        };
        let dry_run = match by {
            By::Client(opts) => {
                if self.inner.schema_checks {
                    rt.check(&new, old_object, opts.version.as_deref())?;
                }
                opts.dry_run
            }
            By::Server => false,
        };
        let key = (
            ns_key(rt, meta_str(&new, "namespace").unwrap_or_default()),
            meta_str(&new, "name").unwrap_or_default().to_string(),
        );
        if let Some(old) = old_object
            && !finished
            && meta::without_rv(&new) == meta::without_rv(old)
        {
            // No-op write: keep ownership changes, but no new resourceVersion and no event.
            if !dry_run
                && let Some(s) = self
                    .inner
                    .objects
                    .get_mut(&rt.key())
                    .and_then(|m| m.get_mut(&key))
            {
                s.fields = fields;
            }
            return Ok(old.clone());
        }
        if dry_run {
            return Ok(new);
        }
        let rv = self.bump(&mut new);
        let objs = self.inner.objects.entry(rt.key()).or_default();
        let kind = if finished {
            objs.remove(&key);
            EventType::Deleted
        } else {
            objs.insert(
                key,
                Stored {
                    object: new.clone(),
                    fields,
                },
            );
            match old {
                Some(_) => EventType::Modified,
                None => EventType::Added,
            }
        };
        if let Some(t) = served {
            self.inner.registry.insert(t);
        } else if finished && rt.key() == CRD_KEY {
            self.drop_kind(&new);
        }
        self.record(StoreEvent {
            key: rt.key(),
            rv,
            kind,
            object: new.clone(),
            previous: old_object.cloned(),
        });
        Ok(new)
    }

    fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let old = self.lookup(rt, ns, name)?;
        if let Some(uid) = &pre.uid
            && Some(uid.as_str()) != meta_str(&old.object, "uid")
        {
            return Err(ApiError::Conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old.object, "uid").unwrap_or_default()
            )));
        }
        if let Some(rv) = &pre.resource_version
            && Some(rv.as_str()) != meta_str(&old.object, "resourceVersion")
        {
            return Err(ApiError::Conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old.object, "resourceVersion").unwrap_or_default()
            )));
        }
        if !finalizers(&old.object).is_empty() {
            if old.object.pointer("/metadata/deletionTimestamp").is_some() || dry_run {
                return Ok(Deleted {
                    object: old.object,
                    gone: false,
                });
            }
            let mut new = old.object.clone();
            {
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), meta::now_rfc3339());
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                m.insert("generation".into(), json!(g + 1));
            }
            let object = self.write(rt, Some(&old), new, old.fields.clone(), By::Server)?;
            return Ok(Deleted {
                object,
                gone: false,
            });
        }
        if dry_run {
            return Ok(Deleted {
                object: old.object,
                gone: true,
            });
        }
        let gone = self
            .remove(&rt.key(), &(ns_key(rt, ns), name.to_string()))
            .unwrap_or(old.object);
        if rt.key() == CRD_KEY {
            self.drop_kind(&gone);
        }
        if rt.key() == "/namespaces" {
            // Cascade: remove everything in the namespace (finalizers are not waited for).
            let namespaced: Vec<String> = self
                .inner
                .registry
                .all()
                .filter(|t| t.namespaced)
                .map(ResourceType::key)
                .collect();
            for type_key in namespaced {
                let keys: Vec<(String, String)> = self
                    .inner
                    .objects
                    .get(&type_key)
                    .map(|m| m.keys().filter(|(n, _)| n == name).cloned().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.remove(&type_key, &key);
                }
            }
        }
        Ok(Deleted {
            object: gone,
            gone: true,
        })
    }

    /// Remove a stored object and send its `DELETED` event (under a new resourceVersion).
    fn remove(&mut self, type_key: &str, key: &(String, String)) -> Option<Value> {
        let stored = self.inner.objects.get_mut(type_key)?.remove(key)?;
        let mut gone = stored.object.clone();
        let rv = self.bump(&mut gone);
        self.record(StoreEvent {
            key: type_key.to_string(),
            rv,
            kind: EventType::Deleted,
            object: gone.clone(),
            previous: Some(stored.object),
        });
        Some(gone)
    }

    /// The kind a CRD object serves: the one already served when its spec is unchanged,
    /// else checked and compiled anew (a CRD with a bad schema or rule is refused here).
    fn crd_kind(&self, crd: &Value, old: Option<&Value>) -> Result<ResourceType, ApiError> {
        let (group, plural) = crd_names(crd);
        if let Some(old) = old
            && old.get("spec") == crd.get("spec")
            && let Some(t) = self.inner.registry.get(group, plural).filter(|t| t.custom)
        {
            return Ok(t.clone());
        }
        validate_crd(crd)
    }

    /// Stop serving a deleted CRD's kind and delete its objects.
    fn drop_kind(&mut self, crd: &Value) {
        let (group, plural) = crd_names(crd);
        let Some(rt) = self.inner.registry.remove(group, plural) else {
            return;
        };
        let keys: Vec<(String, String)> = self
            .inner
            .objects
            .get(&rt.key())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(&rt.key(), &key);
        }
        self.inner.objects.remove(&rt.key());
    }

    fn record(&mut self, ev: StoreEvent) {
        let ev = Arc::new(ev);
        let h = self.inner.history.entry(ev.key.clone()).or_default();
        h.events.push_back(ev.clone());
        while h.events.len() > HISTORY_PER_KIND {
            if let Some(old) = h.events.pop_front() {
                h.compacted_through = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    fn bump(&mut self, obj: &mut Value) -> u64 {
        self.inner.rv += 1;
        let rv = self.inner.rv;
        meta_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
        rv
    }
}

/// `spec.group` and `spec.names.plural` of a CRD object.
fn crd_names(crd: &Value) -> (&str, &str) {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (s("/spec/group"), s("/spec/names/plural"))
}

/// Check a CRD object and describe the kind it serves (schemas compiled).
fn validate_crd(body: &Value) -> Result<ResourceType, ApiError> {
    let name = meta_str(body, "name").unwrap_or_default();
    let crd: CustomResourceDefinition = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::BadRequest(format!("invalid CustomResourceDefinition: {e}")))?;
    let rt = ResourceType::from_crd(&crd)?;
    if name != format!("{}.{}", rt.plural, rt.group) {
        return Err(ApiError::Invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    Ok(rt)
}

fn mark_crd_established(body: &mut Value) {
    let now = meta::now_rfc3339();
    let names = body.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if let Some(m) = body.as_object_mut() {
        m.insert(
            "status".into(),
            json!({
                "acceptedNames": names,
                "storedVersions": [],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            }),
        );
    }
}
