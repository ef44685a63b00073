//! The sandbox's share of a real call: `quote` through the mock provider plugin (host, instance,
//! HTTP import, JSON parsing in the guest) against the same request made natively from Rust
//! (reqwest + serde_json + the same filtering and price conversion), both to the mock cloud
//! simulator on loopback. Samples are interleaved so both paths see the same machine load.
//!
//! Run: `cargo bench -p tgp --bench quote`. Target: plugin median within 1.25x of native.
//!
//! Knobs (see `docs/benchmarks.md`): `TGP_BENCH_ROUNDS=N` rounds; `TGP_BENCH_CURRENT_THREAD=1`
//! runs client, server and plugin on one thread (the CPU cost per call, without thread
//! hand-offs); `TGP_BENCH_ONLY_PLUGIN=1` / `TGP_BENCH_ONLY_NATIVE=1` time one path alone (for a
//! profiler: compare the two profiles).

use std::time::{Duration, Instant};

use tgp::embedded::{MOCK_PLUGIN, mock_grants};
use tgp::plugins::{GpuSpec, HostConfig, PluginHost};
use tgp_cloudsim::{MockCloud, MockCloudConfig};

/// Rounds by default; `TGP_BENCH_ROUNDS` overrides (e.g. for profiling).
const ROUNDS: usize = 600;

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() as f64 * 0.9) as usize])
}

/// The native equivalent of the plugin's quote: one GET, parse, convert prices, filter, sort.
async fn native_quote(
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> Result<usize, Box<dyn std::error::Error>> {
    let resp = client
        .get(format!("{base}/v1/offers"))
        .query(&[("gpu_type", "H100-SXM"), ("count", "1"), ("spot", "false")])
        .bearer_auth(key)
        .send()
        .await?;
    let body: serde_json::Value = resp.error_for_status()?.json().await?;
    let mut offers: Vec<(u64, String)> = body["offers"]
        .as_array()
        .ok_or("no offers array")?
        .iter()
        .filter_map(|o| {
            let price = tgp::money::parse_usd(o["hourly_price_usd"].as_str()?).ok()?;
            Some((price, o["id"].as_str()?.to_string()))
        })
        .collect();
    offers.sort();
    Ok(offers.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = if std::env::var("TGP_BENCH_CURRENT_THREAD").is_ok() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let config = MockCloudConfig::default();
        let key = config.api_key.clone();
        let cloud = MockCloud::start(config).await?;
        let base = cloud.base_url();
        let host = PluginHost::new(HostConfig::default())?;
        let plugin = host
            .load(MOCK_PLUGIN.to_vec(), mock_grants("mock", &base, &key))
            .await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let spec = GpuSpec {
            gpu_type: "H100-SXM".into(),
            count: 1,
            regions: vec![],
            spot: false,
            max_price_per_hour: None,
        };

        // Warm both paths (connection pools, instance pool, caches).
        for _ in 0..50 {
            native_quote(&client, &base, &key).await?;
            plugin.quote(&spec).await?;
        }
        let rounds: usize = std::env::var("TGP_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ROUNDS);
        let only_plugin = std::env::var("TGP_BENCH_ONLY_PLUGIN").is_ok();
        let only_native = std::env::var("TGP_BENCH_ONLY_NATIVE").is_ok();
        let (mut native, mut sandboxed) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            if only_plugin {
                let t = Instant::now();
                plugin.quote(&spec).await?;
                sandboxed.push(t.elapsed());
                native.push(t.elapsed());
                continue;
            }
            if only_native {
                let t = Instant::now();
                native_quote(&client, &base, &key).await?;
                native.push(t.elapsed());
                sandboxed.push(t.elapsed());
                continue;
            }
            let t = Instant::now();
            let n = native_quote(&client, &base, &key).await?;
            native.push(t.elapsed());
            let t = Instant::now();
            let offers = plugin.quote(&spec).await?;
            sandboxed.push(t.elapsed());
            assert_eq!(n, offers.len(), "both paths see the same offers");
        }
        let (nm, np) = median(native);
        let (pm, pp) = median(sandboxed);
        println!("quote to the mock cloud on loopback, {rounds} interleaved rounds");
        println!(
            "{:<40} median {:>10.2?}  p90 {:>10.2?}",
            "native (reqwest + serde_json)", nm, np
        );
        println!(
            "{:<40} median {:>10.2?}  p90 {:>10.2?}",
            "plugin (host + sandbox + guest)", pm, pp
        );
        println!(
            "plugin / native (median): {:.2}x  (target <= 1.25x)",
            pm.as_secs_f64() / nm.as_secs_f64()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
