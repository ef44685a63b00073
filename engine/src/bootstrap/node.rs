//! The Kubernetes side of a GPU node's life: recognising the Node a machine registered, telling
//! when it is ready for work (Ready, startup taints gone, GPUs allocatable), telling whether its
//! GPUs are busy (for idle limits), and the teardown steps (cordon, one drain pass, delete).
//!
//! Exists so that reconcile can decide from plain data ([`matches`], [`initialization`],
//! [`gpu_use`] are pure) and perform each side effect as one explicit, bounded call.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};

/// The extended resource the NVIDIA device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Taints a Node carries until the kubelet, the cloud provider and the network are ready.
pub const STARTUP_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.cloudprovider.kubernetes.io/uninitialized",
    "node.kubernetes.io/network-unavailable",
];

/// The well-known hostname label.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The annotation of static (mirror) pods, which can not be evicted.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How long one eviction may take. The kube client retries `429` by itself (up to 15 times with
/// exponential backoff) and the API server answers `429` while a PodDisruptionBudget forbids
/// the eviction, so an eviction still unanswered after this long is reported as blocked.
pub const EVICTION_WAIT: Duration = Duration::from_secs(2);
/// Evictions in flight at once during a drain pass.
const EVICTION_CONCURRENCY: usize = 8;

/// Whether `node` is the machine named `hostname` (by Node name or `kubernetes.io/hostname`)
/// and carries the label `label` with exactly that value.
pub fn matches(node: &Node, hostname: &str, label: (&str, &str)) -> bool {
    let labels = node.metadata.labels.as_ref();
    let by_name = node.metadata.name.as_deref() == Some(hostname)
        || labels
            .and_then(|l| l.get(HOSTNAME_LABEL))
            .is_some_and(|h| h == hostname);
    let labelled = labels
        .and_then(|l| l.get(label.0))
        .is_some_and(|v| v == label.1);
    !hostname.is_empty() && by_name && labelled
}

/// Whether a Node can take work, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initialization {
    Ready,
    /// Why not yet, for a condition message.
    Waiting(String),
}

/// A quantity as a whole count (`"2"`, `"2000m"`); anything else counts as 0.
fn count(q: &str) -> u64 {
    let q = q.trim();
    if let Some(milli) = q.strip_suffix('m') {
        return milli.parse::<u64>().map(|m| m / 1000).unwrap_or(0);
    }
    q.parse::<u64>().unwrap_or(0)
}

/// Checks, in order: the `Ready` condition is `True`; no [`STARTUP_TAINTS`] remain; at least
/// `gpu_count` [`GPU_RESOURCE`] are allocatable (skipped when `gpu_count` is 0).
pub fn initialization(node: &Node, gpu_count: u32) -> Initialization {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !ready {
        return Initialization::Waiting("condition Ready is not True".into());
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if let Some(t) = taints
        .iter()
        .find(|t| STARTUP_TAINTS.contains(&t.key.as_str()))
    {
        return Initialization::Waiting(format!("startup taint {} present", t.key));
    }
    if gpu_count > 0 {
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(GPU_RESOURCE))
            .map(|q| count(&q.0))
            .unwrap_or(0);
        if allocatable < u64::from(gpu_count) {
            return Initialization::Waiting(format!(
                "{GPU_RESOURCE} allocatable {allocatable} of {gpu_count}"
            ));
        }
    }
    Initialization::Ready
}

/// Whether a node's GPUs are in use, and when GPU work last finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUse {
    pub in_use: bool,
    pub last_finished: Option<jiff::Timestamp>,
}

