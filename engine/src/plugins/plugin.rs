//! A loaded plugin and the machinery of a call: concurrency bound, instance pool, deadline,
//! trap classification.
//!
//! Instantiating a component costs tens of microseconds, a call on a live instance about one,
//! so calls run on pooled idle instances. The rule that keeps this safe: an instance is returned
//! to the pool only after a clean call; anything that trapped, timed out, hit the memory cap or
//! was cancelled is dropped and never runs again. Instances are also retired after
//! [`RECYCLE_AFTER_CALLS`] calls to bound guest heap growth and stderr use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::{
    Balance, GpuSpec, Instance, LaunchRequest, Offer, Operation, ProviderError, ProviderInfo,
    ProviderPlugin, ProviderPluginPre, QuoteResult, Tag, TerminateOutcome,
};
use super::engine::Ticker;
use super::error::CallError;
use super::grants::Limits;
use super::http::policy::Origin;
use super::sealed::UserData;
use super::state::{HostState, PluginShared, STDERR_CAPACITY};
use super::traps::{self, CallFacts};

/// Calls served by one instance before it is retired.
pub const RECYCLE_AFTER_CALLS: u32 = 1000;
/// Slack of the outer backstop timeout beyond the call budget.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(1);

/// Counters of one plugin, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStats {
    /// Instances created since load.
    pub instantiations: u64,
    /// Calls started since load.
    pub calls: u64,
    /// Instances dropped after a failed call (trap, timeout, out of memory, cancellation).
    pub discarded: u64,
    /// Idle instances in the pool now.
    pub idle: usize,
    /// Guest log lines dropped by the rate limit.
    pub log_lines_dropped: u64,
}

/// A live instance: its store and its bindings.
struct Live {
    store: Store<HostState>,
    bindings: ProviderPlugin,
    calls: u32,
}

