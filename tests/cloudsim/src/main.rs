//! `tgp-cloudsim`: serves a simulated cloud on loopback until Ctrl-C, for the demo and for poking
//! at the simulator by hand (`curl`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tgp_cloudsim::faults::Faults;
use tgp_cloudsim::money::usd_to_micro;
use tgp_cloudsim::{MockCloud, MockCloudConfig};

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
    }
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
