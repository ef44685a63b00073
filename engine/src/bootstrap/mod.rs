//! Native node bootstrap: everything between "the provider says the machine is running" and
//! "a Ready Node with allocatable GPUs", and back again at teardown.
//!
//! Exists apart from the plugins on purpose: bootstrap is native and never calls a plugin. It
//! produces documents (the user-data a machine boots with) and talks to two APIs it trusts
//! directly: Kubernetes (Nodes, Pods, evictions) and Tailscale (auth keys, devices).
//!
//! - [`talos_secrets`]: the cluster's Talos secrets, read and checked from a Kubernetes Secret.
//! - [`talos_config`]: the worker machine configuration plus the Tailscale extension's
//!   configuration, the installer image and the Image Factory schematic.
//! - [`delivery`]: how that configuration reaches the machine (Talos user-data, or an
//!   experimental cloud-init that kexecs into Talos).
//! - [`tailscale`]: mint the one-off auth key a machine joins the tailnet with; find and delete
//!   its device afterwards.
//! - [`node`]: recognise the Node, tell when it is initialised and whether its GPUs are busy;
//!   cordon, drain, delete.
//! - [`secret`]: the string type that keeps credentials out of logs.

pub mod delivery;
pub mod node;
pub mod secret;
pub mod tailscale;
pub mod talos_config;
pub mod talos_secrets;
pub(crate) mod validate;

pub use delivery::{BootAssets, Delivery, user_data};
pub use node::{DrainProgress, GPU_RESOURCE, GpuUse, Initialization, STARTUP_TAINTS};
pub use secret::SecretString;
pub use tailscale::{AuthKey, Device, KeyState, TailscaleClient, TailscaleConfig, TailscaleError};
pub use talos_config::{
    ConfigError, NvidiaFlavor, NvidiaKernelModules, TailscaleEnrolment, Taint, WorkerConfig,
    installer_image, render, schematic_document, schematic_document_with,
};
pub use talos_secrets::{TalosSecretError, TalosSecrets};
