//! tgp, the Talos GPU Provisioner: a Kubernetes operator that provisions GPU nodes from cloud
//! providers implemented as sandboxed WebAssembly components.
//!
//! - [`plugins`]: the wasmtime host that loads, limits and calls provider plugins.
//! - [`pricing`]: quote fan-out across providers and ranking.
//! - [`provider_set`]: providers described in a file, turned into loaded plugins.
//! - [`secret_data`]: a Kubernetes Secret's values, `data` and `stringData` alike.
//! - [`catalog`], [`money`]: canonical GPU names and exact money.
//! - [`embedded`]: the zero-configuration default (embedded mock plugin + in-process simulator).
//! - [`crd`]: the GPURequest and GPUProvider resources.
//! - [`operator`]: the controllers, the request lifecycle, garbage collection, leader election.
//! - [`devenv`]: a whole installation in one process (API server, clouds, operator).
//! - [`cli`]: the `tgp` command line.

pub mod bootstrap;
pub mod catalog;
pub mod cli;
pub mod conformance;
pub mod crd;
pub mod devenv;
pub mod embedded;
pub mod error_chain;
pub mod modules;
pub mod money;
pub mod operator;
pub mod plugins;
pub mod pricing;
pub mod provider_set;
pub mod secret_data;
