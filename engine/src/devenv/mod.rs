//! A whole tgp installation in one process, for the demo, the end-to-end tests and benchmarks:
//! the development API server, one or more simulated clouds, GPUProviders using the embedded
//! mock plugin, and the real operator (controllers, leader election, garbage collection)
//! talking to the API server through an ordinary kubeconfig.
//!
//! Nothing here is a shortcut around production code: the operator is `operator::run`, the
//! plugin runs in the same sandbox, and the API server is reached over HTTP by kube-rs.
//!
//! With `TGP_E2E_KUBECONFIG` set, a real cluster replaces the development API server: the CRDs
//! are installed there, and everything the environment creates carries the label
//! `tgp.io/e2e=true` so that a later run can clean up what an earlier one left. Use a disposable
//! cluster: the in-process operator reconciles every GPURequest it sees.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use tgp_apiserver::DevApiServer;
use tgp_cloudsim::{MockCloud, MockCloudConfig};

pub mod talos;

pub use talos::{JoinTiming, TalosEnv};

use crate::crd::gpuprovider::{Credentials, GPUProviderSpec, ModuleSource, ProviderLimits};
use crate::crd::{GPUProvider, GPURequest};
use crate::embedded::MOCK_PLUGIN;
use crate::operator::settings::BootstrapSettings;
use crate::operator::{self, LeaderConfig, Settings};
use crate::plugins::{HostConfig, PluginHost};

/// Namespace of the operator's Secrets and Lease in the development environment.
pub const NAMESPACE: &str = "tgp-system";
/// Label on everything a development environment creates.
pub const E2E_LABEL: &str = "tgp.io/e2e";
/// Environment variable naming a real cluster's kubeconfig for the end-to-end suite.
pub const REAL_CLUSTER_ENV: &str = "TGP_E2E_KUBECONFIG";

/// One simulated cloud and the GPUProvider that points at it.
pub struct CloudSpec {
    pub name: String,
    pub config: MockCloudConfig,
    pub priority: i32,
}

impl CloudSpec {
    pub fn new(name: &str, config: MockCloudConfig) -> Self {
        CloudSpec {
            name: name.to_string(),
            config,
            priority: 0,
        }
    }
}

/// A running development environment. Dropping it stops everything.
pub struct DevEnv {
    /// The development API server; `None` when running against a real cluster.
    pub api: Option<DevApiServer>,
    pub client: Client,
    pub clouds: Vec<(String, MockCloud)>,
    pub host: Arc<PluginHost>,
    pub settings: Settings,
    plugin_path: PathBuf,
    operators: Vec<Replica>,
    /// Talos secrets, Tailscale and the simulated join ([`DevEnv::enable_talos`]).
    talos: Option<TalosEnv>,
}

/// One running operator replica.
struct Replica {
    identity: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl DevEnv {
    /// Starts the API server and the clouds, registers the CRDs, creates one Secret and one
    /// GPUProvider per cloud. The operator is started separately ([`DevEnv::start_operator`]).
    pub async fn start(clouds: Vec<CloudSpec>, settings: Settings) -> anyhow::Result<DevEnv> {
        let (api, client) = match std::env::var(REAL_CLUSTER_ENV) {
            Ok(path) if !path.is_empty() => (None, real_cluster(&path).await?),
            _ => {
                let api = DevApiServer::start().await?;
                api.register_crd(&GPURequest::crd())?;
                api.register_crd(&GPUProvider::crd())?;
                let client = api.client().await?;
                (Some(api), client)
            }
        };
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let plugin_dir =
            std::env::temp_dir().join(format!("tgp-devenv-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&plugin_dir)?;
        let plugin_path = plugin_dir.join("tgp_provider_mock.wasm");
        std::fs::write(&plugin_path, MOCK_PLUGIN)?;
        let cache_dir = plugin_dir.join("cache");
        let host = Arc::new(PluginHost::new(HostConfig {
            cache_dir: Some(cache_dir),
            ..HostConfig::default()
        })?);
        let mut env = DevEnv {
            api,
            client,
            clouds: Vec::new(),
            host,
            settings,
            plugin_path,
            operators: Vec::new(),
            talos: None,
        };
        for spec in clouds {
            env.add_cloud(spec).await?;
        }
        Ok(env)
    }

    /// Starts one more simulated cloud with its Secret and GPUProvider.
    pub async fn add_cloud(&mut self, spec: CloudSpec) -> anyhow::Result<()> {
        let api_key = spec.config.api_key.clone();
        let cloud = MockCloud::start(spec.config).await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{}-credentials", spec.name), "namespace": NAMESPACE, "labels": {E2E_LABEL: "true"}},
            "stringData": {"api-key": api_key}
        }))?;
        let apply = PatchParams::apply("tgp-e2e").force();
        secrets
            .patch(
                &format!("{}-credentials", spec.name),
                &apply,
                &Patch::Apply(&secret),
            )
            .await?;
        let mut provider = GPUProvider::new(
            &spec.name,
            GPUProviderSpec {
                module: ModuleSource {
                    path: Some(self.plugin_path.display().to_string()),
                    digest: None,
                    ..ModuleSource::default()
                },
                credentials: Some(Credentials {
                    secret_name: format!("{}-credentials", spec.name),
                    keys: [("api_key".to_string(), "api-key".to_string())].into(),
                    auth: None,
                }),
                allowed_hosts: vec![cloud.base_url()],
                config: [
                    ("base_url".to_string(), cloud.base_url()),
                    ("name".to_string(), spec.name.clone()),
                ]
                .into(),
                limits: ProviderLimits::default(),
                priority: spec.priority,
                enabled: true,
                registration_timeout: None,
            },
        );
        provider.metadata.labels = Some([(E2E_LABEL.to_string(), "true".to_string())].into());
        Api::<GPUProvider>::all(self.client.clone())
            .patch(&spec.name, &apply, &Patch::Apply(&provider))
            .await?;
        if let Some(t) = &self.talos {
            talos::watch_cloud(&t.join, &spec.name, &cloud);
        }
        self.clouds.push((spec.name, cloud));
        Ok(())
    }

