//! The Talos side of a development environment: the cluster's Talos secrets (generated, in a
//! Secret), a simulated Tailscale API with the operator's OAuth client (in a Secret), and the
//! simulated join, whose machines register their Nodes in this environment's API server.
//!
//! The operator under test reads the same Secrets a real installation would, talks to the
//! Tailscale simulator over HTTP, and sees Nodes appear through the Kubernetes API; nothing in
//! the operator knows it is simulated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rand::Rng;
use tgp_cloudsim::talos_join::{BoxFuture, STARTUP_TAINT};
use tgp_cloudsim::{
    BootedInstance, JoinConfig, JoinSimulator, NodeSink, SimNode, TailscaleSim, TailscaleSimConfig,
};

use super::{DevEnv, E2E_LABEL, NAMESPACE};
use crate::bootstrap::node::GPU_RESOURCE;

/// Tag the environment's OAuth client may hand out (and the operator is configured with).
pub const NODE_TAG: &str = "tag:tgp-gpu";
/// The control-plane endpoint written into worker configurations (never contacted).
pub const ENDPOINT: &str = "https://127.0.0.1:6443";
/// A syntactically valid Image Factory schematic id for tests.
pub const TEST_SCHEMATIC: &str = "c9078f9419961640c712a8bf2bb9174933dfcf1da383fd8ea2b7dc21493f8bac";

/// The Talos pieces of a [`DevEnv`].
pub struct TalosEnv {
    pub tailscale: TailscaleSim,
    pub join: JoinSimulator,
    /// The Talos Secret's contents, key by key, as created.
    pub secret_data: BTreeMap<String, String>,
}

/// How fast simulated machines join.
#[derive(Debug, Clone, Copy)]
pub struct JoinTiming {
    /// From enrolment on the tailnet to Node registration.
    pub register_delay: Duration,
    /// From registration to GPUs allocatable and Ready.
    pub initialize_delay: Duration,
}

impl Default for JoinTiming {
    fn default() -> Self {
        JoinTiming {
            register_delay: Duration::from_millis(300),
            initialize_delay: Duration::from_millis(300),
        }
    }
}

fn token(rng: &mut impl Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PEM certificate block (random body: nothing verifies it, but it is well-formed).
fn pem(rng: &mut impl Rng) -> String {
    let body: Vec<u8> = (0..96).map(|_| rng.random()).collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64(&body)
    )
}

/// Fresh Talos secrets for a test cluster, as Secret keys.
pub fn generate_talos_secrets() -> BTreeMap<String, String> {
    let mut rng = rand::rng();
    let id: [u8; 32] = rng.random();
    let secret: [u8; 32] = rng.random();
    let machine_token = format!("{}.{}", token(&mut rng, 6), token(&mut rng, 16));
    let bootstrap_token = format!("{}.{}", token(&mut rng, 6), token(&mut rng, 16));
    let machine_ca = pem(&mut rng);
    let cluster_ca = pem(&mut rng);
    BTreeMap::from([
        ("machine-token".into(), machine_token),
        ("machine-ca.crt".into(), machine_ca),
        ("cluster-id".into(), b64(&id)),
        ("cluster-secret".into(), b64(&secret)),
        ("bootstrap-token".into(), bootstrap_token),
        ("cluster-ca.crt".into(), cluster_ca),
        ("control-plane-endpoint".into(), ENDPOINT.into()),
    ])
}

/// Creates or replaces a Secret in the environment's namespace from string values.
pub async fn put_secret(
    client: &Client,
    name: &str,
    data: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {E2E_LABEL: "true"}},
        "data": data.iter().map(|(k, v)| (k.clone(), b64(v.as_bytes()))).collect::<BTreeMap<_, _>>(),
    }))?;
    let _ = api.delete(name, &Default::default()).await;
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Registers simulated machines' Nodes through the Kubernetes API, as a kubelet would.
struct KubeNodes {
    client: Client,
}

