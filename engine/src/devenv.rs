//! A whole tgp installation in one process, for the demo, the end-to-end tests and benchmarks:
//! the development API server, one or more simulated clouds, GPUProviders using the embedded
//! mock plugin, and the real operator (controllers, leader election, garbage collection)
//! talking to the API server through an ordinary kubeconfig.
//!
//! Nothing here is a shortcut around production code: the operator is `operator::run`, the
//! plugin runs in the same sandbox, and the API server is reached over HTTP by kube-rs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use tgp_apiserver::DevApiServer;
use tgp_cloudsim::{MockCloud, MockCloudConfig};

use crate::crd::gpuprovider::{Credentials, GPUProviderSpec, ModuleSource, ProviderLimits};
use crate::crd::{GPUProvider, GPURequest};
use crate::embedded::MOCK_PLUGIN;
use crate::operator::{self, LeaderConfig, Settings};
use crate::plugins::{HostConfig, PluginHost};

/// Namespace of the operator's Secrets and Lease in the development environment.
pub const NAMESPACE: &str = "tgp-system";

/// One simulated cloud and the GPUProvider that points at it.
pub struct CloudSpec {
    pub name: String,
    pub config: MockCloudConfig,
    pub priority: i32,
}

impl CloudSpec {
    pub fn new(name: &str, config: MockCloudConfig) -> Self {
        CloudSpec { name: name.to_string(), config, priority: 0 }
    }
}

/// A running development environment. Dropping it stops everything.
pub struct DevEnv {
    pub api: DevApiServer,
    pub client: Client,
    pub clouds: Vec<(String, MockCloud)>,
    pub host: Arc<PluginHost>,
    pub settings: Settings,
    plugin_path: PathBuf,
    operators: Vec<Replica>,
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
        let api = DevApiServer::start().await?;
        api.register_crd(&GPURequest::crd())?;
        api.register_crd(&GPUProvider::crd())?;
        let client = api.client().await?;
        let plugin_dir = std::env::temp_dir().join(format!("tgp-devenv-{}-{}", std::process::id(), api.addr().port()));
        std::fs::create_dir_all(&plugin_dir)?;
        let plugin_path = plugin_dir.join("tgp_provider_mock.wasm");
        std::fs::write(&plugin_path, MOCK_PLUGIN)?;
        let cache_dir = plugin_dir.join("cache");
        let host = Arc::new(PluginHost::new(HostConfig { cache_dir: Some(cache_dir), ..HostConfig::default() })?);
        let mut env = DevEnv { api, client, clouds: Vec::new(), host, settings, plugin_path, operators: Vec::new() };
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
            "metadata": {"name": format!("{}-credentials", spec.name), "namespace": NAMESPACE},
            "stringData": {"api-key": api_key}
        }))?;
        secrets.create(&PostParams::default(), &secret).await?;
        let provider = GPUProvider::new(
            &spec.name,
            GPUProviderSpec {
                module: ModuleSource { path: Some(self.plugin_path.display().to_string()), digest: None },
                credentials: Some(Credentials {
                    secret_name: format!("{}-credentials", spec.name),
                    keys: [("api_key".to_string(), "api-key".to_string())].into(),
                }),
                allowed_hosts: vec![cloud.base_url()],
                config: [("base_url".to_string(), cloud.base_url()), ("name".to_string(), spec.name.clone())].into(),
                limits: ProviderLimits::default(),
                priority: spec.priority,
                enabled: true,
            },
        );
        Api::<GPUProvider>::all(self.client.clone()).create(&PostParams::default(), &provider).await?;
        self.clouds.push((spec.name, cloud));
        Ok(())
    }

    /// The simulated cloud named `name`.
    pub fn cloud(&self, name: &str) -> &MockCloud {
        &self.clouds.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no cloud {name}")).1
    }

    /// Starts an operator replica with this identity (leader election decides if it acts).
    pub async fn start_operator(&mut self, identity: &str) -> anyhow::Result<()> {
        let client = self.api.client().await?;
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
        self.operators.push(Replica { identity: identity.to_string(), stop: Some(stop), task });
        Ok(())
    }

    /// Waits until every GPUProvider reports Loaded=True (the operator must be running).
    pub async fn wait_providers_loaded(&self, timeout: Duration) -> anyhow::Result<()> {
        let api: Api<GPUProvider> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let all = api.list(&Default::default()).await?.items;
            let loaded = all.iter().filter(|p| {
                p.status.as_ref().is_some_and(|s| crate::crd::conditions::is_true(&s.conditions, "Loaded"))
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
        let req: GPURequest = serde_yaml::from_str(text)?;
        Ok(self.requests().create(&PostParams::default(), &req).await?)
    }

    /// Polls `name` until `done` holds, or fails after `timeout` with the last state seen.
    pub async fn wait_for(&self, name: &str, timeout: Duration, done: impl Fn(&GPURequest) -> bool) -> anyhow::Result<GPURequest> {
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
                let status = last.and_then(|r| r.status).map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                anyhow::bail!("timed out after {timeout:?} waiting for {name}; last status: {}", status.unwrap_or_else(|| "none".into()));
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
        self.requests().delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// Live instances across every cloud.
    pub fn live_instances(&self) -> usize {
        self.clouds.iter().map(|(_, c)| c.live_instances().len()).sum()
    }

    /// Names of GPURequests that exist.
    pub async fn request_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.requests().list(&Default::default()).await?.items.iter().map(|r| r.name_any()).collect())
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
    }
}
