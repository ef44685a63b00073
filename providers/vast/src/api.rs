//! Vast.ai's v0 wire format (research notes §3), as serde types.
//!
//! Vast sends prices as JSON floats (USD per hour for the whole machine), kept as
//! `serde_json::Value` here and converted exactly by `mapping`. Errors come as
//! `{"success": false, "error", "msg"}`, sometimes only `msg`/`message`/`detail`, and 429s may be
//! plain text; `ApiError` reads whatever is there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /bundles/` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Offers {
    #[serde(default)]
    pub offers: Vec<VastOffer>,
}

/// One offer ("ask"): a machine one instance can rent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VastOffer {
    pub id: u64,
    #[serde(default)]
    pub gpu_name: String,
    #[serde(default)]
    pub num_gpus: u32,
    /// Per-GPU memory, MB.
    #[serde(default)]
    pub gpu_ram: Option<f64>,
    #[serde(default)]
    pub dph_total: Option<Value>,
    #[serde(default)]
    pub dph_base: Option<Value>,
    #[serde(default)]
    pub min_bid: Option<Value>,
    #[serde(default)]
    pub reliability: Option<f64>,
    #[serde(default)]
    pub reliability2: Option<f64>,
    /// "City, CC".
    #[serde(default)]
    pub geolocation: Option<String>,
    #[serde(default)]
    pub rentable: Option<bool>,
    #[serde(default)]
    pub rented: Option<bool>,
}

/// `PUT /asks/{id}/` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateBody {
    pub image: String,
    pub label: String,
    pub disk: u32,
    pub runtype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onstart: Option<String>,
    pub env: Map<String, Value>,
    /// Interruptible bid, USD per hour for the machine; absent = on-demand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// A create answer, success or not: an error may still carry `new_contract`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateAnswer {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub new_contract: Option<Value>,
}

impl CreateAnswer {
    /// The created instance id, as a number or a numeric string.
    pub fn contract(&self) -> Option<u64> {
        match self.new_contract.as_ref()? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// `GET /instances/{id}/`: `instances` holds one object (or null).
#[derive(Debug, Clone, Deserialize)]
pub struct OneInstance {
    #[serde(default)]
    pub instances: Option<VastInstance>,
}

/// `GET /instances/`.
#[derive(Debug, Clone, Deserialize)]
pub struct Instances {
    #[serde(default)]
    pub instances: Vec<VastInstance>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VastInstance {
    pub id: u64,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub actual_status: Option<String>,
    #[serde(default)]
    pub intended_status: Option<String>,
    #[serde(default)]
    pub cur_state: Option<String>,
    #[serde(default)]
    pub status_msg: Option<String>,
    #[serde(default)]
    pub public_ipaddr: Option<String>,
    #[serde(default)]
    pub dph_total: Option<Value>,
    #[serde(default)]
    pub gpu_name: Option<String>,
    #[serde(default)]
    pub gpu_ram: Option<f64>,
    #[serde(default)]
    pub geolocation: Option<String>,
}

/// `GET /users/current/`.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(default)]
    pub credit: Option<Value>,
    #[serde(default)]
    pub balance: Option<Value>,
}

/// Any Vast error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub msg: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let offers: Offers = serde_json::from_str(
            r#"{"offers": [{"id": 1234567, "ask_contract_id": 1234567, "num_gpus": 1, "gpu_name": "RTX 4090",
               "gpu_ram": 24564, "dph_base": 0.35, "dph_total": 0.3611, "min_bid": 0.2, "reliability2": 0.995,
               "geolocation": "Quebec, CA", "rentable": true, "rented": false}]}"#,
        )
        .unwrap();
        assert_eq!(offers.offers[0].gpu_name, "RTX 4090");
        let ok: CreateAnswer =
            serde_json::from_str(r#"{"success": true, "new_contract": 1234568}"#).unwrap();
        assert_eq!(ok.contract(), Some(1234568));
        let bid: CreateAnswer = serde_json::from_str(
            r#"{"success": false, "error": "insufficient_bid", "msg": "x", "new_contract": "77", "ask_id": 1}"#,
        )
        .unwrap();
        assert_eq!(bid.contract(), Some(77));
        let one: OneInstance = serde_json::from_str(
            r#"{"instances": {"id": 77, "label": "n|", "actual_status": null, "intended_status": "running",
               "cur_state": "running", "public_ipaddr": "192.0.2.4 ", "dph_total": 0.4}}"#,
        )
        .unwrap();
        assert_eq!(one.instances.unwrap().actual_status, None);
        let err: ApiError = serde_json::from_str(
            r#"{"detail": "API requests too frequent endpoint threshold=4.5"}"#,
        )
        .unwrap();
        assert!(err.detail.is_some());
    }
}