impl NodeSink for KubeNodes {
    fn register(&self, node: SimNode) -> BoxFuture<'static, anyhow::Result<()>> {
        let api: Api<Node> = Api::all(self.client.clone());
        Box::pin(async move {
            let mut labels = node.labels.clone();
            labels.insert("kubernetes.io/hostname".into(), node.name.clone());
            labels.insert(E2E_LABEL.into(), "true".into());
            let taints: Vec<_> = node
                .taints
                .iter()
                .map(|(k, v, e)| serde_json::json!({"key": k, "value": v, "effect": e}))
                .collect();
            let obj: Node = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": labels},
                "spec": {"taints": taints},
            }))?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            let status = serde_json::json!({"status": {
                "capacity": {GPU_RESOURCE: node.gpu_count.to_string(), "cpu": "32", "memory": "256Gi"},
                "allocatable": {GPU_RESOURCE: "0", "cpu": "31", "memory": "250Gi"},
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                "message": "GPU driver loading"}],
                "addresses": [{"type": "InternalIP", "address": node.tailnet_ip},
                              {"type": "Hostname", "address": node.name}],
                "nodeInfo": {"osImage": "Talos (simulated)"},
            }});
            api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            Ok(())
        })
    }

    fn initialize(&self, name: String, gpu_count: u32) -> BoxFuture<'static, anyhow::Result<()>> {
        let api: Api<Node> = Api::all(self.client.clone());
        Box::pin(async move {
            let node = api.get(&name).await?;
            let taints: Vec<_> = node
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.key != STARTUP_TAINT.0)
                .collect();
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"taints": taints}})),
            )
            .await?;
            let status = serde_json::json!({"status": {
                "allocatable": {GPU_RESOURCE: gpu_count.to_string(), "cpu": "31", "memory": "250Gi"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
            }});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            Ok(())
        })
    }
}

impl DevEnv {
    /// Makes Talos joins possible: creates the Talos and Tailscale Secrets, starts the Tailscale
    /// simulator and the join simulator (watching every cloud, present and added later), and
    /// points the operator's bootstrap settings at them. Call before starting operators.
    pub async fn enable_talos(&mut self, timing: JoinTiming) -> anyhow::Result<()> {
        let ts_cfg = TailscaleSimConfig::default().with_allowed_tags([NODE_TAG]);
        let tailscale = TailscaleSim::start(ts_cfg.clone()).await?;
        let secret_data = generate_talos_secrets();
        let b = &mut self.settings.bootstrap;
        put_secret(&self.client, &b.talos_secret, &secret_data).await?;
        put_secret(
            &self.client,
            &b.tailscale_secret,
            &BTreeMap::from([
                ("client-id".to_string(), ts_cfg.client_id.clone()),
                ("client-secret".to_string(), ts_cfg.client_secret.clone()),
            ]),
        )
        .await?;
        b.tailscale_api = tailscale.base_url();
        b.tailscale_tags = vec![NODE_TAG.into()];
        b.schematic_id = TEST_SCHEMATIC.into();
        let cfg = JoinConfig::new(
            secret_data["bootstrap-token"].clone(),
            secret_data["machine-token"].clone(),
            ENDPOINT,
        )
        .with_delays(timing.register_delay, timing.initialize_delay)
        .with_poll_interval(Duration::from_millis(20));
        let sink = Arc::new(KubeNodes {
            client: self.client.clone(),
        });
        let join = JoinSimulator::start(cfg, tailscale.clone(), sink);
        let talos = TalosEnv {
            tailscale,
            join,
            secret_data,
        };
        for (name, cloud) in &self.clouds {
            watch_cloud(&talos.join, name, cloud);
        }
        self.talos = Some(talos);
        Ok(())
    }

    /// The Talos pieces ([`DevEnv::enable_talos`] must have been called).
    pub fn talos(&self) -> &TalosEnv {
        self.talos
            .as_ref()
            .expect("enable_talos was not called on this DevEnv")
    }
}

/// Lets the join simulator see `cloud`'s instances boot.
pub(super) fn watch_cloud(join: &JoinSimulator, name: &str, cloud: &tgp_cloudsim::MockCloud) {
    let list = cloud.instance_source();
    join.add_source(
        name.to_string(),
        Arc::new(move || list().iter().map(BootedInstance::from_mock).collect()),
    );
}
