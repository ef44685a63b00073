//! `tgp run`: the operator, against the cluster in the current kubeconfig.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::modules::{CaBundleError, ModuleCaBundle};
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
    /// PEM file with one or more CA certificates that https:// module URLs (GPUProvider
    /// spec.module.url) and OCI registries (spec.module.oci) trust in addition to the public
    /// roots, e.g. the CA of a company's internal file server or registry. Read and checked at
    /// start-up: a missing file, or one with no certificate, stops the operator.
    #[arg(long, env = "TGP_MODULE_CA_FILE", value_name = "PATH")]
    pub module_ca_file: Option<PathBuf>,
    /// Serve Prometheus metrics at /metrics and a health check at /healthz on this address,
    /// e.g. 0.0.0.0:8080 (every replica serves its own; only the leader's counters move). Not
    /// served when unset.
    #[arg(long, env = "TGP_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
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

impl RunArgs {
    /// The CA bundle `--module-ca-file` names, read and checked; `None` without the flag.
    pub fn module_ca(&self) -> Result<Option<ModuleCaBundle>, CaBundleError> {
        let Some(path) = &self.module_ca_file else {
            return Ok(None);
        };
        let bundle = ModuleCaBundle::from_pem_file(path)?;
        tracing::info!(
            path = %path.display(),
            certificates = bundle.len(),
            "URL and OCI module sources trust these CA certificates besides the public roots"
        );
        Ok(Some(bundle))
    }
}

/// Runs the operator until it fails.
pub async fn run(args: RunArgs, host: PluginHost) -> anyhow::Result<i32> {
    // Configuration errors first, before anything connects anywhere.
    let module_ca = args.module_ca()?;
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
        module_ca,
        metrics_addr: args.metrics_addr,
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
    use std::time::Duration;

    use clap::Parser;

    use super::RunArgs;
    use crate::cli::{Cli, Command};
    use crate::plugins::{HostConfig, PluginHost};

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
            // Each `{{ .Values.a.b }}` -> values[a][b]; `{{ .Release.Namespace }}` -> a
            // namespace; the rest of the value is literal (e.g. `0.0.0.0:{{ ... }}`).
            let mut value = String::new();
            let mut rest = template;
            while let Some(start) = rest.find("{{") {
                value.push_str(&rest[..start]);
                let end = rest[start..].find("}}").expect("closed template") + start;
                let path = rest[start + 2..end].trim();
                if let Some(p) = path.strip_prefix(".Values.") {
                    let mut v = &values;
                    for part in p.split('.') {
                        v = v
                            .get(part)
                            .unwrap_or_else(|| panic!("values.yaml has no {p} (used by --{name})"));
                    }
                    value.push_str(&match v {
                        serde_yaml::Value::String(s) if s.is_empty() => "x".to_string(),
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    });
                } else {
                    value.push_str("tgp-system");
                }
                rest = &rest[end + 2..];
            }
            value.push_str(rest);
            argv.push(format!("--{name}={value}"));
            flags += 1;
        }
        assert!(flags >= 15, "the deployment's args were found: {argv:?}");
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        assert_eq!(
            args.metrics_addr,
            Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8080))),
            "metrics are served by default, on the port the chart declares"
        );
        assert!(deployment.contains("containerPort: {{ .Values.metrics.port }}"));
        let b = args.bootstrap.settings();
        assert_eq!(b.talos_secret, "tgp-talos-secrets");
        assert_eq!(b.tailscale_tags, vec!["tag:tgp-gpu".to_string()]);
        assert_eq!(b.registration_timeout.as_secs(), 900);
        // The module CA bundle (passed only when moduleCA names an object) is read from where
        // the chart mounts it.
        let ca = args
            .module_ca_file
            .expect("the chart can pass --module-ca-file");
        let dir = ca.parent().unwrap().display().to_string();
        assert!(
            deployment.contains(&format!("mountPath: {dir}, readOnly: true")),
            "the chart mounts the bundle read-only at {dir}"
        );
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["tgp", "run", "--cluster-id", "c"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => args,
            _ => panic!("not a run command"),
        }
    }

    /// `tgp run` as `main` runs it: the error it stops with, within a deadline (a check that
    /// moved after the connection to the cluster would fail here rather than hang).
    fn start(args: RunArgs) -> String {
        let host = PluginHost::new(HostConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), super::run(args, host)).await
        });
        match outcome {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(code)) => panic!("tgp run returned {code} instead of refusing to start"),
            Err(_) => panic!("tgp run did not stop at start-up"),
        }
    }

    #[test]
    fn module_ca_file_that_cannot_be_used_stops_tgp_run_at_start_naming_the_flag() {
        let err = start(run_args(&["--module-ca-file", "/nonexistent/ca.pem"]));
        assert!(
            err.starts_with("--module-ca-file /nonexistent/ca.pem: cannot read the file"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let no_cert = dir.path().join("ca.pem");
        std::fs::write(&no_cert, "# the internal CA goes here\n").unwrap();
        let shown = no_cert.display().to_string();
        let err = start(run_args(&["--module-ca-file", &shown]));
        assert!(
            err.starts_with(&format!(
                "--module-ca-file {shown}: the file holds no certificate"
            )),
            "{err}"
        );
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn module_ca_file_is_read_at_start_and_has_an_env_var() {
        assert!(run_args(&[]).module_ca().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let ca = tgp_cloudsim::files::TestCa::generate("internal CA").unwrap();
        std::fs::write(&path, ca.pem()).unwrap();
        let bundle = run_args(&["--module-ca-file", path.to_str().unwrap()])
            .module_ca()
            .unwrap()
            .expect("a bundle");
        assert_eq!((bundle.len(), bundle.path()), (1, path.as_path()));

        let cli = <Cli as clap::CommandFactory>::command();
        let run = cli.find_subcommand("run").unwrap();
        let arg = run
            .get_arguments()
            .find(|a| a.get_long() == Some("module-ca-file"))
            .unwrap();
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some("TGP_MODULE_CA_FILE")
        );
        let help = arg.get_help().unwrap().to_string();
        assert!(
            help.contains("https://") && help.contains("OCI registries"),
            "{help}"
        );
    }
}
