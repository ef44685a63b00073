//! What a conformance run talks to: one of the simulator personalities (started in-process, so
//! the kit can inject faults and move the simulated clock) or a URL the user names (where the
//! scenarios that need fault injection are skipped).

use std::collections::BTreeMap;
use std::time::Duration;

use tgp_cloudsim::{
    Faults, LambdaCloud, LambdaConfig, MockCloud, MockCloudConfig, RunpodCloud, RunpodConfig,
    Switch, VastCloud, VastConfig,
};

/// A simulator personality the kit can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Personality {
    Mock,
    Runpod,
    Lambda,
    Vast,
}

enum Sim {
    Mock(MockCloud),
    Runpod(RunpodCloud),
    Lambda(LambdaCloud),
    Vast(VastCloud),
}

/// The API a plugin is tested against.
pub struct Target {
    sim: Option<Sim>,
    base_url: String,
    api_key: String,
    config: BTreeMap<String, String>,
}

impl Target {
    /// Starts the personality's simulator on loopback with zero boot delays.
    pub async fn simulator(p: Personality) -> anyhow::Result<Target> {
        let (sim, api_key) = match p {
            Personality::Mock => {
                let cfg = MockCloudConfig::instant();
                let key = cfg.api_key.clone();
                (Sim::Mock(MockCloud::start(cfg).await?), key)
            }
            Personality::Runpod => {
                let cfg = RunpodConfig::instant();
                let key = cfg.api_key.clone();
                (Sim::Runpod(RunpodCloud::start(cfg).await?), key)
            }
            Personality::Lambda => {
                let cfg = LambdaConfig::instant();
                let key = cfg.api_key.clone();
                (Sim::Lambda(LambdaCloud::start(cfg).await?), key)
            }
            Personality::Vast => {
                let cfg = VastConfig::instant();
                let key = cfg.api_key.clone();
                (Sim::Vast(VastCloud::start(cfg).await?), key)
            }
        };
        let base_url = match &sim {
            Sim::Mock(c) => c.base_url(),
            Sim::Runpod(c) => c.base_url(),
            Sim::Lambda(c) => c.base_url(),
            Sim::Vast(c) => c.base_url(),
        };
        let mut config = BTreeMap::new();
        if p == Personality::Lambda {
            // The simulator's account has one SSH key named "tgp".
            config.insert("ssh_key_name".to_string(), "tgp".to_string());
        }
        Ok(Target {
            sim: Some(sim),
            base_url,
            api_key,
            config,
        })
    }

    /// A real or separately run API at `url`, with the key the plugin should use.
    pub fn url(url: &str, api_key: &str) -> Target {
        Target {
            sim: None,
            base_url: url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            config: BTreeMap::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Extra plugin configuration the target needs.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// True if faults and the clock can be controlled.
    pub fn controllable(&self) -> bool {
        self.sim.is_some()
    }

    fn set_faults(&self, f: Faults) {
        match &self.sim {
            Some(Sim::Mock(c)) => c.set_faults(f),
            Some(Sim::Runpod(c)) => c.set_faults(f),
            Some(Sim::Lambda(c)) => c.set_faults(f),
            Some(Sim::Vast(c)) => c.set_faults(f),
            None => {}
        }
    }

    /// The fault-injection key of the endpoint `quote` uses.
    fn quote_endpoint(&self) -> &'static str {
        match &self.sim {
            Some(Sim::Mock(_)) => "offers",
            Some(Sim::Runpod(_)) => "gpuTypes",
            Some(Sim::Lambda(_)) => "instance_types",
            Some(Sim::Vast(_)) => "search",
            None => "",
        }
    }

    /// Every launch fails for lack of capacity.
    pub fn no_capacity(&self) {
        self.set_faults(Faults::none().capacity_exhausted(Switch::Always));
    }

    /// The next quote request answers 429 (with Retry-After where the API sends one).
    pub fn rate_limit_next_quote(&self) {
        self.set_faults(Faults::none().rate_limit_next(self.quote_endpoint(), 1, Some(2)));
    }

    pub fn clear_faults(&self) {
        self.set_faults(Faults::none());
    }

    /// Moves simulated time on (a no-op for URL targets, whose time is real).
    pub fn advance(&self, by: Duration) {
        match &self.sim {
            Some(Sim::Mock(c)) => c.advance(by),
            Some(Sim::Runpod(c)) => c.advance(by),
            Some(Sim::Lambda(c)) => c.advance(by),
            Some(Sim::Vast(c)) => c.advance(by),
            None => {}
        }
    }

    /// Instances the simulator considers alive (None for URL targets).
    pub fn live_instances(&self) -> Option<usize> {
        Some(match self.sim.as_ref()? {
            Sim::Mock(c) => c.live_instances().len(),
            Sim::Runpod(c) => c.live_instances().len(),
            Sim::Lambda(c) => c.live_instances().len(),
            Sim::Vast(c) => c.live_instances().len(),
        })
    }
}
