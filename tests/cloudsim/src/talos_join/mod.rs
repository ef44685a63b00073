//! Simulated Talos join: a booted simulated instance with a valid worker configuration registers
//! a Node.
//!
//! The simulated clouds only store the user-data they are given; nothing would ever notice that
//! the operator wrote a wrong bootstrap token or a used-up Tailscale key. This module plays the
//! part of the machines: it watches instance sources (a simulated cloud's instance list, adapted
//! into [`BootedInstance`]s), and for each running instance with user-data it has not seen before
//! it does what a Talos worker with the Tailscale extension does:
//!
//! 1. reads the machine configuration and checks it against the cluster's secrets
//!    ([`machine::parse_worker`]); a mistake means the machine **never joins**;
//! 2. runs `tailscale up --authkey [--advertise-tags]` against the [`TailscaleSim`] (consuming a
//!    single-use key);
//! 3. after `register_delay`, registers its Node (not ready, with a startup taint) through the
//!    caller's [`NodeSink`];
//! 4. after `initialize_delay`, makes the Node ready with its GPUs allocatable.
//!
//! Every step's result is recorded as a [`JoinOutcome`]. Node creation goes through the
//! [`NodeSink`] trait so this crate does not depend on Kubernetes client libraries: the engine's
//! test environment implements it against its API server.
//!
//! Delays are real time (tokio), not the simulated clock: the Node appears while the operator is
//! running, as it would in a cluster.

pub mod machine;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::mock::{InstanceStatus, MockCloud, SimInstance};
use crate::tailscale::TailscaleSim;

pub use machine::{Expected, JoinRefusal, WorkerConfig};

/// A boxed, sendable future (what [`NodeSink`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The taint a Node carries from registration until it is initialized.
pub const STARTUP_TAINT: (&str, &str, &str) = ("node.kubernetes.io/not-ready", "", "NoSchedule");

/// How many times a failing [`NodeSink`] call is tried before the instance is given up.
pub const SINK_ATTEMPTS: u32 = 5;

/// The pause before the first retry of a failing [`NodeSink`] call; doubled each time.
pub const SINK_RETRY_BASE: Duration = Duration::from_millis(25);

/// Where simulated Nodes go: implemented by the caller (the engine's tests with kube-rs).
pub trait NodeSink: Send + Sync + 'static {
    /// Creates the Node: registered, not yet initialized (startup taint present, not Ready).
    fn register(&self, node: SimNode) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Initializes it: `gpu_count` GPUs allocatable, startup taint removed, Ready.
    fn initialize(&self, name: String, gpu_count: u32) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// A Node as the simulated machine registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// `machine.network.hostname`.
    pub name: String,
    /// `machine.nodeLabels`.
    pub labels: BTreeMap<String, String>,
    /// `machine.nodeTaints` as (key, value, effect), then [`STARTUP_TAINT`].
    pub taints: Vec<(String, String, String)>,
    pub gpu_count: u32,
    pub gpu_type: String,
    /// The device's tailnet IPv4 address (the node IP, `validSubnets: [100.64.0.0/10]`).
    pub tailnet_ip: String,
    pub instance_id: String,
}

/// What the simulator needs to know about an instance a cloud runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootedInstance {
    pub id: String,
    pub gpu_count: u32,
    pub gpu_type: String,
    /// Booted and running (the machine executes its user-data).
    pub running: bool,
    pub user_data: Option<String>,
}

impl BootedInstance {
    /// The view of a mock-cloud instance: running when `running` and not vanished.
    pub fn from_mock(i: &SimInstance) -> Self {
        Self {
            id: i.id.clone(),
            gpu_count: i.gpu_count,
            gpu_type: i.gpu_type.clone(),
            running: i.status == InstanceStatus::Running && !i.vanished,
            user_data: i.user_data.clone(),
        }
    }
}

/// A function listing the instances of one cloud.
pub type InstanceSource = Arc<dyn Fn() -> Vec<BootedInstance> + Send + Sync>;

/// Which [`NodeSink`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStep {
    Register,
    Initialize,
}

/// What happened to one instance, in order of occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The instance never joins.
    Refused {
        instance_id: String,
        reason: JoinRefusal,
    },
    /// The Node was registered (not yet initialized).
    Joined {
        instance_id: String,
        node_name: String,
        device_id: String,
        tailnet_ip: String,
    },
    /// The Node was initialized (GPUs allocatable, Ready).
    Initialized {
        instance_id: String,
        node_name: String,
    },
    /// One [`NodeSink`] call failed (it is retried up to [`SINK_ATTEMPTS`] times).
    SinkFailed {
        instance_id: String,
        node_name: String,
        step: SinkStep,
        attempt: u32,
        error: String,
    },
    /// Every attempt at `step` failed; the instance is left as it is.
    GaveUp {
        instance_id: String,
        node_name: String,
        step: SinkStep,
    },
    /// The instance stopped running before `step` (terminated or vanished while booting).
    Gone {
        instance_id: String,
        node_name: String,
        before: SinkStep,
    },
}

