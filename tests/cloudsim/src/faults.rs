//! Fault injection shared by every personality.
//!
//! Faults are what make the simulator worth having: they let tests drive the operator through
//! the failures real clouds produce. Generic faults (errors, rate limiting, latency) are matched by
//! an endpoint key string that each personality defines (`"launch"`, `"offers"`, ...), with `"*"`
//! matching every endpoint; the gateway middleware in [`crate::server`] applies them before a
//! handler runs. Cloud-behaviour faults (insufficient balance, capacity, silent launch failure,
//! vanishing) are interpreted by the personalities' handlers.
//!
//! Tests should prefer the deterministic counters (`fail_next`, `rate_limit_next`, a [`Switch`]
//! with a count) over rates; rates draw from an RNG seeded by [`Faults::seed`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The key that matches every endpoint.
pub const ANY_ENDPOINT: &str = "*";

/// Faults for one endpoint key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFaults {
    /// Fail the next N calls with a 500 `internal`.
    pub fail_next: u32,
    /// Probability (0..=1) that a call fails with a 500 `internal`.
    pub error_rate: f64,
    /// Answer the next N calls with 429 `rate_limited`.
    pub rate_limit_next: u32,
    /// Probability (0..=1) that a call is answered with 429.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds sent with 429s; absent when `None`.
    pub retry_after_secs: Option<u64>,
    /// Extra latency before the call is answered, in milliseconds.
    pub latency_ms: u64,
}

/// An on/off/next-N switch for cloud-behaviour faults.
///
/// JSON: `false` (off), `true` (every call) or a number N (the next N calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SwitchRepr", into = "SwitchRepr")]
pub enum Switch {
    /// Never.
    #[default]
    Off,
    /// Every call while set.
    Always,
    /// The next N calls; then off.
    Next(u32),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SwitchRepr {
    Flag(bool),
    Count(u32),
}

impl From<SwitchRepr> for Switch {
    fn from(r: SwitchRepr) -> Self {
        match r {
            SwitchRepr::Flag(true) => Switch::Always,
            SwitchRepr::Flag(false) | SwitchRepr::Count(0) => Switch::Off,
            SwitchRepr::Count(n) => Switch::Next(n),
        }
    }
}

impl From<Switch> for SwitchRepr {
    fn from(s: Switch) -> Self {
        match s {
            Switch::Off => SwitchRepr::Flag(false),
            Switch::Always => SwitchRepr::Flag(true),
            Switch::Next(n) => SwitchRepr::Count(n),
        }
    }
}

impl Switch {
    /// Whether this call is affected; counts a `Next` down.
    pub fn take(&mut self) -> bool {
        match *self {
            Switch::Off => false,
            Switch::Always => true,
            Switch::Next(n) => {
                *self = if n <= 1 {
                    Switch::Off
                } else {
                    Switch::Next(n - 1)
                };
                true
            }
        }
    }
}

/// The whole fault set of one simulator. Replaced wholesale by `PUT /_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Seed of the RNG behind the rates; the RNG is reseeded whenever the fault set is replaced.
    pub seed: u64,
    /// Generic faults by endpoint key (`"*"` matches all endpoints).
    pub endpoints: BTreeMap<String, EndpointFaults>,
    /// Launches answer 402 `insufficient_balance` whatever the balance.
    pub insufficient_balance: Switch,
    /// Launches answer 503 `capacity_exhausted` whatever the stock.
    pub capacity_exhausted: Switch,
    /// Launches answer 201 with a fresh id, but the instance never exists.
    pub silent_launch_failure: Switch,
    /// Launches create the instance but answer 500 `internal` (the response is lost).
    pub lost_launch_response: Switch,
    /// Instances launched while this is set vanish this many milliseconds after reaching running.
    pub vanish_after_running_ms: Option<u64>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    fn endpoint_mut(&mut self, key: impl Into<String>) -> &mut EndpointFaults {
        self.endpoints.entry(key.into()).or_default()
    }

    /// Fail the next `n` calls to `endpoint` with 500.
    pub fn fail_next(mut self, endpoint: impl Into<String>, n: u32) -> Self {
        self.endpoint_mut(endpoint).fail_next = n;
        self
    }

