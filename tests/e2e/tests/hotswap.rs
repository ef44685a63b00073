//! Hot-swappable providers end to end: the development API server, simulated clouds, module
//! sources on loopback (a file server and an OCI registry from the simulator), and the real
//! GPUProvider controller. A provider's module is replaced by editing its GPUProvider; the tests
//! check that calls keep being served through the swap, that refused modules leave the old
//! revision serving with a reason of their own, that a rollback is one field and needs neither a
//! fetch nor a compilation, and that a restarted operator loads every provider from the compile
//! cache, and modules it loaded before from its module store even when their sources are gone. Module URLs over HTTPS, and OCI artifacts on an HTTPS registry, are fetched from a
//! server whose certificate a test CA signed only when the operator trusts that CA
//! (`--module-ca-file`), and refused with their own reason otherwise; the plain-HTTP registry of
//! the other tests is asked for with `plainHttp`. Speed targets are measured by `cargo bench -p tgp --bench swap`, not asserted here.

#[path = "hotswap/support.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use tgp::devenv::{CloudSpec, NAMESPACE};
use tgp::plugins::LoadError;
use tgp_cloudsim::files::{FileServer, Serve, TestCa};
use tgp_cloudsim::oci::{OciRegistry, OciRegistryConfig, TGP_MODULE_MEDIA_TYPE};

use support::*;

/// The old revision still answers calls, and status still names it as active.
async fn old_revision_serves(h: &Harness, name: &str, digest: &str, version: &str) {
    let gp = h.provider(name).await;
    let active = gp
        .status
        .as_ref()
        .and_then(|s| s.active_revision.clone())
        .unwrap_or_else(|| panic!("an active revision: {}", dump(&gp)));
    assert_eq!(active.digest, digest, "{}", dump(&gp));
    assert_eq!(h.quote(name).await, Ok(version.to_string()));
    let message = &loaded(&gp).expect("Loaded condition").message;
    assert!(
        message.contains(digest) && message.contains("keeps serving"),
        "the message says what keeps serving: {message}"
    );
}

