//! End-to-end tests of the sandboxed plugin host (`tgp::plugins`) against real components:
//! the hostile test plugin (every misbehaviour a provider plugin could show), a plugin built
//! for a future contract version, and the SDK README's example. Includes the load-time check of
//! the hosts a plugin declares (`capabilities.hosts`) against its grants.

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
        aliases: Vec::new(),
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
    assert_eq!(plugin.contract_version(), "0.3.0");
    assert_eq!(plugin.contract_version(), tgp::plugins::CONTRACT_VERSION);
    assert!(
        plugin.declared_hosts().is_empty(),
        "declares nothing unless told"
    );
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

/// The plugin declares only its grant and calls elsewhere anyway: the load-time check cannot
/// see that, the call-time check stops it.
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
    assert_eq!(plugin.declared_hosts(), ["https://api.example.com"]);
    assert!(
        plugin.contacted_origins().is_empty(),
        "a refused request is never sent"
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
    assert_eq!(plugin.contacted_origins(), [origin]);
    assert!(plugin.undeclared_origins().is_empty());
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
    // The plugin declares bearer with the secret `api_key`: the host applies it.
    let mut g = with_secret(
        with_target(grants("secret"), &format!("{origin}/echo"), &[&origin]),
        "api_key",
        secret,
    );
    g.config.insert("auth".into(), "bearer".into());
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
        answer.contains("Bearer [redacted]"),
        "plugin answer: {answer}"
    );
    assert!(
        answer.contains("x-echo-authorization: Bearer [redacted]"),
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

/// The plugin gets the response's own headers, but not the framing and hop-by-hop ones (the
/// host hands over the whole body, possibly redacted, so `content-length` would not describe it).
#[tokio::test]
async fn framing_and_hop_by_hop_headers_are_not_passed_to_the_plugin() {
    logs();
    let host = host();
    let server = echo_server();
    let origin = format!("http://127.0.0.1:{}", server.port);
    let mut g = with_secret(
        with_target(grants("secret"), &format!("{origin}/echo"), &[&origin]),
        "api_key",
        "sk-test-headers",
    );
    g.config.insert("auth".into(), "bearer".into());
    let plugin = load(&host, g).await;
    let offers = plugin
        .quote(&spec("A100", 1))
        .await
        .expect("secret mode answers");
    // The echo server answers with content-type, x-echo-authorization, content-length and
    // connection; the plugin reports the headers it received, one per line.
    let answer = offers[0].offer_id.to_ascii_lowercase();
    assert!(answer.contains("content-type: text/plain"), "{answer}");
    assert!(answer.contains("x-echo-authorization: "), "{answer}");
    assert!(!answer.contains("content-length:"), "{answer}");
    assert!(!answer.contains("connection:"), "{answer}");
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
    assert!(text.contains("1.0.0") && text.contains("0.3"), "{text}");
}

#[tokio::test]
async fn previous_contract_is_refused_naming_both_versions() {
    logs();
    let host = host();
    let err = host
        .load(component("tgp-test-plugin-past-contract"), grants("ok"))
        .await
        .expect_err("a plugin built for 0.2 must be refused by a 0.3 engine");
    assert!(
        matches!(&err, LoadError::Incompatible { plugin, host } if plugin == "0.2.0" && host == "0.3.x"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("tgp:provider@0.2.0") && text.contains("tgp:provider@0.3.x"),
        "{text}"
    );
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

#[tokio::test]
async fn declaring_an_ungranted_host_is_refused_at_load_while_the_loaded_plugin_keeps_serving() {
    logs();
    let host = host();
    let granted = ["https://api.example.com"];
    // The revision in service declares exactly its grant.
    let serving = load(&host, declaring(granting(grants("ok"), &granted), &granted)).await;
    assert_eq!(serving.declared_hosts(), granted);

    // The new module asks for one more host than granted.
    let err = host
        .load(
            hostile(),
            declaring(
                granting(grants("ok"), &granted),
                &["https://api.example.com", "https://EVIL.example"],
            ),
        )
        .await
        .expect_err("a plugin asking for more than granted must be refused");
    match &err {
        LoadError::UngrantedHost { host, granted } => {
            assert_eq!(host, "https://evil.example:443");
            assert_eq!(granted, &["https://api.example.com:443"]);
        }
        other => panic!("expected UngrantedHost, got {other:?}"),
    }
    assert_eq!(err.reason(), "HostNotGranted");
    let text = err.to_string();
    assert!(
        text.contains("https://evil.example:443")
            && text.contains("granted: https://api.example.com:443")
            && text.contains("add it to allowedHosts"),
        "{text}"
    );

    // Nothing granted at all: refused too, saying so.
    let err = host
        .load(hostile(), declaring(grants("ok"), &["http://127.0.0.1:9"]))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, LoadError::UngrantedHost { granted, .. } if granted.is_empty()),
        "{err:?}"
    );
    assert!(err.to_string().contains("(granted: none)"), "{err}");

    // The refusals left the serving plugin alone.
    let offers = serving
        .quote(&spec("H100-SXM", 2))
        .await
        .expect("still serving");
    assert_eq!(offers[0].offer_id, "H100-SXMx2");
}

#[tokio::test]
async fn declaring_exactly_the_grants_loads_whatever_their_spelling() {
    logs();
    let host = host();
    let plugin = host
        .load(
            hostile(),
            declaring(
                granting(
                    grants("ok"),
                    &["https://api.example.com/", "http://127.0.0.1:8080"],
                ),
                &["HTTPS://API.example.com:443", "http://127.0.0.1:8080"],
            ),
        )
        .await
        .expect("a plugin declaring its grants loads");
    assert_eq!(
        plugin.declared_hosts(),
        ["HTTPS://API.example.com:443", "http://127.0.0.1:8080"]
    );
    assert_eq!(plugin.info().capabilities.hosts, plugin.declared_hosts());
    assert!(plugin.quote(&spec("A", 1)).await.is_ok());
}

#[tokio::test]
async fn a_malformed_declared_host_is_refused_with_its_own_error() {
    logs();
    let host = host();
    for (bad, why) in [
        ("api.example.com", "not a URL"),
        ("https://api.example.com/v1", "path"),
        ("ftp://api.example.com", "scheme"),
    ] {
        let err = host
            .load(
                hostile(),
                declaring(granting(grants("ok"), &["https://api.example.com"]), &[bad]),
            )
            .await
            .expect_err(bad);
        match &err {
            LoadError::MalformedHost { declared, reason } => {
                assert_eq!(declared, bad);
                assert!(reason.contains(why), "{bad}: {reason}");
            }
            other => panic!("{bad}: expected MalformedHost, got {other:?}"),
        }
        assert_eq!(err.reason(), "MalformedDeclaredHost");
    }
}

/// `tgp plugin inspect` loads offline: the declaration is shown, not refused, and no request
/// can leave the host.
#[tokio::test]
async fn offline_load_shows_ungranted_hosts_and_reaches_nothing() {
    logs();
    let host = host();
    let wire = tripwire();
    let target = format!("http://127.0.0.1:{}", wire.port);
    let g = declaring(
        with_target(grants("offlist"), &format!("{target}/x"), &[&target]),
        &["https://evil.example"],
    );
    assert!(matches!(
        host.load(hostile(), g.clone()).await,
        Err(LoadError::UngrantedHost { .. })
    ));
    let plugin = host.load_offline(hostile(), g).await.expect("offline load");
    assert_eq!(plugin.declared_hosts(), ["https://evil.example"]);
    // Even the granted target is out of reach offline.
    assert_eq!(
        plugin.quote(&spec("A100", 1)).await,
        Err(CallError::CapabilityDenied { what: target })
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wire.was_touched(), "an offline plugin reached the network");
}

/// The SDK README's example declares the origin of its `base_url`, so the same component loads
/// where that origin is granted and is refused where it is not.
#[tokio::test]
async fn sdk_example_declares_its_base_url_origin() {
    logs();
    let host = host();
    let base_url = "http://127.0.0.1:8790/";
    let config = |g: &mut tgp::plugins::Grants| {
        g.config.insert("base_url".into(), base_url.into());
    };
    let mut g = tgp::plugins::Grants {
        provider_name: "hello".into(),
        allowed_hosts: vec!["http://127.0.0.1:8790".into()],
        ..Default::default()
    };
    config(&mut g);
    let plugin = host.load(sdk_example(), g).await.expect("granted: loads");
    assert_eq!(plugin.declared_hosts(), ["http://127.0.0.1:8790"]);

    let mut g = tgp::plugins::Grants {
        provider_name: "hello".into(),
        allowed_hosts: vec!["https://api.hello.example".into()],
        ..Default::default()
    };
    config(&mut g);
    match host.load(sdk_example(), g).await {
        Err(LoadError::UngrantedHost { host, granted }) => {
            assert_eq!(host, "http://127.0.0.1:8790");
            assert_eq!(granted, ["https://api.hello.example:443"]);
        }
        other => panic!("expected UngrantedHost, got {other:?}"),
    }

    // Without a base_url it calls nothing, declares nothing, and loads with no grants.
    let plugin = host
        .load(sdk_example(), tgp::plugins::Grants::default())
        .await
        .expect("loads");
    assert!(plugin.declared_hosts().is_empty());
}

/// A plugin granted a host it did not declare loads and may call it, but the call is on record
/// as undeclared: what the conformance kit fails a plugin for.
#[tokio::test]
async fn calls_to_granted_but_undeclared_hosts_are_on_record() {
    logs();
    let host = host();
    let port = big_server(16);
    let origin = format!("http://127.0.0.1:{port}");
    let g = declaring(
        with_target(grants("big"), &format!("{origin}/small"), &[&origin]),
        &[],
    );
    let plugin = host.load(hostile(), g).await.expect("declaring less loads");
    assert!(plugin.declared_hosts().is_empty());
    assert!(plugin.contacted_origins().is_empty());
    let offers = plugin.quote(&spec("A100", 1)).await.expect("the call runs");
    assert!(offers[0].offer_id.starts_with("status 200"), "{offers:?}");
    assert_eq!(plugin.contacted_origins(), std::slice::from_ref(&origin));
    assert_eq!(plugin.undeclared_origins(), [origin]);
}
