//! Executes a parsed GraphQL operation against the simulated RunPod account: the root fields RunPod
//! serves (`gpuTypes`, `myself`, `pod`, `dataCenters`, `countryCodes`, `podFindAndDeployOnDemand`,
//! `podRentInterruptable`, `podTerminate`), each answered with only the selected fields.
//!
//! Domain failures follow GraphQL (and RunPod): HTTP 200, the field is `null` in `data` and an
//! entry in `errors` carries RunPod's message and the field's `path`. Request-level failures
//! (unknown root field, bad selection) are [`GqlError`]s answered before anything executes.

use serde_json::{Map, Value, json};

use super::graphql::{GqlError, OpKind, Operation, SelField, project};
use super::state::{DeployError, DeployInput, Deployed, RunpodState, SOMETHING_WENT_WRONG};
use crate::clock::SimClock;
use crate::faults::FaultEngine;
use crate::money::MICRO;

/// Root query fields served.
pub const QUERY_FIELDS: &[&str] = &["gpuTypes", "myself", "pod", "dataCenters", "countryCodes"];
/// Root query fields that need no credentials (when the config allows anonymous catalogue reads).
pub const CATALOGUE_FIELDS: &[&str] = &["gpuTypes", "dataCenters", "countryCodes"];
/// Root mutation fields served.
pub const MUTATION_FIELDS: &[&str] = &[
    "podFindAndDeployOnDemand",
    "podRentInterruptable",
    "podTerminate",
];

/// The `{data, errors}` answer of an executed operation.
pub fn execute(
    op: &Operation,
    st: &mut RunpodState,
    clock: &SimClock,
    faults: &FaultEngine,
) -> Result<Value, GqlError> {
    let (root, known) = match op.kind {
        OpKind::Query => ("Query", QUERY_FIELDS),
        OpKind::Mutation => ("Mutation", MUTATION_FIELDS),
    };
    // Validate every root field and deploy selection before executing any of them.
    for f in &op.fields {
        if f.name == "__typename" {
            continue;
        }
        if !known.contains(&f.name.as_str()) {
            return Err(GqlError::validation(format!(
                "Cannot query field \"{}\" on type \"{root}\".",
                f.name
            )));
        }
        if f.name.starts_with("pod") && f.name != "podTerminate" && op.kind == OpKind::Mutation {
            project(&st.pod_template(), &f.sub, &|_, _| None)?;
        }
        if f.name == "podTerminate" && !f.sub.is_empty() {
            return Err(GqlError::validation(
                "Field \"podTerminate\" must not have a selection since type \"Void\" has no subfields.",
            ));
        }
    }
    let mut data = Map::new();
    let mut errors = Vec::new();
    for f in &op.fields {
        let now = clock.now();
        let result: Result<Value, FieldError> = match f.name.as_str() {
            "__typename" => Ok(json!(root)),
            "gpuTypes" => {
                let input = f.args.get("input").cloned().unwrap_or(Value::Null);
                let ids: Option<Vec<String>> = match (input.get("id"), input.get("ids")) {
                    (Some(Value::String(id)), _) => Some(vec![id.clone()]),
                    (_, Some(Value::Array(ids))) => Some(
                        ids.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                };
                let full = Value::Array(st.gpu_types(ids.as_deref()));
                let hook = |parent: &Value, field: &SelField| {
                    (field.name == "lowestPrice" && parent["__typename"] == "GpuType").then(|| {
                        let input = field.args.get("input").cloned().unwrap_or(Value::Null);
                        Ok(st.lowest_price(parent["id"].as_str().unwrap_or(""), &input, now))
                    })
                };
                project(&full, &f.sub, &hook).map_err(FieldError::Request)
            }
            "dataCenters" => project(&Value::Array(st.data_centers()), &f.sub, &|_, _| None)
                .map_err(FieldError::Request),
            "countryCodes" => Ok(json!(["CA", "CZ", "NL", "RO", "SE", "US"])),
            "myself" => {
                let full = json!({
                    "__typename": "User",
                    "id": "user_sim0001", "authId": "sim|0001", "email": "sim@example.invalid",
                    "clientBalance": st.balance(now) as f64 / MICRO as f64,
                    "currentSpendPerHr": st.spend_per_hour(now) as f64 / MICRO as f64,
                    "spendLimit": 80, "machineQuota": 0, "referralEarned": 0.0,
                    "signedTermsOfService": true, "hostBalance": 0.0,
                    "pods": st.pods(now),
                });
                project(&full, &f.sub, &|_, _| None).map_err(FieldError::Request)
            }
            "pod" => {
                let id = input_str(f, "podId");
                match id {
                    None => Err(FieldError::Domain("podId is required".into())),
                    Some(id) => {
                        project(&st.pod(&id, now).unwrap_or(Value::Null), &f.sub, &|_, _| {
                            None
                        })
                        .map_err(FieldError::Request)
                    }
                }
            }
            "podFindAndDeployOnDemand" | "podRentInterruptable" => {
                let spot = f.name == "podRentInterruptable";
                match deploy_input(f.args.get("input"), spot) {
                    Err(e) => Err(FieldError::Domain(e)),
                    Ok(input) => match st.deploy(input, clock, faults) {
                        Err(DeployError(m)) => Err(FieldError::Domain(m)),
                        Ok(Deployed::Created(p) | Deployed::Ghost(p)) => {
                            project(&p, &f.sub, &|_, _| None).map_err(FieldError::Request)
                        }
                        Ok(Deployed::Lost(_)) => {
                            Err(FieldError::Domain(SOMETHING_WENT_WRONG.into()))
                        }
                    },
                }
            }
            "podTerminate" => match input_str(f, "podId") {
                None => Err(FieldError::Domain("podId is required".into())),
                Some(id) => st
                    .terminate(&id, now)
                    .map(|()| Value::Null)
                    .map_err(|DeployError(m)| FieldError::Domain(m)),
            },
            _ => Ok(Value::Null),
        };
        match result {
            Ok(v) => {
                data.insert(f.key.clone(), v);
            }
            Err(FieldError::Request(e)) => return Err(e),
            Err(FieldError::Domain(message)) => {
                data.insert(f.key.clone(), Value::Null);
                errors.push(json!({"message": message, "path": [f.key]}));
            }
        }
    }
    let mut out = json!({ "data": data });
    if !errors.is_empty() {
        out["errors"] = Value::Array(errors);
    }
    Ok(out)
}

enum FieldError {
    Request(GqlError),
    Domain(String),
}

fn input_str(f: &SelField, key: &str) -> Option<String> {
    f.args
        .get("input")
        .and_then(|i| i.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative Int")),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a String")),
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative Float")),
    }
}