/// One request to the plugin (borrowing its arguments: they are copied into the sandbox).
enum Req<'a> {
    Info,
    Quote(&'a GpuSpec),
    /// The request (its `user-data` the sealed description) and the document the host fills
    /// into request bodies during the call.
    Launch(&'a LaunchRequest, Option<Arc<UserData>>),
    Verify(&'a str),
    Terminate(&'a str),
    Balance,
    ListOwned(&'a Tag),
}

impl Req<'_> {
    /// The operation, and the launch's document, of the call.
    fn scope(&self) -> (Option<Operation>, Option<Arc<UserData>>) {
        match self {
            Req::Info => (None, None),
            Req::Quote(_) => (Some(Operation::Quote), None),
            Req::Launch(_, doc) => (Some(Operation::Launch), doc.clone()),
            Req::Verify(_) => (Some(Operation::Verify), None),
            Req::Terminate(_) => (Some(Operation::Terminate), None),
            Req::Balance => (Some(Operation::Balance), None),
            Req::ListOwned(_) => (Some(Operation::ListOwned), None),
        }
    }
}

/// The plugin's answer to a [`Req`].
enum Resp {
    Info(ProviderInfo),
    Quote(Result<QuoteResult, ProviderError>),
    Instance(Result<Instance, ProviderError>),
    Terminate(Result<TerminateOutcome, ProviderError>),
    Balance(Result<Balance, ProviderError>),
    Instances(Result<Vec<Instance>, ProviderError>),
}

enum Outcome {
    Done(Live, Resp),
    Failed(CallError),
}

/// Everything needed to run calls; shared by the clones of a [`Plugin`].
pub(crate) struct Runtime {
    pre: ProviderPluginPre<HostState>,
    shared: Arc<PluginShared>,
    limits: Limits,
    semaphore: Semaphore,
    idle: Mutex<Vec<Live>>,
    idle_cap: usize,
    instantiations: AtomicU64,
    calls: AtomicU64,
    discarded: AtomicU64,
    _ticker: Arc<Ticker>,
}

impl Runtime {
    pub fn new(
        pre: ProviderPluginPre<HostState>,
        shared: Arc<PluginShared>,
        limits: Limits,
        ticker: Arc<Ticker>,
    ) -> Self {
        let permits = limits.max_concurrency.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            pre,
            shared,
            semaphore: Semaphore::new(permits),
            idle: Mutex::new(Vec::new()),
            idle_cap: permits,
            limits,
            instantiations: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            _ticker: ticker,
        }
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            instantiations: self.instantiations.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            idle: self.idle.lock().map(|i| i.len()).unwrap_or(0),
            log_lines_dropped: self.shared.log.dropped_total(),
        }
    }

    fn take_idle(&self) -> Option<Live> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, mut live: Live) {
        live.calls += 1;
        let state = live.store.data();
        let worn = live.calls >= RECYCLE_AFTER_CALLS
            || state.limiter.denied()
            || state.stderr_used() > STDERR_CAPACITY / 2;
        if worn {
            return;
        }
        let rejected = match self.idle.lock() {
            Ok(mut idle) if idle.len() < self.idle_cap => {
                idle.push(live);
                None
            }
            _ => Some(live),
        };
        // Dropping a store can take a while (unmapping memory): never under the lock.
        drop(rejected);
    }

    /// Creates a new instance with its own store, limiter and deadline callback.
    async fn instantiate(&self) -> Result<Live, CallError> {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        let budget = self.limits.call_timeout;
        let state = HostState::new(self.shared.clone(), self.limits.memory_bytes, budget);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.call.deadline {
                state.call.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other tasks run every tick, however long the guest computes.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(Live {
                store,
                bindings,
                calls: 0,
            }),
            Err(err) => Err(classify(&store, &err)),
        }
    }

    async fn run(&self, req: Req<'_>, fresh: bool) -> Result<Resp, CallError> {
        let _permit = self
            .semaphore
            .acquire()
            .await
            .map_err(|_| CallError::Internal {
                message: "plugin concurrency gate closed".into(),
            })?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let budget = self.limits.call_timeout;
        let pooled = if fresh { None } else { self.take_idle() };
        let (op, sealed) = req.scope();
        let work = async move {
            let mut live = match pooled {
                Some(mut live) => {
                    live.store.data_mut().begin_call(budget);
                    live.store.set_epoch_deadline(1);
                    live
                }
                None => match self.instantiate().await {
                    Ok(live) => live,
                    Err(e) => return Outcome::Failed(e),
                },
            };
            live.store.data_mut().set_scope(op, sealed);
            match invoke(&mut live, req).await {
                Ok(resp) => Outcome::Done(live, resp),
                Err(err) => Outcome::Failed(classify(&live.store, &err)),
            }
        };
        match tokio::time::timeout(budget + BACKSTOP_MARGIN, work).await {
            Ok(Outcome::Done(live, resp)) => {
                if !fresh {
                    self.give_back(live);
                }
                Ok(resp)
            }
            Ok(Outcome::Failed(e)) => {
                self.discarded.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(provider = %self.shared.provider, error = %e, "plugin call failed; instance discarded");
                Err(e)
            }
            Err(_) => {
                // The backstop fired (the guest was stuck in a host call): the instance was
                // dropped with the cancelled future.
                self.discarded.fetch_add(1, Ordering::Relaxed);
                Err(CallError::Timeout { after: budget })
            }
        }
    }
}

fn classify(store: &Store<HostState>, err: &wasmtime::Error) -> CallError {
    let state = store.data();
    let stderr = state.call_stderr();
    traps::classify(
        err,
        &CallFacts {
            timed_out: state.call.timed_out,
            call_timeout: state.call.budget,
            memory_denied: state.limiter.denied(),
            memory_limit: state.limiter.limit_bytes(),
            capability_denied: state.call.capability_denied.clone(),
            stderr: &stderr,
        },
    )
}

