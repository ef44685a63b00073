//! The operator under load: 1,000 GPURequests from create to Ready against the development
//! environment (dev API server, one simulated cloud with zero boot delay, the real operator and
//! the sandboxed mock plugin), all in this process.
//!
//! Run: `cargo bench -p tgp --bench operator`. Targets: all Ready in under 30 s, peak RSS
//! (VmHWM) under 150 MiB. `TGP_BENCH_REQUESTS` overrides the count.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tgp::crd::gpurequest::Phase;
use tgp::devenv::{self, CloudSpec, DevEnv};
use tgp_cloudsim::{MockCloudConfig, OfferSpec};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("TGP_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
        .try_init();
    let stock = (n as u32 * 2).max(2000);
    let cloud = MockCloudConfig::instant()
        .with_offers(vec![OfferSpec::new("H100-SXM", 1, "us-east-1", 2_000_000, false, stock)])
        .with_balance_micro_usd(10_000_000 * 1_000_000);
    let mut env = DevEnv::start(vec![CloudSpec::new("bench", cloud)], devenv::fast_settings()).await?;
    env.start_operator("bench-operator").await?;
    env.wait_providers_loaded(Duration::from_secs(60)).await?;
    println!("environment up; peak RSS so far {} MiB", vm_hwm_kib() / 1024);

    let started = Instant::now();
    let texts: Vec<String> = (0..n)
        .map(|i| format!("apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: bench-{i:04}\nspec:\n  gpuType: H100-SXM\n  gpuCount: 1\n"))
        .collect();
    let env_ref = &env;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(texts.iter())
        .map(|t| async move { env_ref.create_request(t).await.map(|_| ()) })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let created = started.elapsed();
    println!("created {n} requests in {:.2}s", created.as_secs_f64());

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    let ready_at = loop {
        let list = env.requests().list(&Default::default()).await?.items;
        let ready = list.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Ready)).count();
        let failed = list.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)).count();
        if ready == n {
            break started.elapsed();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            let mut phases = std::collections::BTreeMap::new();
            for r in &list {
                *phases.entry(format!("{:?}", r.status.as_ref().map(|s| s.phase).unwrap_or_default())).or_insert(0) += 1;
            }
            if std::env::var("TGP_BENCH_DEBUG").is_ok() {
                for r in list.iter().filter(|r| r.status.as_ref().is_none_or(|s| s.phase != Phase::Ready)).take(3) {
                    println!("    not ready: {} {}", kube::ResourceExt::name_any(r), serde_json::to_string(&r.status).unwrap_or_default());
                }
            }
            println!("  {:>6.1}s: {ready} Ready, {failed} Failed, RSS peak {} MiB, phases {phases:?}", started.elapsed().as_secs_f64(), vm_hwm_kib() / 1024);
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {ready} of {n} Ready ({failed} Failed) after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let hwm = vm_hwm_kib();
    let launches = env.cloud("bench").call_count(tgp_cloudsim::Endpoint::Launch);
    let live = env.live_instances();
    println!("operator bench: {n} GPURequests create -> Ready in {:.2}s (target < 30 s)", ready_at.as_secs_f64());
    println!("operator bench: peak RSS (VmHWM) {:.1} MiB (target < 150 MiB)", hwm as f64 / 1024.0);
    println!("operator bench: {launches} launch calls, {live} live instances");
    env.shutdown().await;
    Ok(())
}
