//! `tgp run`: the operator, against the cluster in the current kubeconfig.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::operator::{self, LeaderConfig, Settings};
use crate::plugins::PluginHost;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Identifies this cluster in the ownership tags of every instance; garbage collection only
    /// touches instances carrying it. Keep it stable and unique per cluster.
    #[arg(long, env = "TGP_CLUSTER_ID")]
    pub cluster_id: String,
    /// Namespace of provider credential Secrets and of the leader Lease.
    #[arg(long, env = "TGP_NAMESPACE", default_value = "tgp-system")]
    pub namespace: String,
    /// This replica's identity for leader election (defaults to the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Re-verify ready instances every this many seconds.
    #[arg(long, default_value_t = 60)]
    pub health_interval: u64,
    /// Treat an instance id that stays not-found this many seconds after launch as a silent
    /// launch failure.
    #[arg(long, default_value_t = 120)]
    pub not_found_grace: u64,
    /// Abandon an instance not running this many seconds after launch.
    #[arg(long, default_value_t = 900)]
    pub boot_timeout: u64,
    /// Garbage-collect every this many seconds.
    #[arg(long, default_value_t = 120)]
    pub gc_interval: u64,
    /// Terminate an owned instance with no request only after this many seconds orphaned.
    #[arg(long, default_value_t = 300)]
    pub gc_grace: u64,
    /// Leader lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
}

/// Runs the operator until it fails.
pub async fn run(args: RunArgs, host: PluginHost) -> anyhow::Result<i32> {
    let client = kube::Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| format!("tgp-{}", std::process::id()))
    });
    let settings = Settings {
        cluster_id: args.cluster_id.clone(),
        health_interval: Duration::from_secs(args.health_interval.max(1)),
        not_found_grace: Duration::from_secs(args.not_found_grace),
        boot_timeout: Duration::from_secs(args.boot_timeout),
        gc_interval: Duration::from_secs(args.gc_interval.max(1)),
        gc_grace: Duration::from_secs(args.gc_grace),
        ..Settings::default()
    };
    let leader = LeaderConfig {
        lease_name: "tgp-leader".into(),
        namespace: args.namespace.clone(),
        identity,
        lease_seconds: args.lease_seconds.max(2),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    operator::run(client, Arc::new(host), settings, leader, shutdown).await?;
    Ok(0)
}
