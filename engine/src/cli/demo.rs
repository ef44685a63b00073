//! `tgp demo`: the whole product on a fresh clone, with no cluster and no cloud account.
//!
//! Starts the development API server, two simulated clouds, a simulated Tailscale and simulated
//! Talos machines in-process, runs the real operator against them, applies
//! `examples/gpurequest.yaml`, prints the request moving through its phases until its node
//! joined and its GPUs are allocatable, deletes it, and shows that no instance, Node or tailnet
//! device is left.

use std::time::{Duration, Instant};

use clap::Args;
use tgp_cloudsim::{MockCloudConfig, OfferSpec};

use crate::crd::gpurequest::Phase;
use crate::devenv::{self, CloudSpec, DevEnv};

/// The example applied when no file is given.
pub const EXAMPLE: &str = include_str!("../../../examples/gpurequest.yaml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The GPURequest to apply (YAML); defaults to examples/gpurequest.yaml (built in).
    #[arg(long)]
    pub request: Option<std::path::PathBuf>,
    /// Give up if the request is not Ready within this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

fn clouds() -> Vec<CloudSpec> {
    let offer =
        |gpu: &str, region: &str, price: u64| OfferSpec::new(gpu, 1, region, price, false, 5);
    let fast = |offers| MockCloudConfig {
        offers,
        boot_delay: Duration::from_millis(300),
        run_delay: Duration::from_millis(300),
        stop_delay: Duration::from_millis(200),
        ..MockCloudConfig::default()
    };
    vec![
        CloudSpec::new(
            "east-cloud",
            fast(vec![
                offer("H100-SXM", "us-east-1", 2_890_000),
                offer("A100-80GB", "us-east-1", 1_640_000),
            ]),
        ),
        CloudSpec::new(
            "west-cloud",
            fast(vec![
                offer("H100-SXM", "us-west-2", 2_490_000),
                offer("L40S", "us-west-2", 990_000),
            ]),
        ),
    ]
}

/// Runs the demo; returns the process exit code.
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let text = match &args.request {
        Some(path) => std::fs::read_to_string(path)?,
        None => EXAMPLE.to_string(),
    };
    let started = Instant::now();
    let stamp = move || format!("[{:>6.2}s]", started.elapsed().as_secs_f64());
    println!(
        "{} starting the development API server, two simulated clouds, a simulated tailnet and the operator",
        stamp()
    );
    let mut env = DevEnv::start(clouds(), devenv::fast_settings()).await?;
    env.enable_talos(devenv::JoinTiming::default()).await?;
    println!(
        "{}   Talos secrets in Secret {}/{}, Tailscale API at {}",
        stamp(),
        devenv::NAMESPACE,
        env.settings.bootstrap.talos_secret,
        env.talos().tailscale.base_url()
    );
    for (name, cloud) in &env.clouds {
        println!("{}   cloud {name} at {}", stamp(), cloud.base_url());
    }
    env.start_operator("demo-operator").await?;
    env.wait_providers_loaded(Duration::from_secs(args.timeout))
        .await?;
    println!(
        "{} providers loaded: east-cloud, west-cloud (the mock plugin, sandboxed)",
        stamp()
    );
    let request = env.create_request(&text).await?;
    let name = kube::ResourceExt::name_any(&request);
    println!(
        "{} applied GPURequest {name} ({} x{})",
        stamp(),
        request.spec.gpu_type,
        request.spec.gpu_count
    );

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last_phase = None;
    let ready = loop {
        let current = env.requests().get_opt(&name).await?;
        if let Some(st) = current.as_ref().and_then(|r| r.status.clone()) {
            if last_phase != Some(st.phase) {
                let detail = match st.phase {
                    Phase::Launching => format!(
                        "provider {} offer {} at {}/h",
                        st.provider.clone().unwrap_or_default(),
                        st.offer.clone().unwrap_or_default(),
                        st.hourly_price.clone().unwrap_or_default()
                    ),
                    Phase::Verifying => format!(
                        "instance {} launched; waiting for the provider to report it running",
                        st.instance_id.clone().unwrap_or_default()
                    ),
                    Phase::Joining => format!(
                        "instance {} running; waiting for node {} to join over Tailscale",
                        st.instance_id.clone().unwrap_or_default(),
                        st.bootstrap
                            .as_ref()
                            .and_then(|b| b.hostname.clone())
                            .unwrap_or_default()
                    ),
                    Phase::Ready => match &st.node_name {
                        Some(node) => format!(
                            "node {node} registered, GPUs allocatable (instance {} on {}, tailnet {})",
                            st.instance_id.clone().unwrap_or_default(),
                            st.provider.clone().unwrap_or_default(),
                            st.bootstrap
                                .as_ref()
                                .and_then(|b| b.tailnet_ip.clone())
                                .unwrap_or_default()
                        ),
                        None => format!(
                            "instance {} verified running on {} ({})",
                            st.instance_id.clone().unwrap_or_default(),
                            st.provider.clone().unwrap_or_default(),
                            st.public_ip.clone().unwrap_or_default()
                        ),
                    },
                    Phase::Failed => st
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")
                        .map(|c| c.message.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                println!(
                    "{}   phase {:<12} {detail}",
                    stamp(),
                    format!("{:?}", st.phase)
                );
                last_phase = Some(st.phase);
            }
            if st.phase == Phase::Ready {
                break true;
            }
            if st.phase == Phase::Failed {
                break false;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if !ready {
        println!("{} the request did not become Ready; deleting it", stamp());
    } else {
        println!("{} attempts recorded in status:", stamp());
        let r = env.requests().get(&name).await?;
        for a in r.status.unwrap_or_default().attempts {
            println!(
                "{}   {} {} {} {}",
                stamp(),
                a.provider,
                a.outcome,
                a.reason,
                a.message
            );
        }
        println!(
            "{} live instances in the simulated clouds: {}",
            stamp(),
            env.live_instances()
        );
    }
    env.delete_request(&name).await?;
    println!(
        "{} deleted GPURequest {name}; the finalizer holds it until the instance is terminated",
        stamp()
    );
    env.wait_gone(&name, Duration::from_secs(args.timeout))
        .await?;
    // Terminated instances pass through `stopping`; wait for the clouds to finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.live_instances() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = env.live_instances();
    let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(env.client.clone())
        .list(&Default::default())
        .await?
        .items
        .len();
    let devices = env.talos().tailscale.live_devices().len();
    println!(
        "{} request gone; left behind: {left} live instance(s), {nodes} Node(s), {devices} tailnet device(s)",
        stamp()
    );
    env.shutdown().await;
    Ok(if ready && left == 0 && nodes == 0 && devices == 0 {
        0
    } else {
        1
    })
}
