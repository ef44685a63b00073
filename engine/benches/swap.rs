//! Hot swap benchmark: a plain binary printing figures (no harness).
//!
//! Runs the development API server, a simulated cloud, a loopback file server serving modules,
//! and the real GPUProvider controller, then measures:
//! 1. swap under load: 50 quote calls a second to one provider while its module is replaced,
//!    round after round, by a module it has never seen (the mock provider's second build with a
//!    unique custom section appended, so every round fetches and compiles a new digest); figures:
//!    failed calls (target 0) and the time from the resource change to the first call answered by
//!    the new module (target < 2 s);
//! 2. rollback: `spec.module.digest` set back to an earlier revision; the load must come from the
//!    compile cache (no recompilation) and is timed against the cold compiles of step 1;
//! 3. operator restart: the controller is stopped and started again with a new plugin host on
//!    the same compile cache directory, with several providers; time per plugin and whether each
//!    came from the cache.
//!
//! Needs the mock provider's second build, `target/wasm-variants/mock-v2/...` (built by
//! `cargo test -p tgp-e2e`, which `./x bench` runs first). Run: `cargo bench -p tgp --bench
//! swap`. `TGP_BENCH_ROUNDS` sets the number of swaps (default 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use tgp::crd::GPUProvider;
use tgp::devenv::{self, CloudSpec, DevEnv, NAMESPACE};
use tgp::modules::ModuleDigest;
use tgp::operator::{self, Ctx, ProviderRegistry};
use tgp::plugins::{GpuSpec, HostConfig, Operation, PluginHost};
use tgp_cloudsim::files::FileServer;
use tgp_cloudsim::{Faults, MockCloudConfig, OfferSpec};

const RATE_PER_SECOND: u32 = 50;

fn mock_v2() -> anyhow::Result<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/wasm-variants/mock-v2/wasm32-wasip2/wasm/tgp_provider_mock.wasm"
    );
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!("{path}: {e}; build it with `cargo test -p tgp-e2e --no-run` first")
    })
}

/// `component` with a custom section appended: the same code under a new digest.
fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"tgp-bench";
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

fn spec() -> GpuSpec {
    GpuSpec {
        gpu_type: "H100-SXM".into(),
        count: 1,
        regions: vec![],
        spot: false,
        max_price_per_hour: None,
        aliases: Vec::new(),
    }
}

struct Call {
    finished: Instant,
    digest: String,
    ok: bool,
}

/// Quotes `name` at [`RATE_PER_SECOND`] until `stop` is set.
async fn load(
    registry: Arc<ProviderRegistry>,
    name: String,
    stop: tokio::sync::watch::Receiver<bool>,
    calls: Arc<std::sync::Mutex<Vec<Call>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE_PER_SECOND);
    let mut tasks = Vec::new();
    while !*stop.borrow() {
        tick.tick().await;
        let registry = registry.clone();
        let name = name.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            let (digest, ok) = match registry.get(&name) {
                Some(slot) => {
                    let digest = slot.plugin.digest().to_string();
                    let r = slot
                        .call(Operation::Quote, slot.plugin.quote(&spec()))
                        .await;
                    (digest, r.is_ok_and(|o| !o.is_empty()))
                }
                None => (String::new(), false),
            };
            calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
                finished: Instant::now(),
                digest,
                ok,
            });
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

struct Operator {
    registry: Arc<ProviderRegistry>,
    task: tokio::task::JoinHandle<()>,
}

fn start_operator(env: &DevEnv, cache: &std::path::Path) -> anyhow::Result<Operator> {
    let host = Arc::new(PluginHost::new(HostConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..HostConfig::default()
    })?);
    let registry = ProviderRegistry::new();
    let ctx = Arc::new(Ctx::new(
        env.client.clone(),
        host,
        registry.clone(),
        env.settings.clone(),
        NAMESPACE.to_string(),
        "bench".to_string(),
    ));
    Ok(Operator {
        registry,
        task: tokio::spawn(operator::run_controllers(ctx)),
    })
}

async fn set_module(
    api: &Api<GPUProvider>,
    name: &str,
    module: serde_json::Value,
) -> anyhow::Result<()> {
    let mut m = serde_json::json!({"path": null, "configMap": null, "url": null, "oci": null, "digest": null});
    if let (Some(base), Some(new)) = (m.as_object_mut(), module.as_object()) {
        for (k, v) in new {
            base.insert(k.clone(), v.clone());
        }
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"module": m}})),
    )
    .await?;
    Ok(())
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn summary(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let at = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "median {:>8.1?}  p90 {:>8.1?}  max {:>8.1?}  (n={})",
        at(0.5),
        at(0.9),
        xs[xs.len() - 1],
        xs.len()
    )
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("TGP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(rounds))
}