impl JoinOutcome {
    /// The instance it is about.
    pub fn instance_id(&self) -> &str {
        match self {
            Self::Refused { instance_id, .. }
            | Self::Joined { instance_id, .. }
            | Self::Initialized { instance_id, .. }
            | Self::SinkFailed { instance_id, .. }
            | Self::GaveUp { instance_id, .. }
            | Self::Gone { instance_id, .. } => instance_id,
        }
    }
}

/// What the simulated machines check their configuration against, and how fast they boot.
/// Its `Debug` output leaves the tokens out.
#[derive(Clone)]
pub struct JoinConfig {
    /// `cluster.token`.
    pub expected_bootstrap_token: String,
    /// `machine.token`.
    pub expected_machine_token: String,
    /// `cluster.controlPlane.endpoint`.
    pub expected_endpoint: String,
    /// From enrolment on the tailnet to Node registration.
    pub register_delay: Duration,
    /// From registration to initialization (GPUs allocatable, Ready).
    pub initialize_delay: Duration,
    /// How often instance sources are listed.
    pub poll_interval: Duration,
}

impl std::fmt::Debug for JoinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinConfig")
            .field("expected_bootstrap_token", &"<redacted>")
            .field("expected_machine_token", &"<redacted>")
            .field("expected_endpoint", &self.expected_endpoint)
            .field("register_delay", &self.register_delay)
            .field("initialize_delay", &self.initialize_delay)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl JoinConfig {
    /// The cluster's secrets, with short delays (20 ms, 20 ms, polling every 10 ms).
    pub fn new(
        bootstrap_token: impl Into<String>,
        machine_token: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            expected_bootstrap_token: bootstrap_token.into(),
            expected_machine_token: machine_token.into(),
            expected_endpoint: endpoint.into(),
            register_delay: Duration::from_millis(20),
            initialize_delay: Duration::from_millis(20),
            poll_interval: Duration::from_millis(10),
        }
    }

    /// Sets the registration and initialization delays.
    pub fn with_delays(mut self, register: Duration, initialize: Duration) -> Self {
        self.register_delay = register;
        self.initialize_delay = initialize;
        self
    }

    /// Sets the polling interval.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            bootstrap_token: &self.expected_bootstrap_token,
            machine_token: &self.expected_machine_token,
            endpoint: &self.expected_endpoint,
        }
    }
}

struct Inner {
    cfg: JoinConfig,
    tailscale: TailscaleSim,
    sink: Arc<dyn NodeSink>,
    sources: Mutex<Vec<(String, InstanceSource)>>,
    seen: Mutex<HashSet<(String, String)>>,
    outcomes: Mutex<Vec<JoinOutcome>>,
    version: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn record(&self, o: JoinOutcome) {
        tracing::debug!(outcome = ?o, "talos join");
        lock(&self.outcomes).push(o);
        self.version.send_modify(|v| *v += 1);
    }
}

/// The running join simulator. Dropping it (or [`JoinSimulator::shutdown`]) stops polling and
/// every join in progress. It holds a clone of the [`TailscaleSim`], which keeps that server up.
pub struct JoinSimulator {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for JoinSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinSimulator")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl JoinSimulator {
    /// Starts polling (no sources yet: add them with [`JoinSimulator::add_source`]). Must be
    /// called within a tokio runtime.
    pub fn start(cfg: JoinConfig, tailscale: TailscaleSim, sink: Arc<dyn NodeSink>) -> Self {
        let (version, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            cfg,
            tailscale,
            sink,
            sources: Mutex::new(Vec::new()),
            seen: Mutex::new(HashSet::new()),
            outcomes: Mutex::new(Vec::new()),
            version,
        });
        let task = tokio::spawn(poll_loop(inner.clone()));
        Self {
            inner,
            task: Mutex::new(Some(task)),
        }
    }

    /// Watches the instances `f` lists, under `name` (replacing a source of the same name).
    /// Instance ids need only be unique within one source.
    pub fn add_source(
        &self,
        name: impl Into<String>,
        f: Arc<dyn Fn() -> Vec<BootedInstance> + Send + Sync>,
    ) {
        let name = name.into();
        let mut sources = lock(&self.inner.sources);
        sources.retain(|(n, _)| *n != name);
        sources.push((name, f));
    }

    /// Watches a mock cloud's instances (source name `"mock"`).
    pub fn watch_mock(&self, mock: &MockCloud) {
        let list = mock.instance_source();
        self.add_source(
            "mock",
            Arc::new(move || list().iter().map(BootedInstance::from_mock).collect()),
        );
    }

    /// Everything that happened so far, in order.
    pub fn outcomes(&self) -> Vec<JoinOutcome> {
        lock(&self.inner.outcomes).clone()
    }

    /// Waits up to `timeout` for an outcome matching `pred` (including one already recorded).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&JoinOutcome) -> bool,
    ) -> Option<JoinOutcome> {
        let mut rx = self.inner.version.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(o) = self.outcomes().into_iter().find(|o| pred(o)) {
                    return o;
                }
                if rx.changed().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
        .await
        .ok()
    }

    /// Stops polling and every join in progress. Idempotent.
    pub fn shutdown(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for JoinSimulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Lists every source each poll and starts one join per new running instance with user-data.
/// The joins live in a `JoinSet` owned by this task, so aborting it aborts them too.
async fn poll_loop(inner: Arc<Inner>) {
    let mut joins = JoinSet::new();
    let every = inner.cfg.poll_interval.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while joins.try_join_next().is_some() {}
        let sources = lock(&inner.sources).clone();
        for (name, source) in sources {
            for inst in source() {
                if !inst.running || inst.user_data.is_none() {
                    continue;
                }
                if !lock(&inner.seen).insert((name.clone(), inst.id.clone())) {
                    continue;
                }
                joins.spawn(join(inner.clone(), source.clone(), inst));
            }
        }
    }
}

