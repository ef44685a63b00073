//! `GPUProvider`: one configured cloud: which plugin module to load, what it may reach, its
//! credentials (by Secret reference, never inline), its configuration, limits and priority.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tgp.io",
    version = "v1alpha1",
    kind = "GPUProvider",
    plural = "gpuproviders",
    shortname = "gpup",
    status = "GPUProviderStatus",
    printcolumn = r#"{"name":"Plugin","type":"string","jsonPath":".status.pluginName"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GPUProviderSpec {
    /// Where the plugin module comes from.
    pub module: ModuleSource,
    /// Credentials: a Secret in the operator's namespace, and which of its keys become which
    /// secret names the plugin refers to (`{{secret:NAME}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// `scheme://host[:port]` origins the plugin may call. Everything else is refused.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Plugin configuration values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: ProviderLimits,
    /// Breaks price ties between providers: higher wins.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a node booted on this provider may take to register with the cluster before
    /// its instance is terminated, e.g. "30m" (large GPU machines on some clouds take 20-30
    /// minutes to boot). Unset: the operator's `--registration-timeout` (15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub registration_timeout: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The plugin module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSource {
    /// A path on the operator's filesystem (development, and images that ship plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expected `sha256:<hex>` digest of the module; refused if the bytes differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Secret name (in the operator's namespace).
    pub secret_name: String,
    /// Plugin secret name -> key in the Secret.
    pub keys: BTreeMap<String, String>,
}

/// Sandbox limits; unset fields use the defaults (30 s, 64 MiB, 16 concurrent calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 4096))]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUProviderStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_version: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// USD, decimal text; absent when the provider has no balance API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
