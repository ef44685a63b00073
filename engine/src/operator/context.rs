//! What every reconcile shares: the API client, the provider registry, settings, the event
//! recorder and per-object retry counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Client, ResourceExt};

use crate::bootstrap::tailscale::TailscaleClient;
use crate::crd::GPURequest;
use crate::plugins::PluginHost;

use super::backoff;
use super::lifecycle::Note;
use super::metrics::Metrics;
use super::registry::ProviderRegistry;
use super::settings::Settings;

pub struct Ctx {
    pub client: Client,
    pub registry: Arc<ProviderRegistry>,
    pub host: Arc<PluginHost>,
    pub settings: Settings,
    /// Namespace holding provider credential Secrets and the leader Lease.
    pub namespace: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, u32>>,
    /// When each ready request's instance was last verified by this replica, and the
    /// verify-requested annotation it carried then.
    health_checks: Mutex<HashMap<String, (std::time::Instant, Option<String>)>>,
    /// The Tailscale client built from the OAuth Secret, with the Secret's resourceVersion it
    /// was built from: reused (and so its access token) until the Secret changes.
    tailscale: Mutex<Option<(String, TailscaleClient)>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        host: Arc<PluginHost>,
        registry: Arc<ProviderRegistry>,
        settings: Settings,
        namespace: String,
        identity: String,
    ) -> Self {
        let reporter = Reporter {
            controller: "tgp".into(),
            instance: Some(identity),
        };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry,
            host,
            settings,
            namespace,
            metrics: Arc::new(Metrics::default()),
            failures: Mutex::new(HashMap::new()),
            health_checks: Mutex::new(HashMap::new()),
            tailscale: Mutex::new(None),
        }
    }

    /// Publishes an event about `object` (a GPURequest or a GPUProvider); a failure to
    /// publish is logged, never fatal.
    pub async fn publish<K>(&self, object: &K, note: Note)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.publish_as(object, note, "Reconcile").await;
    }

    /// [`Ctx::publish`] with the event's `action`. The recorder folds an event into an earlier
    /// one of the same object, type, reason and action (counting it, keeping the earlier
    /// note), so events whose notes must all be seen need actions of their own.
    pub async fn publish_as<K>(&self, object: &K, note: Note, action: &str)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let event = Event {
            type_: note.type_,
            reason: note.reason,
            note: Some(note.message),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(object = %object.name_any(), "publishing an event failed: {e}");
        }
    }

    /// The next retry delay for `req` (exponential with jitter); counts one more failure.
    pub fn retry_delay(&self, req: &GPURequest) -> Duration {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        backoff::delay(self.settings.backoff_base, self.settings.backoff_max, *n)
    }

    /// Time left before `req`'s next health check is due, or `None` if it is due now: never
    /// checked by this replica, the interval has passed, or garbage collection asked for a
    /// verify (a new value of the verify-requested annotation) since the last check.
    /// Reconciles triggered by the request's own status writes therefore cost no provider call.
    pub fn health_check_wait(&self, req: &GPURequest) -> Option<Duration> {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        let requested = req.annotations().get(super::gc::VERIFY_ANNOTATION).cloned();
        let checks = self.health_checks.lock().unwrap_or_else(|e| e.into_inner());
        let (at, seen) = checks.get(&key)?;
        if *seen != requested {
            return None;
        }
        let wait = self.settings.health_interval.checked_sub(at.elapsed())?;
        (!wait.is_zero()).then_some(wait)
    }

    /// Records that `req`'s instance was just verified.
    pub fn health_checked(&self, req: &GPURequest) {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        let requested = req.annotations().get(super::gc::VERIFY_ANNOTATION).cloned();
        self.health_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (std::time::Instant::now(), requested));
    }

    /// Forgets everything kept in memory about `req` (it is gone or no longer ready).
    pub fn forget(&self, req: &GPURequest) {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.health_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// The cached Tailscale client if it was built from Secret version `version`.
    pub fn tailscale_client(&self, version: &str) -> Option<TailscaleClient> {
        let cached = self.tailscale.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(v, _)| v == version)
            .map(|(_, c)| c.clone())
    }

    /// Remembers the Tailscale client built from Secret version `version`.
    pub fn cache_tailscale_client(&self, version: String, client: TailscaleClient) {
        *self.tailscale.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, client));
    }

    /// Forgets `req`'s failures after progress.
    pub fn reset_failures(&self, req: &GPURequest) {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}
