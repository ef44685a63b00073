//! Wall-clock time as the resources store it: RFC 3339 text, to the second.

use std::time::Duration;

use jiff::{Timestamp, Unit};

/// How precise a stored time is: two of them may be up to this much closer together than the
/// moments they record (each is rounded to the second).
pub const PRECISION: Duration = Duration::from_secs(1);

/// Now, rounded to the second.
pub fn now() -> Timestamp {
    Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
}

/// `t` as stored in status.
pub fn text(t: Timestamp) -> String {
    t.to_string()
}

/// Parses a stored time; `None` if absent or unreadable.
pub fn parse(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

/// `t + d`.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(span).unwrap_or(t)
}

/// Time from `earlier` to `later`, zero if `later` is not after it.
pub fn since(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}
