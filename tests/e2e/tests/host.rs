//! End-to-end tests of the sandboxed plugin host (`tgp::plugins`) against real components:
//! the hostile test plugin (every misbehaviour a provider plugin could show) and a plugin built
//! for a future contract version.

#[path = "host/support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;
use tgp::plugins::{CallError, GpuSpec, HostConfig, LoadError, Plugin, PluginHost, ProviderError};

fn host() -> PluginHost {
    PluginHost::new(HostConfig::default()).expect("host")
}

fn spec(gpu_type: &str, count: u32) -> GpuSpec {
    GpuSpec {
        gpu_type: gpu_type.into(),
        count,
        regions: vec![],
        spot: false,
        max_price_per_hour: None,
    }
}

async fn load(host: &PluginHost, grants: tgp::plugins::Grants) -> Plugin {
    host.load(hostile(), grants)
        .await
        .expect("hostile plugin loads")
}

#[tokio::test]
async fn loads_and_answers_info_and_quote() {
    logs();
    let host = host();
    let plugin = load(&host, grants("ok")).await;
    assert_eq!(plugin.info().name, "hostile");
    assert_eq!(plugin.contract_version(), "0.1.0");
    assert_eq!(plugin.digest().len(), 64);
    assert_eq!(plugin.call_info().await.expect("info"), *plugin.info());
    let offers = plugin.quote(&spec("H100-SXM", 8)).await.expect("quote");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].offer_id, "H100-SXMx8");
    assert_eq!(offers[0].count, 8);
    // Unimplemented operations come back as classified provider errors.
    assert!(matches!(
        plugin.verify("i-1").await,
        Err(CallError::Provider(ProviderError::Unsupported(_)))
    ));
    // Generated types round-trip through JSON.
    let json = serde_json::to_string(&offers[0]).expect("serialize");
    assert_eq!(
        serde_json::from_str::<tgp::plugins::Offer>(&json).expect("deserialize"),
        offers[0]
    );
}

#[tokio::test]
async fn infinite_loop_times_out_while_other_plugins_keep_answering() {
    logs();
    let host = host();
    let mut g = grants("loop");
    g.limits.call_timeout = Duration::from_secs(1);
    let looping = load(&host, g).await;
    let healthy = load(&host, grants("ok")).await;

    // Current-thread runtime: the healthy call only completes if the loop yields.
    let started = Instant::now();
    let loop_call = async {
        let r = looping.quote(&spec("A100", 1)).await;
        (r, started.elapsed())
    };
    let ok_call = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = healthy.quote(&spec("A100", 2)).await;
        (r, started.elapsed())
    };
    let ((loop_result, loop_elapsed), (ok_result, ok_elapsed)) = tokio::join!(loop_call, ok_call);

    assert_eq!(
        loop_result,
        Err(CallError::Timeout {
            after: Duration::from_secs(1)
        })
    );
    assert!(
        loop_elapsed >= Duration::from_secs(1),
        "stopped early: {loop_elapsed:?}"
    );
    assert!(
        loop_elapsed < Duration::from_secs(2),
        "deadline overrun: {loop_elapsed:?}"
    );
    assert_eq!(
        ok_result.expect("healthy plugin answers")[0].offer_id,
        "A100x2"
    );
    assert!(
        ok_elapsed < loop_elapsed,
        "healthy call ({ok_elapsed:?}) waited for the loop ({loop_elapsed:?})"
    );
    assert_eq!(looping.stats().discarded, 1);
    assert_eq!(looping.stats().idle, 0);
}

#[tokio::test]
async fn memory_bomb_is_out_of_memory_and_the_plugin_recovers() {
    logs();
    let host = host();
    let limit = 32 * 1024 * 1024;
    let mut g = grants("membomb");
    g.limits.memory_bytes = limit;
    let bomb = load(&host, g).await;
    let before = bomb.stats().instantiations;

    let r = bomb.quote(&spec("A100", 1)).await;
    assert_eq!(r, Err(CallError::OutOfMemory { limit_bytes: limit }));
    // The first call ran on the instance pooled at load; it was discarded, so the next call
    // gets a fresh instance and fails the same way, cleanly.
    let r = bomb.quote(&spec("A100", 1)).await;
    assert_eq!(r, Err(CallError::OutOfMemory { limit_bytes: limit }));
    assert_eq!(bomb.stats().instantiations, before + 1);
    assert_eq!(bomb.stats().discarded, 2);
    // A call that does not allocate still works on the same plugin.
    let offers = bomb
        .quote(&spec("mode:ok", 3))
        .await
        .expect("same plugin recovers");
    assert_eq!(offers[0].offer_id, "mode:okx3");
    assert!(bomb.call_info().await.is_ok());
}

