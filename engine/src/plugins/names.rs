//! The contract's names (as written in the WIT) for its enums, for tables, status and logs.

use super::{Availability, BootstrapDelivery, InstanceState, Operation, TerminateOutcome};

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Quote => "quote",
            Operation::Launch => "launch",
            Operation::Verify => "verify",
            Operation::Terminate => "terminate",
            Operation::Balance => "balance",
            Operation::ListOwned => "list-owned",
        }
    }
}

impl BootstrapDelivery {
    pub fn name(&self) -> &'static str {
        match self {
            BootstrapDelivery::TalosUserData => "talos-user-data",
            BootstrapDelivery::CloudInit => "cloud-init",
            BootstrapDelivery::ContainerOnly => "container-only",
        }
    }
}

impl Availability {
    pub fn name(&self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Limited => "limited",
            Availability::Unavailable => "unavailable",
        }
    }
}

impl InstanceState {
    pub fn name(&self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Booting => "booting",
            InstanceState::Running => "running",
            InstanceState::Rebooting => "rebooting",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Preempted => "preempted",
            InstanceState::Terminated => "terminated",
            InstanceState::NotFound => "not-found",
            InstanceState::Failed => "failed",
            InstanceState::Unknown => "unknown",
        }
    }
}

impl TerminateOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            TerminateOutcome::Terminating => "terminating",
            TerminateOutcome::Terminated => "terminated",
            TerminateOutcome::AlreadyGone => "already-gone",
        }
    }
}
