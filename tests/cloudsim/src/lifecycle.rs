//! The life of one simulated machine, and the wallet that pays for it, computed from timestamps.
//!
//! The RunPod, Lambda and Vast personalities all need the same thing under different status names:
//! a machine that comes up after delays, runs, is billed, can be asked to stop, and may vanish.
//! Nothing ticks in the background: a [`Timeline`] stores when each thing happens on the
//! simulated clock and answers "what is it now?" on demand, so state is deterministic however
//! slowly the machine runs and tests can fast-forward with `advance`.

use std::time::Duration;

use crate::clock::SimTime;

/// Where a machine is in its life, cloud-neutral; each personality maps it to its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, not yet booting (no address yet).
    Pending,
    /// Booting (address known, not usable yet).
    Booting,
    /// Up.
    Running,
    /// Asked to stop; still holding capacity.
    Stopping,
    /// Stopped for good.
    Ended,
}

/// When a machine was created, boots, runs, stops and vanishes.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Accepted by the cloud.
    pub created: SimTime,
    /// Starts booting; `None` = never (a machine stuck before booting).
    pub booting_at: Option<SimTime>,
    /// Is up; `None` = never.
    pub running_at: Option<SimTime>,
    /// Stopping -> ended.
    pub stop_delay: Duration,
    /// When a stop/terminate was first asked.
    pub stop_requested: Option<SimTime>,
    /// Vanish this long after reaching running (unless stopped first).
    pub vanish_after_running: Option<Duration>,
    /// Made to vanish by hand at this time.
    pub vanished_at: Option<SimTime>,
    /// Billing starts at creation (RunPod bills a pod from rent time) rather than at running.
    pub bill_from_creation: bool,
    /// Price per hour, micro-USD.
    pub price_micro_usd: u64,
}

impl Timeline {
    /// A machine created at `now` that boots after `boot` and runs `run` later.
    pub fn new(now: SimTime, boot: Duration, run: Duration, stop: Duration, price: u64) -> Self {
        Self {
            created: now,
            booting_at: Some(now + boot),
            running_at: Some(now + boot + run),
            stop_delay: stop,
            stop_requested: None,
            vanish_after_running: None,
            vanished_at: None,
            bill_from_creation: false,
            price_micro_usd: price,
        }
    }

    /// Never boots (stays [`Phase::Pending`]) and is never billed unless billed from creation.
    pub fn stalled(mut self) -> Self {
        self.booting_at = None;
        self.running_at = None;
        self
    }