fn still_running(source: &InstanceSource, id: &str) -> bool {
    source().iter().any(|i| i.id == id && i.running)
}

/// One machine's boot, from reading its user-data to a Ready Node.
async fn join(inner: Arc<Inner>, source: InstanceSource, inst: BootedInstance) {
    let instance_id = inst.id.clone();
    let refuse = |reason: JoinRefusal| JoinOutcome::Refused {
        instance_id: instance_id.clone(),
        reason,
    };
    let user_data = inst.user_data.as_deref().unwrap_or_default();
    let worker = match machine::parse_worker(user_data, inner.cfg.expected()) {
        Ok(w) => w,
        Err(reason) => return inner.record(refuse(reason)),
    };
    let device = match inner.tailscale.enrol_with_tags(
        &worker.auth_key,
        worker.tailnet_hostname(),
        &worker.advertise_tags,
    ) {
        Ok(d) => d,
        Err(e) => return inner.record(refuse(JoinRefusal::Tailscale(e))),
    };
    let node_name = worker.hostname.clone();
    let mut taints = worker.taints.clone();
    let (k, v, e) = STARTUP_TAINT;
    taints.push((k.into(), v.into(), e.into()));
    let node = SimNode {
        name: node_name.clone(),
        labels: worker.labels.clone(),
        taints,
        gpu_count: inst.gpu_count,
        gpu_type: inst.gpu_type.clone(),
        tailnet_ip: device.ipv4.to_string(),
        instance_id: instance_id.clone(),
    };

    tokio::time::sleep(inner.cfg.register_delay).await;
    if !still_running(&source, &instance_id) {
        return inner.record(JoinOutcome::Gone {
            instance_id,
            node_name,
            before: SinkStep::Register,
        });
    }
    let sink = inner.sink.clone();
    let registered = with_retries(&inner, &instance_id, &node_name, SinkStep::Register, || {
        sink.register(node.clone())
    })
    .await;
    if !registered {
        return;
    }
    inner.record(JoinOutcome::Joined {
        instance_id: instance_id.clone(),
        node_name: node_name.clone(),
        device_id: device.id.clone(),
        tailnet_ip: device.ipv4.to_string(),
    });

    tokio::time::sleep(inner.cfg.initialize_delay).await;
    if !still_running(&source, &instance_id) {
        return inner.record(JoinOutcome::Gone {
            instance_id,
            node_name,
            before: SinkStep::Initialize,
        });
    }
    let gpus = inst.gpu_count;
    let initialized = with_retries(
        &inner,
        &instance_id,
        &node_name,
        SinkStep::Initialize,
        || sink.initialize(node_name.clone(), gpus),
    )
    .await;
    if initialized {
        inner.record(JoinOutcome::Initialized {
            instance_id,
            node_name,
        });
    }
}

/// Calls the sink up to [`SINK_ATTEMPTS`] times with doubling pauses, recording each failure;
/// records `GaveUp` and returns false when every attempt failed.
async fn with_retries(
    inner: &Inner,
    instance_id: &str,
    node_name: &str,
    step: SinkStep,
    call: impl Fn() -> BoxFuture<'static, anyhow::Result<()>>,
) -> bool {
    let mut pause = SINK_RETRY_BASE;
    for attempt in 1..=SINK_ATTEMPTS {
        match call().await {
            Ok(()) => return true,
            Err(e) => {
                inner.record(JoinOutcome::SinkFailed {
                    instance_id: instance_id.to_owned(),
                    node_name: node_name.to_owned(),
                    step,
                    attempt,
                    error: format!("{e:#}"),
                });
                if attempt < SINK_ATTEMPTS {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
    inner.record(JoinOutcome::GaveUp {
        instance_id: instance_id.to_owned(),
        node_name: node_name.to_owned(),
        step,
    });
    false
}