fn requests_gpu(c: &Container) -> bool {
    c.resources.as_ref().is_some_and(|r| {
        [r.requests.as_ref(), r.limits.as_ref()]
            .into_iter()
            .flatten()
            .any(|m| m.get(GPU_RESOURCE).is_some_and(|q| count(&q.0) > 0))
    })
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// GPU use on `node_name`, from the pods bound to it whose containers (or init containers)
/// request or limit [`GPU_RESOURCE`]. In use while any such pod has not Succeeded or Failed;
/// `last_finished` is the latest container `terminated.finishedAt` among the finished ones.
pub fn gpu_use(pods: &[Pod], node_name: &str) -> GpuUse {
    let mut out = GpuUse {
        in_use: false,
        last_finished: None,
    };
    let gpu_pods = pods.iter().filter(|p| {
        p.spec.as_ref().is_some_and(|s| {
            s.node_name.as_deref() == Some(node_name)
                && s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .any(requests_gpu)
        })
    });
    for pod in gpu_pods {
        if !finished(pod) {
            out.in_use = true;
            continue;
        }
        let status = pod.status.as_ref();
        let statuses = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default()
            .iter()
            .chain(
                status
                    .and_then(|s| s.init_container_statuses.as_deref())
                    .unwrap_or_default(),
            );
        for cs in statuses {
            let at = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0);
            if at > out.last_finished {
                out.last_finished = at;
            }
        }
    }
    out
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Marks the Node unschedulable. A Node that does not exist needs no cordon.
pub async fn cordon(nodes: &Api<Node>, name: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "spec": { "unschedulable": true } });
    match nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The result of one drain pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainProgress {
    /// `namespace/name` of pods still on the node (including those evicted in this pass and
    /// those already terminating).
    pub remaining: Vec<String>,
    /// `namespace/name` of pods whose eviction was refused (429: a PodDisruptionBudget), or not
    /// answered within [`EVICTION_WAIT`].
    pub blocked: Vec<String>,
}

/// Pods a drain leaves alone: DaemonSet pods (recreated anyway), mirror pods, finished pods.
fn drain_skips(pod: &Pod) -> bool {
    let daemonset = pod
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    daemonset || mirror || finished(pod)
}

enum Evicted {
    Accepted,
    Gone,
    Blocked,
}

async fn evict(client: &kube::Client, ns: &str, name: &str) -> Result<Evicted, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match tokio::time::timeout(EVICTION_WAIT, pods.evict(name, &EvictParams::default())).await {
        Err(_elapsed) => Ok(Evicted::Blocked),
        Ok(Ok(_)) => Ok(Evicted::Accepted),
        Ok(Err(e)) if is_status(&e, 429) => Ok(Evicted::Blocked),
        Ok(Err(e)) if is_status(&e, 404) => Ok(Evicted::Gone),
        Ok(Err(e)) => Err(e),
    }
}

/// One non-blocking drain pass over the pods bound to `node_name`: evicts (policy/v1) every pod
/// a drain should move and that is not already being deleted. Call it again until `remaining`
/// is empty or the drain deadline passes; then delete the Node regardless.
pub async fn drain_pass(
    client: &kube::Client,
    node_name: &str,
) -> Result<DrainProgress, kube::Error> {
    let all: Api<Pod> = Api::all(client.clone());
    let list = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await?;
    let mut progress = DrainProgress::default();
    let mut to_evict = Vec::new();
    for pod in list.items {
        // The field selector is trusted, but a pod bound elsewhere is never touched.
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node_name)
            || drain_skips(&pod)
        {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            progress.remaining.push(format!("{ns}/{name}"));
        } else {
            to_evict.push((ns, name));
        }
    }
    let results: Vec<_> = futures::stream::iter(to_evict)
        .map(|(ns, name)| async move {
            let r = evict(client, &ns, &name).await;
            (format!("{ns}/{name}"), r)
        })
        .buffered(EVICTION_CONCURRENCY)
        .collect()
        .await;
    for (pod, result) in results {
        match result? {
            Evicted::Accepted => progress.remaining.push(pod),
            Evicted::Gone => {}
            Evicted::Blocked => {
                tracing::debug!(node = node_name, %pod, "eviction refused");
                progress.remaining.push(pod.clone());
                progress.blocked.push(pod);
            }
        }
    }
    progress.remaining.sort();
    progress.blocked.sort();
    Ok(progress)
}

/// Deletes the Node. `Ok(false)` if it did not exist.
pub async fn delete_node(nodes: &Api<Node>, name: &str) -> Result<bool, kube::Error> {
    match nodes.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
