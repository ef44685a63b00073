//! How a simulated Vast.ai account is set up: key, the offers (one per machine), credit, delays,
//! per-endpoint rate limits and starting faults.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::faults::Faults;
use crate::money::MICRO;

/// One offer ("ask"): a whole machine that one instance can rent.
#[derive(Debug, Clone, PartialEq)]
pub struct VastOfferSpec {
    /// The ask id clients rent with `PUT /asks/{id}/`.
    pub id: u64,
    /// e.g. `RTX 4090`, `H100 SXM` (spaces, as in JSON).
    pub gpu_name: String,
    pub num_gpus: u32,
    /// Per GPU, MB.
    pub gpu_ram_mb: u32,
    /// On-demand price of the whole machine per hour, micro-USD.
    pub dph_total: u64,
    /// Interruptible floor of the whole machine per hour, micro-USD.
    pub min_bid: u64,
    /// "City, CC".
    pub geolocation: String,
    pub reliability2: f64,
    pub verified: bool,
    pub datacenter: bool,
    /// Offered now (false = already gone).
    pub rentable: bool,
}

impl VastOfferSpec {
    pub fn new(id: u64, gpu_name: &str, num_gpus: u32, dph_total: u64, geolocation: &str) -> Self {
        Self {
            id,
            gpu_name: gpu_name.into(),
            num_gpus,
            gpu_ram_mb: 24_564,
            dph_total,
            min_bid: dph_total * 2 / 5,
            geolocation: geolocation.into(),
            reliability2: 0.995,
            verified: true,
            datacenter: false,
            rentable: true,
        }
    }

    /// Default offers: RTX 4090 x1 (two machines), RTX 4090 x4, H100 SXM x1 (datacenter), and an
    /// A100 PCIE that is no longer rentable.
    pub fn default_catalogue() -> Vec<VastOfferSpec> {
        let c = |cents: u64| cents * (MICRO / 100);
        let mut h100 = VastOfferSpec::new(3_000_003, "H100 SXM", 1, c(240), "Oslo, NO");
        h100.gpu_ram_mb = 81_559;
        h100.datacenter = true;
        h100.reliability2 = 0.999;
        let mut a100 = VastOfferSpec::new(3_000_005, "A100 PCIE", 1, c(90), "Texas, US");
        a100.rentable = false;
        a100.gpu_ram_mb = 40_960;
        let mut flaky = VastOfferSpec::new(3_000_002, "RTX 4090", 1, c(35), "Quebec, CA");
        flaky.reliability2 = 0.91;
        flaky.verified = false;
        vec![
            VastOfferSpec::new(3_000_001, "RTX 4090", 1, c(40), "California, US"),
            flaky,
            h100,
            VastOfferSpec::new(3_000_004, "RTX 4090", 4, c(150), "Virginia, US"),
            a100,
        ]
    }
}

/// The configuration of one simulated Vast.ai.
#[derive(Debug, Clone)]
pub struct VastConfig {
    /// The API key (Bearer or `?api_key=`).
    pub api_key: String,
    pub offers: Vec<VastOfferSpec>,
    /// Starting credit, micro-USD.
    pub balance_micro_usd: u64,
    /// `actual_status: null` -> `loading`.
    pub boot_delay: Duration,
    /// `loading` -> `running`.
    pub run_delay: Duration,
    /// Minimum interval between calls per (key, endpoint key); absent = no limit. Defaults from
    /// the OpenAPI `x-rate-limit` thresholds read as seconds: launch 4.5, get 2.0, delete 3.0.
    pub rate_limits: BTreeMap<String, Duration>,
    pub faults: Faults,
}

impl Default for VastConfig {
    fn default() -> Self {
        Self {
            api_key: "vast-key".into(),
            offers: VastOfferSpec::default_catalogue(),
            balance_micro_usd: 100 * MICRO,
            boot_delay: Duration::from_millis(300),
            run_delay: Duration::from_millis(300),
            rate_limits: [("launch", 4500), ("get", 2000), ("delete", 3000)]
                .into_iter()
                .map(|(k, ms)| (k.to_owned(), Duration::from_millis(ms)))
                .collect(),
            faults: Faults::default(),
        }
    }
}

impl VastConfig {
    /// Zero delays and no rate limits: for tests.
    pub fn instant() -> Self {
        Self {
            boot_delay: Duration::ZERO,
            run_delay: Duration::ZERO,
            rate_limits: BTreeMap::new(),
            ..Self::default()
        }
    }

    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    pub fn with_offers(mut self, offers: Vec<VastOfferSpec>) -> Self {
        self.offers = offers;
        self
    }

    pub fn with_balance_micro_usd(mut self, micro: u64) -> Self {
        self.balance_micro_usd = micro;
        self
    }

    pub fn with_delays(mut self, boot: Duration, run: Duration) -> Self {
        self.boot_delay = boot;
        self.run_delay = run;
        self
    }

    /// Sets (or, with zero, removes) the minimum interval of one endpoint key.
    pub fn with_rate_limit(mut self, endpoint: &str, interval: Duration) -> Self {
        if interval.is_zero() {
            self.rate_limits.remove(endpoint);
        } else {
            self.rate_limits.insert(endpoint.to_owned(), interval);
        }
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}
