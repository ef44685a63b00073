//! Every wait, interval and grace period the operator uses, in one place, with defaults.
//! Each is a setting (a `tgp run` flag), never a constant buried in the lifecycle.

use std::time::Duration;

use crate::modules::ModuleCaBundle;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Identifies this cluster in ownership tags; garbage collection only ever touches
    /// instances carrying it.
    pub cluster_id: String,
    /// Re-verify a ready instance this often.
    pub health_interval: Duration,
    /// Poll a launching instance this often.
    pub verify_interval: Duration,
    /// An instance id that stays not-found this long after launch is a silent launch failure.
    pub not_found_grace: Duration,
    /// An instance that is not running this long after launch is abandoned.
    pub boot_timeout: Duration,
    /// Hours of runway a provider's balance must cover to be launched on (minimum billable
    /// period), in seconds.
    pub min_billable: Duration,
    /// Garbage collection runs this often.
    pub gc_interval: Duration,
    /// An owned instance with no request is terminated only after it was seen orphaned this long.
    pub gc_grace: Duration,
    /// First retry delay after an error; doubles up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Re-check terminating instances this often.
    pub terminate_interval: Duration,
    /// Most launch attempts for one request before it fails.
    pub max_attempts: usize,
    /// How `bootstrap.mode: talos` requests join the cluster.
    pub bootstrap: BootstrapSettings,
    /// CA certificates that URL and OCI module sources trust besides the public roots
    /// (`--module-ca-file`); `None`: the public roots only.
    pub module_ca: Option<ModuleCaBundle>,
    /// Where to serve `/metrics` and `/healthz` (`--metrics-addr`); `None`: not served.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Where the Talos and Tailscale secrets live and how worker nodes are built and torn down.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    /// Secret (in the operator's namespace) holding the cluster's Talos secrets; its keys are
    /// documented in `docs/bootstrap.md`.
    pub talos_secret: String,
    /// Secret (in the operator's namespace) holding the Tailscale OAuth client: keys
    /// `client-id` and `client-secret`.
    pub tailscale_secret: String,
    /// Tailscale API base URL.
    pub tailscale_api: String,
    /// Tailnet name; `-` is the OAuth client's default tailnet.
    pub tailnet: String,
    /// Tags every node's auth key (and so its device) carries.
    pub tailscale_tags: Vec<String>,
    /// Lifetime of a node's single-use auth key.
    pub key_expiry: Duration,
    /// Image Factory host for the installer image.
    pub factory_host: String,
    /// Image Factory schematic id of an image with the NVIDIA and Tailscale extensions (the id
    /// Image Factory returns for the schematic in `docs/bootstrap.md`). Empty: unset, and Talos
    /// requests wait with a condition saying so.
    pub schematic_id: String,
    /// Talos version of the installer image, e.g. `v1.11.5`.
    pub talos_version: String,
    /// Disk Talos installs to.
    pub install_disk: String,
    /// The kubelet's node IP must come from these ranges (the tailnet).
    pub node_ip_subnets: Vec<String>,
    /// A node must register within this long of its instance running (per-provider override:
    /// GPUProvider `spec.registrationTimeout`).
    pub registration_timeout: Duration,
    /// Evictions blocked by PodDisruptionBudgets are retried this long before the node is
    /// removed anyway.
    pub drain_timeout: Duration,
    /// Failed Tailscale clean-ups are retried on this many passes, then reported and left.
    pub tailscale_cleanup_attempts: u32,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        BootstrapSettings {
            talos_secret: "tgp-talos-secrets".into(),
            tailscale_secret: "tgp-tailscale-oauth".into(),
            tailscale_api: "https://api.tailscale.com".into(),
            tailnet: "-".into(),
            tailscale_tags: vec!["tag:tgp-gpu".into()],
            key_expiry: Duration::from_secs(3600),
            factory_host: "factory.talos.dev".into(),
            schematic_id: String::new(),
            talos_version: "v1.11.5".into(),
            install_disk: "/dev/nvme0n1".into(),
            node_ip_subnets: vec!["100.64.0.0/10".into()],
            registration_timeout: Duration::from_secs(15 * 60),
            drain_timeout: Duration::from_secs(5 * 60),
            tailscale_cleanup_attempts: 5,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_id: "default".into(),
            health_interval: Duration::from_secs(60),
            verify_interval: Duration::from_secs(5),
            not_found_grace: Duration::from_secs(60),
            boot_timeout: Duration::from_secs(15 * 60),
            min_billable: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(120),
            gc_grace: Duration::from_secs(300),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            terminate_interval: Duration::from_secs(5),
            max_attempts: 8,
            bootstrap: BootstrapSettings::default(),
            module_ca: None,
            metrics_addr: None,
        }
    }
}
