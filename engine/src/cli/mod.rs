//! The `tgp` command line: argument definitions and dispatch to one module per subcommand.

pub mod crd;
pub mod demo;
pub mod plugin;
pub mod quote;
pub mod run;
pub mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// tgp, the Talos GPU Provisioner: GPU nodes on demand from pluggable, sandboxed cloud providers.
#[derive(Debug, Parser)]
#[command(name = "tgp", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, e.g. `info` or `tgp=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "TGP_LOG", default_value = "warn")]
    pub log: String,
    /// Directory for compiled plugins (reused across runs; keyed by content and engine version)
    /// and, for `tgp run`, the verified bytes of loaded modules (`modules/`, at most 256 MiB), so
    /// that a restart needs no module source.
    #[arg(long, global = true, env = "TGP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask every configured provider for prices, in parallel, and print the offers that fit,
    /// cheapest first. With no providers file, starts the mock cloud simulator in-process and
    /// uses the embedded mock provider.
    Quote(quote::QuoteArgs),
    /// Inspect, call or test a provider plugin without a cluster.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the operator against the cluster in the current kubeconfig.
    Run(run::RunArgs),
    /// Print the CustomResourceDefinitions (GPURequest, GPUProvider) as YAML.
    Crd,
    /// The whole product in one process, with no cluster or cloud account: a development API
    /// server, two simulated clouds, the real operator; applies a GPURequest, shows it reach
    /// Ready, deletes it and shows nothing is left running.
    Demo(demo::DemoArgs),
}

/// Output formats shared by the commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