    /// Adds a GPUProvider running the plugin at `module` against `base_url` with API key
    /// `api_key` (for the real RunPod, Lambda or Vast plugins against their simulators; the
    /// caller owns the simulator).
    pub async fn add_provider(
        &self,
        name: &str,
        module: &std::path::Path,
        base_url: &str,
        api_key: &str,
    ) -> anyhow::Result<()> {
        let apply = PatchParams::apply("tgp-e2e").force();
        let secret_name = format!("{name}-credentials");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": NAMESPACE, "labels": {E2E_LABEL: "true"}},
            "stringData": {"api-key": api_key}
        }))?;
        Api::<Secret>::namespaced(self.client.clone(), NAMESPACE)
            .patch(&secret_name, &apply, &Patch::Apply(&secret))
            .await?;
        let mut provider = GPUProvider::new(
            name,
            GPUProviderSpec {
                module: ModuleSource {
                    path: Some(module.display().to_string()),
                    ..ModuleSource::default()
                },
                credentials: Some(Credentials {
                    secret_name,
                    keys: [("api_key".to_string(), "api-key".to_string())].into(),
                    auth: None,
                }),
                allowed_hosts: vec![base_url.to_string()],
                config: [("base_url".to_string(), base_url.to_string())].into(),
                limits: ProviderLimits::default(),
                priority: 0,
                enabled: true,
                registration_timeout: None,
            },
        );
        provider.metadata.labels = Some([(E2E_LABEL.to_string(), "true".to_string())].into());
        Api::<GPUProvider>::all(self.client.clone())
            .patch(name, &apply, &Patch::Apply(&provider))
            .await?;
        Ok(())
    }

    /// The simulated cloud named `name`.
    pub fn cloud(&self, name: &str) -> &MockCloud {
        &self
            .clouds
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no cloud {name}"))
            .1
    }

    /// Starts an operator replica with this identity (leader election decides if it acts).
    pub async fn start_operator(&mut self, identity: &str) -> anyhow::Result<()> {
        // Each replica gets its own connections to the development API server.
        let client = match &self.api {
            Some(api) => api.client().await?,
            None => self.client.clone(),
        };
        let leader = LeaderConfig {
            lease_name: "tgp-leader".into(),
            namespace: NAMESPACE.into(),
            identity: identity.to_string(),
            lease_seconds: 3,
        };
        let host = self.host.clone();
        let settings = self.settings.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = operator::run(client, host, settings, leader, shutdown).await {
                tracing::error!("operator stopped: {e:#}");
            }
        });
        self.operators.push(Replica {
            identity: identity.to_string(),
            stop: Some(stop),
            task,
        });
        Ok(())
    }

    /// Waits until every GPUProvider reports Loaded=True (the operator must be running).
    pub async fn wait_providers_loaded(&self, timeout: Duration) -> anyhow::Result<()> {
        let api: Api<GPUProvider> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let all = api.list(&Default::default()).await?.items;
            let loaded = all.iter().filter(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| crate::crd::conditions::is_true(&s.conditions, "Loaded"))
            });
            if loaded.count() == all.len() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("timed out after {timeout:?} waiting for the GPUProviders to load");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the operators (letting them release the lease), then the API server and clouds.
    pub async fn shutdown(mut self) {
        for mut replica in self.operators.drain(..) {
            if let Some(stop) = replica.stop.take() {
                let _ = stop.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut replica.task).await;
        }
    }

    /// Stops the operator replica `identity` cleanly (it releases the lease).
    pub async fn stop_operator(&mut self, identity: &str) {
        if let Some(pos) = self.operators.iter().position(|r| r.identity == identity) {
            let mut replica = self.operators.remove(pos);
            if let Some(stop) = replica.stop.take() {
                let _ = stop.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut replica.task).await;
        }
    }

    /// Kills the operator replica `identity` at once, as a crash would (no lease release).
    pub fn kill_operator(&mut self, identity: &str) {
        self.operators.retain(|r| {
            if r.identity == identity {
                r.task.abort();
                false
            } else {
                true
            }
        });
    }

    pub fn requests(&self) -> Api<GPURequest> {
        Api::all(self.client.clone())
    }

    /// Creates a GPURequest from YAML or JSON text.
    pub async fn create_request(&self, text: &str) -> anyhow::Result<GPURequest> {
        let mut req: GPURequest = serde_yaml::from_str(text)?;
        req.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(E2E_LABEL.to_string(), "true".to_string());
        Ok(self.requests().create(&PostParams::default(), &req).await?)
    }

    /// Polls `name` until `done` holds, or fails after `timeout` with the last state seen.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&GPURequest) -> bool,
    ) -> anyhow::Result<GPURequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(r) = self.requests().get_opt(name).await? {
                if done(&r) {
                    return Ok(r);
                }
                last = Some(r);
            }
            if tokio::time::Instant::now() >= deadline {
                let status = last
                    .and_then(|r| r.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {name}; last status: {}",
                    status.unwrap_or_else(|| "none".into())
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls until `name` no longer exists.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.requests().get_opt(name).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("timed out after {timeout:?} waiting for {name} to be deleted");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Deletes a request (the finalizer keeps it until its instance is gone).
    pub async fn delete_request(&self, name: &str) -> anyhow::Result<()> {
        self.requests()
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Live instances across every cloud.
    pub fn live_instances(&self) -> usize {
        self.clouds
            .iter()
            .map(|(_, c)| c.live_instances().len())
            .sum()
    }

    /// Names of GPURequests that exist.
    pub async fn request_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .requests()
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect())
    }
}

