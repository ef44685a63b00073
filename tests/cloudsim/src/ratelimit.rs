//! A cloud's own rate limits, as opposed to injected 429s.
//!
//! Lambda ("one request per second", "launch: one per 12 seconds") and Vast ("a minimum interval
//! between requests", per endpoint) enforce limits that a well-behaved client must respect. They
//! are modelled as minimum intervals between admitted calls per (identity, bucket), measured on
//! the simulated clock so tests can step over them with `advance` instead of sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::SimTime;

/// Minimum-interval limiter.
#[derive(Debug, Default)]
pub struct MinInterval {
    last: Mutex<HashMap<(String, String), SimTime>>,
}

impl MinInterval {
    /// A limiter that has admitted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits a call in `bucket` for `identity` at `now` if the previous admitted one was at
    /// least `interval` ago, recording it; otherwise returns how long is left to wait. Rejected
    /// calls do not restart the interval. A zero interval always admits.
    pub fn admit(
        &self,
        identity: &str,
        bucket: &str,
        interval: Duration,
        now: SimTime,
    ) -> Result<(), Duration> {
        if interval.is_zero() {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let key = (identity.to_owned(), bucket.to_owned());
        if let Some(prev) = last.get(&key) {
            let next = *prev + interval;
            if now < next {
                return Err(next - now);
            }
        }
        last.insert(key, now);
        Ok(())
    }

    /// Whether a call would be admitted now, without recording anything.
    pub fn would_admit(
        &self,
        identity: &str,
        bucket: &str,
        interval: Duration,
        now: SimTime,
    ) -> bool {
        if interval.is_zero() {
            return true;
        }
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&(identity.to_owned(), bucket.to_owned()))
            .is_none_or(|prev| *prev + interval <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_the_interval_per_identity_and_bucket() {
        let l = MinInterval::new();
        let s = Duration::from_secs;
        assert!(l.admit("k", "launch", s(12), s(0)).is_ok());
        assert_eq!(l.admit("k", "launch", s(12), s(5)), Err(s(7)));
        assert!(l.admit("other", "launch", s(12), s(5)).is_ok());
        assert!(l.admit("k", "list", s(12), s(5)).is_ok());
        assert!(!l.would_admit("k", "launch", s(12), s(11)));
        assert!(l.admit("k", "launch", s(12), s(12)).is_ok());
        assert!(l.admit("k", "launch", Duration::ZERO, s(12)).is_ok());
    }
}