#[tokio::test]
async fn panic_becomes_guest_panic_with_its_message() {
    logs();
    let host = host();
    let plugin = load(&host, grants("panic")).await;
    match plugin.quote(&spec("A100", 1)).await {
        Err(CallError::GuestPanic { message }) => {
            assert!(
                message.contains("hostile plugin panicked on purpose"),
                "message: {message}"
            )
        }
        other => panic!("expected GuestPanic, got {other:?}"),
    }
}

#[tokio::test]
async fn trapped_instance_is_discarded_and_the_next_call_runs_fresh() {
    logs();
    let host = host();
    let plugin = load(&host, grants("ok")).await;
    plugin.quote(&spec("A", 1)).await.expect("ok");
    let s = plugin.stats();
    assert_eq!(
        (s.instantiations, s.idle),
        (1, 1),
        "load and first call share one pooled instance"
    );

    let r = plugin.quote(&spec("mode:panic", 1)).await;
    assert!(matches!(r, Err(CallError::GuestPanic { .. })), "{r:?}");
    let s = plugin.stats();
    assert_eq!(
        (s.instantiations, s.idle, s.discarded),
        (1, 0, 1),
        "the trapped instance left the pool"
    );

    let offers = plugin.quote(&spec("B", 2)).await.expect("next call works");
    assert_eq!(offers[0].offer_id, "Bx2");
    let s = plugin.stats();
    assert_eq!(
        (s.instantiations, s.idle),
        (2, 1),
        "the next call instantiated fresh"
    );
}

#[tokio::test]
async fn off_list_host_is_capability_denied_without_any_connection() {
    logs();
    let host = host();
    let wire = tripwire();
    let target = format!("http://127.0.0.1:{}/steal", wire.port);
    let plugin = load(
        &host,
        with_target(grants("offlist"), &target, &["https://api.example.com"]),
    )
    .await;
    let r = plugin.quote(&spec("A100", 1)).await;
    assert_eq!(
        r,
        Err(CallError::CapabilityDenied {
            what: format!("http://127.0.0.1:{}", wire.port)
        })
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !wire.was_touched(),
        "the host connected to a host that is not on the allow-list"
    );
    // The plugin keeps serving.
    assert!(plugin.call_info().await.is_ok());
}

