//! The sandbox's share of a real call: `quote` through the mock provider plugin (host, instance,
//! HTTP import, JSON parsing in the guest) against the same request made natively from Rust
//! (reqwest + serde_json + the same filtering and price conversion), both to the mock cloud
//! simulator on loopback. Samples are interleaved so both paths see the same machine load.
//!
//! Run: `cargo bench -p tgp --bench quote`. Target: plugin median within 1.25x of native.
//!
//! Where things run (`TGP_BENCH_TOPOLOGY`, see `docs/benchmarks.md`):
//! - `split` (default): the simulator on a thread and runtime of its own, as a cloud is
//!   elsewhere; the client under test (native or plugin) on a one-thread runtime, so nothing
//!   else competes with it or moves it between threads.
//! - `shared`: simulator and client on one thread (also `TGP_BENCH_CURRENT_THREAD=1`): every
//!   microsecond of CPU on either side is in both paths' time, the server's work evicts the
//!   sandbox's code and data from the caches between calls. The worst case for the ratio.
//! - `pool`: simulator and client on one two-worker runtime (the earlier default): tasks move
//!   between the workers, so the figures are the noisiest.
//!
//! Other knobs: `TGP_BENCH_ROUNDS=N` rounds; `TGP_BENCH_ONLY_PLUGIN=1` / `TGP_BENCH_ONLY_NATIVE=1`
//! time one path alone (for a profiler: compare the two profiles).

use std::time::{Duration, Instant};

use tgp::embedded::{MOCK_PLUGIN, mock_grants};
use tgp::plugins::{GpuSpec, HostConfig, PluginHost};
use tgp_cloudsim::{MockCloud, MockCloudConfig};

/// Rounds by default; `TGP_BENCH_ROUNDS` overrides (e.g. for profiling).
const ROUNDS: usize = 2000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the simulator and the client under test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Split,
    Shared,
    Pool,
}

impl Topology {
    fn from_env() -> Result<Self, BoxError> {
        if std::env::var_os("TGP_BENCH_CURRENT_THREAD").is_some() {
            return Ok(Self::Shared);
        }
        match std::env::var("TGP_BENCH_TOPOLOGY").as_deref() {
            Err(_) | Ok("split") => Ok(Self::Split),
            Ok("shared") => Ok(Self::Shared),
            Ok("pool") => Ok(Self::Pool),
            Ok(other) => Err(format!(
                "TGP_BENCH_TOPOLOGY: `{other}` is not one of split, shared, pool"
            )
            .into()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Split => "simulator on its own thread, client on a one-thread runtime",
            Self::Shared => "simulator and client on one thread",
            Self::Pool => "simulator and client on one two-worker runtime",
        }
    }
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() as f64 * 0.9) as usize])
}

/// The native equivalent of the plugin's quote: one GET, parse, convert prices, filter, sort.
async fn native_quote(client: &reqwest::Client, base: &str, key: &str) -> Result<usize, BoxError> {
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

/// Starts the simulator on a thread with its own one-thread runtime, where it serves until the
/// process ends. Returns its base URL.
fn cloud_on_own_thread(config: MockCloudConfig) -> Result<String, BoxError> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
    std::thread::Builder::new()
        .name("mock-cloud".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                match MockCloud::start(config).await {
                    Ok(cloud) => {
                        let _ = tx.send(Ok(cloud.base_url()));
                        // Serve until the process exits.
                        std::future::pending::<()>().await;
                        drop(cloud);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                    }
                }
            });
        })?;
    Ok(rx.recv()??)
}

fn main() -> Result<(), BoxError> {
    let topology = Topology::from_env()?;
    let rt = match topology {
        Topology::Pool => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        Topology::Split | Topology::Shared => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    let config = MockCloudConfig::default();
    let key = config.api_key.clone();
    let own_thread = match topology {
        Topology::Split => Some(cloud_on_own_thread(config.clone())?),
        Topology::Shared | Topology::Pool => None,
    };
    rt.block_on(async {
        // In `shared` and `pool` the simulator's tasks run on the client's runtime.
        let (base, _cloud) = match own_thread {
            Some(base) => (base, None),
            None => {
                let cloud = MockCloud::start(config)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                (cloud.base_url(), Some(cloud))
            }
        };
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
            aliases: Vec::new(),
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
        println!(
            "quote to the mock cloud on loopback, {rounds} interleaved rounds ({})",
            topology.describe()
        );
        println!(
            "{:<40} median {:>10.2?}  p90 {:>10.2?}",
            "native (reqwest + serde_json)", nm, np
        );
        println!(
            "{:<40} median {:>10.2?}  p90 {:>10.2?}",
            "plugin (host + sandbox + guest)", pm, pp
        );
        println!("plugin - native (median): {:.2?}", pm.saturating_sub(nm));
        println!(
            "plugin / native (median): {:.2}x  (target <= 1.25x)",
            pm.as_secs_f64() / nm.as_secs_f64()
        );
        Ok::<(), BoxError>(())
    })
}
