//! The `log` import: guest log lines become `tracing` events tagged with the provider and plugin
//! version, rate-limited per plugin by a token bucket (a chatty or hostile plugin cannot flood the
//! operator's logs) and scrubbed of secret values.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::bindings::log_api::Level;

/// Longest message forwarded; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Dropped lines are reported at most this often per plugin (the report must not flood either).
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Token bucket shared by every instance of one plugin.
#[derive(Debug)]
pub struct LogLimiter {
    rate: f64,
    bucket: Mutex<Bucket>,
    dropped_total: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    dropped_since_report: u64,
    last_report: Option<Instant>,
}

/// The limiter's verdict for one line.
pub enum Admit {
    /// Emit the line; `dropped` lines were suppressed since the last emitted one.
    Yes {
        dropped: u64,
    },
    No,
}

impl LogLimiter {
    pub fn new(lines_per_second: u32) -> Self {
        let rate = f64::from(lines_per_second.max(1));
        Self {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
                dropped_since_report: 0,
                last_report: None,
            }),
            dropped_total: AtomicU64::new(0),
        }
    }

    pub fn admit(&self) -> Admit {
        let Ok(mut b) = self.bucket.lock() else {
            return Admit::No;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let report_due = b
                .last_report
                .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY);
            let dropped = if b.dropped_since_report > 0 && report_due {
                b.last_report = Some(now);
                std::mem::take(&mut b.dropped_since_report)
            } else {
                0
            };
            Admit::Yes { dropped }
        } else {
            b.dropped_since_report += 1;
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            Admit::No
        }
    }

    /// Lines dropped since the plugin was loaded.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Emits one guest line (already redacted) as a tracing event.
pub fn emit(provider: &str, plugin_version: &str, level: Level, message: &str, dropped: u64) {
    if dropped > 0 {
        tracing::warn!(
            provider,
            plugin_version,
            dropped,
            "plugin log lines dropped by the rate limit"
        );
    }
    let message = truncate(message);
    match level {
        Level::Trace => {
            tracing::trace!(target: "tgp::plugin", provider, plugin_version, "{message}")
        }
        Level::Debug => {
            tracing::debug!(target: "tgp::plugin", provider, plugin_version, "{message}")
        }
        Level::Info => tracing::info!(target: "tgp::plugin", provider, plugin_version, "{message}"),
        Level::Warn => tracing::warn!(target: "tgp::plugin", provider, plugin_version, "{message}"),
        Level::Error => {
            tracing::error!(target: "tgp::plugin", provider, plugin_version, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drops_past_burst() {
        let l = LogLimiter::new(5);
        let admitted = (0..20)
            .filter(|_| matches!(l.admit(), Admit::Yes { .. }))
            .count();
        assert!((5..20).contains(&admitted), "admitted {admitted}");
        assert_eq!(l.dropped_total(), (20 - admitted) as u64);
    }

    #[test]
    fn drops_are_reported_at_most_once_per_period() {
        let l = LogLimiter::new(1);
        let mut reports = 0;
        for _ in 0..5_000 {
            if let Admit::Yes { dropped } = l.admit()
                && dropped > 0
            {
                reports += 1;
            }
            // Refill one token each round, as if time passed.
            l.bucket.lock().unwrap().tokens += 0.5;
        }
        assert_eq!(
            reports, 1,
            "one report in this burst, not one per admitted line"
        );
    }
}
