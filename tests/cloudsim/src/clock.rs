//! Simulated time shared by every personality.
//!
//! Cloud state (status transitions, billing, vanishing) is computed lazily from timestamps on this
//! clock rather than by background tickers, so a test sees the same state however slowly the
//! machine runs. The clock follows real time and can also be pushed forward with
//! [`SimClock::advance`], which lets tests cross long delays (an hour of billing) instantly and
//! deterministically.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point in simulated time: the duration since the clock started.
pub type SimTime = Duration;

/// Real time since start plus a manual offset.
#[derive(Debug)]
pub struct SimClock {
    started: Instant,
    started_wall: SystemTime,
    offset_ms: AtomicU64,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    /// A clock that starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            offset_ms: AtomicU64::new(0),
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> SimTime {
        self.started.elapsed() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Milliseconds since start, for logs.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Pushes simulated time forward (never backwards).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall-clock time of a simulated instant as RFC 3339 UTC, second precision.
    pub fn rfc3339(&self, t: SimTime) -> String {
        let secs = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + t.as_secs();
        format_rfc3339(secs)
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil-from-days).
pub fn format_rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_694_400), "2026-11-26T12:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn advance_moves_time_forward() {
        let c = SimClock::new();
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now() >= before + Duration::from_secs(3600));
    }
}