impl Drop for DevEnv {
    fn drop(&mut self) {
        for replica in &self.operators {
            replica.task.abort();
        }
        if let Some(dir) = self.plugin_path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A real cluster from `kubeconfig`: installs the CRDs, makes sure the namespace exists, and
/// removes what earlier end-to-end runs left (only objects labelled `tgp.io/e2e=true`).
async fn real_cluster(kubeconfig: &str) -> anyhow::Result<Client> {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let client =
        Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
    let apply = PatchParams::apply("tgp-e2e").force();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [GPURequest::crd(), GPUProvider::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &apply, &Patch::Apply(&crd)).await?;
        let established = kube::runtime::wait::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(crds.clone(), &name, established),
        )
        .await??;
    }
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .patch(NAMESPACE, &apply, &Patch::Apply(&ns))
        .await?;
    let labelled = kube::api::ListParams::default().labels(&format!("{E2E_LABEL}=true"));
    let requests: Api<GPURequest> = Api::all(client.clone());
    for r in requests.list(&labelled).await?.items {
        let name = r.name_any();
        // Leftovers of an earlier run: drop the finalizer (their simulated clouds are gone).
        let _ = requests
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await;
        let _ = requests.delete(&name, &DeleteParams::default()).await;
    }
    let providers: Api<GPUProvider> = Api::all(client.clone());
    for p in providers.list(&labelled).await?.items {
        let _ = providers
            .delete(&p.name_any(), &DeleteParams::default())
            .await;
    }
    Ok(client)
}

/// Settings for fast, deterministic runs against simulators: short intervals and grace periods.
pub fn fast_settings() -> Settings {
    Settings {
        cluster_id: "dev".into(),
        health_interval: Duration::from_millis(500),
        verify_interval: Duration::from_millis(100),
        not_found_grace: Duration::from_millis(800),
        boot_timeout: Duration::from_secs(60),
        min_billable: Duration::from_secs(3600),
        gc_interval: Duration::from_millis(500),
        gc_grace: Duration::from_secs(1),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        terminate_interval: Duration::from_millis(100),
        max_attempts: 8,
        bootstrap: BootstrapSettings {
            registration_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(5),
            ..BootstrapSettings::default()
        },
        module_ca: None,
        metrics_addr: None,
    }
}
