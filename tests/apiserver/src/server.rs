//! [`DevApiServer`]: the running server, its kubeconfig, and the test-facing API.
//!
//! Exists so tests and the demo get a real HTTP endpoint on 127.0.0.1 plus an ordinary
//! kubeconfig, letting production code build its `kube::Client` the normal way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::hooks::{Fault, Hooks, RecordedRequest};
use crate::http::{AppState, router};
use crate::patch::PatchKind;
use crate::registry::ResourceType;
use crate::schema::FieldValidation;
use crate::store::{Part, Store, WriteOptions};

/// Fake bearer token written into the kubeconfig (the server does not check it).
pub const FAKE_TOKEN: &str = "tgp-dev-token";

/// An in-memory Kubernetes API server listening on 127.0.0.1.
pub struct DevApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    hooks: Arc<Hooks>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl DevApiServer {
    /// Start on an ephemeral port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// Start on a given port (0 = ephemeral).
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::new());
        let hooks = Arc::new(Hooks::default());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            store: store.clone(),
            hooks: hooks.clone(),
            shutdown: shutdown_rx.clone(),
            server_address: addr.to_string(),
        };
        let app = router(state);
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::error!(error = %e, "dev apiserver stopped");
            }
        });
        Ok(DevApiServer {
            addr,
            store,
            hooks,
            shutdown_tx,
            task: Some(task),
        })
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An ordinary kubeconfig pointing at this server (one cluster, user, context).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.base_url())
    }

    /// Write the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        std::fs::write(path.as_ref(), self.kubeconfig_yaml())
            .with_context(|| format!("writing {}", path.as_ref().display()))
    }

    /// A `kube::Client` built from the kubeconfig through `Config::from_custom_kubeconfig`.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.config().await?)?)
    }

    /// The `kube::Config` loaded from the kubeconfig, for tests that tweak it
    /// (e.g. `default_retry = false`: kube 5 retries 429/503/504 up to 15 times).
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())?;
        Ok(
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?,
        )
    }

    /// The store, for direct reads and writes from tests.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Turns the schema and CEL checks of custom resources on or off (see
    /// [`Store::set_schema_checks`]).
    pub fn set_schema_checks(&self, enabled: bool) {
        self.store.set_schema_checks(enabled);
    }

    /// Turns the pruning of unknown fields of custom resources on or off (see
    /// [`Store::set_pruning`]; independent of [`DevApiServer::set_schema_checks`]).
    pub fn set_pruning(&self, enabled: bool) {
        self.store.set_pruning(enabled);
    }

    /// Register a CRD (same effect as POSTing it).
    pub fn register_crd(&self, crd: &CustomResourceDefinition) -> Result<(), ApiError> {
        self.store.register_crd(crd).map(|_| ())
    }

    /// Every request handled so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.hooks.requests()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.hooks.clear_requests()
    }

    /// Inject a failure for upcoming requests.
    pub fn inject(&self, fault: Fault) {
        self.hooks.inject(fault)
    }

    /// Remove pending injected failures.
    pub fn clear_faults(&self) {
        self.hooks.clear_faults()
    }

    /// Get an object by resource plural (any group; core wins), namespace (`""` if cluster-scoped) and name.
    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
        let rt = self.resource(plural)?;
        self.store.get(&rt, ns, name)
    }

    /// Create-or-merge an object directly (a server-side apply by field manager `test`,
    /// forced). The object's `apiVersion`/`kind` select the resource. Fields its CRD's schema
    /// does not specify are pruned silently, as from any client.
    pub fn apply(&self, obj: &Value) -> Result<Value, ApiError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("kind is required".into()))?;
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let rt = self
            .store
            .resource_for_kind(group, kind)
            .ok_or_else(|| ApiError::NotFound(format!("no resource for {api_version} {kind}")))?;
        let name = crate::meta::meta_str(obj, "name")
            .ok_or_else(|| ApiError::BadRequest("metadata.name is required".into()))?
            .to_string();
        let ns = if rt.namespaced {
            crate::meta::meta_str(obj, "namespace")
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let opts = WriteOptions {
            field_manager: Some("test".into()),
            dry_run: false,
            force: true,
            version: Some(
                api_version
                    .rsplit_once('/')
                    .map_or(api_version, |(_, v)| v)
                    .to_string(),
            ),
            field_validation: FieldValidation::Ignore,
        };
        let out = self
            .store
            .patch(&rt, &ns, &name, PatchKind::Apply, obj, Part::Main, &opts)?;
        if rt.status_subresource && obj.get("status").is_some() {
            return self
                .store
                .patch(&rt, &ns, &name, PatchKind::Apply, obj, Part::Status, &opts)
                .map(|w| w.object);
        }
        Ok(out.object)
    }

    fn resource(&self, plural: &str) -> Result<ResourceType, ApiError> {
        self.store
            .registry()
            .by_plural(plural)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("unknown resource {plural}")))
    }

    /// Stop serving; open watches end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for DevApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// Kubeconfig YAML for a server URL.
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tgp-dev
  cluster:
    server: {server}
users:
- name: tgp-dev
  user:
    token: {FAKE_TOKEN}
contexts:
- name: tgp-dev
  context:
    cluster: tgp-dev
    user: tgp-dev
    namespace: default
current-context: tgp-dev
preferences: {{}}
"
    )
}