async fn run(rounds: usize) -> anyhow::Result<()> {
    let v2 = mock_v2()?;
    let quote_latency = Duration::from_millis(50);
    let cloud = |n: &str| {
        CloudSpec::new(
            n,
            MockCloudConfig {
                offers: vec![OfferSpec::new(
                    "H100-SXM",
                    1,
                    "us-east-1",
                    1_000_000,
                    false,
                    10,
                )],
                ..MockCloudConfig::default()
            }
            .with_faults(Faults::none().latency("offers", quote_latency)),
        )
    };
    let env = DevEnv::start(
        vec![cloud("a"), cloud("b"), cloud("c"), cloud("d")],
        devenv::fast_settings(),
    )
    .await?;
    let cache = tempfile::tempdir()?;
    let files = FileServer::start().await?;
    let api: Api<GPUProvider> = Api::all(env.client.clone());
    let mut op = start_operator(&env, cache.path())?;
    env.wait_providers_loaded(Duration::from_secs(120)).await?;

    // 1. Swap under load.
    println!(
        "swap under load: {RATE_PER_SECOND} quote calls/s to provider a (quote latency {quote_latency:?}), {rounds} swaps to never-seen modules"
    );
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let generator = tokio::spawn(load(
        op.registry.clone(),
        "a".to_string(),
        stopped,
        calls.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut to_answer = Vec::new();
    let mut cold_loads = Vec::new();
    let mut digests = Vec::new();
    for round in 0..rounds {
        let module = with_custom_section(&v2, &format!("round-{round}-{}", std::process::id()));
        let digest = ModuleDigest::of(&module);
        let path = format!("/mock-{round}.wasm");
        files.put(&path, module);
        let changed = Instant::now();
        set_module(
            &api,
            "a",
            serde_json::json!({"url": files.url(&path), "digest": digest.to_string()}),
        )
        .await?;
        let hex = digest.hex().to_string();
        let seen = calls.clone();
        wait_until(
            "a call answered by the new module",
            Duration::from_secs(60),
            || {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .any(|c| c.digest == hex && c.ok && c.finished > changed)
            },
        )
        .await?;
        let answered = calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| c.digest == hex)
            .map(|c| c.finished)
            .min()
            .unwrap_or(changed);
        to_answer.push(answered - changed);
        if let Some(r) = op.registry.active_revision("a")
            && !r.from_cache
        {
            cold_loads.push(r.load_time);
        }
        digests.push(digest.to_string());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true)?;
    generator.await?;
    let all = calls.lock().unwrap_or_else(|e| e.into_inner()).len();
    let failed = calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|c| !c.ok)
        .count();
    println!("  calls made {all}, failed {failed} (target 0)");
    println!(
        "  change -> first call answered by the new module: {}",
        summary(to_answer)
    );
    println!(
        "  load of a new module (fetch + verify + compile + info + swap): {}",
        summary(cold_loads.clone())
    );

    // 2. Rollback to kept revisions: the modules of earlier rounds (their URLs still serve
    // them, but a kept revision needs no fetch).
    let mut rollbacks = Vec::new();
    let mut rollback_loads = Vec::new();
    let mut all_from_cache = true;
    let n = digests.len();
    let targets: Vec<usize> = (0..n.saturating_sub(1)).rev().take(4).collect();
    for &i in &targets {
        let target = &digests[i];
        let module =
            serde_json::json!({"url": files.url(&format!("/mock-{i}.wasm")), "digest": target});
        let changed = Instant::now();
        set_module(&api, "a", module).await?;
        let hex = target.trim_start_matches("sha256:").to_string();
        let registry = op.registry.clone();
        wait_until("the rollback", Duration::from_secs(60), || {
            registry.get("a").is_some_and(|s| s.plugin.digest() == hex)
        })
        .await?;
        rollbacks.push(changed.elapsed());
        if let Some(r) = op.registry.active_revision("a") {
            all_from_cache &= r.from_cache;
            rollback_loads.push(r.load_time);
        }
    }
    println!(
        "rollback to a kept revision ({} rollbacks; every one from the compile cache: {all_from_cache})",
        rollbacks.len()
    );
    println!("  change -> swapped: {}", summary(rollbacks));
    println!(
        "  load (kept bytes + verify + cached code + info + swap): {}",
        summary(rollback_loads)
    );

    // 3. Operator restart: four providers, a new plugin host on the same cache directory.
    for (i, name) in ["b", "c", "d"].iter().enumerate() {
        let module = with_custom_section(&v2, &format!("provider-{name}"));
        let path = format!("/provider-{i}.wasm");
        let digest = ModuleDigest::of(&module).to_string();
        files.put(&path, module);
        set_module(
            &api,
            name,
            serde_json::json!({"url": files.url(&path), "digest": digest}),
        )
        .await?;
    }
    let registry = op.registry.clone();
    wait_until(
        "b, c, d on their own modules",
        Duration::from_secs(120),
        || {
            ["b", "c", "d"].iter().all(|n| {
                registry
                    .active_revision(n)
                    .is_some_and(|r| r.source.contains("/provider-"))
            })
        },
    )
    .await?;
    op.task.abort();
    let _ = op.task.await;
    let restarted = Instant::now();
    op = start_operator(&env, cache.path())?;
    let registry = op.registry.clone();
    wait_until(
        "every provider after the restart",
        Duration::from_secs(120),
        || {
            ["a", "b", "c", "d"]
                .iter()
                .all(|n| registry.get(n).is_some())
        },
    )
    .await?;
    let all_loaded = restarted.elapsed();
    println!("operator restart: 4 providers, new plugin host on the same compile cache");
    for name in ["a", "b", "c", "d"] {
        if let Some(r) = op.registry.active_revision(name) {
            println!(
                "  {name}: {:<48} from cache {:<5} load {:>8.1?}",
                r.source, r.from_cache, r.load_time
            );
        }
    }
    println!("  restart -> all four serving: {all_loaded:.1?}");
    op.task.abort();
    env.shutdown().await;
    Ok(())
}