    /// When it disappears, if ever.
    pub fn vanish_time(&self) -> Option<SimTime> {
        let auto = self
            .vanish_after_running
            .zip(self.running_at)
            .map(|(d, r)| r + d)
            .filter(|v| self.stop_requested.is_none_or(|s| s > *v));
        match (auto, self.vanished_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gone from the API.
    pub fn gone(&self, now: SimTime) -> bool {
        self.vanish_time().is_some_and(|v| v <= now)
    }

    /// The phase at `now` (frozen at the vanishing for vanished machines).
    pub fn phase(&self, now: SimTime) -> Phase {
        let now = self.vanish_time().map_or(now, |v| v.min(now));
        if let Some(s) = self.stop_requested.filter(|s| *s <= now) {
            return if s + self.stop_delay <= now {
                Phase::Ended
            } else {
                Phase::Stopping
            };
        }
        if self.running_at.is_some_and(|r| r <= now) {
            Phase::Running
        } else if self.booting_at.is_some_and(|b| b <= now) {
            Phase::Booting
        } else {
            Phase::Pending
        }
    }

    /// When it ended (stop delay elapsed), if it has by `now`.
    pub fn ended_at(&self, now: SimTime) -> Option<SimTime> {
        let end = self.stop_requested? + self.stop_delay;
        (end <= now).then_some(end)
    }

    /// Holds capacity: neither ended nor vanished.
    pub fn holds_capacity(&self, now: SimTime) -> bool {
        !self.gone(now) && self.phase(now) != Phase::Ended
    }

    /// Seconds it has been up at `now` (0 unless running).
    pub fn uptime_secs(&self, now: SimTime) -> u64 {
        match (self.phase(now), self.running_at) {
            (Phase::Running, Some(r)) => now.saturating_sub(r).as_secs(),
            _ => 0,
        }
    }

    fn billed_ms_within(&self, from: SimTime, to: SimTime) -> u128 {
        let start = if self.bill_from_creation {
            Some(self.created)
        } else {
            self.running_at
        };
        let Some(start) = start else { return 0 };
        let mut end = to;
        if let Some(s) = self.stop_requested {
            end = end.min(s);
        }
        if let Some(v) = self.vanish_time() {
            end = end.min(v);
        }
        let start = from.max(start);
        if end > start {
            (end - start).as_millis()
        } else {
            0
        }
    }

    /// Cost within `[from, to)`: whole seconds of billed time at the hourly price.
    pub fn cost_within(&self, from: SimTime, to: SimTime) -> u64 {
        let secs = self.billed_ms_within(from, to) / 1000;
        u64::try_from(u128::from(self.price_micro_usd) * secs / 3600).unwrap_or(u64::MAX)
    }

    /// Being billed at `now`.
    pub fn billing(&self, now: SimTime) -> bool {
        !self.gone(now)
            && self.stop_requested.is_none_or(|s| s > now)
            && if self.bill_from_creation {
                true
            } else {
                self.running_at.is_some_and(|r| r <= now)
            }
    }
}

/// A prepaid balance drawn down by machines' bills.
#[derive(Debug, Clone)]
pub struct Wallet {
    base: u64,
    set_at: SimTime,
}

impl Wallet {
    /// A wallet holding `micro` micro-USD from the start.
    pub fn new(micro: u64) -> Self {
        Self {
            base: micro,
            set_at: Duration::ZERO,
        }
    }

    /// The balance at `now` given every machine's timeline (never below zero).
    pub fn balance<'a>(&self, now: SimTime, machines: impl Iterator<Item = &'a Timeline>) -> u64 {
        let spent = machines
            .map(|t| t.cost_within(self.set_at, now))
            .fold(0u64, u64::saturating_add);
        self.base.saturating_sub(spent)
    }

    /// Sets the balance as of `now`.
    pub fn set(&mut self, micro: u64, now: SimTime) {
        self.base = micro;
        self.set_at = now;
    }
}

/// What the machines being billed at `now` cost per hour, micro-USD.
pub fn spend_per_hour<'a>(now: SimTime, machines: impl Iterator<Item = &'a Timeline>) -> u64 {
    machines
        .filter(|t| t.billing(now))
        .map(|t| t.price_micro_usd)
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn walks_the_phases_and_bills_running_time() {
        let mut t = Timeline::new(S(0), S(10), S(10), S(5), 3_600_000);
        assert_eq!(t.phase(S(0)), Phase::Pending);
        assert_eq!(t.phase(S(10)), Phase::Booting);
        assert_eq!(t.phase(S(20)), Phase::Running);
        assert_eq!(t.cost_within(S(0), S(30)), 10_000);
        t.stop_requested = Some(S(30));
        assert_eq!(t.phase(S(31)), Phase::Stopping);
        assert!(t.holds_capacity(S(31)));
        assert_eq!(t.phase(S(35)), Phase::Ended);
        assert_eq!(t.ended_at(S(40)), Some(S(35)));
        assert_eq!(t.cost_within(S(0), S(100)), 10_000);
        assert!(!t.holds_capacity(S(35)));
    }

    #[test]
    fn bills_from_creation_when_asked_and_stalls() {
        let mut t = Timeline::new(S(0), S(10), S(10), S(0), 3_600_000).stalled();
        assert_eq!(t.phase(S(1000)), Phase::Pending);
        assert_eq!(t.cost_within(S(0), S(1000)), 0);
        t.bill_from_creation = true;
        assert_eq!(t.cost_within(S(0), S(1000)), 1_000_000);
        assert!(t.billing(S(5)));
    }

    #[test]
    fn vanishing_freezes_and_stops_billing() {
        let mut t = Timeline::new(S(0), S(0), S(0), S(0), 3_600_000);
        t.vanish_after_running = Some(S(60));
        assert!(!t.gone(S(59)));
        assert!(t.gone(S(60)));
        assert_eq!(t.cost_within(S(0), S(1000)), 60_000);
        let mut w = Wallet::new(1_000_000);
        assert_eq!(w.balance(S(1000), [&t].into_iter()), 940_000);
        w.set(5, S(1000));
        assert_eq!(w.balance(S(2000), [&t].into_iter()), 5);
        assert_eq!(spend_per_hour(S(10), [&t].into_iter()), 3_600_000);
        assert_eq!(spend_per_hour(S(100), [&t].into_iter()), 0);
    }
}
