//! How a simulated Lambda Cloud account is set up: key, instance types with per-region capacity,
//! SSH keys, delays, rate limits, quota, money and starting faults.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::faults::Faults;
use crate::money::MICRO;

/// One instance type and its capacity per region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTypeSpec {
    /// e.g. `gpu_1x_h100_sxm5`.
    pub name: String,
    /// e.g. `1x H100 (80 GB SXM5)`.
    pub description: String,
    /// e.g. `H100 (80 GB SXM5)`.
    pub gpu_description: String,
    /// US cents per hour for the whole instance.
    pub price_cents_per_hour: u64,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub storage_gib: u32,
    pub gpus: u32,
    /// Instances that can be launched now, per region code.
    pub capacity: BTreeMap<String, u32>,
}

impl LambdaTypeSpec {
    /// A type with `gpus` GPUs and capacity in the given regions.
    pub fn new(
        name: &str,
        gpu_description: &str,
        gpus: u32,
        cents: u64,
        capacity: &[(&str, u32)],
    ) -> Self {
        Self {
            name: name.into(),
            description: format!("{gpus}x {gpu_description}"),
            gpu_description: gpu_description.into(),
            price_cents_per_hour: cents,
            vcpus: 26 * gpus,
            memory_gib: 225 * gpus,
            storage_gib: 2750 * gpus,
            gpus,
            capacity: capacity
                .iter()
                .map(|(r, n)| ((*r).to_owned(), *n))
                .collect(),
        }
    }

    /// Default catalogue: H100 SXM (1x, 8x), A100 40GB, A10; `gpu_1x_a10` has no capacity.
    pub fn default_catalogue() -> Vec<LambdaTypeSpec> {
        vec![
            LambdaTypeSpec::new(
                "gpu_1x_h100_sxm5",
                "H100 (80 GB SXM5)",
                1,
                329,
                &[("us-east-1", 4), ("us-west-1", 2)],
            ),
            LambdaTypeSpec::new(
                "gpu_8x_h100_sxm5",
                "H100 (80 GB SXM5)",
                8,
                2392,
                &[("us-east-1", 1)],
            ),
            LambdaTypeSpec::new(
                "gpu_1x_a100",
                "A100 (40 GB PCIe)",
                1,
                129,
                &[("us-west-2", 4), ("europe-central-1", 2)],
            ),
            LambdaTypeSpec::new("gpu_1x_a10", "A10 (24 GB PCIe)", 1, 75, &[]),
        ]
    }
}

/// An SSH key registered on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeySpec {
    pub id: String,
    pub name: String,
    pub public_key: String,
}

/// The configuration of one simulated Lambda Cloud.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// The API key (Bearer, or Basic user name with an empty password).
    pub api_key: String,
    pub instance_types: Vec<LambdaTypeSpec>,
    pub ssh_keys: Vec<SshKeySpec>,
    /// Internal balance (Lambda has no balance API; it bills by invoice).
    pub balance_micro_usd: u64,
    /// `booting` -> `active`.
    pub boot_delay: Duration,
    /// `terminating` -> `terminated`.
    pub stop_delay: Duration,
    /// How long a `terminated` instance stays visible before it is a 404.
    pub terminated_retention: Duration,
    /// Minimum interval between calls per key ("one request per second"); zero = off.
    pub request_interval: Duration,
    /// Minimum interval between launches per key ("one request per 12 seconds"); zero = off.
    pub launch_interval: Duration,
    /// Most non-terminated instances the account may have (`global/quota-exceeded` beyond).
    pub instance_quota: u32,
    pub faults: Faults,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            api_key: "lambda-key".into(),
            instance_types: LambdaTypeSpec::default_catalogue(),
            ssh_keys: vec![SshKeySpec {
                id: "ddf9a910ceb744a0bb95242cbba6cb50".into(),
                name: "tgp".into(),
                public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKm9c2ltdWxhdG9yIGtleQ tgp".into(),
            }],
            balance_micro_usd: 100 * MICRO,
            boot_delay: Duration::from_millis(500),
            stop_delay: Duration::from_millis(200),
            terminated_retention: Duration::from_secs(300),
            request_interval: Duration::from_secs(1),
            launch_interval: Duration::from_secs(12),
            instance_quota: 10,
            faults: Faults::default(),
        }
    }
}

impl LambdaConfig {
    /// Zero delays and no rate limits: for tests.
    pub fn instant() -> Self {
        Self::default()
            .with_delays(Duration::ZERO, Duration::ZERO)
            .with_rate_limits(Duration::ZERO, Duration::ZERO)
    }

    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    pub fn with_instance_types(mut self, t: Vec<LambdaTypeSpec>) -> Self {
        self.instance_types = t;
        self
    }

    pub fn with_balance_micro_usd(mut self, micro: u64) -> Self {
        self.balance_micro_usd = micro;
        self
    }

    /// Sets the boot and stop delays.
    pub fn with_delays(mut self, boot: Duration, stop: Duration) -> Self {
        self.boot_delay = boot;
        self.stop_delay = stop;
        self
    }

    /// Sets the per-key request interval and the launch interval (zero turns one off).
    pub fn with_rate_limits(mut self, request: Duration, launch: Duration) -> Self {
        self.request_interval = request;
        self.launch_interval = launch;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}
