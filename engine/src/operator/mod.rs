//! The operator: two controllers (GPURequest lifecycle, GPUProvider loading) and garbage
//! collection, run only while this replica holds the leader Lease.

pub mod backoff;
pub mod clock;
pub mod context;
pub mod duration;
pub mod gc;
pub mod lifecycle;
pub mod metrics;
pub mod naming;
pub mod provider_loader;
pub mod registry;
pub mod serve;
pub mod settings;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use k8s_openapi::api::core::v1::Node;

use crate::crd::{FINALIZER, GPUProvider, GPURequest};
use crate::plugins::PluginHost;

pub use context::Ctx;
pub use registry::ProviderRegistry;
pub use settings::Settings;

/// Why a reconcile did not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("provider {provider} is not loaded; cannot {what}")]
    ProviderMissing { provider: String, what: String },
    #[error("provider {provider}: {source}")]
    Provider {
        provider: String,
        source: registry::GatedError,
    },
    #[error("termination not confirmed yet: {0}")]
    TerminationPending(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

async fn reconcile_request(req: Arc<GPURequest>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    let api: Api<GPURequest> = Api::all(ctx.client.clone());
    let inner = ctx.clone();
    finalizer(&api, FINALIZER, req, |event| async move {
        match event {
            FinalizerEvent::Apply(r) => lifecycle::apply(r, inner).await,
            FinalizerEvent::Cleanup(r) => lifecycle::cleanup(r, inner).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

fn request_error_policy(req: Arc<GPURequest>, err: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.reconcile_errors.inc();
    let delay = ctx.retry_delay(&req);
    match err {
        // Expected while a deleted request's instance is going away.
        ReconcileError::TerminationPending(_) => {
            tracing::info!(request = %req.name_any(), retry_in = ?delay, "{err}")
        }
        _ => {
            tracing::warn!(request = %req.name_any(), retry_in = ?delay, "reconcile failed: {err}")
        }
    }
    Action::requeue(delay)
}

fn provider_error_policy(gp: Arc<GPUProvider>, err: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(provider = %gp.name_any(), "provider reconcile failed: {err}");
    Action::requeue(ctx.settings.backoff_base.max(Duration::from_secs(1)))
}

/// Runs both controllers and garbage collection until the returned future is dropped.
pub async fn run_controllers(ctx: Arc<Ctx>) {
    let loader = Arc::new(provider_loader::LoaderState::default());
    let providers = {
        let ctx = ctx.clone();
        let api: Api<GPUProvider> = Api::all(ctx.client.clone());
        Controller::new(api, watcher::Config::default())
            .run(
                move |gp, ctx| provider_loader::reconcile(gp, ctx, loader.clone()),
                provider_error_policy,
                ctx,
            )
            .for_each(|_| async {})
    };
    let requests = {
        let api: Api<GPURequest> = Api::all(ctx.client.clone());
        // Nodes tgp joined wake their request up as soon as they register or change (GPUs
        // becoming allocatable), instead of at the next poll.
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        Controller::new(api, watcher::Config::default())
            .with_config(kube::runtime::controller::Config::default().concurrency(32))
            .watches(
                nodes,
                watcher::Config::default().labels(lifecycle::join::REQUEST_LABEL),
                |node: Node| {
                    node.labels()
                        .get(lifecycle::join::REQUEST_LABEL)
                        .map(|name| ObjectRef::<GPURequest>::new(name))
                },
            )
            .run(reconcile_request, request_error_policy, ctx.clone())
            .for_each(|_| async {})
    };
    let gc = gc::run_forever(ctx.clone());
    tokio::join!(providers, requests, gc);
}

/// Aborts a spawned task when dropped: the controllers (and the lease task) must not outlive
/// `run`, whether it returns or its future is dropped (a cancelled or aborted caller).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How this replica takes part in leader election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_seconds: u64,
}

/// Runs the operator: waits for leadership, runs the controllers while leading, stops them the
/// moment leadership is lost, and waits again. When `shutdown` completes, the controllers stop
/// and the lease is released so another replica can take over at once.
pub async fn run(
    client: Client,
    host: Arc<PluginHost>,
    settings: Settings,
    leader: LeaderConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let registry = ProviderRegistry::new();
    let ctx = Arc::new(Ctx::new(
        client.clone(),
        host,
        registry,
        settings,
        leader.namespace.clone(),
        leader.identity.clone(),
    ));
    // Every replica serves its metrics and health, leader or not.
    let _metrics_server = match ctx.settings.metrics_addr {
        Some(addr) => {
            let (bound, task) = serve::serve(addr, ctx.metrics.clone())
                .await
                .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: cannot listen: {e}"))?;
            tracing::info!(%bound, "serving /metrics and /healthz");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &leader.lease_name)
        .with_namespace(&leader.namespace)
        .with_identity(&leader.identity)
        .with_duration(leader.lease_seconds)
        .with_grace((leader.lease_seconds / 3).max(1))
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    // Held in a guard so that dropping this future (a crash-like abort) also stops lease renewal
    // instead of leaving a zombie replica holding the lease.
    let mut lease_task = AbortOnDrop(lease_task);
    let mut running: Option<AbortOnDrop<()>> = None;
    tokio::pin!(shutdown);
    loop {
        let is_leader = *leading.borrow_and_update();
        match (is_leader, running.is_some()) {
            (true, false) => {
                tracing::info!(identity = %leader.identity, "became leader; starting controllers");
                running = Some(AbortOnDrop(tokio::spawn(run_controllers(ctx.clone()))));
            }
            (false, true) => {
                tracing::warn!(identity = %leader.identity, "lost leadership; stopping controllers");
                // Dropping the guard aborts the controllers.
                running.take();
            }
            _ => {}
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = &mut shutdown => {
                tracing::info!(identity = %leader.identity, "shutting down; releasing the lease");
                break;
            }
        }
    }
    if let Some(mut task) = running.take() {
        task.0.abort();
        let _ = (&mut task.0).await;
    }
    // Closing the channel tells the lease task to release the lease and finish.
    drop(leading);
    (&mut lease_task.0).await??;
    Ok(())
}
