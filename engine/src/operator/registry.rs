//! The providers the operator can use right now, their module revisions, and the gate every
//! call to them goes through.
//!
//! The GPUProvider controller fills the registry with loaded plugins; the request lifecycle and
//! garbage collection take providers from it. The gate enforces what a provider asked for:
//! no call before a Retry-After has passed, the per-operation rate limits a plugin declares in
//! `info()`, and it marks a provider unhealthy on an authentication error.
//!
//! Hot swap: a new module is loaded off to the side and then [`ProviderRegistry::activate`]d,
//! which replaces the provider's slot under the write lock in one step. A caller holds a clone
//! of the slot (an `Arc` of the plugin) for the length of its call, so calls already running
//! finish on the old revision and every call that starts after the swap gets the new one; the
//! old plugin is freed when its last call returns. The last [`REVISIONS_KEPT`] good revisions
//! are remembered with their verified module bytes (within [`MODULE_BYTES_KEPT`]), so a
//! rollback needs no fetch and, the compiled code being in the compile cache, no compilation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::plugins::{
    CallError, Instance, InstanceState, Operation, Plugin, ProviderError, RateLimit,
};

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
        if let Some(until) = *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner())
            && until > now
        {
            return Err(GateRefusal::RetryAfter(until - now));
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

    /// What the provider says exists under `id` now (`verify`, through the gate). An id the
    /// provider does not know is an answer, state `NotFound` with no instance, not a failure:
    /// `Err` means the provider gave no answer, which says nothing about the instance.
    pub async fn look_up(&self, id: &str) -> Result<(InstanceState, Option<Instance>), GatedError> {
        match self.call(Operation::Verify, self.plugin.verify(id)).await {
            Ok(instance) => Ok((instance.state, Some(instance))),
            Err(GatedError::Call(CallError::Provider(ProviderError::NotFound(_)))) => {
                Ok((InstanceState::NotFound, None))
            }
            Err(e) => Err(e),
        }
    }
}

/// Good revisions remembered per provider (the active one included).
pub const REVISIONS_KEPT: usize = 5;
/// Module bytes kept per provider for rollbacks, newest revisions first; older revisions keep
/// their metadata only (a rollback to them fetches the module again).
pub const MODULE_BYTES_KEPT: usize = 64 * 1024 * 1024;

/// One module revision that loaded and served.
#[derive(Clone, Debug)]
pub struct Revision {
    /// `sha256:<hex>` of the module.
    pub digest: String,
    pub plugin_name: String,
    pub version: String,
    pub contract_version: String,
    /// Where the module came from (see [`crate::modules::ModuleLocation::describe`]).
    pub source: String,
    /// RFC 3339 time it became active.
    pub loaded_at: String,
    /// Whether the compiled code came from the compile cache.
    pub from_cache: bool,
    /// From the start of the load (fetch included) to the swap.
    pub load_time: Duration,
    /// The verified module bytes, while within [`MODULE_BYTES_KEPT`].
    pub module: Option<Arc<[u8]>>,
}

impl Revision {
    /// The revision of a plugin loaded without a module source (bytes not kept).
    pub fn of_plugin(plugin: &Plugin, source: &str, loaded_at: &str) -> Self {
        Revision {
            digest: format!("sha256:{}", plugin.digest()),
            plugin_name: plugin.info().name.clone(),
            version: plugin.info().version.clone(),
            contract_version: plugin.contract_version().to_string(),
            source: source.to_string(),
            loaded_at: loaded_at.to_string(),
            from_cache: plugin.loaded_from_cache(),
            load_time: plugin.compile_time(),
            module: None,
        }
    }
}

struct Entry {
    slot: ProviderSlot,
    /// Newest first; `history[0]` is the active revision.
    history: VecDeque<Revision>,
}

/// Every usable provider by name.
#[derive(Default)]
pub struct ProviderRegistry {
    slots: RwLock<BTreeMap<String, Entry>>,
}