/// 50 calls a second while the module is replaced by a new version: no call fails, calls that
/// were running finish on the old revision, every call after the swap goes to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_loses_no_call() {
    // Quotes take 200 ms, so about ten calls are always in flight.
    let h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::from_millis(200)))]).await;
    let files = FileServer::start().await.unwrap();
    let v2 = mock_v2();
    files.put("/mock-v2.wasm", v2.clone());
    assert_eq!(h.quote("a").await, Ok(V1.to_string()));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let calls = tokio::spawn(load(h.registry.clone(), "a", 50, stopped));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let changed = Instant::now();
    let generation = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "digest": digest(&v2)}),
        )
        .await;
    let registry = h.registry.clone();
    eventually(T, "the new version to be active", || {
        registry
            .get("a")
            .is_some_and(|s| s.plugin.info().version == V2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let calls = calls.await.unwrap();

    let failed: Vec<_> = calls.iter().filter(|c| c.result.is_err()).collect();
    assert!(failed.is_empty(), "failed calls: {failed:#?}");
    assert!(calls.len() >= 50, "the load ran: {} calls", calls.len());
    let first_v2 = calls
        .iter()
        .filter(|c| c.version == V2)
        .map(|c| c.started)
        .min()
        .expect("calls answered by the new version");
    assert!(
        calls
            .iter()
            .filter(|c| c.started > first_v2)
            .all(|c| c.version == V2),
        "every call started after the swap goes to the new version"
    );
    let finished_on_old = calls
        .iter()
        .filter(|c| c.version == V1 && c.finished > first_v2)
        .count();
    assert!(
        finished_on_old > 0,
        "calls running during the swap finished on the old revision"
    );
    let answered = calls
        .iter()
        .filter(|c| c.version == V2)
        .map(|c| c.finished)
        .min()
        .unwrap();
    println!(
        "{} calls, 0 failed; {finished_on_old} finished on the old revision after the swap; \
         new version answering {:?} after the change",
        calls.len(),
        answered - changed
    );

    let gp = h.wait_ready("a", generation).await;
    let st = gp.status.clone().unwrap();
    let active = st.active_revision.clone().expect("active revision");
    assert_eq!(active.version, V2, "{}", dump(&gp));
    assert_eq!(active.digest, digest(&v2));
    assert_eq!(active.source, files.url("/mock-v2.wasm"));
    assert!(!active.loaded_at.is_empty());
    assert_eq!(st.version.as_deref(), Some(V2));
    assert_eq!(st.digest.as_deref(), Some(digest(&v2).as_str()));
    let history: Vec<&str> = st.revisions.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(history, [V2, V1], "{}", dump(&gp));
    assert_eq!(files.requests_for("/mock-v2.wasm"), 1, "fetched once");
    h.shutdown().await;
}

/// Wrong digest, truncated transfer, truncated module, another contract version, an
/// un-granted host, too large, too slow, bad specs: each refused with its own reason while the
/// old revision keeps serving; then a good module still swaps in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_modules_leave_the_old_revision_serving() {
    let h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let files = FileServer::start().await.unwrap();
    let v2 = mock_v2();
    files.put("/mock-v2.wasm", v2.clone());

    // The bytes do not match the pinned digest.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "digest": digest(b"another module")}),
        )
        .await;
    let gp = h.wait_refused("a", g, "DigestMismatch").await;
    let message = &loaded(&gp).unwrap().message;
    assert!(
        message.contains(&digest(&v2)) && message.contains(&digest(b"another module")),
        "both digests named: {message}"
    );
    old_revision_serves(&h, "a", &old, V1).await;

    // The transfer breaks off half-way.
    files.put("/cut.wasm", v2.clone());
    files.set_serve(
        "/cut.wasm",
        Serve::Truncated {
            after: v2.len() / 2,
        },
    );
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/cut.wasm"), "digest": digest(&v2)}),
        )
        .await;
    h.wait_refused("a", g, "TruncatedModule").await;
    old_revision_serves(&h, "a", &old, V1).await;

    // A truncated module published under its own digest: the digest holds, the module does not.
    let half = v2[..v2.len() / 2].to_vec();
    files.put("/half.wasm", half.clone());
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/half.wasm"), "digest": digest(&half)}),
        )
        .await;
    h.wait_refused("a", g, "InvalidModule").await;
    old_revision_serves(&h, "a", &old, V1).await;

    // A module built for another contract version.
    let future = test_plugin("tgp_test_plugin_future_contract.wasm");
    files.put("/future.wasm", future.clone());
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/future.wasm"), "digest": digest(&future)}),
        )
        .await;
    let gp = h.wait_refused("a", g, "IncompatibleContract").await;
    assert!(
        loaded(&gp).unwrap().message.contains("tgp:provider@"),
        "{}",
        dump(&gp)
    );
    old_revision_serves(&h, "a", &old, V1).await;

    // A module declaring a host the resource does not grant (the hostile test plugin declares
    // what its `declare_hosts` config says).
    let hostile = test_plugin("tgp_test_plugin_hostile.wasm");
    files.put("/hostile.wasm", hostile.clone());
    h.patch_spec(
        "a",
        serde_json::json!({"config": {"declare_hosts": "https://not-granted.example.com"}}),
    )
    .await;
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/hostile.wasm"), "digest": digest(&hostile)}),
        )
        .await;
    let ungranted = LoadError::UngrantedHost {
        host: String::new(),
        granted: vec![],
    }
    .reason();
    let gp = h.wait_refused("a", g, ungranted).await;
    assert!(
        loaded(&gp)
            .unwrap()
            .message
            .contains("not-granted.example.com"),
        "{}",
        dump(&gp)
    );
    old_revision_serves(&h, "a", &old, V1).await;

    // Larger than the size limit.
    let big: Vec<u8> = (0..(1536 * 1024u32)).map(|i| (i % 251) as u8).collect();
    files.put("/big.wasm", big.clone());
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/big.wasm"), "digest": digest(&big), "maxSizeMib": 1}),
        )
        .await;
    h.wait_refused("a", g, "ModuleTooLarge").await;
    old_revision_serves(&h, "a", &old, V1).await;

    // A server that does not answer within the fetch timeout.
    files.put("/slow.wasm", v2.clone());
    files.set_serve(
        "/slow.wasm",
        Serve::Slow {
            delay: Duration::from_secs(5),
        },
    );
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/slow.wasm"), "digest": digest(&v2), "timeoutSeconds": 1}),
        )
        .await;
    h.wait_refused("a", g, "FetchTimeout").await;
    old_revision_serves(&h, "a", &old, V1).await;

    // Specs the controller refuses before fetching anything, naming the field. The CRD's
    // schema refuses them at admission already (tests/e2e/tests/admission.rs); with those
    // checks off (an API server without CEL rules, or objects stored before a rule existed),
    // the controller must refuse them itself.
    h.set_schema_checks(false);
    let fetched_before = files.calls().len();
    let g = h
        .set_module("a", serde_json::json!({"url": files.url("/mock-v2.wasm")}))
        .await;
    let gp = h.wait_refused("a", g, "DigestRequired").await;
    assert!(
        loaded(&gp).unwrap().message.contains("spec.module.digest"),
        "{}",
        dump(&gp)
    );
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "path": "/x.wasm", "digest": digest(&v2)}),
        )
        .await;
    h.wait_refused("a", g, "InvalidModuleSource").await;
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": "http://plugins.example.com/m.wasm", "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_refused("a", g, "InvalidModuleSource").await;
    assert!(
        loaded(&gp).unwrap().message.contains("spec.module.url"),
        "{}",
        dump(&gp)
    );
    old_revision_serves(&h, "a", &old, V1).await;
    h.set_schema_checks(true);
    assert!(
        files.calls()[fetched_before..]
            .iter()
            .all(|c| c.path == "/slow.wasm"),
        "refused specs fetch nothing (only retries of the slow fetch before them): {:#?}",
        &files.calls()[fetched_before..]
    );

    // After all that, a good module still swaps in.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_ready("a", g).await;
    assert_eq!(gp.status.unwrap().active_revision.unwrap().version, V2);
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    h.shutdown().await;
}

