//! The "mock" personality: the made-up GPU cloud of `docs/mock-cloud-api.md`, which the mock
//! provider plugin speaks. [`MockCloud`] is the handle tests and the binary hold.

mod admin;
pub mod api;
pub mod config;
pub mod endpoint;
mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::calllog::{CallLog, CallRecord};
use crate::clock::SimClock;
use crate::faults::{FaultEngine, Faults};
use crate::server::{GatewayState, SimServer, with_gateway};

pub use config::{MockCloudConfig, OfferSpec};
pub use endpoint::Endpoint;
pub use state::{InstanceStatus, SimInstance};

/// State shared by the handlers and the handle.
pub(crate) struct Shared {
    state: Mutex<state::CloudState>,
    faults: Arc<FaultEngine>,
    calls: Arc<CallLog>,
    clock: Arc<SimClock>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, state::CloudState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_balance(&self, micro: u64) {
        let now = self.clock.now();
        self.state().set_balance(micro, now);
    }
}

/// A running mock cloud. Dropping it stops the server at once; [`MockCloud::shutdown`] stops it
/// gracefully.
pub struct MockCloud {
    server: SimServer,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MockCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCloud")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl MockCloud {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(cfg: MockCloudConfig) -> anyhow::Result<MockCloud> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, cfg: MockCloudConfig) -> anyhow::Result<MockCloud> {
        cfg.faults
            .validate(&Endpoint::keys())
            .map_err(|(field, msg)| anyhow::anyhow!("invalid faults at {field}: {msg}"))?;
        let clock = Arc::new(SimClock::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(state::CloudState::new(&cfg)),
            faults: Arc::new(FaultEngine::new(cfg.faults.clone())),
            calls: Arc::new(CallLog::default()),
            clock: clock.clone(),
        });
        let app = routes::router()
            .merge(admin::router())
            .fallback(routes::no_route)
            .method_not_allowed_fallback(routes::wrong_method)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::MockGateway {
                api_key: cfg.api_key.clone(),
            }),
            faults: shared.faults.clone(),
            calls: shared.calls.clone(),
            clock,
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "mock cloud listening");
        Ok(MockCloud { server, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every `/v1` call received, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls.all()
    }

    /// How many calls to `endpoint` were received (whatever their status).
    pub fn call_count(&self, endpoint: Endpoint) -> usize {
        self.shared.calls.count(endpoint.key())
    }

    /// Forgets the call log.
    pub fn clear_calls(&self) {
        self.shared.calls.clear();
    }

    /// Every instance ever launched, with its full state (vanished ones flagged).
    pub fn instances(&self) -> Vec<SimInstance> {
        self.shared.state().all(&self.shared.clock)
    }

    /// Instances neither terminated nor vanished.
    pub fn live_instances(&self) -> Vec<SimInstance> {
        self.instances()
            .into_iter()
            .filter(|i| !i.vanished && i.status != InstanceStatus::Terminated)
            .collect()
    }

    /// A function returning [`MockCloud::instances`] that can be called from other tasks (it
    /// keeps the cloud's state alive, not its server). For watchers such as
    /// [`crate::talos_join::JoinSimulator::watch_mock`].
    pub fn instance_source(&self) -> impl Fn() -> Vec<SimInstance> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.state().all(&shared.clock)
    }

    /// One instance by id, vanished or not.
    pub fn instance(&self, id: &str) -> Option<SimInstance> {
        self.instances().into_iter().find(|i| i.id == id)
    }

    /// Replaces the fault set (and reseeds its RNG).
    pub fn set_faults(&self, f: Faults) {
        self.shared.faults.set(f);
    }

    /// The fault set in force, counters as they stand.
    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Sets the balance as of now, micro-USD.
    pub fn set_balance(&self, micro: u64) {
        self.shared.set_balance(micro);
    }

    /// The balance now, micro-USD.
    pub fn balance_micro_usd(&self) -> u64 {
        self.shared.state().balance(self.shared.clock.now())
    }

    /// Makes an instance vanish now. False for an id the cloud never had.
    pub fn vanish(&self, id: &str) -> bool {
        self.shared.state().vanish(id, &self.shared.clock).is_some()
    }

    /// Adds an offer (replacing one with the same id); its `stock` is the stock available now.
    pub fn add_offer(&self, offer: OfferSpec) {
        let now = self.shared.clock.now();
        self.shared.state().add_offer(offer, now);
    }

    /// Sets the stock available now. False for an unknown offer.
    pub fn set_stock(&self, offer_id: &str, stock: u32) -> bool {
        let now = self.shared.clock.now();
        self.shared.state().set_stock(offer_id, stock, now)
    }

    /// Moves simulated time forward: delays elapse and instances are billed as if `by` had passed.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
