//! Cloud simulators on loopback for tgp's tests and demo.
//!
//! tgp provisions GPU nodes from paid clouds; this crate serves fake clouds with real state on
//! `127.0.0.1` so that the operator, its plugins and the end-to-end tests can be exercised without
//! an account or a bill, including the failures real clouds produce.
//!
//! Layout: shared machinery at the top level ([`clock`], [`faults`], [`calllog`], [`money`],
//! [`server`], and [`admin`] + [`handle`] for the `/_sim` routes and the handle that the mock,
//! RunPod, Lambda and Vast personalities share) and one module per personality.

pub mod admin;
pub mod auth;
pub mod calllog;
pub mod clock;
pub mod faults;
pub mod files;
pub mod handle;
pub mod lambda;
pub mod lifecycle;
pub mod mock;
pub mod money;
pub mod oci;
pub mod ratelimit;
pub mod runpod;
pub mod server;
pub mod tailscale;
pub mod talos_join;
pub mod vast;

pub use calllog::CallRecord;
pub use faults::{EndpointFaults, Faults, Switch};
pub use handle::SimHandle;
pub use lambda::{LambdaCloud, LambdaConfig, LambdaTypeSpec, SimLambdaInstance, SshKeySpec};
pub use mock::{Endpoint, InstanceStatus, MockCloud, MockCloudConfig, OfferSpec, SimInstance};
pub use runpod::{GpuTypeSpec, RunpodCloud, RunpodConfig, SimPod};
pub use tailscale::{
    EnrolRefusal, SimDevice, SimEvent, SimEventKind, SimKey, TailscaleSim, TailscaleSimConfig,
};
pub use talos_join::{
    BootedInstance, JoinConfig, JoinOutcome, JoinRefusal, JoinSimulator, NodeSink, SimNode,
};
pub use vast::{SimVastInstance, VastCloud, VastConfig, VastOfferSpec};
