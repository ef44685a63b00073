//! kube-runtime against the dev server: watcher, Controller, finalizer, Recorder, leases.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{GpuRequest, GpuRequestSpec, eventually, server_with_crd};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tgp_apiserver::DevApiServer;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

async fn next_apply(
    stream: &mut (
             impl futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin
         ),
) -> (String, String) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .expect("no watch error");
        match ev {
            watcher::Event::Apply(o) => {
                return (
                    "apply".into(),
                    format!(
                        "{}={}",
                        o.name_any(),
                        o.data
                            .unwrap_or_default()
                            .get("k")
                            .cloned()
                            .unwrap_or_default()
                    ),
                );
            }
            watcher::Event::Delete(o) => return ("delete".into(), o.name_any()),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn watcher_sees_changes_in_order() {
    for streaming in [false, true] {
        let server = DevApiServer::start().await.unwrap();
        let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
        api.create(&PostParams::default(), &cm("pre"))
            .await
            .unwrap();
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let mut stream = watcher(api.clone(), cfg).boxed();
        // Initial state first.
        loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::InitApply(o) => assert_eq!(o.name_any(), "pre"),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        api.create(&PostParams::default(), &cm("w1")).await.unwrap();
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v2"}})),
        )
        .await
        .unwrap();
        api.delete("w1", &DeleteParams::default()).await.unwrap();
        assert_eq!(
            next_apply(&mut stream).await,
            ("apply".into(), "w1=v".into())
        );
        assert_eq!(
            next_apply(&mut stream).await,
            ("apply".into(), "w1=v2".into())
        );
        assert_eq!(
            next_apply(&mut stream).await,
            ("delete".into(), "w1".into())
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn raw_watch_resumes_and_expires() {
    let server = DevApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let first = api.create(&PostParams::default(), &cm("r1")).await.unwrap();
    let rv = first.resource_version().unwrap();
    api.create(&PostParams::default(), &cm("r2")).await.unwrap();
    api.delete("r1", &DeleteParams::default()).await.unwrap();

    // Resuming from `rv` replays what happened after it.
    let wp = WatchParams::default().timeout(5);
    let events: Vec<_> = api
        .watch(&wp, &rv)
        .await
        .unwrap()
        .take(2)
        .try_collect()
        .await
        .unwrap();
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["ADDED r2", "DELETED r1"]);

    // After compaction the same version is too old: ERROR 410 Expired.
    server.store().compact();
    let mut s = api.watch(&wp, &rv).await.unwrap().boxed();
    match s.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }

    // A kube-runtime watcher recovers from that by re-listing.
    let mut w = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(o) => init.push(o.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(init, ["r2"]);
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct ReconcileError(#[from] kube::Error);

struct Ctx {
    api: Api<GpuRequest>,
    reconciles: AtomicUsize,
}

async fn reconcile(obj: Arc<GpuRequest>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let status =
        json!({"status": {"phase": "Ready", "observedGeneration": obj.metadata.generation}});
    ctx.api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_obj: Arc<GpuRequest>, _e: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_reconciles_and_writes_status() {
    let (server, client) = server_with_crd().await;
    let api: Api<GpuRequest> = Api::all(client);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    api.create(
        &PostParams::default(),
        &GpuRequest::new("train-1", GpuRequestSpec { count: 2 }),
    )
    .await
    .unwrap();
    eventually(30, || async {
        let o = api.get("train-1").await.ok()?;
        let st = o.status?;
        (st.phase.as_deref() == Some("Ready") && st.observed_generation == Some(1)).then_some(())
    })
    .await;

    // A spec change bumps generation and is reconciled again.
    api.patch(
        "train-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"count": 3}})),
    )
    .await
    .unwrap();
    eventually(30, || async {
        (api.get("train-1").await.ok()?.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
    assert!(ctx.reconciles.load(Ordering::SeqCst) >= 2);
    // The status writes went to the status subresource.
    assert!(server.requests().iter().any(|r| r.method == "PATCH"
        && r.subresource.as_deref() == Some("status")
        && r.status == 200));
    handle.abort();
}

#[tokio::test]
async fn finalizer_helper_adds_and_removes() {
    let (_server, client) = server_with_crd().await;
    let api: Api<GpuRequest> = Api::all(client);
    let cleanups = Arc::new(AtomicUsize::new(0));
    let fin_api = api.clone();
    let c2 = cleanups.clone();
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            move |obj: Arc<GpuRequest>, _ctx: Arc<()>| {
                let api = fin_api.clone();
                let cleanups = c2.clone();
                async move {
                    finalizer(&api, "tgp.io/cleanup", obj, |ev| async move {
                        if let FinalizerEvent::Cleanup(_) = ev {
                            cleanups.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok::<_, kube::Error>(Action::await_change())
                    })
                    .await
                }
            },
            |_obj, _e: &kube::runtime::finalizer::Error<kube::Error>, _ctx| {
                Action::requeue(Duration::from_millis(200))
            },
            Arc::new(()),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    api.create(
        &PostParams::default(),
        &GpuRequest::new("fin-1", GpuRequestSpec { count: 1 }),
    )
    .await
    .unwrap();
    eventually(30, || async {
        api.get("fin-1")
            .await
            .ok()?
            .finalizers()
            .contains(&"tgp.io/cleanup".to_string())
            .then_some(())
    })
    .await;
    api.delete("fin-1", &DeleteParams::default()).await.unwrap();
    eventually(30, || async {
        api.get_opt("fin-1").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
    handle.abort();
}

#[tokio::test]
async fn recorder_publishes_events() {
    let (_server, client) = server_with_crd().await;
    let api: Api<GpuRequest> = Api::all(client.clone());
    let obj = api
        .create(
            &PostParams::default(),
            &GpuRequest::new("ev-1", GpuRequestSpec { count: 1 }),
        )
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tgp".into(),
            instance: Some("tgp-0".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Scheduled".into(),
        note: Some("placed on gpu-node-1".into()),
        action: "Schedule".into(),
        secondary: None,
    };
    recorder.publish(&ev, &obj.object_ref(&())).await.unwrap();
    // The same event again becomes a series (merge patch of the existing Event).
    recorder.publish(&ev, &obj.object_ref(&())).await.unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Scheduled"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("ev-1"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
}

#[tokio::test]
async fn lease_manager_single_holder_and_takeover() {
    use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
    let server = DevApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let build = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "tgp-leader")
            .with_namespace("default")
            .with_parameters(LeaseParams::new(id, 5, 3))
            .build()
    };
    let a = build("a").await.unwrap();
    let b = build("b").await.unwrap();
    let (mut a_rx, a_task) = a.watch().await;
    eventually(30, || {
        let v = *a_rx.borrow_and_update();
        async move { v.then_some(()) }
    })
    .await;
    let (mut b_rx, b_task) = b.watch().await;
    // While `a` holds and renews the lease, `b` must not become leader.
    let lost = tokio::time::timeout(Duration::from_secs(4), b_rx.wait_for(|v| *v))
        .await
        .map(|r| r.map(|v| *v).is_ok());
    assert!(lost.is_err(), "b must not acquire a held lease");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    assert_eq!(
        leases
            .get("tgp-leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("a")
    );

    // `a` steps down (dropping the receiver releases the lease); `b` takes over.
    drop(a_rx);
    a_task.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), b_rx.wait_for(|v| *v))
        .await
        .expect("b takes over")
        .map(|v| *v)
        .unwrap();
    assert_eq!(
        leases
            .get("tgp-leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
    drop(b_rx);
    let _ = b_task.await;
}