impl ProviderRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds or replaces a provider, recording a revision without module bytes. See
    /// [`ProviderRegistry::activate`].
    pub fn upsert(&self, name: &str, priority: i32, plugin: Plugin) {
        let revision = Revision::of_plugin(&plugin, "", "");
        self.activate(name, priority, plugin, revision);
    }

    /// Makes `plugin` (described by `revision`) the provider's active revision, in one step:
    /// calls that already hold the old slot finish on it, later calls get this one. The gate
    /// is kept (a Retry-After survives a swap) unless the declared rate limits changed. The
    /// revision goes to the front of the history (an earlier entry of the same digest is
    /// replaced), which is trimmed to [`REVISIONS_KEPT`] entries and [`MODULE_BYTES_KEPT`]
    /// bytes of modules.
    pub fn activate(&self, name: &str, priority: i32, plugin: Plugin, revision: Revision) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let mut replaced = None;
        let (gate, mut history) = match slots.remove(name) {
            Some(old) => {
                let gate = if old.slot.plugin.info().rate_limits == plugin.info().rate_limits {
                    old.slot.gate.clone()
                } else {
                    Arc::new(CallGate::new(&plugin.info().rate_limits))
                };
                replaced = Some(old.slot);
                (gate, old.history)
            }
            None => (
                Arc::new(CallGate::new(&plugin.info().rate_limits)),
                VecDeque::new(),
            ),
        };
        // Keep the bytes of the revision being replaced if the new one brings none.
        let kept = history
            .iter()
            .position(|r| r.digest == revision.digest)
            .and_then(|i| history.remove(i))
            .and_then(|r| r.module);
        let mut revision = revision;
        if revision.module.is_none() {
            revision.module = kept;
        }
        history.push_front(revision);
        history.truncate(REVISIONS_KEPT);
        let mut bytes = 0usize;
        for r in history.iter_mut() {
            if let Some(m) = &r.module {
                if bytes + m.len() > MODULE_BYTES_KEPT {
                    r.module = None;
                } else {
                    bytes += m.len();
                }
            }
        }
        slots.insert(
            name.to_string(),
            Entry {
                slot: ProviderSlot {
                    name: name.to_string(),
                    priority,
                    plugin,
                    gate,
                },
                history,
            },
        );
        drop(slots);
        // The old plugin is freed here if no call holds it (dropping its idle instances
        // unmaps memory: never under the lock); otherwise when its last call returns.
        drop(replaced);
    }

    /// Changes a provider's priority without touching its plugin.
    pub fn set_priority(&self, name: &str, priority: i32) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = slots.get_mut(name) {
            entry.slot.priority = priority;
        }
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
            .map(|e| e.slot.clone())
    }

    /// Every provider, by name.
    pub fn all(&self) -> Vec<ProviderSlot> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|e| e.slot.clone())
            .collect()
    }

    /// The revision serving `name` now.
    pub fn active_revision(&self, name: &str) -> Option<Revision> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(|e| e.history.front().cloned())
    }

    /// The good revisions of `name`, newest first (the active one first).
    pub fn revisions(&self, name: &str) -> Vec<Revision> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|e| e.history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The module bytes of a kept revision of `name` with `digest` (`sha256:<hex>`), if still
    /// held. The caller verifies them again before use.
    pub fn kept_module(&self, name: &str, digest: &str) -> Option<Arc<[u8]>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?
            .history
            .iter()
            .find(|r| r.digest == digest)?
            .module
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn mock_plugin() -> Plugin {
        let host = crate::plugins::PluginHost::new(Default::default()).expect("host");
        host.load(
            crate::embedded::MOCK_PLUGIN.to_vec(),
            crate::embedded::mock_grants("p", "http://127.0.0.1:9", "key"),
        )
        .await
        .expect("the mock plugin loads")
    }

    fn rev(digest: &str, module_bytes: Option<usize>) -> Revision {
        Revision {
            digest: digest.to_string(),
            plugin_name: "mock".into(),
            version: digest.to_string(),
            contract_version: String::new(),
            source: "test".into(),
            loaded_at: String::new(),
            from_cache: false,
            load_time: Duration::ZERO,
            module: module_bytes.map(|n| Arc::from(vec![0u8; n].as_slice())),
        }
    }

    fn digests(reg: &ProviderRegistry) -> Vec<String> {
        reg.revisions("p").into_iter().map(|r| r.digest).collect()
    }

    #[tokio::test]
    async fn a_swap_replaces_the_slot_and_keeps_handles_gate_and_history() {
        let plugin = mock_plugin().await;
        let reg = ProviderRegistry::default();
        reg.activate("p", 0, plugin.clone(), rev("sha256:a", Some(10)));
        // A call in flight holds the slot it started with.
        let held = reg.get("p").unwrap();
        held.gate
            .observe::<()>(&Err(CallError::Provider(ProviderError::RateLimited(Some(
                60_000,
            )))));
        reg.activate("p", 1, plugin.clone(), rev("sha256:b", Some(10)));
        let now = reg.get("p").unwrap();
        assert_eq!(now.priority, 1);
        assert!(
            now.gate.blocked_for().is_some(),
            "a Retry-After survives the swap"
        );
        assert!(
            held.plugin.call_info().await.is_ok(),
            "the old handle still answers"
        );
        assert_eq!(digests(&reg), ["sha256:b", "sha256:a"]);
        assert_eq!(reg.active_revision("p").unwrap().digest, "sha256:b");

        // Back to a: moved to the front, its kept bytes carried over.
        reg.activate("p", 1, plugin.clone(), rev("sha256:a", None));
        assert_eq!(digests(&reg), ["sha256:a", "sha256:b"]);
        assert_eq!(reg.kept_module("p", "sha256:a").map(|m| m.len()), Some(10));
        assert!(reg.kept_module("p", "sha256:zz").is_none());

        // At most REVISIONS_KEPT revisions.
        for i in 0..10 {
            reg.activate("p", 1, plugin.clone(), rev(&format!("sha256:{i}"), Some(1)));
        }
        let kept = digests(&reg);
        assert_eq!(kept.len(), REVISIONS_KEPT);
        assert_eq!(kept[0], "sha256:9");

        // Module bytes within MODULE_BYTES_KEPT, newest first; older entries keep metadata.
        let big = MODULE_BYTES_KEPT / 2 + 1;
        reg.activate("p", 1, plugin.clone(), rev("sha256:big1", Some(big)));
        reg.activate("p", 1, plugin.clone(), rev("sha256:big2", Some(big)));
        assert!(reg.kept_module("p", "sha256:big2").is_some());
        assert!(reg.kept_module("p", "sha256:big1").is_none());
        assert!(digests(&reg).contains(&"sha256:big1".to_string()));

        reg.set_priority("p", 7);
        assert_eq!(reg.get("p").unwrap().priority, 7);
        reg.remove("p");
        assert!(reg.get("p").is_none() && reg.revisions("p").is_empty());
    }

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