/// Validates the `input` of a deploy mutation (field names as RunPod's clients send them).
pub fn deploy_input(input: Option<&Value>, spot: bool) -> Result<DeployInput, String> {
    let Some(Value::Object(o)) = input else {
        return Err("input is required".into());
    };
    let gpu_type_id = opt_str(o, "gpuTypeId")?.ok_or("gpuTypeId is required")?;
    let image_name = opt_str(o, "imageName")?;
    let template_id = opt_str(o, "templateId")?;
    if image_name.is_none() && template_id.is_none() {
        return Err("imageName is required".into());
    }
    let gpu_count = opt_u32(o, "gpuCount")?.unwrap_or(1);
    if gpu_count == 0 {
        return Err("gpuCount must be at least 1".into());
    }
    let cloud_type = opt_str(o, "cloudType")?.unwrap_or_else(|| "ALL".into());
    if !["ALL", "SECURE", "COMMUNITY"].contains(&cloud_type.as_str()) {
        return Err(format!(
            "cloudType must be ALL, SECURE or COMMUNITY, not {cloud_type}"
        ));
    }
    let mut env = Vec::new();
    match o.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for i in items {
                let (Some(k), Some(v)) = (
                    i.get("key").and_then(Value::as_str),
                    i.get("value").and_then(Value::as_str),
                ) else {
                    return Err("env entries must be {key: String, value: String}".into());
                };
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        Some(_) => return Err("env must be a list of {key, value}".into()),
    }
    let bid_per_gpu = opt_f64(o, "bidPerGpu")?;
    if spot && bid_per_gpu.is_none() {
        return Err("bidPerGpu is required".into());
    }
    Ok(DeployInput {
        name: opt_str(o, "name")?.unwrap_or_default(),
        image_name: image_name.or(template_id).unwrap_or_default(),
        gpu_type_id,
        gpu_count,
        cloud_type,
        data_center_id: opt_str(o, "dataCenterId")?,
        container_disk_gb: opt_u32(o, "containerDiskInGb")?.unwrap_or(0),
        volume_gb: opt_u32(o, "volumeInGb")?.unwrap_or(0),
        volume_mount_path: opt_str(o, "volumeMountPath")?,
        docker_args: opt_str(o, "dockerArgs")?.unwrap_or_default(),
        ports: opt_str(o, "ports")?.unwrap_or_default(),
        env,
        deploy_cost: opt_f64(o, "deployCost")?,
        bid_per_gpu: if spot { bid_per_gpu } else { None },
        min_vcpu: opt_u32(o, "minVcpuCount")?.unwrap_or(0),
        min_memory_gb: opt_u32(o, "minMemoryInGb")?.unwrap_or(0),
    })
}
