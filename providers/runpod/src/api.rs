//! RunPod's GraphQL wire format (research notes §1): the documents the plugin sends and the
//! shapes it reads back, as serde types.
//!
//! Only fields the notes confirm are selected: a real GraphQL server refuses a whole document
//! that names an unknown field. Money stays `serde_json::Value` here (RunPod sends floats) and is
//! converted exactly by `mapping`. Deploy inputs go as `$input` variables (typed as runpodctl
//! does), so no user-controlled string is ever spliced into a document.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Stock-aware catalogue query (gpuhunt's form), for one GPU type and one location.
pub const QUOTE_QUERY: &str = "query Quote($gpuTypesInput: GpuTypeFilter, $lowestPriceInput: GpuLowestPriceInput) { gpuTypes(input: $gpuTypesInput) { id displayName maxGpuCount securePrice communityPrice lowestPrice(input: $lowestPriceInput) { minimumBidPrice uninterruptablePrice stockStatus } } }";

/// The pod fields read back everywhere (a subset of dstack's and runpod-python's pod query).
pub const POD_FIELDS: &str = "id name desiredStatus costPerHr gpuCount env runtime { ports { ip isIpPublic privatePort publicPort type } } machine { gpuDisplayName }";

/// On-demand deploy.
pub fn deploy_on_demand_mutation() -> String {
    format!(
        "mutation Deploy($input: PodFindAndDeployOnDemandInput!) {{ podFindAndDeployOnDemand(input: $input) {{ {POD_FIELDS} }} }}"
    )
}

/// Spot (interruptible) deploy.
pub fn deploy_spot_mutation() -> String {
    format!(
        "mutation Deploy($input: PodRentInterruptableInput!) {{ podRentInterruptable(input: $input) {{ {POD_FIELDS} }} }}"
    )
}

/// One pod by id. The id is written as a JSON string literal, which is a valid GraphQL string.
pub fn pod_query(pod_id: &str) -> String {
    let id = serde_json::to_string(pod_id).unwrap_or_else(|_| "\"\"".into());
    format!("query Pod {{ pod(input: {{podId: {id}}}) {{ {POD_FIELDS} }} }}")
}

/// Terminate a pod (`podTerminate` has no selection set).
pub fn terminate_mutation(pod_id: &str) -> String {
    let id = serde_json::to_string(pod_id).unwrap_or_else(|_| "\"\"".into());
    format!("mutation Terminate {{ podTerminate(input: {{podId: {id}}}) }}")
}

/// Every pod of the account.
pub fn pods_query() -> String {
    format!("query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}")
}

/// Balance and spend rate.
pub const BALANCE_QUERY: &str = "query Balance { myself { clientBalance currentSpendPerHr } }";

/// `data` of [`QUOTE_QUERY`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuTypesData {
    #[serde(default)]
    pub gpu_types: Option<Vec<GpuType>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuType {
    pub id: String,
    #[serde(default)]
    pub max_gpu_count: Option<u32>,
    #[serde(default)]
    pub secure_price: Option<Value>,
    #[serde(default)]
    pub community_price: Option<Value>,
    #[serde(default)]
    pub lowest_price: Option<LowestPrice>,
}

/// `lowestPrice(input)`: per-GPU prices and stock for the input's count and location.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LowestPrice {
    #[serde(default)]
    pub minimum_bid_price: Option<Value>,
    #[serde(default)]
    pub uninterruptable_price: Option<Value>,
    /// `null` = not available for this count and location; otherwise e.g. Low/Medium/High.
    #[serde(default)]
    pub stock_status: Option<String>,
}

/// A pod as selected by [`POD_FIELDS`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub desired_status: Option<String>,
    #[serde(default)]
    pub cost_per_hr: Option<Value>,
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// `"KEY=VALUE"` strings.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `null` until the container is up.
    #[serde(default)]
    pub runtime: Option<Runtime>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Runtime {
    #[serde(default)]
    pub ports: Option<Vec<RuntimePort>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePort {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub is_ip_public: Option<bool>,
}

/// `data` of [`pod_query`]: `pod` is `null` for an unknown id.
#[derive(Debug, Clone, Deserialize)]
pub struct PodData {
    #[serde(default)]
    pub pod: Option<Pod>,
}

/// `data` of the deploy mutations (one of the two fields is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployData {
    #[serde(default)]
    pub pod_find_and_deploy_on_demand: Option<Pod>,
    #[serde(default)]
    pub pod_rent_interruptable: Option<Pod>,
}

