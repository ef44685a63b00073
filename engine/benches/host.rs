//! Plugin host benchmark: a plain binary printing figures (no harness).
//!
//! Measures (a) the cost of an `info()` call as the operator makes it (pooled instance) against
//! a fresh instance per call, with the pooling allocator on and off, the cost of each string
//! lowered into the sandbox (`quote()` with 0 to 16 regions), and (b) cold compilation
//! against a load from the disk cache. The component is the hostile test plugin: pass its path as
//! the first argument or in `TGP_BENCH_PLUGIN`; by default it is taken from
//! `target/wasm/wasm32-wasip2/wasm/` (built by `cargo test -p tgp-e2e` or the wasm build).
//!
//! Run: `cargo bench -p tgp --bench host`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tgp::plugins::{GpuSpec, Grants, HostConfig, PluginHost, PoolingMode};

fn component_path() -> PathBuf {
    if let Some(arg) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        return PathBuf::from(arg);
    }
    if let Ok(p) = std::env::var("TGP_BENCH_PLUGIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/wasm/wasm32-wasip2/wasm/tgp_test_plugin_hostile.wasm"
    ))
}

struct Summary {
    median: Duration,
    p90: Duration,
    n: usize,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
    Summary {
        median: at(0.5),
        p90: at(0.9),
        n,
    }
}

fn print(label: &str, s: &Summary) {
    println!(
        "{label:<48} median {:>10.2?}  p90 {:>10.2?}  (n={})",
        s.median, s.p90, s.n
    );
}

fn grants() -> Grants {
    Grants {
        provider_name: "bench".into(),
        ..Grants::default()
    }
}

async fn calls(mode: PoolingMode, bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let host = PluginHost::new(HostConfig {
        pooling: mode,
        ..HostConfig::default()
    })?;
    let label = if host.pooling_enabled() {
        "pooling"
    } else {
        "on-demand"
    };
    let plugin = host.load(bytes.to_vec(), grants()).await?;
    for _ in 0..2000 {
        plugin.call_info().await?;
    }
    let mut pooled = Vec::with_capacity(50_000);
    for _ in 0..50_000 {
        let t = Instant::now();
        plugin.call_info().await?;
        pooled.push(t.elapsed());
    }
    print(
        &format!("info() pooled instance [{label}]"),
        &summarize(pooled),
    );
    // What one more value lowered into the sandbox costs: each region is a string the host
    // copies in through the guest's `cabi_realloc` (one more entry into the guest).
    for regions in [0usize, 1, 4, 16] {
        let spec = GpuSpec {
            gpu_type: "A100".into(),
            count: 1,
            regions: (0..regions).map(|i| format!("region-{i}")).collect(),
            spot: false,
            max_price_per_hour: None,
            aliases: Vec::new(),
        };
        for _ in 0..2000 {
            plugin.quote(&spec).await?;
        }
        let mut samples = Vec::with_capacity(50_000);
        for _ in 0..50_000 {
            let t = Instant::now();
            plugin.quote(&spec).await?;
            samples.push(t.elapsed());
        }
        print(
            &format!("quote() no I/O, {regions} regions [{label}]"),
            &summarize(samples),
        );
    }
    for _ in 0..200 {
        plugin.call_info_fresh_instance().await?;
    }
    let mut fresh = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let t = Instant::now();
        plugin.call_info_fresh_instance().await?;
        fresh.push(t.elapsed());
    }
    print(
        &format!("info() fresh instance per call [{label}]"),
        &summarize(fresh),
    );
    Ok(())
}

async fn loads(bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let uncached = PluginHost::new(HostConfig::default())?;
    let mut cold = Vec::new();
    for _ in 0..5 {
        let p = uncached.load(bytes.to_vec(), grants()).await?;
        cold.push(p.compile_time());
    }
    print("cold compile (compile + version check)", &summarize(cold));

    let dir = std::env::temp_dir().join(format!("tgp-bench-cache-{}", std::process::id()));
    let cached_host = PluginHost::new(HostConfig {
        cache_dir: Some(dir.clone()),
        ..HostConfig::default()
    })?;
    cached_host.load(bytes.to_vec(), grants()).await?;
    let mut hits = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let p = cached_host.load(bytes.to_vec(), grants()).await?;
        whole.push(t.elapsed());
        if !p.loaded_from_cache() {
            return Err("expected a cache hit".into());
        }
        hits.push(p.compile_time());
    }
    print(
        "cached load (read + verify + deserialize)",
        &summarize(hits),
    );
    print(
        "cached load, whole load() incl. first info()",
        &summarize(whole),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = component_path();
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    println!("component {} ({} bytes)", path.display(), bytes.len());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        calls(PoolingMode::On, &bytes).await?;
        calls(PoolingMode::Off, &bytes).await?;
        loads(&bytes).await
    })
}
