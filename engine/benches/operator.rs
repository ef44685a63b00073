//! The operator under load: 1,000 GPURequests from create to Ready.
//!
//! Two processes, so that the operator's memory is measured on its own: this binary re-runs
//! itself as a child (`TGP_BENCH_ROLE=infra`) that hosts the development API server and the
//! simulated cloud (zero boot delay); the parent runs only the real operator (controllers,
//! leader election, GC, the sandboxed mock plugin) against them over loopback, creates the
//! requests and waits for all of them to be Ready. It prints the wall time and the peak RSS
//! (VmHWM) of the operator process, and of the infrastructure process for reference.
//!
//! Run: `cargo bench -p tgp --bench operator`. Targets: all Ready in under 30 s, operator peak
//! RSS under 150 MiB. `TGP_BENCH_REQUESTS` overrides the count.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};
use tgp::crd::gpuprovider::{Credentials, GPUProviderSpec, ModuleSource, ProviderLimits};
use tgp::crd::gpurequest::Phase;
use tgp::crd::{GPUProvider, GPURequest};
use tgp::devenv::{self, NAMESPACE};
use tgp::operator::{self, LeaderConfig, Settings};
use tgp::plugins::{HostConfig, PluginHost};
use tgp_cloudsim::{Endpoint, MockCloud, MockCloudConfig, OfferSpec};

fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("TGP_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var("TGP_BENCH_ROLE").as_deref() == Ok("infra") {
        return rt.block_on(infra(n));
    }
    rt.block_on(run(n))
}

/// The child: API server with the CRDs, and one simulated cloud. Prints
/// `<kubeconfig path> <cloud url> <api key>` and serves until its stdin closes.
async fn infra(n: usize) -> anyhow::Result<()> {
    let api = tgp_apiserver::DevApiServer::start().await?;
    api.register_crd(&GPURequest::crd())?;
    api.register_crd(&GPUProvider::crd())?;
    let stock = (n as u32 * 2).max(2000);
    let cfg = MockCloudConfig::instant()
        .with_offers(vec![OfferSpec::new(
            "H100-SXM",
            1,
            "us-east-1",
            2_000_000,
            false,
            stock,
        )])
        .with_balance_micro_usd(10_000_000 * 1_000_000);
    let key = cfg.api_key.clone();
    let cloud = MockCloud::start(cfg).await?;
    let kubeconfig =
        std::env::temp_dir().join(format!("tgp-bench-kubeconfig-{}", std::process::id()));
    api.write_kubeconfig(&kubeconfig)?;
    println!("{} {} {key}", kubeconfig.display(), cloud.base_url());
    // Serve until the parent closes our stdin; then report what the cloud saw.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    eprintln!(
        "infra: {} launch calls, {} live instances",
        cloud.call_count(Endpoint::Launch),
        cloud.live_instances().len()
    );
    let _ = std::fs::remove_file(&kubeconfig);
    Ok(())
}

async fn run(n: usize) -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("TGP_BENCH_ROLE", "infra")
        .env("TGP_BENCH_REQUESTS", n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let child_pid = child.id().to_string();
    let mut line = String::new();
    BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no child stdout"))?,
    )
    .read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(kubeconfig), Some(cloud_url), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("the infrastructure process did not start: {line:?}");
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;

    // One provider: the mock plugin (written to disk, as a real installation would ship it).
    let dir = std::env::temp_dir().join(format!("tgp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let plugin = dir.join("tgp_provider_mock.wasm");
    std::fs::write(&plugin, tgp::embedded::MOCK_PLUGIN)?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bench-credentials", "namespace": NAMESPACE},
        "stringData": {"api-key": key}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;
    let provider = GPUProvider::new(
        "bench",
        GPUProviderSpec {
            module: ModuleSource {
                path: Some(plugin.display().to_string()),
                digest: None,
                ..ModuleSource::default()
            },
            credentials: Some(Credentials {
                secret_name: "bench-credentials".into(),
                keys: [("api_key".to_string(), "api-key".to_string())].into(),
                auth: None,
            }),
            allowed_hosts: vec![cloud_url.to_string()],
            config: [
                ("base_url".to_string(), cloud_url.to_string()),
                ("name".to_string(), "bench".to_string()),
            ]
            .into(),
            limits: ProviderLimits::default(),
            priority: 0,
            enabled: true,
            registration_timeout: None,
        },
    );
    Api::<GPUProvider>::all(client.clone())
        .create(&PostParams::default(), &provider)
        .await?;

    // Launch-path settings stay fast (zero boot delay, quick verify polling); health checks and
    // garbage collection use the operator's production intervals, as in a real cluster. With the
    // test suite's 500 ms health interval, 1,000 ready requests alone would ask for 2,000
    // verifies a second and the benchmark would measure health checking, not provisioning.
    let production = Settings::default();
    let settings = Settings {
        health_interval: production.health_interval,
        gc_interval: production.gc_interval,
        gc_grace: production.gc_grace,
        ..devenv::fast_settings()
    };
    let host = Arc::new(PluginHost::new(HostConfig {
        cache_dir: Some(dir.join("cache")),
        ..HostConfig::default()
    })?);
    let leader = LeaderConfig {
        lease_name: "tgp-leader".into(),
        namespace: NAMESPACE.into(),
        identity: "bench".into(),
        lease_seconds: 15,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let op_client = client.clone();
    let operator = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = operator::run(op_client, host, settings, leader, shutdown).await {
            eprintln!("operator stopped: {e:#}");
        }
    });
    let providers: Api<GPUProvider> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !providers
        .get("bench")
        .await?
        .status
        .is_some_and(|s| tgp::crd::conditions::is_true(&s.conditions, "Loaded"))
    {
        anyhow::ensure!(Instant::now() < deadline, "the provider did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "operator up; operator peak RSS so far {} MiB",
        vm_hwm_kib("self") / 1024
    );

    let requests: Api<GPURequest> = Api::all(client.clone());
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let requests = requests.clone();
            async move {
                let text = format!("apiVersion: tgp.io/v1alpha1\nkind: GPURequest\nmetadata:\n  name: bench-{i:04}\nspec:\n  gpuType: H100-SXM\n");
                let req: GPURequest = serde_yaml::from_str(&text)?;
                requests.create(&PostParams::default(), &req).await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    println!(
        "created {n} requests in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    let ready_at = loop {
        let list = requests.list(&Default::default()).await?.items;
        let ready = list
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Ready))
            .count();
        if ready == n {
            break started.elapsed();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "  {:>6.1}s: {ready} of {n} Ready",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {n} Ready after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let operator_hwm = vm_hwm_kib("self");
    let infra_hwm = vm_hwm_kib(&child_pid);
    println!(
        "operator bench: {n} GPURequests create -> Ready in {:.2}s (target < 30 s)",
        ready_at.as_secs_f64()
    );
    println!(
        "operator bench: operator peak RSS (VmHWM) {:.1} MiB (target < 150 MiB)",
        operator_hwm as f64 / 1024.0
    );
    println!(
        "operator bench: API server + simulated cloud process peak RSS {:.1} MiB (not the operator)",
        infra_hwm as f64 / 1024.0
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
