//! `tgp quote` across all four providers (mock, RunPod, Lambda, Vast, each its real plugin
//! against its simulator on loopback) against each provider alone: the fan-out is parallel, so
//! the whole round should cost about as much as the slowest provider. Target: within 1.2x.
//!
//! Measured twice: with the simulators answering at once (the engine's own cost dominates), and
//! with API latencies like real clouds' (80, 120, 160, 200 ms).
//!
//! Run: `cargo bench -p tgp --bench fanout` (after `cargo test -p tgp-e2e`, which builds the
//! plugins into target/wasm/).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tgp::plugins::{GpuSpec, Grants, HostConfig, PluginHost, SecretValue};
use tgp::pricing;
use tgp::provider_set::ActiveProvider;
use tgp_cloudsim::{
    Faults, LambdaCloud, LambdaConfig, MockCloud, MockCloudConfig, RunpodCloud, RunpodConfig,
    VastCloud, VastConfig,
};

const ROUNDS: usize = 40;

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/wasm/wasm32-wasip2/wasm"
    ))
    .join(format!("tgp_provider_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {} (build the plugins first: cargo test -p tgp-e2e): {e}",
            path.display()
        )
    })
}

fn grants(name: &str, base: &str, key: &str) -> Grants {
    let mut config = std::collections::BTreeMap::new();
    config.insert("base_url".to_string(), base.to_string());
    config.insert("ssh_key_name".to_string(), "tgp".to_string());
    Grants {
        provider_name: name.into(),
        allowed_hosts: vec![base.into()],
        secrets: [("api_key".to_string(), SecretValue::from(key))].into(),
        auth: None,
        config,
        limits: Default::default(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn measure(providers: &[ActiveProvider], spec: &GpuSpec, label: &str) {
    for _ in 0..3 {
        pricing::quote_all(providers, spec).await;
    }
    let mut singles: Vec<(String, Vec<Duration>)> = providers
        .iter()
        .map(|p| (p.name.clone(), Vec::new()))
        .collect();
    let mut all = Vec::new();
    for _ in 0..ROUNDS {
        for (i, p) in providers.iter().enumerate() {
            let t = Instant::now();
            let r = pricing::quote_all(std::slice::from_ref(p), spec).await;
            singles[i].1.push(t.elapsed());
            assert!(
                r.providers[0].skipped.is_none(),
                "{} failed: {:?}",
                p.name,
                r.providers[0].skipped
            );
        }
        let t = Instant::now();
        let r = pricing::quote_all(providers, spec).await;
        all.push(t.elapsed());
        assert!(r.providers.iter().all(|p| p.skipped.is_none()));
    }
    println!("{label}");
    let mut slowest = Duration::ZERO;
    for (name, samples) in singles {
        let m = median(samples);
        slowest = slowest.max(m);
        println!("  {name:<8} alone                median {m:>10.2?}");
    }
    let m = median(all);
    println!("  all four in parallel          median {m:>10.2?}");
    println!(
        "  all / slowest single: {:.2}x (target <= 1.2x)",
        m.as_secs_f64() / slowest.as_secs_f64()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mock_cfg = MockCloudConfig::instant();
        let mock_key = mock_cfg.api_key.clone();
        let mock = MockCloud::start(mock_cfg).await?;
        let runpod = RunpodCloud::start(RunpodConfig::instant()).await?;
        let lambda = LambdaCloud::start(LambdaConfig::instant()).await?;
        let vast = VastCloud::start(VastConfig::instant()).await?;
        let host = PluginHost::new(HostConfig::default())?;
        let mut providers = Vec::new();
        for (name, base, key) in [
            ("mock", mock.base_url(), mock_key.as_str()),
            ("runpod", runpod.base_url(), "runpod-key"),
            ("lambda", lambda.base_url(), "lambda-key"),
            ("vast", vast.base_url(), "vast-key"),
        ] {
            let plugin = host.load(component(name), grants(name, &base, key)).await?;
            providers.push(ActiveProvider {
                name: name.into(),
                priority: 0,
                plugin,
            });
        }
        let spec = GpuSpec {
            gpu_type: "H100-SXM".into(),
            count: 1,
            regions: vec![],
            spot: false,
            max_price_per_hour: None,
            aliases: Vec::new(),
        };
        let report = pricing::quote_all(&providers, &spec).await;
        print!("{}", tgp::cli::quote::render_table(&report));
        println!();
        measure(
            &providers,
            &spec,
            &format!("simulators answering at once ({ROUNDS} rounds)"),
        )
        .await;
        mock.set_faults(Faults::none().latency("offers", Duration::from_millis(80)));
        runpod.set_faults(Faults::none().latency("gpuTypes", Duration::from_millis(120)));
        lambda.set_faults(Faults::none().latency("instance_types", Duration::from_millis(160)));
        vast.set_faults(Faults::none().latency("search", Duration::from_millis(200)));
        measure(
            &providers,
            &spec,
            &format!("API latencies 80/120/160/200 ms ({ROUNDS} rounds)"),
        )
        .await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
