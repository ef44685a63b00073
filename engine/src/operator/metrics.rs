//! What the operator did, as Prometheus metrics (prometheus-client, text exposition format).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub orphans_terminated: Counter,
    pub gc_list_failures: Counter,
    /// Modules swapped in (first load, new revision, rollback), by `provider`.
    pub module_swaps: Family<Vec<(String, String)>, Counter>,
    /// Module loads refused, by `provider` and `reason`: once per refused spec, not per retry.
    pub module_refusals: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tgp");
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let orphans_terminated = Counter::default();
        let gc_list_failures = Counter::default();
        let module_swaps = Family::<Vec<(String, String)>, Counter>::default();
        let module_refusals = Family::<Vec<(String, String)>, Counter>::default();
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
        registry.register(
            "module_swaps",
            "Provider modules swapped in (first load, new revision or rollback), by provider",
            module_swaps.clone(),
        );
        registry.register(
            "module_refusals",
            "Provider module loads refused (the active revision kept serving), by provider and reason",
            module_refusals.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            orphans_terminated,
            gc_list_failures,
            module_swaps,
            module_refusals,
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
