//! Helpers for the hot-swap tests: the development environment with the real GPUProvider
//! controller run directly (so the test holds the provider registry and can call providers
//! the way the request lifecycle does), operator restarts against the same compile cache (and
//! with another `--module-ca-file`), the module files the tests publish, and a steady load
//! generator.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use tgp::crd::GPUProvider;
use tgp::crd::conditions::Condition;
use tgp::devenv::{self, CloudSpec, DevEnv, NAMESPACE};
use tgp::modules::ModuleCaBundle;
use tgp::operator::{self, Ctx, ProviderRegistry};
use tgp::plugins::{GpuSpec, HostConfig, Operation, PluginHost};
use tgp_cloudsim::{MockCloudConfig, OfferSpec};

/// Deadline for anything the operator must do (the machine is slow and shared).
pub const T: Duration = Duration::from_secs(60);

/// The mock provider as the development environment runs it (version 0.1.0).
pub fn mock_v1() -> Vec<u8> {
    tgp::embedded::MOCK_PLUGIN.to_vec()
}

/// The same provider built to report another version (`tests/e2e/build.rs`).
pub fn mock_v2() -> Vec<u8> {
    std::fs::read(env!("TGP_TEST_MOCK_V2")).expect("the mock v2 component is built")
}

pub const V1: &str = "0.1.0";
pub const V2: &str = "0.1.1-hotswap";

/// A test plugin component from `target/wasm`.
pub fn test_plugin(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("TGP_TEST_PLUGIN_DIR")).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    tgp::modules::ModuleDigest::of(bytes).to_string()
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A cloud selling one H100 offer, answering quotes after `quote_latency`.
pub fn cloud(quote_latency: Duration) -> MockCloudConfig {
    let mut cfg = MockCloudConfig {
        offers: vec![OfferSpec::new(
            "H100-SXM",
            1,
            "us-east-1",
            1_000_000,
            false,
            10,
        )],
        ..MockCloudConfig::default()
    };
    if !quote_latency.is_zero() {
        cfg = cfg.with_faults(tgp_cloudsim::Faults::none().latency("offers", quote_latency));
    }
    cfg
}

/// The development environment, an operator's GPUProvider controller (run without leader
/// election), and the registry it fills.
pub struct Harness {
    pub env: DevEnv,
    pub registry: Arc<ProviderRegistry>,
    pub host: Arc<PluginHost>,
    /// The metrics of the running controllers (new ones after a restart).
    pub metrics: Arc<tgp::operator::metrics::Metrics>,
    cache_dir: tempfile::TempDir,
    controllers: Option<Controllers>,
}

impl Harness {
    /// Starts the environment (one GPUProvider per cloud, each on the mock v1 from a path) and
    /// the controllers, and waits until every provider is loaded.
    pub async fn start(clouds: Vec<CloudSpec>) -> Harness {
        Self::start_with_module_ca(clouds, None).await
    }

    /// [`Harness::start`] with an operator whose URL and OCI module sources also trust `module_ca`
    /// (what `tgp run --module-ca-file` gives it; see [`module_ca_file`]).
    pub async fn start_with_module_ca(
        clouds: Vec<CloudSpec>,
        module_ca: Option<ModuleCaBundle>,
    ) -> Harness {
        init_tracing();
        let settings = operator::Settings {
            module_ca,
            ..devenv::fast_settings()
        };
        let env = DevEnv::start(clouds, settings)
            .await
            .expect("dev environment starts");
        let cache_dir = tempfile::tempdir().expect("cache dir");
        let host = new_host(&cache_dir);
        let mut h = Harness {
            env,
            registry: ProviderRegistry::new(),
            host,
            metrics: Arc::default(),
            cache_dir,
            controllers: None,
        };
        h.start_controllers();
        h.env
            .wait_providers_loaded(T)
            .await
            .expect("providers load");
        h
    }

    fn start_controllers(&mut self) {
        self.registry = ProviderRegistry::new();
        let ctx = Arc::new(Ctx::new(
            self.env.client.clone(),
            self.host.clone(),
            self.registry.clone(),
            self.env.settings.clone(),
            NAMESPACE.to_string(),
            "hotswap-test".to_string(),
        ));
        self.metrics = ctx.metrics.clone();
        self.controllers = Some(Controllers(tokio::spawn(operator::run_controllers(ctx))));
    }

    /// Stops the controllers and starts them again as a new operator process would: a new
    /// plugin host (same compile cache directory) and an empty registry.
    pub async fn restart_operator(&mut self) {
        if let Some(mut task) = self.controllers.take() {
            task.0.abort();
            let _ = (&mut task.0).await;
        }
        self.host = new_host(&self.cache_dir);
        self.start_controllers();
    }

    /// [`Harness::restart_operator`], the new operator trusting `module_ca` for URL and OCI
    /// sources.
    pub async fn restart_operator_with_module_ca(&mut self, module_ca: Option<ModuleCaBundle>) {
        self.env.settings.module_ca = module_ca;
        self.restart_operator().await;
    }

    pub fn providers(&self) -> Api<GPUProvider> {
        Api::all(self.env.client.clone())
    }

    pub async fn provider(&self, name: &str) -> GPUProvider {
        self.providers()
            .get(name)
            .await
            .expect("GPUProvider exists")
    }