/// Roll forward and back by changing only `spec.module.digest`, on an OCI tag that moved: the
/// rollback takes the kept revision, with no request to the registry and no compilation.
/// The events about GPUProvider `name`, as (type, reason, note, times seen), oldest first.
async fn provider_events(h: &Harness, name: &str) -> Vec<(String, String, String, i32)> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::all(h.env.client.clone());
    let mut events: Vec<Event> = api
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("GPUProvider")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect();
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    events
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
            )
        })
        .collect()
}

/// Swaps and refusals are told once each: an event on the GPUProvider and a metric, not one
/// per reconcile pass while a refused spec stays in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_and_refusals_are_reported_once_as_events_and_metrics() {
    let h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let files = FileServer::start().await.unwrap();
    let v2 = mock_v2();
    files.put("/mock-v2.wasm", v2.clone());

    // The first load of v1 was a swap too.
    let first = provider_events(&h, "a").await;
    assert!(
        first
            .iter()
            .any(|(t, r, _, _)| t == "Normal" && r == "ModuleLoaded"),
        "{first:#?}"
    );

    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "digest": digest(b"another module")}),
        )
        .await;
    h.wait_refused("a", g, "DigestMismatch").await;
    // Several reconcile passes (every 500 ms here) retry the refused spec.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = provider_events(&h, "a").await;
    let refusals: Vec<_> = events
        .iter()
        .filter(|(_, r, _, _)| r == "DigestMismatch")
        .collect();
    assert_eq!(refusals.len(), 1, "one refusal event: {events:#?}");
    assert_eq!(
        refusals[0].3, 1,
        "told once, not once per pass: {events:#?}"
    );
    assert_eq!(refusals[0].0, "Warning");
    assert!(refusals[0].2.contains("keeps serving"), "{}", refusals[0].2);

    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": files.url("/mock-v2.wasm"), "digest": digest(&v2)}),
        )
        .await;
    h.wait_ready("a", g).await;
    let events = provider_events(&h, "a").await;
    let loaded: Vec<_> = events
        .iter()
        .filter(|(_, r, _, _)| r == "ModuleLoaded")
        .collect();
    assert_eq!(loaded.len(), 2, "v1, then v2: {events:#?}");
    assert!(loaded[1].2.contains(&digest(&v2)), "{}", loaded[1].2);

    let metrics = h.metrics.render();
    assert!(
        metrics.contains("tgp_module_swaps_total{provider=\"a\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tgp_module_refusals_total{provider=\"a\",reason=\"DigestMismatch\"} 1"),
        "{metrics}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_one_field_and_comes_from_the_cache() {
    let h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let registry = OciRegistry::start(OciRegistryConfig::default())
        .await
        .unwrap();
    let (v1, v2) = (mock_v1(), mock_v2());
    let first = registry.push_module("tgp/mock", "stable", &v1, TGP_MODULE_MEDIA_TYPE);
    let g = h
        .set_module(
            "a",
            serde_json::json!({"oci": {"reference": first.reference, "plainHttp": true}, "digest": digest(&v1)}),
        )
        .await;
    let gp = h.wait_ready("a", g).await;
    let active = gp.status.unwrap().active_revision.unwrap();
    assert_eq!(
        (active.version.as_str(), active.source.as_str()),
        (V1, format!("oci://{}", first.reference).as_str())
    );

    // A new version is published under the same tag; rolling forward is one field.
    registry.push_module("tgp/mock", "stable", &v2, TGP_MODULE_MEDIA_TYPE);
    let g = h
        .patch_spec("a", serde_json::json!({"module": {"digest": digest(&v2)}}))
        .await;
    let gp = h.wait_ready("a", g).await;
    let active = gp.status.clone().unwrap().active_revision.unwrap();
    assert_eq!(active.version, V2, "{}", dump(&gp));
    assert!(!active.from_cache, "the new version was compiled");
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    let pulls = registry.calls().len();

    // Rolling back is one field too: the digest of the previous revision.
    let g = h
        .patch_spec("a", serde_json::json!({"module": {"digest": digest(&v1)}}))
        .await;
    let gp = h.wait_ready("a", g).await;
    let st = gp.status.clone().unwrap();
    let active = st.active_revision.clone().unwrap();
    assert_eq!(active.version, V1, "{}", dump(&gp));
    assert_eq!(active.digest, digest(&v1));
    assert!(
        active.from_cache,
        "restored from the compile cache, no recompilation: {}",
        dump(&gp)
    );
    assert_eq!(
        registry.calls().len(),
        pulls,
        "the rollback made no request to the registry: {:#?}",
        &registry.calls()[pulls..]
    );
    assert_eq!(h.quote("a").await, Ok(V1.to_string()));
    let history: Vec<&str> = st.revisions.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(history, [V1, V2], "{}", dump(&gp));
    println!(
        "rollback: {} ms from the change being seen to the swap (from cache: {})",
        active.load_millis, active.from_cache
    );
    h.shutdown().await;
}