async fn invoke(live: &mut Live, req: Req<'_>) -> wasmtime::Result<Resp> {
    let p = live.bindings.tgp_provider_provider();
    let s = &mut live.store;
    Ok(match req {
        Req::Info => Resp::Info(p.call_info(s).await?),
        Req::Quote(spec) => Resp::Quote(p.call_quote(s, spec).await?),
        Req::Launch(r, _) => Resp::Instance(p.call_launch(s, r).await?),
        Req::Verify(id) => Resp::Instance(p.call_verify(s, id).await?),
        Req::Terminate(id) => Resp::Terminate(p.call_terminate(s, id).await?),
        Req::Balance => Resp::Balance(p.call_balance(s).await?),
        Req::ListOwned(tag) => Resp::Instances(p.call_list_owned(s, tag).await?),
    })
}

/// Static facts about a loaded plugin.
pub(crate) struct Meta {
    pub info: ProviderInfo,
    pub digest: String,
    pub contract_version: String,
    pub size_bytes: u64,
    pub compile_time: Duration,
    pub from_cache: bool,
}

struct Inner {
    runtime: Runtime,
    meta: Meta,
    unrecognized: Unrecognized,
}

/// Names kept by [`Plugin::unrecognized_types`].
pub const UNRECOGNIZED_KEPT: usize = 32;

/// The vendor names a plugin could not map, bounded: a plugin cannot grow it without limit.
#[derive(Default)]
struct Unrecognized(Mutex<std::collections::BTreeSet<String>>);

