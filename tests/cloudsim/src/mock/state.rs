//! The mock cloud's state: catalogue, instances, balance.
//!
//! Nothing here runs in the background. Every instance stores the simulated times at which it
//! boots, runs, was asked to stop and vanishes, and its status, stock holding and bill are derived
//! from those times at the moment someone looks. That keeps the cloud deterministic under any
//! scheduling and lets tests fast-forward with [`crate::clock::SimClock::advance`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::api::{ApiError, InstanceView, LaunchRequest, OfferView};
use super::config::{MockCloudConfig, OfferSpec};
use crate::clock::{SimClock, SimTime};
use crate::faults::FaultEngine;
use crate::money::format_usd;

/// Lifecycle status of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Pending,
    Booting,
    Running,
    Stopping,
    Terminated,
    /// Part of the contract; the simulator never produces it yet.
    Failed,
}

impl InstanceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Booting => "booting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
        }
    }
}

/// The full state of one instance as the simulator sees it (more than the API shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimInstance {
    pub id: String,
    pub name: String,
    pub offer_id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub region: String,
    pub price_micro_usd: u64,
    pub spot: bool,
    pub status: InstanceStatus,
    /// Set from `booting` on.
    pub public_ip: Option<Ipv4Addr>,
    pub tags: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub image: Option<String>,
    pub created_at: String,
    /// Gone from the API (404 everywhere, absent from listings).
    pub vanished: bool,
    /// Everything this instance has cost so far, micro-USD.
    pub billed_micro_usd: u64,
}

