//! `tgp-apiserver [--port P] [--kubeconfig-out PATH]`: run the dev API server until Ctrl-C.

use anyhow::{Context, bail};
use tgp_apiserver::DevApiServer;

struct Args {
    port: u16,
    kubeconfig_out: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        port: 0,
        kubeconfig_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                args.port = it
                    .next()
                    .context("--port needs a value")?
                    .parse()
                    .context("--port must be a number")?
            }
            "--kubeconfig-out" => {
                args.kubeconfig_out = Some(it.next().context("--kubeconfig-out needs a path")?)
            }
            "-h" | "--help" => {
                println!("usage: tgp-apiserver [--port P] [--kubeconfig-out PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown argument: {other}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let server = DevApiServer::start_on(args.port).await?;
    if let Some(path) = &args.kubeconfig_out {
        server.write_kubeconfig(path)?;
        eprintln!("kubeconfig written to {path}");
    }
    println!("tgp-apiserver listening on {}", server.base_url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