/// Three providers on three sources (path, ConfigMap, private OCI registry with a pull
/// secret); after an operator restart every one is loaded from the compile cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_loads_every_provider_from_the_compile_cache() {
    let mut h = Harness::start(vec![
        CloudSpec::new("a", cloud(Duration::ZERO)),
        CloudSpec::new("b", cloud(Duration::ZERO)),
        CloudSpec::new("c", cloud(Duration::ZERO)),
    ])
    .await;
    let (v1, v2) = (mock_v1(), mock_v2());

    // b: a ConfigMap.
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "mock-v2", "namespace": NAMESPACE},
        "binaryData": {"module.wasm": base64_encode(&v2)},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(h.env.client.clone(), NAMESPACE)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let gb = h
        .set_module(
            "b",
            serde_json::json!({"configMap": {"name": "mock-v2", "key": "module.wasm"}, "digest": digest(&v2)}),
        )
        .await;

    // c: a registry that wants credentials, and a pull secret.
    let registry = OciRegistry::start(OciRegistryConfig {
        credentials: Some(("puller".into(), "s3cret".into())),
    })
    .await
    .unwrap();
    let pushed = registry.push_module("private/mock", "1", &v1, TGP_MODULE_MEDIA_TYPE);
    let docker_config = serde_json::json!({"auths": {registry.registry(): {"username": "puller", "password": "s3cret"}}});
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": NAMESPACE},
        "stringData": {".dockerconfigjson": docker_config.to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.env.client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let gc = h
        .set_module(
            "c",
            serde_json::json!({"oci": {"reference": pushed.reference, "pullSecret": "regcred", "plainHttp": true}, "digest": digest(&v1)}),
        )
        .await;
    h.wait_ready("b", gb).await;
    h.wait_ready("c", gc).await;
    assert_eq!(h.quote("a").await, Ok(V1.to_string()));
    assert_eq!(h.quote("b").await, Ok(V2.to_string()));
    assert_eq!(h.quote("c").await, Ok(V1.to_string()));

    h.restart_operator().await;
    let registry_after = h.registry.clone();
    eventually(T, "every provider loaded after the restart", || {
        ["a", "b", "c"]
            .iter()
            .all(|n| registry_after.get(n).is_some())
    })
    .await;
    for (name, version) in [("a", V1), ("b", V2), ("c", V1)] {
        let r = h.registry.active_revision(name).unwrap();
        assert_eq!(r.version, version);
        assert!(
            r.from_cache,
            "{name} was loaded from the compile cache after the restart: {r:?}"
        );
        println!(
            "restart: {name} ({}) loaded from the cache in {:?}",
            r.source, r.load_time
        );
        assert_eq!(h.quote(name).await, Ok(version.to_string()));
    }
    h.shutdown().await;
}