impl SimInstance {
    /// The API's view of it.
    pub fn view(&self) -> InstanceView {
        InstanceView {
            id: self.id.clone(),
            name: self.name.clone(),
            offer_id: self.offer_id.clone(),
            gpu_type: self.gpu_type.clone(),
            gpu_count: self.gpu_count,
            region: self.region.clone(),
            hourly_price_usd: format_usd(self.price_micro_usd),
            spot: self.spot,
            status: self.status.as_str().to_owned(),
            public_ip: self.public_ip.map(|ip| ip.to_string()),
            tags: self.tags.clone(),
            created_at: self.created_at.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct OfferEntry {
    spec: OfferSpec,
    /// Available stock = `base_stock - instances holding it`.
    base_stock: u32,
}

#[derive(Debug, Clone)]
struct InstanceRec {
    id: String,
    offer: OfferSpec,
    name: String,
    tags: BTreeMap<String, String>,
    user_data: Option<String>,
    image: Option<String>,
    ip: Ipv4Addr,
    created: SimTime,
    booting_at: SimTime,
    running_at: SimTime,
    stop_delay: Duration,
    stop_requested: Option<SimTime>,
    vanish_after_running: Option<Duration>,
    vanished_at: Option<SimTime>,
}

impl InstanceRec {
    /// When it disappears, if ever.
    fn vanish_time(&self) -> Option<SimTime> {
        let auto = self
            .vanish_after_running
            .map(|d| self.running_at + d)
            .filter(|v| match self.stop_requested {
                Some(s) => s > *v,
                None => true,
            });
        match (auto, self.vanished_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn gone(&self, now: SimTime) -> bool {
        self.vanish_time().is_some_and(|v| v <= now)
    }

    fn status(&self, now: SimTime) -> InstanceStatus {
        let now = self.vanish_time().map_or(now, |v| v.min(now));
        if let Some(s) = self.stop_requested.filter(|s| *s <= now) {
            return if s + self.stop_delay <= now {
                InstanceStatus::Terminated
            } else {
                InstanceStatus::Stopping
            };
        }
        if self.running_at <= now {
            InstanceStatus::Running
        } else if self.booting_at <= now {
            InstanceStatus::Booting
        } else {
            InstanceStatus::Pending
        }
    }

    /// Holds a unit of its offer's stock: neither terminated nor vanished.
    fn holds_stock(&self, now: SimTime) -> bool {
        !self.gone(now) && self.status(now) != InstanceStatus::Terminated
    }

    /// Billed running milliseconds within `[from, to)`.
    fn running_ms_within(&self, from: SimTime, to: SimTime) -> u128 {
        let mut end = to;
        if let Some(s) = self.stop_requested {
            end = end.min(s);
        }
        if let Some(v) = self.vanish_time() {
            end = end.min(v);
        }
        let start = from.max(self.running_at);
        if end > start {
            (end - start).as_millis()
        } else {
            0
        }
    }

    /// Cost within `[from, to)`: whole seconds of running time at the hourly price.
    fn cost_within(&self, from: SimTime, to: SimTime) -> u64 {
        let secs = self.running_ms_within(from, to) / 1000;
        u64::try_from(u128::from(self.offer.price_micro_usd) * secs / 3600).unwrap_or(u64::MAX)
    }

    fn snapshot(&self, clock: &SimClock, now: SimTime) -> SimInstance {
        let status = self.status(now);
        let ip_visible = !matches!(status, InstanceStatus::Pending) && self.booting_at <= now;
        SimInstance {
            id: self.id.clone(),
            name: self.name.clone(),
            offer_id: self.offer.id.clone(),
            gpu_type: self.offer.gpu_type.clone(),
            gpu_count: self.offer.gpu_count,
            region: self.offer.region.clone(),
            price_micro_usd: self.offer.price_micro_usd,
            spot: self.offer.spot,
            status,
            public_ip: ip_visible.then_some(self.ip),
            tags: self.tags.clone(),
            user_data: self.user_data.clone(),
            image: self.image.clone(),
            created_at: clock.rfc3339(self.created),
            vanished: self.gone(now),
            billed_micro_usd: self.cost_within(Duration::ZERO, now),
        }
    }
}

/// The outcome of a launch that passed every check.
#[derive(Debug, Clone)]
pub enum Launched {
    /// A real instance.
    Created(SimInstance),
    /// The silent-launch-failure fault: a made-up instance that will never exist.
    Ghost(SimInstance),
    /// The lost-launch-response fault: the instance exists but the caller gets a 500.
    Lost(SimInstance),
}

/// Filters of `GET /v1/offers`.
#[derive(Debug, Clone, Default)]
pub struct OfferFilter {
    pub gpu_type: Option<String>,
    pub count: Option<u32>,
    pub spot: Option<bool>,
}

/// Everything one mock cloud knows.
#[derive(Debug)]
pub struct CloudState {
    offers: Vec<OfferEntry>,
    instances: Vec<InstanceRec>,
    next_seq: u64,
    balance_base: u64,
    balance_set_at: SimTime,
    boot_delay: Duration,
    run_delay: Duration,
    stop_delay: Duration,
}

impl CloudState {
    /// A fresh cloud from its configuration.
    pub fn new(cfg: &MockCloudConfig) -> Self {
        let mut s = Self {
            offers: Vec::new(),
            instances: Vec::new(),
            next_seq: 1,
            balance_base: cfg.balance_micro_usd,
            balance_set_at: Duration::ZERO,
            boot_delay: cfg.boot_delay,
            run_delay: cfg.run_delay,
            stop_delay: cfg.stop_delay,
        };
        for o in &cfg.offers {
            s.add_offer(o.clone(), Duration::ZERO);
        }
        s
    }

    fn held(&self, offer_id: &str, now: SimTime) -> u32 {
        let n = self
            .instances
            .iter()
            .filter(|i| i.offer.id == offer_id && i.holds_stock(now))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn available(&self, entry: &OfferEntry, now: SimTime) -> u32 {
        entry
            .base_stock
            .saturating_sub(self.held(&entry.spec.id, now))
    }

    /// Adds an offer, or replaces the one with the same id; `spec.stock` is the stock available now.
    pub fn add_offer(&mut self, spec: OfferSpec, now: SimTime) {
        let base_stock = spec.stock.saturating_add(self.held(&spec.id, now));
        let entry = OfferEntry { spec, base_stock };
        match self.offers.iter_mut().find(|o| o.spec.id == entry.spec.id) {
            Some(o) => *o = entry,
            None => self.offers.push(entry),
        }
    }

    /// Sets the stock available now; false for an unknown offer.
    pub fn set_stock(&mut self, offer_id: &str, stock: u32, now: SimTime) -> bool {
        let held = self.held(offer_id, now);
        match self.offers.iter_mut().find(|o| o.spec.id == offer_id) {
            Some(o) => {
                o.base_stock = stock.saturating_add(held);
                true
            }
            None => false,
        }
    }

    /// The catalogue with current stock, filtered.
    pub fn offers(&self, filter: &OfferFilter, now: SimTime) -> Vec<OfferView> {
        self.offers
            .iter()
            .filter(|o| {
                filter
                    .gpu_type
                    .as_ref()
                    .is_none_or(|g| *g == o.spec.gpu_type)
            })
            .filter(|o| filter.count.is_none_or(|c| c == o.spec.gpu_count))
            .filter(|o| filter.spot.is_none_or(|s| s == o.spec.spot))
            .map(|o| OfferView {
                id: o.spec.id.clone(),
                gpu_type: o.spec.gpu_type.clone(),
                gpu_count: o.spec.gpu_count,
                region: o.spec.region.clone(),
                hourly_price_usd: format_usd(o.spec.price_micro_usd),
                spot: o.spec.spot,
                stock: self.available(o, now),
            })
            .collect()
    }

    /// The balance now, micro-USD (never below zero).
    pub fn balance(&self, now: SimTime) -> u64 {
        let spent: u64 = self
            .instances
            .iter()
            .map(|i| i.cost_within(self.balance_set_at, now))
            .fold(0u64, u64::saturating_add);
        self.balance_base.saturating_sub(spent)
    }

    /// Sets the balance as of now.
    pub fn set_balance(&mut self, micro: u64, now: SimTime) {
        self.balance_base = micro;
        self.balance_set_at = now;
    }

    /// What the running instances cost per hour, micro-USD.
    pub fn spend_per_hour(&self, now: SimTime) -> u64 {
        self.instances
            .iter()
            .filter(|i| !i.gone(now) && i.status(now) == InstanceStatus::Running)
            .map(|i| i.offer.price_micro_usd)
            .fold(0u64, u64::saturating_add)
    }

    /// Runs the launch checks (after auth and generic faults) and launches.
    pub fn launch(
        &mut self,
        req: LaunchRequest,
        clock: &SimClock,
        faults: &FaultEngine,
    ) -> Result<Launched, ApiError> {
        let now = clock.now();
        let Some(entry) = self.offers.iter().find(|o| o.spec.id == req.offer_id) else {
            return Err(ApiError::NotFound(format!("no offer {:?}", req.offer_id)));
        };
        let spec = entry.spec.clone();
        if faults.take(|f| &mut f.insufficient_balance) {
            return Err(ApiError::InsufficientBalance(
                "the account cannot pay for this launch".into(),
            ));
        }
        if faults.take(|f| &mut f.capacity_exhausted) {
            return Err(ApiError::CapacityExhausted(format!(
                "offer {} has no capacity now",
                spec.id
            )));
        }
        if self.available(entry, now) == 0 {
            return Err(ApiError::CapacityExhausted(format!(
                "offer {} has no capacity now",
                spec.id
            )));
        }
        let balance = self.balance(now);
        if balance < spec.price_micro_usd {
            return Err(ApiError::InsufficientBalance(format!(
                "balance {} USD does not cover one hour of {} ({} USD)",
                format_usd(balance),
                spec.id,
                format_usd(spec.price_micro_usd)
            )));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let booting_at = now + self.boot_delay;
        let rec = InstanceRec {
            id: format!("i-{seq:06}"),
            offer: spec,
            name: req.name,
            tags: req.tags,
            user_data: req.user_data,
            image: req.image,
            ip: Ipv4Addr::new(203, 0, 113, u8::try_from((seq - 1) % 254 + 1).unwrap_or(1)),
            created: now,
            booting_at,
            running_at: booting_at + self.run_delay,
            stop_delay: self.stop_delay,
            stop_requested: None,
            vanish_after_running: faults.vanish_after_running(),
            vanished_at: None,
        };
        // The launch answer always shows the instance as the contract says it starts: pending,
        // without an address, even when the delays are zero.
        let mut snap = rec.snapshot(clock, now);
        snap.status = InstanceStatus::Pending;
        snap.public_ip = None;
        if faults.take(|f| &mut f.silent_launch_failure) {
            tracing::info!(id = %rec.id, "silent launch failure: the instance will never exist");
            return Ok(Launched::Ghost(snap));
        }
        self.instances.push(rec);
        if faults.take(|f| &mut f.lost_launch_response) {
            return Ok(Launched::Lost(snap));
        }
        Ok(Launched::Created(snap))
    }

    fn find(&self, id: &str, now: SimTime) -> Option<&InstanceRec> {
        self.instances.iter().find(|i| i.id == id && !i.gone(now))
    }

    /// One instance as the API sees it (vanished ones are not found).
    pub fn get(&self, id: &str, clock: &SimClock) -> Option<SimInstance> {
        let now = clock.now();
        self.find(id, now).map(|i| i.snapshot(clock, now))
    }

    /// Starts termination; idempotent. `None` for unknown or vanished ids.
    pub fn terminate(&mut self, id: &str, clock: &SimClock) -> Option<SimInstance> {
        let now = clock.now();
        let rec = self
            .instances
            .iter_mut()
            .find(|i| i.id == id && !i.gone(now))?;
        if rec.stop_requested.is_none() {
            rec.stop_requested = Some(now);
        }
        Some(rec.snapshot(clock, now))
    }

    /// Makes an instance vanish now; false for an unknown id.
    pub fn vanish(&mut self, id: &str, clock: &SimClock) -> Option<SimInstance> {
        let now = clock.now();
        let rec = self.instances.iter_mut().find(|i| i.id == id)?;
        if rec.vanished_at.is_none_or(|v| v > now) {
            rec.vanished_at = Some(now);
        }
        Some(rec.snapshot(clock, now))
    }

    /// Instances visible to the API whose tags contain every `(key, value)`.
    pub fn list(&self, tags: &[(String, String)], clock: &SimClock) -> Vec<SimInstance> {
        let now = clock.now();
        self.instances
            .iter()
            .filter(|i| !i.gone(now))
            .filter(|i| tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
            .map(|i| i.snapshot(clock, now))
            .collect()
    }

    /// Every instance ever launched, vanished ones included.
    pub fn all(&self, clock: &SimClock) -> Vec<SimInstance> {
        let now = clock.now();
        self.instances
            .iter()
            .map(|i| i.snapshot(clock, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Faults;
    use crate::money::MICRO;

    fn req(offer: &str) -> LaunchRequest {
        LaunchRequest {
            offer_id: offer.into(),
            name: "n".into(),
            tags: BTreeMap::new(),
            user_data: None,
            image: None,
        }
    }

    fn created(l: Launched) -> SimInstance {
        match l {
            Launched::Created(i) => i,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    #[test]
    fn lifecycle_and_billing_follow_the_clock() {
        let cfg = MockCloudConfig::default()
            .with_offers(vec![OfferSpec::new(
                "H100-SXM",
                1,
                "r",
                3600 * 1000,
                false,
                1,
            )])
            .with_delays(
                Duration::from_secs(10),
                Duration::from_secs(10),
                Duration::from_secs(10),
            );
        let clock = SimClock::new();
        let faults = FaultEngine::new(Faults::none());
        let mut s = CloudState::new(&cfg);
        let id = created(s.launch(req("h100-sxm-1x-r"), &clock, &faults).unwrap()).id;
        assert_eq!(s.get(&id, &clock).unwrap().status, InstanceStatus::Pending);
        assert_eq!(s.get(&id, &clock).unwrap().public_ip, None);
        clock.advance(Duration::from_secs(10));
        let i = s.get(&id, &clock).unwrap();
        assert_eq!(i.status, InstanceStatus::Booting);
        assert!(i.public_ip.is_some());
        clock.advance(Duration::from_secs(10));
        assert_eq!(s.get(&id, &clock).unwrap().status, InstanceStatus::Running);
        let before = s.balance(clock.now());
        clock.advance(Duration::from_secs(100));
        // 1000 micro-USD per second.
        let spent = before - s.balance(clock.now());
        assert!((100_000..=101_000).contains(&spent), "spent {spent}");
        assert_eq!(s.offers(&OfferFilter::default(), clock.now())[0].stock, 0);
        assert_eq!(
            s.terminate(&id, &clock).unwrap().status,
            InstanceStatus::Stopping
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            s.get(&id, &clock).unwrap().status,
            InstanceStatus::Terminated
        );
        assert_eq!(s.offers(&OfferFilter::default(), clock.now())[0].stock, 1);
        let after = s.balance(clock.now());
        clock.advance(Duration::from_secs(100));
        assert_eq!(
            s.balance(clock.now()),
            after,
            "no billing after termination"
        );
        assert!(after <= 100 * MICRO);
    }
}
