//! How a mock cloud is set up: its key, catalogue, money, delays and starting faults.

use std::time::Duration;

use crate::faults::Faults;
use crate::money::MICRO;

/// One entry of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    /// Offer id, e.g. `h100-sxm-1x-us-east-1`.
    pub id: String,
    /// Canonical GPU name, e.g. `H100-SXM`.
    pub gpu_type: String,
    /// GPUs per instance.
    pub gpu_count: u32,
    /// Region name.
    pub region: String,
    /// Price of the whole instance per hour, micro-USD.
    pub price_micro_usd: u64,
    /// Spot (interruptible) capacity.
    pub spot: bool,
    /// How many instances can be launched from it now.
    pub stock: u32,
}

impl OfferSpec {
    /// An offer whose id is derived the way the default catalogue does it:
    /// `{gpu_type}-{count}x-{region}[-spot]`, lower case.
    pub fn new(
        gpu_type: &str,
        gpu_count: u32,
        region: &str,
        price_micro_usd: u64,
        spot: bool,
        stock: u32,
    ) -> Self {
        let id = format!(
            "{}-{gpu_count}x-{region}{}",
            gpu_type.to_lowercase(),
            if spot { "-spot" } else { "" }
        );
        Self {
            id,
            gpu_type: gpu_type.into(),
            gpu_count,
            region: region.into(),
            price_micro_usd,
            spot,
            stock,
        }
    }

    /// Same offer with another id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The default catalogue: H100-SXM, A100-80GB, L40S and RTX4090 in `us-east-1` and
    /// `eu-west-1`, on-demand and spot. One offer (`rtx4090-1x-us-east-1-spot`) is sold out.
    pub fn default_catalogue() -> Vec<OfferSpec> {
        let c = |usd_cents: u64| usd_cents * (MICRO / 100);
        vec![
            OfferSpec::new("H100-SXM", 1, "us-east-1", c(249), false, 4),
            OfferSpec::new("H100-SXM", 8, "us-east-1", c(1992), false, 1),
            OfferSpec::new("H100-SXM", 1, "us-east-1", c(125), true, 6),
            OfferSpec::new("H100-SXM", 1, "eu-west-1", c(269), false, 2),
            OfferSpec::new("A100-80GB", 1, "us-east-1", c(129), false, 8),
            OfferSpec::new("A100-80GB", 4, "eu-west-1", c(516), false, 2),
            OfferSpec::new("A100-80GB", 1, "eu-west-1", c(79), true, 4),
            OfferSpec::new("L40S", 1, "us-east-1", c(99), false, 10),
            OfferSpec::new("L40S", 1, "eu-west-1", c(49), true, 10),
            OfferSpec::new("RTX4090", 1, "eu-west-1", c(44), false, 12),
            OfferSpec::new("RTX4090", 1, "us-east-1", c(29), true, 0),
        ]
    }
}

/// The configuration of one mock cloud.
#[derive(Debug, Clone)]
pub struct MockCloudConfig {
    /// The Bearer key every `/v1` call must carry.
    pub api_key: String,
    /// The catalogue.
    pub offers: Vec<OfferSpec>,
    /// Starting balance, micro-USD.
    pub balance_micro_usd: u64,
    /// `pending` -> `booting`.
    pub boot_delay: Duration,
    /// `booting` -> `running`.
    pub run_delay: Duration,
    /// `stopping` -> `terminated`.
    pub stop_delay: Duration,
    /// Faults in force from the start.
    pub faults: Faults,
}

impl Default for MockCloudConfig {
    fn default() -> Self {
        Self {
            api_key: "mock-key".into(),
            offers: OfferSpec::default_catalogue(),
            balance_micro_usd: 100 * MICRO,
            boot_delay: Duration::from_millis(200),
            run_delay: Duration::from_millis(200),
            stop_delay: Duration::from_millis(100),
            faults: Faults::default(),
        }
    }
}

impl MockCloudConfig {
    /// The default configuration with every delay zero: instances are running (and terminated)
    /// as soon as they are looked at.
    pub fn instant() -> Self {
        Self::default().with_delays(Duration::ZERO, Duration::ZERO, Duration::ZERO)
    }

    /// Replaces the catalogue.
    pub fn with_offers(mut self, offers: Vec<OfferSpec>) -> Self {
        self.offers = offers;
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

    /// Sets the boot, run and stop delays.
    pub fn with_delays(mut self, boot: Duration, run: Duration, stop: Duration) -> Self {
        self.boot_delay = boot;
        self.run_delay = run;
        self.stop_delay = stop;
        self
    }

    /// Sets the starting faults.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}