/// Sources that cannot be read say which field to fix.
/// A restarted operator loads a pinned module, and rolls back to an earlier one, from the
/// module store when the sources are gone: the verified bytes of earlier loads are kept on disk
/// by digest, next to the compile cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_needs_no_source_for_modules_it_loaded_before() {
    let mut h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let files = FileServer::start().await.unwrap();
    let (v1, v2) = (mock_v1(), mock_v2());
    files.put("/mock-v1.wasm", v1.clone());
    files.put("/mock-v2.wasm", v2.clone());
    let (url_v1, url_v2) = (files.url("/mock-v1.wasm"), files.url("/mock-v2.wasm"));
    for (url, module, version) in [(&url_v1, &v1, V1), (&url_v2, &v2, V2)] {
        let g = h
            .set_module(
                "a",
                serde_json::json!({"url": url, "digest": digest(module)}),
            )
            .await;
        let gp = h.wait_ready("a", g).await;
        let active = gp.status.clone().unwrap().active_revision.unwrap();
        assert_eq!(active.version, version, "{}", dump(&gp));
    }
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    // Both modules were fetched from the server; now it is gone.
    assert_eq!(files.requests_for("/mock-v2.wasm"), 1);
    files.shutdown().await;

    // The restarted operator has no revision in memory: v2 comes from the store.
    h.restart_operator().await;
    let registry = h.registry.clone();
    eventually(T, "v2 loaded by the restarted operator", || {
        registry
            .get("a")
            .is_some_and(|s| s.plugin.info().version == V2)
    })
    .await;
    let active = h.registry.active_revision("a").unwrap();
    assert_eq!(active.digest, digest(&v2));
    assert!(active.from_cache, "and its code from the compile cache");
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));

    // A rollback to v1 after the restart: neither kept in memory nor at its source.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": url_v1, "digest": digest(&v1)}),
        )
        .await;
    let gp = h.wait_ready("a", g).await;
    let active = gp.status.clone().unwrap().active_revision.unwrap();
    assert_eq!(
        (active.version.as_str(), active.digest.as_str()),
        (V1, digest(&v1).as_str()),
        "{}",
        dump(&gp)
    );
    assert_eq!(h.quote("a").await, Ok(V1.to_string()));

    // A module it never loaded still needs its source: refused, v1 keeps serving.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": url_v2.replace("mock-v2", "mock-v3"), "digest": digest(b"v3")}),
        )
        .await;
    h.wait_refused("a", g, "FetchFailed").await;
    old_revision_serves(&h, "a", &digest(&v1), V1).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_sources_name_what_to_fix() {
    let h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let old = h.registry.active_revision("a").unwrap().digest;
    let v2 = mock_v2();
    let cms = Api::<ConfigMap>::namespaced(h.env.client.clone(), NAMESPACE);

    let g = h
        .set_module(
            "a",
            serde_json::json!({"configMap": {"name": "absent", "key": "module.wasm"}, "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_refused("a", g, "ConfigMapNotFound").await;
    assert!(
        loaded(&gp)
            .unwrap()
            .message
            .contains("spec.module.configMap.name"),
        "{}",
        dump(&gp)
    );
    old_revision_serves(&h, "a", &old, V1).await;

    // The module under `data` (text) instead of `binaryData`.
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "as-text", "namespace": NAMESPACE},
        "data": {"module.wasm": "not binary"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let g = h
        .set_module(
            "a",
            serde_json::json!({"configMap": {"name": "as-text", "key": "module.wasm"}, "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_refused("a", g, "ConfigMapKeyMissing").await;
    assert!(
        loaded(&gp).unwrap().message.contains("binaryData"),
        "{}",
        dump(&gp)
    );

    // A private registry: no pull secret, then a pull secret that does not exist.
    let registry = OciRegistry::start(OciRegistryConfig {
        credentials: Some(("puller".into(), "s3cret".into())),
    })
    .await
    .unwrap();
    let pushed = registry.push_module("private/mock", "2", &v2, TGP_MODULE_MEDIA_TYPE);
    let g = h
        .set_module(
            "a",
            serde_json::json!({"oci": {"reference": pushed.reference, "plainHttp": true}, "digest": digest(&v2)}),
        )
        .await;
    h.wait_refused("a", g, "FetchUnauthorized").await;
    let g = h
        .set_module(
            "a",
            serde_json::json!({"oci": {"reference": pushed.reference, "pullSecret": "nope", "plainHttp": true}, "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_refused("a", g, "PullSecretNotFound").await;
    assert!(
        loaded(&gp)
            .unwrap()
            .message
            .contains("spec.module.oci.pullSecret"),
        "{}",
        dump(&gp)
    );
    old_revision_serves(&h, "a", &old, V1).await;

    // Disabled: nothing serves, and status says so; the history stays for a later rollback.
    let g = h
        .patch_spec("a", serde_json::json!({"enabled": false}))
        .await;
    let gp = h.wait_refused("a", g, "Disabled").await;
    let st = gp.status.clone().unwrap();
    assert!(st.active_revision.is_none(), "{}", dump(&gp));
    assert_eq!(st.revisions.len(), 1, "{}", dump(&gp));
    assert!(h.registry.get("a").is_none());
    h.shutdown().await;
}

/// An `https://127.0.0.1` module URL on a server whose certificate a test CA signed, with the
/// operator started with that CA as its `--module-ca-file`: the module is fetched over TLS,
/// refused when its digest does not match, and served when it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_module_with_the_module_ca_bundle_is_fetched_verified_and_served() {
    let files = FileServer::start_tls().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = module_ca_file(&dir, "module-ca.pem", files.ca_pem().unwrap());
    let h =
        Harness::start_with_module_ca(vec![CloudSpec::new("a", cloud(Duration::ZERO))], Some(ca))
            .await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let v2 = mock_v2();
    files.put("/mock-v2.wasm", v2.clone());
    let url = files.url("/mock-v2.wasm");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Over TLS as over plain HTTP, the digest is checked before anything else.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"url": url, "digest": digest(b"another module")}),
        )
        .await;
    h.wait_refused("a", g, "DigestMismatch").await;
    old_revision_serves(&h, "a", &old, V1).await;

    let g = h
        .set_module("a", serde_json::json!({"url": url, "digest": digest(&v2)}))
        .await;
    let gp = h.wait_ready("a", g).await;
    let active = gp.status.clone().unwrap().active_revision.unwrap();
    assert_eq!(
        (
            active.version.as_str(),
            active.digest.as_str(),
            active.source.as_str()
        ),
        (V2, digest(&v2).as_str(), url.as_str()),
        "{}",
        dump(&gp)
    );
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    assert!(
        files
            .calls()
            .iter()
            .any(|c| c.path == "/mock-v2.wasm" && c.status == 200),
        "served over TLS: {:?}",
        files.calls()
    );
    h.shutdown().await;
    files.shutdown().await;
}

/// The same server to an operator that does not trust its CA: no CA bundle, then a bundle
/// with another CA. Each time the module is refused as TlsUntrusted before any request reaches
/// the server, the message says what to do, and the old revision keeps serving. Started with
/// the right CA, the operator then loads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_module_from_an_untrusted_ca_is_refused_and_the_old_revision_serves() {
    let mut h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let from_path = serde_json::to_value(&h.provider("a").await.spec.module).unwrap();
    let files = FileServer::start_tls().await.unwrap();
    let v2 = mock_v2();
    files.put("/mock-v2.wasm", v2.clone());
    let url = files.url("/mock-v2.wasm");
    let https = serde_json::json!({"url": url, "digest": digest(&v2)});

    // No CA bundle: the public roots do not know the test CA.
    let g = h.set_module("a", https.clone()).await;
    let gp = h.wait_refused("a", g, "TlsUntrusted").await;
    let message = loaded(&gp).unwrap().message.clone();
    println!("refused without a CA bundle: {message}");
    for needle in [
        url.as_str(),
        "is not signed by a certificate authority tgp trusts",
        "--module-ca-file",
        "moduleCA.configMap or moduleCA.secret",
    ] {
        assert!(message.contains(needle), "{needle:?} in: {message}");
    }
    old_revision_serves(&h, "a", &old, V1).await;
    assert!(h.registry.revisions("a").iter().all(|r| r.version == V1));

    // A CA bundle with another CA: refused the same way, naming the bundle that was tried.
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::generate("another internal CA").unwrap();
    let wrong = module_ca_file(&dir, "other-ca.pem", &other.pem());
    let g = h.set_module("a", from_path).await;
    h.wait_ready("a", g).await;
    h.restart_operator_with_module_ca(Some(wrong)).await;
    let registry = h.registry.clone();
    eventually(T, "v1 loaded by the restarted operator", || {
        registry.get("a").is_some()
    })
    .await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let g = h.set_module("a", https.clone()).await;
    let gp = h.wait_refused("a", g, "TlsUntrusted").await;
    let message = loaded(&gp).unwrap().message.clone();
    println!("refused with another CA: {message}");
    let bundle = format!(
        "the 1 CA certificate of --module-ca-file {}",
        dir.path().join("other-ca.pem").display()
    );
    assert!(message.contains(&bundle), "{bundle:?} in: {message}");
    assert!(message.contains(&url), "{message}");
    old_revision_serves(&h, "a", &old, V1).await;
    assert!(
        files.calls().is_empty(),
        "no request got past the TLS handshake: {:?}",
        files.calls()
    );

    // The operator restarted with the server's CA loads the module.
    let right = module_ca_file(&dir, "module-ca.pem", files.ca_pem().unwrap());
    h.restart_operator_with_module_ca(Some(right)).await;
    let registry = h.registry.clone();
    eventually(T, "the https module to be active", || {
        registry
            .get("a")
            .is_some_and(|s| s.plugin.info().version == V2)
    })
    .await;
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    h.shutdown().await;
    files.shutdown().await;
}

/// An OCI artifact on an https registry at `127.0.0.1` whose certificate a test CA signed (an
/// internal registry), with the operator started with that CA as its `--module-ca-file`: the
/// module is pulled over TLS, refused when its digest does not match, and served when it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_module_from_a_tls_registry_with_the_module_ca_bundle_is_pulled_and_served() {
    let registry = OciRegistry::start_tls(OciRegistryConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = module_ca_file(&dir, "module-ca.pem", registry.ca_pem().unwrap());
    let h =
        Harness::start_with_module_ca(vec![CloudSpec::new("a", cloud(Duration::ZERO))], Some(ca))
            .await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let v2 = mock_v2();
    let pushed = registry.push_module("tgp/mock", "v2", &v2, TGP_MODULE_MEDIA_TYPE);
    assert!(pushed.reference.starts_with("127.0.0.1:"), "{pushed:?}");

    // Over TLS as over plain http, the layer's digest is checked before the blob is pulled.
    let g = h
        .set_module(
            "a",
            serde_json::json!({"oci": {"reference": pushed.reference}, "digest": digest(b"another module")}),
        )
        .await;
    h.wait_refused("a", g, "DigestMismatch").await;
    old_revision_serves(&h, "a", &old, V1).await;
    assert_eq!(registry.call_count("blob"), 0, "{:?}", registry.calls());

    let g = h
        .set_module(
            "a",
            serde_json::json!({"oci": {"reference": pushed.reference}, "digest": digest(&v2)}),
        )
        .await;
    let gp = h.wait_ready("a", g).await;
    let active = gp.status.clone().unwrap().active_revision.unwrap();
    let source = format!("oci://{}", pushed.reference);
    assert_eq!(
        (
            active.version.as_str(),
            active.digest.as_str(),
            active.source.as_str()
        ),
        (V2, digest(&v2).as_str(), source.as_str()),
        "{}",
        dump(&gp)
    );
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    assert!(
        registry
            .calls()
            .iter()
            .any(|c| c.endpoint == "blob" && c.status == 200),
        "pulled over TLS: {:?}",
        registry.calls()
    );
    h.shutdown().await;
    registry.shutdown().await;
}

/// The same registry to an operator that does not trust its CA: refused as TlsUntrusted before
/// any request reaches the registry, the message says what to do, and the old revision keeps
/// serving. `plainHttp` is no way around it for a registry elsewhere: refused at admission by
/// the CRD's rule and, without it, by the controller, naming the field. Restarted with the
/// registry's CA, the operator pulls the module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_module_from_an_untrusted_tls_registry_is_refused_and_the_old_revision_serves() {
    let mut h = Harness::start(vec![CloudSpec::new("a", cloud(Duration::ZERO))]).await;
    let old = h.registry.active_revision("a").expect("v1 active").digest;
    let registry = OciRegistry::start_tls(OciRegistryConfig::default())
        .await
        .unwrap();
    let v2 = mock_v2();
    let pushed = registry.push_module("tgp/mock", "v2", &v2, TGP_MODULE_MEDIA_TYPE);
    let oci = serde_json::json!({"oci": {"reference": pushed.reference}, "digest": digest(&v2)});

    // No CA bundle: the public roots do not know the test CA.
    let g = h.set_module("a", oci.clone()).await;
    let gp = h.wait_refused("a", g, "TlsUntrusted").await;
    let message = loaded(&gp).unwrap().message.clone();
    println!("refused without a CA bundle: {message}");
    for needle in [
        format!("oci://{}", pushed.reference).as_str(),
        "is not signed by a certificate authority tgp trusts",
        "--module-ca-file",
        "moduleCA.configMap or moduleCA.secret",
    ] {
        assert!(message.contains(needle), "{needle:?} in: {message}");
    }
    old_revision_serves(&h, "a", &old, V1).await;
    assert!(
        registry.calls().is_empty(),
        "no request got past the TLS handshake: {:?}",
        registry.calls()
    );

    // plainHttp for a registry that is not on loopback: the CRD's rule refuses it...
    let elsewhere = serde_json::json!({
        "oci": {"reference": "registry.example.com/tgp/mock:v2", "plainHttp": true},
        "digest": digest(&v2),
    });
    let refused = h.try_set_module("a", elsewhere.clone()).await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("refused at admission: {refused:?}");
    };
    assert!(
        status.message.contains("spec.module.oci.plainHttp")
            && status.message.contains("loopback registries"),
        "{}",
        status.message
    );
    // ...and so does the controller, on an API server without the rule.
    h.set_schema_checks(false);
    let g = h.set_module("a", elsewhere).await;
    let gp = h.wait_refused("a", g, "InvalidModuleSource").await;
    let message = loaded(&gp).unwrap().message.clone();
    assert!(
        message.contains("spec.module.oci.plainHttp") && message.contains("loopback"),
        "{message}"
    );
    old_revision_serves(&h, "a", &old, V1).await;
    h.set_schema_checks(true);

    // The operator restarted with the registry's CA pulls the module.
    h.set_module("a", oci).await;
    let dir = tempfile::tempdir().unwrap();
    let right = module_ca_file(&dir, "module-ca.pem", registry.ca_pem().unwrap());
    h.restart_operator_with_module_ca(Some(right)).await;
    let reg = h.registry.clone();
    eventually(T, "the OCI module to be active", || {
        reg.get("a").is_some_and(|s| s.plugin.info().version == V2)
    })
    .await;
    assert_eq!(h.quote("a").await, Ok(V2.to_string()));
    h.shutdown().await;
    registry.shutdown().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
