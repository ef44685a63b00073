//! The record of API calls a simulator received.
//!
//! Tests assert on what the operator actually sent (how many launches, whether it backed off after
//! a 429), so every call to a personality's API is recorded in order with the endpoint key it was
//! classified as. Admin (`/_sim/`) calls are not recorded.

use std::sync::Mutex;

use serde::Serialize;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The personality that served it (`"mock"`, ...).
    pub personality: String,
    /// The endpoint key it was classified as (`"launch"`, ...; `"other"` for unknown routes).
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Simulated milliseconds since the simulator started, when the call arrived.
    pub at_ms: u64,
    /// When the call was answered (its effect took place), to order it against other systems.
    #[serde(skip)]
    pub answered_at: std::time::Instant,
}

/// An append-only, thread-safe call log.
#[derive(Debug, Default)]
pub struct CallLog {
    records: Mutex<Vec<CallRecord>>,
}

impl CallLog {
    /// Appends one record.
    pub fn push(&self, r: CallRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Every record, in arrival order of completion.
    pub fn all(&self) -> Vec<CallRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many calls were classified as `endpoint`.
    pub fn count(&self, endpoint: &str) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
