//! The "mock" personality: the made-up GPU cloud of `docs/mock-cloud-api.md`, which the mock
//! provider plugin speaks. [`MockCloud`] is the handle tests and the binary hold.

pub mod api;
pub mod config;
pub mod endpoint;
mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::admin::{SimControl, SimCore};
use crate::handle::SimHandle;
use crate::server::{GatewayState, SimServer, with_gateway};

pub use config::{MockCloudConfig, OfferSpec};
pub use endpoint::Endpoint;
pub use state::{InstanceStatus, SimInstance};

/// State shared by the handlers and the handle.
pub(crate) struct Shared {
    core: SimCore,
    state: Mutex<state::CloudState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, state::CloudState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instances(&self) -> Vec<SimInstance> {
        self.state().all(&self.core.clock)
    }
}

impl SimControl for Shared {
    fn core(&self) -> &SimCore {
        &self.core
    }
    fn endpoint_keys(&self) -> Vec<&'static str> {
        Endpoint::keys()
    }
    fn instances_json(&self) -> Value {
        json!(self.instances())
    }
    fn vanish_json(&self, id: &str) -> Option<Value> {
        self.state().vanish(id, &self.core.clock).map(|i| json!(i))
    }
    fn balance_micro_usd(&self) -> u64 {
        self.state().balance(self.core.clock.now())
    }
    fn set_balance_micro_usd(&self, micro: u64) {
        let now = self.core.clock.now();
        self.state().set_balance(micro, now);
    }
    fn set_stock(&self, offer: &str, stock: u32) -> bool {
        let now = self.core.clock.now();
        self.state().set_stock(offer, stock, now)
    }
}

/// A running mock cloud. Dropping it stops the server at once; [`MockCloud::shutdown`] stops it
/// gracefully. Dereferences to [`SimHandle`] for what every simulator has (address, call log,
/// faults, balance, clock).
pub struct MockCloud {
    handle: SimHandle,
    shared: Arc<Shared>,
}

impl std::ops::Deref for MockCloud {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl std::fmt::Debug for MockCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCloud")
            .field("addr", &self.handle.addr())
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
        let shared = Arc::new(Shared {
            core: SimCore::new(cfg.faults.clone()),
            state: Mutex::new(state::CloudState::new(&cfg)),
        });
        let app = routes::router()
            .merge(crate::admin::router::<Shared>())
            .fallback(routes::no_route)
            .method_not_allowed_fallback(routes::wrong_method)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::MockGateway {
                api_key: cfg.api_key.clone(),
            }),
            faults: shared.core.faults.clone(),
            calls: shared.core.calls.clone(),
            clock: shared.core.clock.clone(),
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "mock cloud listening");
        Ok(MockCloud {
            handle: SimHandle::new(server, shared.clone()),
            shared,
        })
    }

    /// Every instance ever launched, with its full state (vanished ones flagged).
    pub fn instances(&self) -> Vec<SimInstance> {
        self.shared.instances()
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
        move || shared.instances()
    }

    /// One instance by id, vanished or not.
    pub fn instance(&self, id: &str) -> Option<SimInstance> {
        self.instances().into_iter().find(|i| i.id == id)
    }

    /// Makes an instance vanish now. False for an id the cloud never had.
    pub fn vanish(&self, id: &str) -> bool {
        self.shared
            .state()
            .vanish(id, &self.shared.core.clock)
            .is_some()
    }

    /// Adds an offer (replacing one with the same id); its `stock` is the stock available now.
    pub fn add_offer(&self, offer: OfferSpec) {
        let now = self.shared.core.clock.now();
        self.shared.state().add_offer(offer, now);
    }

    /// Sets the stock available now. False for an unknown offer.
    pub fn set_stock(&self, offer_id: &str, stock: u32) -> bool {
        self.shared.set_stock(offer_id, stock)
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