    /// Merge-patches `spec` of GPUProvider `name`; returns its new generation.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> i64 {
        let patched = self
            .providers()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch GPUProvider");
        patched.metadata.generation.unwrap_or_default()
    }

    /// Replaces `spec.module` of GPUProvider `name` with `module`: every field it does not set
    /// is cleared, nested ones included (a merge patch alone would keep, say, an earlier
    /// `oci.plainHttp`).
    pub async fn set_module(&self, name: &str, module: serde_json::Value) -> i64 {
        self.try_set_module(name, module)
            .await
            .expect("patch GPUProvider")
    }

    /// [`Harness::set_module`], returning the API server's refusal instead of panicking (for
    /// specs the CRD's rules refuse at admission).
    pub async fn try_set_module(
        &self,
        name: &str,
        module: serde_json::Value,
    ) -> Result<i64, kube::Error> {
        let current = serde_json::to_value(&self.provider(name).await.spec.module)
            .expect("spec.module serialises");
        let m = replacing_merge_patch(&current, &module);
        let patched = self
            .providers()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "module": m } })),
            )
            .await?;
        Ok(patched.metadata.generation.unwrap_or_default())
    }

    /// Turns the development API server's schema and CEL checks on or off (off: specs reach the
    /// controller as on an API server without them).
    pub fn set_schema_checks(&self, enabled: bool) {
        self.env
            .api
            .as_ref()
            .expect("the hot-swap tests run on the development API server")
            .set_schema_checks(enabled);
    }

    /// Waits until `name`'s `Loaded` condition reflects generation `generation` (or later) and
    /// satisfies `done`; returns the resource.
    pub async fn wait_loaded(
        &self,
        name: &str,
        generation: i64,
        done: impl Fn(&Condition) -> bool,
    ) -> GPUProvider {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let gp = self.provider(name).await;
            if let Some(c) = loaded(&gp)
                && c.observed_generation.unwrap_or_default() >= generation
                && done(c)
            {
                return gp;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}'s Loaded condition at generation {generation}: {}",
                serde_json::to_string_pretty(&gp.status).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `Loaded` is False with `reason` for generation `generation`.
    pub async fn wait_refused(&self, name: &str, generation: i64, reason: &str) -> GPUProvider {
        self.wait_loaded(name, generation, |c| {
            c.status == "False" && c.reason == reason
        })
        .await
    }

    /// Waits until `Loaded` is True for generation `generation`.
    pub async fn wait_ready(&self, name: &str, generation: i64) -> GPUProvider {
        self.wait_loaded(name, generation, |c| c.status == "True")
            .await
    }

    /// One quote through the registry, as the request lifecycle makes it; the version that
    /// answered.
    pub async fn quote(&self, name: &str) -> Result<String, String> {
        call_quote(&self.registry, name).await.1
    }

    pub async fn shutdown(mut self) {
        if let Some(mut task) = self.controllers.take() {
            task.0.abort();
            let _ = (&mut task.0).await;
        }
        self.env.shutdown().await;
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into exactly `new`: fields of `old` that
/// `new` does not have are set to null, at every depth.
fn replacing_merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    match (old.as_object(), new.as_object()) {
        (Some(old), Some(new)) => {
            let mut patch = serde_json::Map::new();
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), serde_json::Value::Null);
            }
            for (key, value) in new {
                let entry = match old.get(key) {
                    Some(before) => replacing_merge_patch(before, value),
                    None => value.clone(),
                };
                patch.insert(key.clone(), entry);
            }
            serde_json::Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// Aborts the controllers when dropped (a test that panics leaves nothing running).
struct Controllers(tokio::task::JoinHandle<()>);

impl Drop for Controllers {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn new_host(cache_dir: &tempfile::TempDir) -> Arc<PluginHost> {
    Arc::new(
        PluginHost::new(HostConfig {
            cache_dir: Some(cache_dir.path().to_path_buf()),
            ..HostConfig::default()
        })
        .expect("plugin host"),
    )
}

/// The CA bundle `tgp run --module-ca-file FILE` gives the operator, with `pem` written to FILE
/// (kept in `dir`) and read the way the flag reads it at start-up.
pub fn module_ca_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> ModuleCaBundle {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("write the CA bundle");
    ModuleCaBundle::from_pem_file(&path).expect("the bundle is usable")
}

/// The `Loaded` condition.
pub fn loaded(gp: &GPUProvider) -> Option<&Condition> {
    gp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Loaded")
}

pub fn dump(gp: &GPUProvider) -> String {
    serde_json::to_string_pretty(&gp.status).unwrap_or_default()
}

fn spec() -> GpuSpec {
    GpuSpec {
        gpu_type: "H100-SXM".into(),
        count: 1,
        regions: vec![],
        spot: false,
        max_price_per_hour: None,
        aliases: Vec::new(),
    }
}

/// One quote call: (the version of the plugin that took it, its outcome).
async fn call_quote(registry: &ProviderRegistry, name: &str) -> (String, Result<String, String>) {
    let Some(slot) = registry.get(name) else {
        return (String::new(), Err(format!("provider {name} is not loaded")));
    };
    let version = slot.plugin.info().version.clone();
    let result = slot
        .call(Operation::Quote, slot.plugin.quote(&spec()))
        .await;
    match result {
        Ok(offers) if !offers.is_empty() => (version.clone(), Ok(version)),
        Ok(_) => (version, Err("no offers".into())),
        Err(e) => (version, Err(e.to_string())),
    }
}

/// One call made by the load generator.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub started: Instant,
    pub finished: Instant,
    /// Version of the plugin the call went to.
    pub version: String,
    pub result: Result<String, String>,
}

/// Calls `name` at `per_second` (each call on its own task, so slow calls overlap) until
/// `stop` is set, then waits for the calls in flight; returns every call.
pub async fn load(
    registry: Arc<ProviderRegistry>,
    name: &str,
    per_second: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<CallOutcome> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    let mut tasks = Vec::new();
    loop {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        let registry = registry.clone();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (version, result) = call_quote(&registry, &name).await;
            CallOutcome {
                started,
                finished: Instant::now(),
                version,
                result,
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("call task"));
    }
    out
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