    /// Fail calls to `endpoint` with probability `rate`.
    pub fn error_rate(mut self, endpoint: impl Into<String>, rate: f64) -> Self {
        self.endpoint_mut(endpoint).error_rate = rate;
        self
    }

    /// Answer the next `n` calls to `endpoint` with 429 and the given `Retry-After`.
    pub fn rate_limit_next(
        mut self,
        endpoint: impl Into<String>,
        n: u32,
        retry_after_secs: Option<u64>,
    ) -> Self {
        let e = self.endpoint_mut(endpoint);
        e.rate_limit_next = n;
        e.retry_after_secs = retry_after_secs;
        self
    }

    /// Answer calls to `endpoint` with 429 with probability `rate`.
    pub fn rate_limit_rate(
        mut self,
        endpoint: impl Into<String>,
        rate: f64,
        retry_after_secs: Option<u64>,
    ) -> Self {
        let e = self.endpoint_mut(endpoint);
        e.rate_limit_rate = rate;
        e.retry_after_secs = retry_after_secs;
        self
    }

    /// Delay calls to `endpoint`.
    pub fn latency(mut self, endpoint: impl Into<String>, latency: Duration) -> Self {
        self.endpoint_mut(endpoint).latency_ms =
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Sets the RNG seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the insufficient-balance switch.
    pub fn insufficient_balance(mut self, s: Switch) -> Self {
        self.insufficient_balance = s;
        self
    }

    /// Sets the capacity-exhausted switch.
    pub fn capacity_exhausted(mut self, s: Switch) -> Self {
        self.capacity_exhausted = s;
        self
    }

    /// Sets the silent-launch-failure switch.
    pub fn silent_launch_failure(mut self, s: Switch) -> Self {
        self.silent_launch_failure = s;
        self
    }

    /// Sets the lost-launch-response switch.
    pub fn lost_launch_response(mut self, s: Switch) -> Self {
        self.lost_launch_response = s;
        self
    }

    /// Instances launched from now on vanish `after` reaching running.
    pub fn vanish_after_running(mut self, after: Duration) -> Self {
        self.vanish_after_running_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Checks ranges and, given the personality's endpoint keys, the keys. Returns the offending
    /// field path and a message.
    pub fn validate(&self, known_endpoints: &[&str]) -> Result<(), (String, String)> {
        for (key, e) in &self.endpoints {
            if key != ANY_ENDPOINT && !known_endpoints.contains(&key.as_str()) {
                return Err((
                    format!("endpoints.{key}"),
                    format!("unknown endpoint key {key:?}; known: {known_endpoints:?} or \"*\""),
                ));
            }
            for (name, rate) in [
                ("error_rate", e.error_rate),
                ("rate_limit_rate", e.rate_limit_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err((
                        format!("endpoints.{key}.{name}"),
                        format!("{name} must be within 0..=1"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A generic fault chosen for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer 429 with this `Retry-After`.
    RateLimited { retry_after_secs: Option<u64> },
    /// Answer 500.
    Internal,
}

/// The live fault set plus its RNG; one per simulator instance.
#[derive(Debug)]
pub struct FaultEngine {
    inner: Mutex<(Faults, StdRng)>,
}

impl FaultEngine {
    /// An engine starting with `faults`.
    pub fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        Self {
            inner: Mutex::new((faults, rng)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Faults, StdRng)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the fault set and reseeds the RNG.
    pub fn set(&self, faults: Faults) {
        let mut g = self.lock();
        g.1 = StdRng::seed_from_u64(faults.seed);
        g.0 = faults;
    }

    /// The current fault set, with counters as they stand.
    pub fn get(&self) -> Faults {
        self.lock().0.clone()
    }

    /// The latency of a call to `endpoint`: the larger of its own and `"*"`'s.
    pub fn latency(&self, endpoint: &str) -> Duration {
        let g = self.lock();
        [endpoint, ANY_ENDPOINT]
            .iter()
            .filter_map(|k| g.0.endpoints.get(*k))
            .map(|e| Duration::from_millis(e.latency_ms))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Decides the injected fault for one call to `endpoint`, consuming counters. Counters come
    /// before rates, the specific key before `"*"`, rate limiting before errors.
    pub fn decide(&self, endpoint: &str) -> Option<Injected> {
        let mut g = self.lock();
        let (faults, rng) = &mut *g;
        for key in [endpoint, ANY_ENDPOINT] {
            let Some(e) = faults.endpoints.get_mut(key) else {
                continue;
            };
            if e.rate_limit_next > 0 {
                e.rate_limit_next -= 1;
                return Some(Injected::RateLimited {
                    retry_after_secs: e.retry_after_secs,
                });
            }
            if e.fail_next > 0 {
                e.fail_next -= 1;
                return Some(Injected::Internal);
            }
        }
        for key in [endpoint, ANY_ENDPOINT] {
            let Some(e) = faults.endpoints.get(key) else {
                continue;
            };
            if e.rate_limit_rate > 0.0 && rng.random::<f64>() < e.rate_limit_rate {
                return Some(Injected::RateLimited {
                    retry_after_secs: e.retry_after_secs,
                });
            }
            if e.error_rate > 0.0 && rng.random::<f64>() < e.error_rate {
                return Some(Injected::Internal);
            }
        }
        None
    }

    /// Consumes one use of a cloud-behaviour switch chosen by `pick`.
    pub fn take(&self, pick: impl FnOnce(&mut Faults) -> &mut Switch) -> bool {
        pick(&mut self.lock().0).take()
    }

    /// The vanish-after-running delay in force.
    pub fn vanish_after_running(&self) -> Option<Duration> {
        self.lock()
            .0
            .vanish_after_running_ms
            .map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_out() {
        let e = FaultEngine::new(Faults::none().fail_next("launch", 2));
        assert_eq!(e.decide("launch"), Some(Injected::Internal));
        assert_eq!(e.decide("offers"), None);
        assert_eq!(e.decide("launch"), Some(Injected::Internal));
        assert_eq!(e.decide("launch"), None);
    }

    #[test]
    fn latency_takes_the_larger_of_key_and_wildcard() {
        let e = FaultEngine::new(
            Faults::none()
                .latency("get", Duration::from_millis(5))
                .latency("*", Duration::from_millis(9)),
        );
        assert_eq!(e.latency("get"), Duration::from_millis(9));
        assert_eq!(e.latency("offers"), Duration::from_millis(9));
        assert_eq!(
            FaultEngine::new(Faults::none()).latency("get"),
            Duration::ZERO
        );
    }

    #[test]
    fn wildcard_applies_to_all() {
        let e = FaultEngine::new(Faults::none().rate_limit_next("*", 1, Some(7)));
        assert_eq!(
            e.decide("get"),
            Some(Injected::RateLimited {
                retry_after_secs: Some(7)
            })
        );
        assert_eq!(e.decide("get"), None);
    }

    #[test]
    fn rates_are_reproducible_with_a_seed() {
        let run = || {
            let e = FaultEngine::new(Faults::none().error_rate("get", 0.5).with_seed(9));
            (0..64)
                .map(|_| e.decide("get").is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn switch_json_forms() {
        let f: Faults = serde_json::from_str(
            r#"{"insufficient_balance": true, "capacity_exhausted": 2, "silent_launch_failure": false}"#,
        )
        .unwrap();
        assert_eq!(f.insufficient_balance, Switch::Always);
        assert_eq!(f.capacity_exhausted, Switch::Next(2));
        assert_eq!(f.silent_launch_failure, Switch::Off);
        let mut s = Switch::Next(2);
        assert!(s.take() && s.take() && !s.take());
    }

    #[test]
    fn validate_rejects_unknown_keys_and_bad_rates() {
        let f = Faults::none().fail_next("lunch", 1);
        assert_eq!(f.validate(&["launch"]).unwrap_err().0, "endpoints.lunch");
        let f = Faults::none().error_rate("launch", 1.5);
        assert_eq!(
            f.validate(&["launch"]).unwrap_err().0,
            "endpoints.launch.error_rate"
        );
        assert!(
            Faults::none()
                .fail_next("*", 1)
                .validate(&["launch"])
                .is_ok()
        );
    }
}
