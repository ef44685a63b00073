//! Watch streams: newline-delimited JSON `{"type":..,"object":..}` over a chunked body.
//!
//! Exists to give kube-runtime watchers the real protocol: resume from a
//! resourceVersion (history replay, or an `ERROR` 410 `Expired` when too old),
//! `sendInitialEvents` streaming lists ending in a `k8s.io/initial-events-end`
//! BOOKMARK, periodic BOOKMARKs, selector transitions, and `timeoutSeconds`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::meta::meta_str;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Store, StoreEvent, WatchStart};

/// How often an idle watch with `allowWatchBookmarks=true` gets a BOOKMARK.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// Server-side cap when the client gives no `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// A parsed watch request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub rt: ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: WatchStart,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub metadata_only: bool,
}

impl WatchRequest {
    fn selects(&self, obj: &Value) -> bool {
        let ns_ok = match (&self.namespace, self.rt.namespaced) {
            (Some(ns), true) => meta_str(obj, "namespace") == Some(ns.as_str()),
            _ => true,
        };
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The object as this client should see it.
    pub fn present(&self, obj: &Value) -> Value {
        present(&self.rt, &self.version, obj, self.metadata_only)
    }

    fn line(&self, ty: &str, obj: &Value) -> Bytes {
        let mut s = serde_json::to_string(&json!({"type": ty, "object": self.present(obj)}))
            .unwrap_or_default();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = if self.metadata_only {
            "PartialObjectMetadata".to_string()
        } else {
            self.rt.kind.clone()
        };
        let api_version = if self.metadata_only {
            "meta.k8s.io/v1".to_string()
        } else {
            self.rt.api_version(&self.version)
        };
        let mut s = serde_json::to_string(&json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}})).unwrap_or_default();
        s.push('\n');
        Bytes::from(s)
    }

    /// Translate a store event into what this watcher sees (selector transitions).
    fn translate(&self, ev: &StoreEvent) -> Option<Bytes> {
        if ev.key != self.rt.key() {
            return None;
        }
        let now = self.selects(&ev.object);
        let before = ev.previous.as_ref().is_some_and(|p| self.selects(p));
        let ty = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if before && now => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if before || now => "DELETED",
            _ => return None,
        };
        Some(self.line(ty, &ev.object))
    }
}

/// Rewrite `apiVersion` to the requested version; reduce to metadata if asked.
pub fn present(rt: &ResourceType, version: &str, obj: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        return json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))});
    }
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version(version)));
    }
    o
}

/// Start a watch; the returned body streams until timeout, client disconnect or shutdown.
pub fn stream(
    store: &Store,
    req: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Body {
    let (mut tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let sub = store.watch(&req.rt, req.namespace.as_deref(), req.start);
    tokio::spawn(async move {
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                let mut s =
                    serde_json::to_string(&json!({"type": "ERROR", "object": e.status_body()}))
                        .unwrap_or_default();
                s.push('\n');
                let _ = tx.send(Ok(Bytes::from(s))).await;
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + req.timeout;
        for obj in sub.initial.iter().filter(|o| req.selects(o)) {
            if tx.send(Ok(req.line("ADDED", obj))).await.is_err() {
                return;
            }
        }
        if req.send_initial_events && tx.send(Ok(req.bookmark(sub.start_rv, true))).await.is_err() {
            return;
        }
        for ev in &sub.backlog {
            if let Some(line) = req.translate(ev)
                && tx.send(Ok(line)).await.is_err()
            {
                return;
            }
        }
        let mut last_rv = sub.start_rv;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        loop {
            tokio::select! {
                ev = sub.live.recv() => match ev {
                    Ok(ev) => {
                        last_rv = ev.rv;
                        if let Some(line) = req.translate(&ev)
                            && tx.send(Ok(line)).await.is_err()
                        {
                            return;
                        }
                    }
                    // Lagged or closed: end the stream, the client resumes from its last version.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if req.bookmarks && tx.send(Ok(req.bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
            }
        }
    });
    Body::from_stream(rx)
}
