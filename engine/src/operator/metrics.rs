//! What the operator did, as Prometheus metrics (prometheus-client, text exposition format).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub orphans_terminated: Counter,
    pub gc_list_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tgp");
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let orphans_terminated = Counter::default();
        let gc_list_failures = Counter::default();
        registry.register(
            "reconciles",
            "GPURequest reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "GPURequest reconciles that failed and will be retried",
            reconcile_errors.clone(),
        );
        registry.register(
            "orphans_terminated",
            "Owned instances with no request, terminated by garbage collection",
            orphans_terminated.clone(),
        );
        registry.register(
            "gc_list_failures",
            "Provider listings that failed during garbage collection",
            gc_list_failures.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            orphans_terminated,
            gc_list_failures,
        }
    }
}

impl Metrics {
    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
