//! The data of one instance's `Store`: the empty WASI context, the captured stderr, the resource
//! limiter, the per-call bookkeeping, and the implementations of the contract's imports.
//!
//! Everything per call (deadline, flags, stderr mark) lives here, in the store, never in the
//! shared pre-instantiated component, so concurrent calls cannot see each other's state.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::Operation;
use super::bindings::http_api::{self, HttpError, Request, Response};
use super::bindings::log_api::{self, Level};
use super::bindings::tgp::provider::{clock, config, types};
use super::http::HttpContext;
use super::limiter::Limiter;
use super::logging::{self, Admit, LogLimiter};
use super::sealed::UserData;
use super::secrets;

/// Capacity of the captured guest stderr, per instance.
pub const STDERR_CAPACITY: usize = 64 * 1024;

/// What every instance of one plugin shares.
pub struct PluginShared {
    pub provider: String,
    pub plugin_version: OnceLock<String>,
    pub http: HttpContext,
    pub log: LogLimiter,
    pub config: BTreeMap<String, String>,
}

/// Bookkeeping of the call in progress.
#[derive(Debug)]
pub struct CallState {
    pub deadline: Instant,
    pub budget: Duration,
    pub timed_out: bool,
    pub capability_denied: Option<String>,
    pub stderr_mark: usize,
    /// The operation in progress (`None` for `info`).
    pub op: Option<Operation>,
    /// The bootstrap document of the launch in progress, which the HTTP import fills into
    /// request bodies (never handed to the guest).
    pub sealed: Option<Arc<UserData>>,
}

/// The `T` of every plugin `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub limiter: Limiter,
    pub call: CallState,
    pub shared: Arc<PluginShared>,
}

impl HostState {
    pub fn new(shared: Arc<PluginShared>, memory_bytes: u64, budget: Duration) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Empty context: no preopened directories, environment, arguments, stdin or network.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: Limiter::new(memory_bytes),
            call: CallState {
                deadline: Instant::now() + budget,
                budget,
                timed_out: false,
                capability_denied: None,
                stderr_mark: 0,
                op: None,
                sealed: None,
            },
            shared,
        }
    }

    /// Resets the per-call bookkeeping before a call.
    pub fn begin_call(&mut self, budget: Duration) {
        self.call.deadline = Instant::now() + budget;
        self.call.budget = budget;
        self.call.timed_out = false;
        self.call.capability_denied = None;
        self.call.stderr_mark = self.stderr.contents().len();
        self.call.op = None;
        self.call.sealed = None;
    }

    /// Says what the call about to run is: its operation, and the launch's document if any.
    pub fn set_scope(&mut self, op: Option<Operation>, sealed: Option<Arc<UserData>>) {
        self.call.op = op;
        self.call.sealed = sealed;
    }

    /// What the guest wrote to stderr during the current call.
    pub fn call_stderr(&self) -> Vec<u8> {
        let all = self.stderr.contents();
        all.get(self.call.stderr_mark..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// Bytes of stderr captured over the instance's life.
    pub fn stderr_used(&self) -> usize {
        self.stderr.contents().len()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl http_api::Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let shared = self.shared.clone();
        // Logged here rather than by the guest: a debug line costs nothing when it is filtered
        // out, and does not use up the plugin's log-line budget.
        tracing::debug!(
            provider = %shared.provider,
            method = %req.method,
            url = %secrets::redact_cow(&req.url, &shared.http.redaction(None)),
            "plugin HTTP request"
        );
        let budget_left = self.call.deadline.saturating_duration_since(Instant::now());
        let sealed = self.call.sealed.clone();
        match shared.http.send(req, budget_left, sealed.as_deref()).await {
            Ok(outcome) => Ok(outcome),
            Err(denied) => {
                tracing::warn!(provider = %shared.provider, origin = %denied.what, "plugin attempted HTTP to a host it was not granted; call aborted");
                self.call.capability_denied = Some(denied.what.clone());
                Err(wasmtime::Error::new(denied))
            }
        }
    }
}

impl log_api::Host for HostState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if let Admit::Yes { dropped } = self.shared.log.admit() {
            let version = self
                .shared
                .plugin_version
                .get()
                .map(String::as_str)
                .unwrap_or("unknown");
            let redaction = self.shared.http.redaction(self.call.sealed.as_deref());
            let message = secrets::redact_str(&message, &redaction);
            logging::emit(&self.shared.provider, version, level, &message, dropped);
        }
        Ok(())
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.shared.config.get(&key).cloned())
    }

    fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .shared
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Ok(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}
