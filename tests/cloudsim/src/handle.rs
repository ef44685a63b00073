//! The part of a simulated cloud's handle that is the same for every personality built on
//! [`SimControl`] (mock, RunPod, Lambda, Vast): where it listens, its call log, its faults, its
//! clock and its balance. Each
//! personality's handle dereferences to a [`SimHandle`] and adds only what is its own
//! (typed instance views, stock controls).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::SimControl;
use crate::calllog::CallRecord;
use crate::faults::Faults;
use crate::server::SimServer;

/// A running simulator: its server and its shared state.
pub struct SimHandle {
    server: SimServer,
    control: Arc<dyn SimControl>,
}

impl SimHandle {
    pub(crate) fn new(server: SimServer, control: Arc<dyn SimControl>) -> Self {
        Self { server, control }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every API call received, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.control.core().calls.all()
    }

    /// How many calls to the endpoint named `endpoint` were received (whatever their status).
    /// Takes the key (`"launch"`) or a personality's typed endpoint that names one
    /// ([`crate::mock::Endpoint::Launch`]).
    pub fn call_count(&self, endpoint: impl AsRef<str>) -> usize {
        self.control.core().calls.count(endpoint.as_ref())
    }

    /// Forgets the call log.
    pub fn clear_calls(&self) {
        self.control.core().calls.clear();
    }

    /// Replaces the fault set (and reseeds its RNG).
    pub fn set_faults(&self, f: Faults) {
        self.control.core().faults.set(f);
    }

    /// The fault set in force, counters as they stand.
    pub fn faults(&self) -> Faults {
        self.control.core().faults.get()
    }

    /// Sets the account balance as of now, micro-USD.
    pub fn set_balance(&self, micro: u64) {
        self.control.set_balance_micro_usd(micro);
    }

    /// The account balance now, micro-USD.
    pub fn balance_micro_usd(&self) -> u64 {
        self.control.balance_micro_usd()
    }

    /// Moves simulated time forward: delays elapse and instances are billed as if `by` passed.
    pub fn advance(&self, by: Duration) {
        self.control.core().clock.advance(by);
    }

    /// Stops the server gracefully.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}
