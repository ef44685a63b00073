//! How a simulated RunPod account is set up: key, GPU catalogue with prices and stock, money,
//! delays and starting faults.

use std::time::Duration;

use crate::faults::Faults;
use crate::money::MICRO;

/// One GPU type of the catalogue. Prices are per GPU per hour, micro-USD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuTypeSpec {
    /// RunPod's id, a display string such as `NVIDIA H100 80GB HBM3`.
    pub id: String,
    /// Short name such as `H100 SXM`.
    pub display_name: String,
    /// GPU memory.
    pub memory_gb: u32,
    /// Offered in secure cloud.
    pub secure_cloud: bool,
    /// Offered in community cloud.
    pub community_cloud: bool,
    /// Secure-cloud on-demand price.
    pub secure_price: u64,
    /// Community-cloud on-demand price.
    pub community_price: u64,
    /// Spot floor (`minimumBidPrice`).
    pub min_bid_price: u64,
    /// Largest `gpuCount` one pod may have.
    pub max_gpu_count: u32,
    /// GPUs free now (a pod takes `gpuCount` of them).
    pub stock: u32,
    /// Data centres it is in (upper case, e.g. `EU-RO-1`).
    pub data_centers: Vec<String>,
    /// Largest `containerDiskInGb + volumeInGb` one pod may have.
    pub max_disk_gb: u32,
}

impl GpuTypeSpec {
    /// A type in both clouds with community price = 80 % and min bid = 50 % of `secure_price`.
    pub fn new(
        id: &str,
        display_name: &str,
        memory_gb: u32,
        secure_price: u64,
        stock: u32,
    ) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            memory_gb,
            secure_cloud: true,
            community_cloud: true,
            secure_price,
            community_price: secure_price * 4 / 5,
            min_bid_price: secure_price / 2,
            max_gpu_count: 8,
            stock,
            data_centers: vec!["US-KS-2".into(), "EU-RO-1".into()],
            max_disk_gb: 2000,
        }
    }

    /// Same type with another stock.
    pub fn with_stock(mut self, stock: u32) -> Self {
        self.stock = stock;
        self
    }

    /// Same type in other data centres.
    pub fn with_data_centers(mut self, dcs: &[&str]) -> Self {
        self.data_centers = dcs.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The default catalogue: H100 SXM, A100 SXM, RTX 4090 (in stock) and RTX A6000 (sold out).
    pub fn default_catalogue() -> Vec<GpuTypeSpec> {
        let c = |cents: u64| cents * (MICRO / 100);
        vec![
            GpuTypeSpec::new("NVIDIA H100 80GB HBM3", "H100 SXM", 80, c(299), 16),
            GpuTypeSpec::new("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, c(189), 16),
            GpuTypeSpec::new("NVIDIA GeForce RTX 4090", "RTX 4090", 24, c(69), 32),
            GpuTypeSpec::new("NVIDIA RTX A6000", "RTX A6000", 48, c(79), 0),
        ]
    }
}

/// The configuration of one simulated RunPod.
#[derive(Debug, Clone)]
pub struct RunpodConfig {
    /// The API key (Bearer or `?api_key=`).
    pub api_key: String,
    /// The GPU catalogue.
    pub gpu_types: Vec<GpuTypeSpec>,
    /// Starting `clientBalance`, micro-USD.
    pub balance_micro_usd: u64,
    /// Deploy -> `runtime` non-null.
    pub boot_delay: Duration,
    /// How long a terminated pod stays visible (`desiredStatus: TERMINATED`) before `pod` is null.
    pub stop_delay: Duration,
    /// Whether catalogue-only queries (`gpuTypes`, `dataCenters`, `countryCodes`) work with no
    /// credentials at all (gpuhunt sends none).
    pub allow_anonymous_catalogue: bool,
    /// Faults in force from the start.
    pub faults: Faults,
}

impl Default for RunpodConfig {
    fn default() -> Self {
        Self {
            api_key: "runpod-key".into(),
            gpu_types: GpuTypeSpec::default_catalogue(),
            balance_micro_usd: 100 * MICRO,
            boot_delay: Duration::from_millis(500),
            stop_delay: Duration::from_millis(200),
            allow_anonymous_catalogue: true,
            faults: Faults::default(),
        }
    }
}

impl RunpodConfig {
    /// The default configuration with zero delays.
    pub fn instant() -> Self {
        Self::default().with_delays(Duration::ZERO, Duration::ZERO)
    }

    /// Replaces the catalogue.
    pub fn with_gpu_types(mut self, t: Vec<GpuTypeSpec>) -> Self {
        self.gpu_types = t;
        self
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// Sets the starting balance in micro-USD.
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

    /// Sets the starting faults.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}