#[tokio::test]
async fn hostnames_resolving_to_private_addresses_are_refused() {
    logs();
    let host = host();
    let wire = tripwire();
    let origin = format!("http://localhost:{}", wire.port);
    let plugin = load(
        &host,
        with_target(grants("big"), &format!("{origin}/x"), &[&origin]),
    )
    .await;
    match plugin.quote(&spec("A100", 1)).await {
        Err(CallError::Provider(ProviderError::Internal(text))) => {
            assert!(
                text.starts_with("connect:") && text.contains("non-public"),
                "{text}"
            )
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !wire.was_touched(),
        "the host connected to a private address through a hostname"
    );
}

#[tokio::test]
async fn oversized_response_is_too_large_at_the_cap() {
    logs();
    let host = host();
    let port = big_server(5 * 1024 * 1024);
    let origin = format!("http://127.0.0.1:{port}");
    let plugin = load(
        &host,
        with_target(grants("big"), &format!("{origin}/big"), &[&origin]),
    )
    .await;
    let cap = plugin_cap();
    let r = plugin.quote(&spec("A100", 1)).await;
    assert_eq!(
        r,
        Err(CallError::Provider(ProviderError::Internal(format!(
            "too-large: {cap}"
        ))))
    );
}

fn plugin_cap() -> u64 {
    tgp::plugins::Limits::default().max_response_bytes
}

#[tokio::test]
async fn secrets_reach_the_server_but_never_the_plugin_or_the_logs() {
    let logs_handle = logs();
    let host = host();
    let secret = "sk-live-TOPSECRET-8d1f2a";
    let server = echo_server();
    let origin = format!("http://127.0.0.1:{}", server.port);
    let g = with_secret(
        with_target(grants("secret"), &format!("{origin}/echo"), &[&origin]),
        "api_key",
        secret,
    );
    assert!(
        !format!("{g:?}").contains(secret),
        "Grants Debug leaks the secret"
    );
    let plugin = load(&host, g).await;

    let offers = plugin
        .quote(&spec("A100", 1))
        .await
        .expect("secret mode answers");
    let seen = server.seen.lock().expect("lock").join("\n");
    assert!(
        seen.contains(&format!("Bearer {secret}")),
        "server did not get the real secret: {seen}"
    );
    let answer = &offers[0].offer_id;
    assert!(
        answer.contains("Bearer {{secret:api_key}}"),
        "plugin answer: {answer}"
    );
    assert!(
        answer.contains("x-echo-authorization: Bearer {{secret:api_key}}"),
        "plugin answer: {answer}"
    );
    assert!(
        !answer.contains(secret),
        "the plugin saw the secret: {answer}"
    );

    let logs = logs_text();
    assert!(
        logs.contains("secret mode received body"),
        "guest log lines are captured"
    );
    assert!(!logs.contains(secret), "the secret reached the logs");
    drop(logs_handle);
}

#[tokio::test]
async fn future_contract_is_refused_naming_both_versions() {
    logs();
    let host = host();
    let err = host
        .load(component("tgp-test-plugin-future-contract"), grants("ok"))
        .await
        .expect_err("must be refused");
    let text = err.to_string();
    assert!(
        matches!(&err, LoadError::Incompatible { plugin, .. } if plugin == "1.0.0"),
        "{err:?}"
    );
    assert!(text.contains("1.0.0") && text.contains("0.1"), "{text}");
}

#[tokio::test]
async fn garbage_bytes_are_a_compile_error() {
    let host = host();
    let err = host
        .load(b"not wasm".to_vec(), grants("ok"))
        .await
        .expect_err("must fail");
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_calls_get_their_own_answers() {
    logs();
    let host = host();
    let plugin = load(&host, grants("ok")).await;
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let p = plugin.clone();
        tasks.push(tokio::spawn(async move {
            (i, p.quote(&spec(&format!("gpu-{i}"), i + 1)).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.expect("task");
        let offers = r.expect("quote");
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].offer_id, format!("gpu-{i}x{}", i + 1));
        assert_eq!(offers[0].count, i + 1);
    }
    let s = plugin.stats();
    assert!(s.instantiations <= 16, "concurrency bound exceeded: {s:?}");
    assert_eq!(s.discarded, 0);
}

#[tokio::test]
async fn compile_cache_is_used_and_corruption_is_detected() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host");

    let first = load(&host, grants("ok")).await;
    assert!(!first.loaded_from_cache());
    let second = load(&host, grants("ok")).await;
    assert!(second.loaded_from_cache());
    assert_eq!(
        second
            .quote(&spec("X", 1))
            .await
            .expect("cached plugin works")[0]
            .offer_id,
        "Xx1"
    );

    // A fresh host (same engine settings) also hits the cache.
    let other = PluginHost::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host");
    assert!(load(&other, grants("ok")).await.loaded_from_cache());

    // Corrupt the entry: flip bytes in the middle of the artifact.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read cache dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut data = std::fs::read(&entries[0]).expect("read entry");
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&entries[0], &data).expect("corrupt entry");

    let recompiled = load(&host, grants("ok")).await;
    assert!(
        !recompiled.loaded_from_cache(),
        "a corrupted entry was trusted"
    );
    assert_eq!(
        recompiled.quote(&spec("Y", 2)).await.expect("works")[0].offer_id,
        "Yx2"
    );
    // The entry was rewritten.
    assert!(load(&host, grants("ok")).await.loaded_from_cache());
}

#[tokio::test]
async fn redirects_are_rechecked_against_the_allow_list() {
    logs();
    let host = host();
    let wire = tripwire();
    let off_list = format!("http://127.0.0.1:{}", wire.port);
    let port = redirect_server(format!("{off_list}/next"));
    let origin = format!("http://127.0.0.1:{port}");
    let plugin = load(
        &host,
        with_target(grants("big"), &format!("{origin}/start"), &[&origin]),
    )
    .await;
    let r = plugin.quote(&spec("A100", 1)).await;
    assert_eq!(
        r,
        Err(CallError::Provider(ProviderError::Internal(format!(
            "denied: redirect to {off_list} is not on the allow-list"
        ))))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !wire.was_touched(),
        "the host followed a redirect to a host that is not on the allow-list"
    );
}
