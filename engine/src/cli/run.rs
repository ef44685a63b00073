//! `tgp run`: the operator, against the cluster in the current kubeconfig.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::operator::settings::BootstrapSettings;
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
    #[command(flatten)]
    pub bootstrap: BootstrapArgs,
}

/// How `bootstrap.mode: talos` requests join the cluster (see docs/bootstrap.md).
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Secret (in --namespace) holding the cluster's Talos secrets.
    #[arg(long, env = "TGP_TALOS_SECRET", default_value = "tgp-talos-secrets")]
    pub talos_secret: String,
    /// Image Factory schematic id of an installer with the NVIDIA and Tailscale extensions.
    /// Talos requests wait with a condition until it is set.
    #[arg(long, env = "TGP_TALOS_SCHEMATIC", default_value = "")]
    pub talos_schematic: String,
    /// Talos version of the installer image.
    #[arg(long, env = "TGP_TALOS_VERSION", default_value = "v1.11.5")]
    pub talos_version: String,
    /// Image Factory host.
    #[arg(long, default_value = "factory.talos.dev")]
    pub image_factory: String,
    /// Disk Talos installs to on the GPU machine.
    #[arg(long, default_value = "/dev/nvme0n1")]
    pub install_disk: String,
    /// Secret (in --namespace) holding the Tailscale OAuth client (keys client-id, client-secret).
    #[arg(
        long,
        env = "TGP_TAILSCALE_SECRET",
        default_value = "tgp-tailscale-oauth"
    )]
    pub tailscale_secret: String,
    /// Tailscale API base URL.
    #[arg(long, default_value = "https://api.tailscale.com")]
    pub tailscale_api: String,
    /// Tailnet (`-`: the OAuth client's own).
    #[arg(long, default_value = "-")]
    pub tailnet: String,
    /// Tags of every node's auth key (must be owned by the OAuth client in the tailnet ACL).
    #[arg(long, value_delimiter = ',', default_value = "tag:tgp-gpu")]
    pub tailscale_tags: Vec<String>,
    /// Lifetime of a node's single-use auth key, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub tailscale_key_expiry: u64,
    /// The kubelet's node IP must come from these ranges (the tailnet).
    #[arg(long, value_delimiter = ',', default_value = "100.64.0.0/10")]
    pub node_ip_subnets: Vec<String>,
    /// Seconds a node may take to register after its instance runs (per-provider override:
    /// GPUProvider spec.registrationTimeout).
    #[arg(long, default_value_t = 900)]
    pub registration_timeout: u64,
    /// Seconds to retry evictions blocked by PodDisruptionBudgets before removing a node anyway.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
}

impl BootstrapArgs {
    pub fn settings(&self) -> BootstrapSettings {
        BootstrapSettings {
            talos_secret: self.talos_secret.clone(),
            tailscale_secret: self.tailscale_secret.clone(),
            tailscale_api: self.tailscale_api.clone(),
            tailnet: self.tailnet.clone(),
            tailscale_tags: self.tailscale_tags.clone(),
            key_expiry: Duration::from_secs(self.tailscale_key_expiry.max(60)),
            factory_host: self.image_factory.clone(),
            schematic_id: self.talos_schematic.clone(),
            talos_version: self.talos_version.clone(),
            install_disk: self.install_disk.clone(),
            node_ip_subnets: self.node_ip_subnets.clone(),
            registration_timeout: Duration::from_secs(self.registration_timeout),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            ..BootstrapSettings::default()
        }
    }
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
        bootstrap: args.bootstrap.settings(),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// The Helm chart passes flags to `tgp run`; every one of them must exist, or the operator
    /// would not start after `helm install`. Values are filled with the chart's defaults.
    #[test]
    fn every_flag_the_chart_passes_is_accepted() {
        let deployment = include_str!("../../../charts/tgp/templates/deployment.yaml");
        let values: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../charts/tgp/values.yaml")).unwrap();
        let mut argv = vec!["tgp".to_string()];
        let mut flags = 0;
        for line in deployment.lines() {
            let line = line.trim();
            let Some(arg) = line.strip_prefix("- ") else {
                continue;
            };
            if arg == "run" {
                argv.push(arg.into());
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, template) = flag.split_once('=').expect("flags are --name=value");
            // `{{ .Values.a.b }}` -> values[a][b]; `.Release.Namespace` -> a namespace.
            let path = template
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim();
            let value = if let Some(p) = path.strip_prefix(".Values.") {
                let mut v = &values;
                for part in p.split('.') {
                    v = v
                        .get(part)
                        .unwrap_or_else(|| panic!("values.yaml has no {p} (used by --{name})"));
                }
                match v {
                    serde_yaml::Value::String(s) if s.is_empty() => "x".to_string(),
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                }
            } else {
                "tgp-system".to_string()
            };
            argv.push(format!("--{name}={value}"));
            flags += 1;
        }
        assert!(flags >= 15, "the deployment's args were found: {argv:?}");
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        let b = args.bootstrap.settings();
        assert_eq!(b.talos_secret, "tgp-talos-secrets");
        assert_eq!(b.tailscale_tags, vec!["tag:tgp-gpu".to_string()]);
        assert_eq!(b.registration_timeout.as_secs(), 900);
    }
}
