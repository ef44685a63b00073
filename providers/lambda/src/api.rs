//! Lambda Cloud's v1 wire format (OpenAPI 1.8.3, research notes §2), as serde types.
//!
//! Success bodies are `{"data": ...}`, errors `{"error": {code, message, suggestion}}`. Prices are
//! integer cents per hour for the whole instance; `mapping` converts them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"data": T}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// One entry of `GET /instance-types` (a map keyed by type name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstanceTypeEntry {
    pub instance_type: InstanceType,
    #[serde(default)]
    pub regions_with_capacity_available: Vec<Region>,
}

pub type InstanceTypes = BTreeMap<String, InstanceTypeEntry>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstanceType {
    pub name: String,
    #[serde(default)]
    pub price_cents_per_hour: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Region {
    pub name: String,
}

/// A tag as Lambda carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTag {
    pub key: String,
    pub value: String,
}

/// `image` of a launch: by family or by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Image {
    Family(String),
    Id(String),
}

/// `POST /instance-operations/launch` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchBody {
    pub region_name: String,
    pub instance_type_name: String,
    /// "Currently, exactly one SSH key must be specified."
    pub ssh_key_names: Vec<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    pub tags: Vec<ApiTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

/// `data` of a launch.
#[derive(Debug, Clone, Deserialize)]
pub struct Launched {
    pub instance_ids: Vec<String>,
}

/// `POST /instance-operations/terminate` body.
#[derive(Debug, Clone, Serialize)]
pub struct TerminateBody<'a> {
    pub instance_ids: [&'a str; 1],
}

/// `data` of a terminate.
#[derive(Debug, Clone, Deserialize)]
pub struct Terminated {
    #[serde(default)]
    pub terminated_instances: Vec<ApiInstance>,
}

/// An instance (only the fields the plugin reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiInstance {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Public IPv4; absent until late in boot.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub region: Option<Region>,
    #[serde(default)]
    pub instance_type: Option<InstanceType>,
    #[serde(default)]
    pub tags: Option<Vec<ApiTag>>,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ApiError,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub suggestion: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let types: Data<InstanceTypes> = serde_json::from_str(
            r#"{"data": {"gpu_1x_gh200": {
              "instance_type": {"name": "gpu_1x_gh200", "description": "1x GH200 (96 GB)", "gpu_description": "GH200 (96 GB)",
                                "price_cents_per_hour": 149,
                                "specs": {"vcpus": 64, "memory_gib": 432, "storage_gib": 4096, "gpus": 1}},
              "regions_with_capacity_available": [{"name": "us-west-1", "description": "California, USA"}]}}}"#,
        )
        .unwrap();
        let entry = &types.data["gpu_1x_gh200"];
        assert_eq!(entry.instance_type.price_cents_per_hour, Some(149));
        assert_eq!(entry.regions_with_capacity_available[0].name, "us-west-1");
        let launched: Data<Launched> = serde_json::from_str(
            r#"{"data": {"instance_ids": ["0920582c7ff041399e34823a0be62549"]}}"#,
        )
        .unwrap();
        assert_eq!(launched.data.instance_ids.len(), 1);
        let err: ErrorEnvelope = serde_json::from_str(
            r#"{"error":{"code":"provider/internal-unavailable","message":"Provider unavailable","suggestion":"Try again shortly"}}"#,
        )
        .unwrap();
        assert_eq!(err.error.code, "provider/internal-unavailable");
    }

    #[test]
    fn launch_body_shape() {
        let body = LaunchBody {
            region_name: "us-east-1".into(),
            instance_type_name: "gpu_1x_h100_sxm5".into(),
            ssh_key_names: vec!["tgp".into()],
            name: "tgp-abc-1".into(),
            hostname: None,
            user_data: Some("#cloud-config".into()),
            tags: vec![ApiTag {
                key: "tgp:dio:scluster".into(),
                value: "c1".into(),
            }],
            image: Some(Image::Family("lambda-stack-22-04".into())),
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["ssh_key_names"], serde_json::json!(["tgp"]));
        assert_eq!(
            v["image"],
            serde_json::json!({"family": "lambda-stack-22-04"})
        );
        assert!(v.get("hostname").is_none());
        assert_eq!(
            serde_json::to_value(TerminateBody {
                instance_ids: ["i"]
            })
            .unwrap(),
            serde_json::json!({"instance_ids": ["i"]})
        );
    }
}