/// `data` of the `myself` queries.
#[derive(Debug, Clone, Deserialize)]
pub struct MyselfData {
    pub myself: Myself,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Myself {
    #[serde(default)]
    pub client_balance: Option<Value>,
    #[serde(default)]
    pub current_spend_per_hr: Option<Value>,
    #[serde(default)]
    pub pods: Option<Vec<Pod>>,
}

/// `{key, value}` of a deploy input's `env` (it comes back as `"KEY=VALUE"` strings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

/// `PodFindAndDeployOnDemandInput` / `PodRentInterruptableInput` (the same fields; `bidPerGpu`
/// only for spot, `deployCost` only on demand).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployInput {
    pub name: String,
    pub image_name: String,
    pub gpu_type_id: String,
    pub gpu_count: u32,
    pub cloud_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_center_id: Option<String>,
    pub container_disk_in_gb: u32,
    pub volume_in_gb: u32,
    /// SkyPilot notes that `PodRentInterruptableInput` requires it.
    pub volume_mount_path: String,
    pub docker_args: String,
    pub ports: String,
    pub support_public_ip: bool,
    pub env: Vec<EnvVar>,
    /// On-demand price ceiling, USD per hour for the pod (runpodctl `--cost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_cost: Option<f64>,
    /// Spot bid, USD per GPU per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_per_gpu: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let data: GpuTypesData = serde_json::from_str(
            r#"{"gpuTypes": [{"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "maxGpuCount": 8,
                "securePrice": 2.99, "communityPrice": 2.39,
                "lowestPrice": {"minimumBidPrice": 1.5, "uninterruptablePrice": 2.99, "stockStatus": "High"}}]}"#,
        )
        .unwrap();
        let t = &data.gpu_types.unwrap()[0];
        assert_eq!(
            t.lowest_price.as_ref().unwrap().stock_status.as_deref(),
            Some("High")
        );
        let pod: PodData = serde_json::from_str(
            r#"{"pod": {"id": "50qynxzilsxoey", "name": "tgp-1", "desiredStatus": "RUNNING", "costPerHr": 2.99,
                "gpuCount": 1, "env": ["JUPYTER_PASSWORD=x"], "runtime": null, "machine": {"gpuDisplayName": "H100 SXM"}}}"#,
        )
        .unwrap();
        assert!(pod.pod.unwrap().runtime.is_none());
        let gone: PodData = serde_json::from_str(r#"{"pod": null}"#).unwrap();
        assert!(gone.pod.is_none());
    }

    #[test]
    fn documents_embed_ids_as_string_literals() {
        assert_eq!(
            terminate_mutation("abc"),
            r#"mutation Terminate { podTerminate(input: {podId: "abc"}) }"#
        );
        assert!(pod_query("a\"} evil").contains(r#"podId: "a\"} evil""#));
        assert!(deploy_spot_mutation().contains("podRentInterruptable(input: $input)"));
    }

    #[test]
    fn deploy_input_uses_runpod_field_names() {
        let input = DeployInput {
            name: "tgp-1".into(),
            image_name: "img".into(),
            gpu_type_id: "NVIDIA L4".into(),
            gpu_count: 2,
            cloud_type: "SECURE".into(),
            data_center_id: None,
            container_disk_in_gb: 20,
            volume_in_gb: 0,
            volume_mount_path: "/workspace".into(),
            docker_args: String::new(),
            ports: "22/tcp".into(),
            support_public_ip: true,
            env: vec![EnvVar {
                key: "K".into(),
                value: "V".into(),
            }],
            deploy_cost: None,
            bid_per_gpu: Some(0.2),
        };
        let v = serde_json::to_value(&input).unwrap();
        assert_eq!(v["gpuTypeId"], "NVIDIA L4");
        assert_eq!(v["bidPerGpu"], 0.2);
        assert_eq!(v["env"][0]["key"], "K");
        assert!(v.get("deployCost").is_none() && v.get("dataCenterId").is_none());
    }
}
