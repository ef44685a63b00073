//! The providers the operator can use right now, and the gate every call to them goes through.
//!
//! The GPUProvider controller fills the registry with loaded plugins; the request lifecycle and
//! garbage collection take providers from it. The gate enforces what a provider asked for:
//! no call before a Retry-After has passed, the per-operation rate limits a plugin declares in
//! `info()`, and it marks a provider unhealthy on an authentication error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::plugins::{CallError, Operation, Plugin, ProviderError, RateLimit};

/// A loaded provider as the lifecycle sees it.
#[derive(Clone)]
pub struct ProviderSlot {
    pub name: String,
    pub priority: i32,
    pub plugin: Plugin,
    pub gate: Arc<CallGate>,
}

/// Why a call was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("rate limited by the provider; no call before {0:?} from now")]
    RetryAfter(Duration),
    #[error("the plugin's declared rate limit for {op:?} is used up for {wait:?}")]
    RateLimit { op: Operation, wait: Duration },
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    /// Start times of calls in the current window.
    calls: std::collections::VecDeque<Instant>,
}

impl Bucket {
    fn applies_to(&self, op: Operation) -> bool {
        self.limit.operation.is_none_or(|o| o == op)
    }

    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.limit.per_seconds.max(1)))
    }

    /// Time until a call may start, or `None` if one may start now.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        let window = self.window();
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.calls.pop_front();
        }
        if (self.calls.len() as u32) < self.limit.requests.max(1) {
            None
        } else {
            self.calls
                .front()
                .map(|t| window.saturating_sub(now.duration_since(*t)))
        }
    }
}

/// Per-provider call state: Retry-After, declared rate limits, health.
#[derive(Debug)]
pub struct CallGate {
    blocked_until: Mutex<Option<Instant>>,
    buckets: Mutex<Vec<Bucket>>,
    unhealthy: Mutex<Option<String>>,
}

impl CallGate {
    pub fn new(limits: &[RateLimit]) -> Self {
        CallGate {
            blocked_until: Mutex::new(None),
            buckets: Mutex::new(
                limits
                    .iter()
                    .map(|l| Bucket {
                        limit: *l,
                        calls: Default::default(),
                    })
                    .collect(),
            ),
            unhealthy: Mutex::new(None),
        }
    }

    /// Reserves a call of `op` now, or says how long to wait.
    pub fn admit(&self, op: Operation) -> Result<(), GateRefusal> {
        let now = Instant::now();
        if let Some(until) = *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner()) {
            if until > now {
                return Err(GateRefusal::RetryAfter(until - now));
            }
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for b in buckets.iter_mut().filter(|b| b.applies_to(op)) {
            if let Some(wait) = b.wait(now) {
                return Err(GateRefusal::RateLimit { op, wait });
            }
        }
        for b in buckets.iter_mut().filter(|b| b.applies_to(op)) {
            b.calls.push_back(now);
        }
        Ok(())
    }

    /// Learns from a call's result: Retry-After blocks the provider, auth marks it unhealthy.
    pub fn observe<T>(&self, result: &Result<T, CallError>) {
        match result {
            Err(CallError::Provider(ProviderError::RateLimited(after_ms))) => {
                let wait = Duration::from_millis(after_ms.unwrap_or(1000));
                let mut blocked = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
                let until = Instant::now() + wait;
                if blocked.is_none_or(|b| b < until) {
                    *blocked = Some(until);
                }
            }
            Err(CallError::Provider(ProviderError::Auth(msg))) => {
                *self.unhealthy.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
            }
            Ok(_) => {
                *self.unhealthy.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(_) => {}
        }
    }

    /// The authentication error that made the provider unhealthy, if any.
    pub fn unhealthy(&self) -> Option<String> {
        self.unhealthy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Time left before calls are allowed again after a Retry-After.
    pub fn blocked_for(&self) -> Option<Duration> {
        let until = (*self.blocked_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}

/// A gated call's failure: refused by the gate, or failed in the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatedError {
    #[error("{0}")]
    Refused(GateRefusal),
    #[error("{0}")]
    Call(CallError),
}

impl GatedError {
    /// How long to wait before trying this provider again, if the provider said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatedError::Refused(GateRefusal::RetryAfter(d)) => Some(*d),
            GatedError::Refused(GateRefusal::RateLimit { wait, .. }) => Some(*wait),
            GatedError::Call(CallError::Provider(ProviderError::RateLimited(ms))) => {
                Some(Duration::from_millis(ms.unwrap_or(1000)))
            }
            _ => None,
        }
    }
}

impl ProviderSlot {
    /// Runs `call` if the gate admits `op`, and lets the gate learn from the result.
    pub async fn call<T, F>(&self, op: Operation, call: F) -> Result<T, GatedError>
    where
        F: std::future::Future<Output = Result<T, CallError>>,
    {
        self.gate.admit(op).map_err(GatedError::Refused)?;
        let result = call.await;
        self.gate.observe(&result);
        result.map_err(GatedError::Call)
    }
}

/// Every usable provider by name.
#[derive(Default)]
pub struct ProviderRegistry {
    slots: RwLock<BTreeMap<String, ProviderSlot>>,
}

impl ProviderRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds or replaces a provider. A replaced plugin keeps its gate (Retry-After survives a
    /// reload) unless its declared rate limits changed.
    pub fn upsert(&self, name: &str, priority: i32, plugin: Plugin) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let gate = match slots.get(name) {
            Some(old) if old.plugin.info().rate_limits == plugin.info().rate_limits => {
                old.gate.clone()
            }
            _ => Arc::new(CallGate::new(&plugin.info().rate_limits)),
        };
        slots.insert(
            name.to_string(),
            ProviderSlot {
                name: name.to_string(),
                priority,
                plugin,
                gate,
            },
        );
    }

    pub fn remove(&self, name: &str) {
        self.slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    pub fn get(&self, name: &str) -> Option<ProviderSlot> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every provider, by name.
    pub fn all(&self) -> Vec<ProviderSlot> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_rate_limit_is_enforced_per_operation() {
        let gate = CallGate::new(&[RateLimit {
            operation: Some(Operation::Launch),
            requests: 1,
            per_seconds: 12,
        }]);
        assert_eq!(gate.admit(Operation::Launch), Ok(()));
        assert!(matches!(
            gate.admit(Operation::Launch),
            Err(GateRefusal::RateLimit { .. })
        ));
        assert_eq!(
            gate.admit(Operation::Quote),
            Ok(()),
            "other operations are not limited"
        );
    }

    #[test]
    fn retry_after_blocks_every_call_until_it_passes() {
        let gate = CallGate::new(&[]);
        gate.observe::<()>(&Err(CallError::Provider(ProviderError::RateLimited(Some(
            60_000,
        )))));
        match gate.admit(Operation::Quote) {
            Err(GateRefusal::RetryAfter(d)) => assert!(d > Duration::from_secs(50)),
            other => panic!("expected RetryAfter, got {other:?}"),
        }
    }

    #[test]
    fn auth_error_marks_unhealthy_until_a_success() {
        let gate = CallGate::new(&[]);
        gate.observe::<()>(&Err(CallError::Provider(ProviderError::Auth(
            "bad key".into(),
        ))));
        assert_eq!(gate.unhealthy().as_deref(), Some("bad key"));
        gate.observe(&Ok(()));
        assert_eq!(gate.unhealthy(), None);
    }
}
