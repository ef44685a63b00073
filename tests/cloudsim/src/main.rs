//! `tgp-cloudsim`: serves a simulated cloud on loopback until Ctrl-C, for the demo and for poking
//! at the simulator by hand (`curl`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tgp_cloudsim::faults::Faults;
use tgp_cloudsim::money::usd_to_micro;
use tgp_cloudsim::{
    LambdaCloud, LambdaConfig, MockCloud, MockCloudConfig, RunpodCloud, RunpodConfig, VastCloud,
    VastConfig,
};

#[derive(Parser)]
#[command(
    name = "tgp-cloudsim",
    about = "Cloud simulators on loopback for tgp's tests and demo"
)]
struct Cli {
    #[command(subcommand)]
    personality: Personality,
}

#[derive(Subcommand)]
enum Personality {
    /// The mock cloud of docs/mock-cloud-api.md.
    Mock(MockArgs),
    /// RunPod's GraphQL API (POST /graphql).
    Runpod(CommonArgs),
    /// Lambda Cloud's REST API v1 (/api/v1/).
    Lambda(LambdaArgs),
    /// Vast.ai's REST API v0 (/api/v0/).
    Vast(CommonArgs),
}

/// Flags shared by the RunPod, Lambda and Vast personalities.
#[derive(clap::Args)]
struct CommonArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The API key clients must send (default: runpod-key / lambda-key / vast-key).
    #[arg(long, env = "TGP_CLOUDSIM_API_KEY")]
    api_key: Option<String>,
    /// Launch -> booting/loading delay (Vast only: null -> loading).
    #[arg(long, default_value_t = 300)]
    boot_delay_ms: u64,
    /// Booting -> running delay (RunPod: deploy -> runtime; Lambda: booting -> active).
    #[arg(long, default_value_t = 300)]
    run_delay_ms: u64,
    /// Terminating -> gone/terminated delay (RunPod, Lambda).
    #[arg(long, default_value_t = 200)]
    stop_delay_ms: u64,
    /// Starting balance in USD.
    #[arg(long, default_value_t = 100.0)]
    balance_usd: f64,
    /// Turn the cloud's own rate limits off (Lambda 1/s + launch 1/12 s; Vast per endpoint).
    #[arg(long)]
    no_rate_limits: bool,
    /// A JSON file with the starting fault set (the format of PUT /_sim/faults).
    #[arg(long)]
    faults: Option<PathBuf>,
}

#[derive(clap::Args)]
struct LambdaArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Minimum interval between requests per key.
    #[arg(long, default_value_t = 1000)]
    request_interval_ms: u64,
    /// Minimum interval between launches per key.
    #[arg(long, default_value_t = 12_000)]
    launch_interval_ms: u64,
}

#[derive(clap::Args)]
struct MockArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The Bearer key clients must send.
    #[arg(long, default_value = "mock-key", env = "TGP_CLOUDSIM_API_KEY")]
    api_key: String,
    /// pending -> booting delay.
    #[arg(long, default_value_t = 200)]
    boot_delay_ms: u64,
    /// booting -> running delay.
    #[arg(long, default_value_t = 200)]
    run_delay_ms: u64,
    /// stopping -> terminated delay.
    #[arg(long, default_value_t = 100)]
    stop_delay_ms: u64,
    /// Starting balance in USD.
    #[arg(long, default_value_t = 100.0)]
    balance_usd: f64,
    /// A JSON file with the starting fault set (the format of PUT /_sim/faults).
    #[arg(long)]
    faults: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().personality {
        Personality::Mock(a) => run_mock(a).await,
        Personality::Runpod(a) => run_runpod(a).await,
        Personality::Lambda(a) => run_lambda(a).await,
        Personality::Vast(a) => run_vast(a).await,
    }
}

fn read_faults(path: Option<&PathBuf>) -> anyhow::Result<Faults> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<Faults>(&text)
                .with_context(|| format!("parsing faults in {}", path.display()))
        }
        None => Ok(Faults::default()),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn balance(usd: f64) -> anyhow::Result<u64> {
    usd_to_micro(usd).context("--balance-usd must be a non-negative amount")
}

async fn wait_for_ctrl_c() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}

async fn run_runpod(a: CommonArgs) -> anyhow::Result<()> {
    let mut cfg = RunpodConfig::default()
        .with_balance_micro_usd(balance(a.balance_usd)?)
        .with_delays(
            Duration::from_millis(a.boot_delay_ms + a.run_delay_ms),
            Duration::from_millis(a.stop_delay_ms),
        )
        .with_faults(read_faults(a.faults.as_ref())?);
    if let Some(k) = a.api_key {
        cfg = cfg.with_api_key(k);
    }
    let cloud = RunpodCloud::start_on(addr(a.port), cfg).await?;
    println!("{}", cloud.base_url());
    wait_for_ctrl_c().await?;
    cloud.shutdown().await;
    Ok(())
}

async fn run_lambda(a: LambdaArgs) -> anyhow::Result<()> {
    let c = a.common;
    let (req, launch) = if c.no_rate_limits {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            Duration::from_millis(a.request_interval_ms),
            Duration::from_millis(a.launch_interval_ms),
        )
    };
    let mut cfg = LambdaConfig::default()
        .with_balance_micro_usd(balance(c.balance_usd)?)
        .with_delays(
            Duration::from_millis(c.boot_delay_ms + c.run_delay_ms),
            Duration::from_millis(c.stop_delay_ms),
        )
        .with_rate_limits(req, launch)
        .with_faults(read_faults(c.faults.as_ref())?);
    if let Some(k) = c.api_key {
        cfg = cfg.with_api_key(k);
    }
    let cloud = LambdaCloud::start_on(addr(c.port), cfg).await?;
    println!("{}", cloud.base_url());
    wait_for_ctrl_c().await?;
    cloud.shutdown().await;
    Ok(())
}

async fn run_vast(a: CommonArgs) -> anyhow::Result<()> {
    let mut cfg = VastConfig::default()
        .with_balance_micro_usd(balance(a.balance_usd)?)
        .with_delays(
            Duration::from_millis(a.boot_delay_ms),
            Duration::from_millis(a.run_delay_ms),
        )
        .with_faults(read_faults(a.faults.as_ref())?);
    if a.no_rate_limits {
        cfg.rate_limits.clear();
    }
    if let Some(k) = a.api_key {
        cfg = cfg.with_api_key(k);
    }
    let cloud = VastCloud::start_on(addr(a.port), cfg).await?;
    println!("{}", cloud.base_url());
    wait_for_ctrl_c().await?;
    cloud.shutdown().await;
    Ok(())
}

async fn run_mock(a: MockArgs) -> anyhow::Result<()> {
    let balance =
        usd_to_micro(a.balance_usd).context("--balance-usd must be a non-negative amount")?;
    let faults = match &a.faults {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<Faults>(&text)
                .with_context(|| format!("parsing faults in {}", path.display()))?
        }
        None => Faults::default(),
    };
    let cfg = MockCloudConfig::default()
        .with_api_key(a.api_key)
        .with_balance_micro_usd(balance)
        .with_delays(
            Duration::from_millis(a.boot_delay_ms),
            Duration::from_millis(a.run_delay_ms),
            Duration::from_millis(a.stop_delay_ms),
        )
        .with_faults(faults);
    let cloud = MockCloud::start_on(SocketAddr::from(([127, 0, 0, 1], a.port)), cfg).await?;
    println!("{}", cloud.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    cloud.shutdown().await;
    Ok(())
}
