//! `GPURequest`: one GPU machine a user wants, and everything tgp did about it.
//!
//! The spec is deliberately lenient in its Rust types (counts are signed, prices and durations
//! are text) so that a malformed object still reaches the controller, which then names the bad
//! field in a condition instead of the whole watch failing to decode. The CRD schema adds the
//! admission-time checks a real API server enforces (minimums, patterns, enums).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// What the user asks for.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tgp.io",
    version = "v1alpha1",
    kind = "GPURequest",
    plural = "gpurequests",
    shortname = "gpur",
    status = "GPURequestStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider"}"#,
    printcolumn = r#"{"name":"GPU","type":"string","jsonPath":".spec.gpuType"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Price/h","type":"string","jsonPath":".status.hourlyPrice"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.nodeName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.idleTimeout) || (has(self.bootstrap) && self.bootstrap.mode == 'talos')",
        "message": "idleTimeout needs bootstrap.mode: talos (idleness is measured from pods using the node's GPUs)"
    }
]))]
pub struct GPURequestSpec {
    /// Canonical GPU type, e.g. `H100-SXM`, `A100-80GB`, `L40S`, `RTX4090`.
    #[schemars(length(min = 1))]
    pub gpu_type: String,
    /// GPUs in the one instance (at least 1).
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 64))]
    pub gpu_count: i64,
    /// Only these GPUProviders may serve the request (by name); empty means any enabled one.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Acceptable regions; empty means any.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Highest acceptable price per hour for the whole instance, in USD, as a decimal string
    /// (e.g. "2.50").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]{1,6})?$"))]
    pub max_hourly_price: Option<String>,
    /// Launch interruptible (spot) capacity.
    #[serde(default)]
    pub spot: bool,
    /// End the instance this long after it became ready, e.g. "8h", "90m", "1h30m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub max_lifetime: Option<String>,
    /// End the instance when its GPUs have been unused this long, e.g. "30m": measured from the
    /// last time a pod on the node used an `nvidia.com/gpu` (or from readiness if none ever
    /// did). Needs `bootstrap.mode: talos`, since idleness is read from the node's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub idle_timeout: Option<String>,
    /// How the machine joins the cluster.
    #[serde(default)]
    pub bootstrap: BootstrapSpec,
    /// Labels for the Node.
    #[serde(default)]
    pub node_labels: BTreeMap<String, String>,
    /// Taints for the Node.
    #[serde(default)]
    pub node_taints: Vec<NodeTaint>,
    /// What to do when a ready instance is lost: `Fail` (default) or `Replace`.
    #[serde(default)]
    pub on_failure: OnFailure,
}

fn default_count() -> i64 {
    1
}

/// How the instance becomes a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// `none`: ready once the instance is verified running. `talos`: boot Talos, join over
    /// Tailscale, ready once the node's GPUs are allocatable.
    #[serde(default)]
    pub mode: BootstrapMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BootstrapMode {
    #[default]
    None,
    Talos,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnFailure {
    #[default]
    Fail,
    Replace,
}

/// A Node taint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeTaint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    #[schemars(regex(pattern = r"^(NoSchedule|PreferNoSchedule|NoExecute)$"))]
    pub effect: String,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Quoting,
    Launching,
    Verifying,
    Bootstrapping,
    Joining,
    Ready,
    Terminating,
    Terminated,
    Failed,
}

/// One provider considered for the request and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_price: Option<String>,
    /// Skipped, Failed, Launched, Abandoned, ...
    pub outcome: String,
    /// CamelCase reason, e.g. InsufficientBalance, Capacity, SilentLaunchFailure.
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub at: String,
}

/// The instance tgp is about to launch or has launched, written before the launch call so a
/// restarted operator finds it again instead of launching a second one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingLaunch {
    pub provider: String,
    pub offer_id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub region: String,
    /// Micro-dollars per hour.
    pub price_micro_usd: u64,
    pub spot: bool,
    pub instance_name: String,
    pub started_at: String,
}

/// Everything tgp knows and did. Optional fields serialize as `null` so that a merge patch of
/// the whole status clears what is no longer true.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPURequestStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub offer: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// USD per hour, decimal text.
    #[serde(default)]
    pub hourly_price: Option<String>,
    /// USD accrued since launch, decimal text.
    #[serde(default)]
    pub accrued_cost: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default, rename = "publicIP")]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub pending_launch: Option<PendingLaunch>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub launched_at: Option<String>,
    #[serde(default)]
    pub ready_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// When the instance was first seen not-found (for the silent-launch grace period).
    #[serde(default)]
    pub not_found_since: Option<String>,
    /// Last successful health verification.
    #[serde(default)]
    pub last_verified_at: Option<String>,
    /// Join and teardown progress of a `bootstrap.mode: talos` request.
    #[serde(default)]
    pub bootstrap: Option<BootstrapStatus>,
}

/// What tgp did to make the instance a node, and to take the node away again. The Tailscale
/// auth key itself is never stored: only its id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapStatus {
    /// The node's hostname (the instance name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// How the worker configuration reached the machine: `TalosUserData` or `CloudInit`.
    #[serde(default)]
    pub delivery: Option<String>,
    /// Id of the node's single-use, ephemeral Tailscale auth key.
    #[serde(default)]
    pub tailscale_key_id: Option<String>,
    /// Id of the node's Tailscale device, once it enrolled.
    #[serde(default)]
    pub tailscale_device_id: Option<String>,
    /// The node's tailnet address.
    #[serde(default, rename = "tailnetIP")]
    pub tailnet_ip: Option<String>,
    /// When the instance was verified running and the wait for its Node began.
    #[serde(default)]
    pub join_started_at: Option<String>,
    #[serde(default)]
    pub registered_at: Option<String>,
    #[serde(default)]
    pub initialized_at: Option<String>,
    /// Last time a pod on the node was seen using its GPUs (idleTimeout counts from here).
    #[serde(default)]
    pub gpu_last_used_at: Option<String>,
    /// A pod was using the node's GPUs at the last check: when the next check finds none, the
    /// use ended between the two, and idleness counts from that next check (never early).
    #[serde(default)]
    pub gpu_in_use: bool,
    /// Teardown: when draining began (blocked evictions are retried until the drain timeout).
    #[serde(default)]
    pub drain_started_at: Option<String>,
    #[serde(default)]
    pub node_deleted_at: Option<String>,
    #[serde(default)]
    pub tailscale_cleaned_at: Option<String>,
    /// Failed Tailscale clean-up passes; after the operator's limit the device is reported and
    /// left (ephemeral devices expire on their own).
    #[serde(default)]
    pub tailscale_cleanup_failures: u32,
}
