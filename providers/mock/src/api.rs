//! The mock cloud's wire format (`docs/mock-cloud-api.md`), as serde types.
//!
//! Kept separate from the mapping so that the JSON shapes can be checked against the document
//! in one place. Prices stay strings here; `mapping` converts them with the SDK's exact parser.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/offers` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct OffersPage {
    pub offers: Vec<ApiOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiOffer {
    pub id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub region: String,
    pub hourly_price_usd: String,
    pub spot: bool,
    pub stock: u64,
}

/// `POST /v1/instances` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateInstance<'a> {
    pub offer_id: &'a str,
    pub name: &'a str,
    pub tags: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
}

/// `{"instance": ...}` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct InstanceEnvelope {
    pub instance: ApiInstance,
}

/// `{"instances": [...]}` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct InstancesPage {
    pub instances: Vec<ApiInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiInstance {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub gpu_type: Option<String>,
    #[serde(default)]
    pub hourly_price_usd: Option<String>,
    pub status: String,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `GET /v1/account` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub balance_usd: String,
    #[serde(default)]
    pub spend_usd_per_hour: Option<String>,
}

/// `{"error": {...}}` bodies.
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
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let offers: OffersPage = serde_json::from_str(
            r#"{"offers": [{"id": "h100-sxm-1x-us-east-1", "gpu_type": "H100-SXM", "gpu_count": 1,
               "region": "us-east-1", "hourly_price_usd": "2.49", "spot": false, "stock": 4}]}"#,
        )
        .unwrap();
        assert_eq!(offers.offers[0].stock, 4);
        let inst: InstanceEnvelope = serde_json::from_str(
            r#"{"instance": {"id": "i-000001", "name": "tgp-abc123", "offer_id": "h100-sxm-1x-us-east-1",
               "gpu_type": "H100-SXM", "gpu_count": 1, "region": "us-east-1", "hourly_price_usd": "2.49",
               "spot": false, "status": "pending", "public_ip": null, "tags": {"tgp.io/cluster": "c1"},
               "created_at": "2026-11-26T12:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(inst.instance.tags["tgp.io/cluster"], "c1");
        assert_eq!(inst.instance.public_ip, None);
        let err: ErrorEnvelope = serde_json::from_str(
            r#"{"error": {"code": "invalid_request", "message": "bad", "field": "offer_id"}}"#,
        )
        .unwrap();
        assert_eq!(err.error.field.as_deref(), Some("offer_id"));
        let account: Account =
            serde_json::from_str(r#"{"balance_usd": "100.00", "spend_usd_per_hour": "2.49"}"#)
                .unwrap();
        assert_eq!(account.balance_usd, "100.00");
    }

    #[test]
    fn create_body_omits_absent_options() {
        let body = CreateInstance {
            offer_id: "o",
            name: "n",
            tags: BTreeMap::from([("k", "v")]),
            user_data: None,
            image: Some("talos"),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"offer_id": "o", "name": "n", "tags": {"k": "v"}, "image": "talos"})
        );
    }
}
