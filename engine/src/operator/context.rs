//! What every reconcile shares: the API client, the provider registry, settings, the event
//! recorder and per-object retry counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

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
}

impl Ctx {
    pub fn new(client: Client, host: Arc<PluginHost>, registry: Arc<ProviderRegistry>, settings: Settings, namespace: String, identity: String) -> Self {
        let reporter = Reporter { controller: "tgp".into(), instance: Some(identity) };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry,
            host,
            settings,
            namespace,
            metrics: Arc::new(Metrics::default()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event about `req`; a failure to publish is logged, never fatal.
    pub async fn publish(&self, req: &GPURequest, note: Note) {
        let reference = req.object_ref(&());
        let event = Event { type_: note.type_, reason: note.reason, note: Some(note.message), action: "Reconcile".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(request = %req.name_any(), "publishing an event failed: {e}");
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

    /// Forgets `req`'s failures after progress.
    pub fn reset_failures(&self, req: &GPURequest) {
        let key = req.uid().unwrap_or_else(|| req.name_any());
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }
}
