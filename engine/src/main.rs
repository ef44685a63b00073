//! The `tgp` binary: parses the command line, sets up logging and the plugin host, dispatches.

use clap::Parser;
use tgp::cli::{Cli, Command};
use tgp::plugins::{HostConfig, PluginHost};

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The demo narrates on stdout; keep the operator's own log to errors unless asked.
    let filter = match (&cli.command, cli.log.as_str()) {
        (Command::Demo(_), "warn") => "error",
        (_, f) => f,
    };
    init_logging(filter);
    let code = match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let host = PluginHost::new(HostConfig {
        cache_dir: cli.cache_dir.clone(),
        ..HostConfig::default()
    })?;
    match cli.command {
        Command::Quote(args) => tgp::cli::quote::run(args, &host).await,
        Command::Plugin(cmd) => tgp::cli::plugin::run(cmd, &host).await,
        Command::Run(args) => tgp::cli::run::run(args, host).await,
        Command::Crd => tgp::cli::crd::run(),
        Command::Demo(args) => tgp::cli::demo::run(args).await,
    }
}