impl Unrecognized {
    fn note(&self, names: &[String]) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            if kept.len() >= UNRECOGNIZED_KEPT {
                break;
            }
            let shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
            if !shown.is_empty() {
                kept.insert(shown);
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A loaded, validated plugin. Cheap to clone; calls may run concurrently (up to
/// `limits.max_concurrency`, the rest wait).
#[derive(Clone)]
pub struct Plugin(Arc<Inner>);

fn unexpected() -> CallError {
    CallError::Internal {
        message: "plugin answer did not match the request".into(),
    }
}

impl Plugin {
    pub(crate) fn new(runtime: Runtime, meta: Meta) -> Self {
        Self(Arc::new(Inner {
            runtime,
            meta,
            unrecognized: Unrecognized::default(),
        }))
    }

    /// Runs `info()` (used by the loader before the plugin exists).
    pub(crate) async fn validate(runtime: &Runtime) -> Result<ProviderInfo, CallError> {
        match runtime.run(Req::Info, false).await? {
            Resp::Info(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// The answer of the validating `info()` call made at load.
    pub fn info(&self) -> &ProviderInfo {
        &self.0.meta.info
    }

    /// sha256 (hex) of the component bytes.
    pub fn digest(&self) -> &str {
        &self.0.meta.digest
    }

    /// The contract version the component was built for.
    pub fn contract_version(&self) -> &str {
        &self.0.meta.contract_version
    }

    /// Size of the component in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.0.meta.size_bytes
    }

    /// Time spent compiling (or loading from the cache) and checking the component.
    pub fn compile_time(&self) -> Duration {
        self.0.meta.compile_time
    }

    /// Whether the compiled code came from the disk cache.
    pub fn loaded_from_cache(&self) -> bool {
        self.0.meta.from_cache
    }

    /// Counters of this plugin.
    pub fn stats(&self) -> PluginStats {
        self.0.runtime.stats()
    }

    /// The hosts the plugin declared at load (`info().capabilities.hosts`), as it wrote them.
    pub fn declared_hosts(&self) -> &[String] {
        &self.0.meta.info.capabilities.hosts
    }

    /// Every origin (`scheme://host:port`, normalised) a request of this plugin was sent to
    /// since load, sorted. Refused requests are not counted: they never leave the host.
    pub fn contacted_origins(&self) -> Vec<String> {
        self.0.runtime.shared.http.contacted()
    }

    /// The [`Plugin::contacted_origins`] that the plugin did not declare: empty for a plugin
    /// whose declaration is complete. Declared hosts are normalised the same way.
    pub fn undeclared_origins(&self) -> Vec<String> {
        let declared: Vec<String> = self
            .declared_hosts()
            .iter()
            .filter_map(|h| Origin::parse(h).ok())
            .map(|o| o.to_string())
            .collect();
        self.contacted_origins()
            .into_iter()
            .filter(|o| !declared.contains(o))
            .collect()
    }

    pub async fn call_info(&self) -> Result<ProviderInfo, CallError> {
        match self.0.runtime.run(Req::Info, false).await? {
            Resp::Info(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// `info()` on a fresh instance, discarded afterwards: for benchmarks and diagnostics.
    pub async fn call_info_fresh_instance(&self) -> Result<ProviderInfo, CallError> {
        match self.0.runtime.run(Req::Info, true).await? {
            Resp::Info(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// The offers for `spec`. The vendor names the plugin reports it could not map to a
    /// canonical GPU are remembered (see [`Plugin::unrecognized_types`]) and logged at debug.
    pub async fn quote(&self, spec: &GpuSpec) -> Result<Vec<Offer>, CallError> {
        match self.0.runtime.run(Req::Quote(spec), false).await? {
            Resp::Quote(r) => {
                let result = r.map_err(CallError::Provider)?;
                if !result.unrecognized.is_empty() {
                    self.0.unrecognized.note(&result.unrecognized);
                    tracing::debug!(
                        provider = %self.0.runtime.shared.provider,
                        count = result.unrecognized.len(),
                        "the plugin saw vendor GPU types no catalogue name matches"
                    );
                }
                Ok(result.offers)
            }
            _ => Err(unexpected()),
        }
    }

    /// Vendor GPU or instance-type names the plugin saw in its listings and could not map to a
    /// canonical GPU, since load (at most [`UNRECOGNIZED_KEPT`], sorted, escaped and cut to 64
    /// characters): candidates for the operator's catalogue.
    pub fn unrecognized_types(&self) -> Vec<String> {
        self.0.unrecognized.names()
    }

    /// Launches `req`. The bootstrap document, if any, stays with the host: the plugin gets
    /// `req` with `user-data` describing it (size and format, whatever `req` said), and the
    /// host fills the document into the request bodies the plugin sends during the call.
    pub async fn launch(
        &self,
        req: &LaunchRequest,
        user_data: Option<&UserData>,
    ) -> Result<Instance, CallError> {
        let mut req = req.clone();
        req.user_data = user_data.map(UserData::sealed);
        let doc = user_data.cloned().map(Arc::new);
        match self.0.runtime.run(Req::Launch(&req, doc), false).await? {
            Resp::Instance(r) => r.map_err(CallError::Provider),
            _ => Err(unexpected()),
        }
    }

    pub async fn verify(&self, instance_id: &str) -> Result<Instance, CallError> {
        match self.0.runtime.run(Req::Verify(instance_id), false).await? {
            Resp::Instance(r) => r.map_err(CallError::Provider),
            _ => Err(unexpected()),
        }
    }

    pub async fn terminate(&self, instance_id: &str) -> Result<TerminateOutcome, CallError> {
        match self
            .0
            .runtime
            .run(Req::Terminate(instance_id), false)
            .await?
        {
            Resp::Terminate(r) => r.map_err(CallError::Provider),
            _ => Err(unexpected()),
        }
    }

    pub async fn balance(&self) -> Result<Balance, CallError> {
        match self.0.runtime.run(Req::Balance, false).await? {
            Resp::Balance(r) => r.map_err(CallError::Provider),
            _ => Err(unexpected()),
        }
    }

    pub async fn list_owned(&self, owner: &Tag) -> Result<Vec<Instance>, CallError> {
        match self.0.runtime.run(Req::ListOwned(owner), false).await? {
            Resp::Instances(r) => r.map_err(CallError::Provider),
            _ => Err(unexpected()),
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("provider", &self.0.runtime.shared.provider)
            .field("name", &self.0.meta.info.name)
            .field("version", &self.0.meta.info.version)
            .field("digest", &self.0.meta.digest)
            .field("contract_version", &self.0.meta.contract_version)
            .finish_non_exhaustive()
    }
}
