//! Checks a GPURequest's spec before anything is asked of a provider.
//!
//! The CRD schema rejects what it can at admission; this catches the rest (and everything, when
//! the schema was bypassed). A bad request gets one clear message naming the field and the
//! reason, and no provider is ever called for it.

use std::time::Duration;

use crate::catalog;
use crate::crd::gpurequest::{BootstrapMode, GPURequestSpec};
use crate::money;
use crate::plugins::GpuSpec;

use super::duration;

/// A spec problem: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// A spec that passed every check, in the engine's own types.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub gpu: GpuSpec,
    /// Allowed providers; empty means any.
    pub providers: Vec<String>,
    pub max_lifetime: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

fn field_err(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

const VALID_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Validates `spec`; the first problem found is returned.
pub fn validate(spec: &GPURequestSpec) -> Result<ValidRequest, FieldError> {
    if spec.gpu_type.trim().is_empty() {
        return Err(field_err("gpuType", "is required"));
    }
    let gpu_type = catalog::canonical(&spec.gpu_type).ok_or_else(|| {
        field_err(
            "gpuType",
            format!(
                "unknown GPU type {:?}; known types: {}",
                spec.gpu_type,
                catalog::known_names()
            ),
        )
    })?;
    if spec.gpu_count < 1 {
        return Err(field_err(
            "gpuCount",
            format!("must be at least 1, got {}", spec.gpu_count),
        ));
    }
    if spec.gpu_count > 64 {
        return Err(field_err(
            "gpuCount",
            format!("must be at most 64, got {}", spec.gpu_count),
        ));
    }
    let max_price_per_hour = match &spec.max_hourly_price {
        Some(text) => {
            Some(money::parse_usd(text).map_err(|e| field_err("maxHourlyPrice", e.to_string()))?)
        }
        None => None,
    };
    if max_price_per_hour == Some(0) {
        return Err(field_err("maxHourlyPrice", "must be more than 0"));
    }
    for (i, p) in spec.providers.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(field_err(&format!("providers[{i}]"), "must not be empty"));
        }
    }
    for (i, r) in spec.regions.iter().enumerate() {
        if r.trim().is_empty() {
            return Err(field_err(&format!("regions[{i}]"), "must not be empty"));
        }
    }
    let max_lifetime = spec
        .max_lifetime
        .as_deref()
        .map(duration::parse)
        .transpose()
        .map_err(|e| field_err("maxLifetime", e.to_string()))?;
    let idle_timeout = spec
        .idle_timeout
        .as_deref()
        .map(duration::parse)
        .transpose()
        .map_err(|e| field_err("idleTimeout", e.to_string()))?;
    if idle_timeout.is_some() && spec.bootstrap.mode != BootstrapMode::Talos {
        return Err(field_err(
            "idleTimeout",
            "needs bootstrap.mode: talos (idleness is measured from pods using the node's GPUs, \
             and without a node there are none to see)",
        ));
    }
    for (key, value) in &spec.node_labels {
        if !valid_label_key(key) {
            return Err(field_err(
                &format!("nodeLabels[{key}]"),
                "is not a valid label key",
            ));
        }
        if !valid_label_value(value) {
            return Err(field_err(
                &format!("nodeLabels[{key}]"),
                format!("value {value:?} is not a valid label value"),
            ));
        }
    }
    for (i, taint) in spec.node_taints.iter().enumerate() {
        if !valid_label_key(&taint.key) {
            return Err(field_err(
                &format!("nodeTaints[{i}].key"),
                "is not a valid taint key",
            ));
        }
        if !VALID_EFFECTS.contains(&taint.effect.as_str()) {
            return Err(field_err(
                &format!("nodeTaints[{i}].effect"),
                format!(
                    "{:?} is not one of {}",
                    taint.effect,
                    VALID_EFFECTS.join(", ")
                ),
            ));
        }
    }
    Ok(ValidRequest {
        gpu: GpuSpec {
            gpu_type: gpu_type.to_string(),
            count: spec.gpu_count as u32,
            regions: spec.regions.clone(),
            spot: spec.spot,
            max_price_per_hour,
            aliases: crate::catalog::aliases(&gpu_type),
        },
        providers: spec.providers.clone(),
        max_lifetime,
        idle_timeout,
    })
}

fn valid_name_part(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `[prefix/]name` as Kubernetes label keys allow.
fn valid_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .split('.')
                    .all(|p| valid_name_part(p, 63) && !p.contains('_'))
                && valid_name_part(name, 63)
        }
        None => valid_name_part(key, 63),
    }
}

fn valid_label_value(value: &str) -> bool {
    value.is_empty() || valid_name_part(value, 63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::gpurequest::NodeTaint;

    fn spec() -> GPURequestSpec {
        serde_json::from_value(serde_json::json!({"gpuType": "H100-SXM"})).expect("minimal spec")
    }

    #[test]
    fn accepts_a_minimal_spec() {
        let v = validate(&spec()).expect("valid");
        assert_eq!(v.gpu.gpu_type, "H100-SXM");
        assert_eq!(v.gpu.count, 1);
    }

    #[test]
    fn names_the_field_of_each_problem() {
        type Edit = Box<dyn Fn(&mut GPURequestSpec)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|s| s.gpu_type = "H9000".into()), "gpuType"),
            (Box::new(|s| s.gpu_type = "".into()), "gpuType"),
            (Box::new(|s| s.gpu_count = -1), "gpuCount"),
            (Box::new(|s| s.gpu_count = 0), "gpuCount"),
            (
                Box::new(|s| s.max_hourly_price = Some("cheap".into())),
                "maxHourlyPrice",
            ),
            (
                Box::new(|s| s.max_hourly_price = Some("-3".into())),
                "maxHourlyPrice",
            ),
            (
                Box::new(|s| s.max_lifetime = Some("forever".into())),
                "maxLifetime",
            ),
            (
                Box::new(|s| s.idle_timeout = Some("10".into())),
                "idleTimeout",
            ),
            (
                Box::new(|s| s.idle_timeout = Some("10m".into())),
                "idleTimeout",
            ),
            (
                Box::new(|s| {
                    s.node_labels.insert("bad key!".into(), "v".into());
                }),
                "nodeLabels[bad key!]",
            ),
            (
                Box::new(|s| {
                    s.node_taints.push(NodeTaint {
                        key: "gpu".into(),
                        value: "".into(),
                        effect: "Sometimes".into(),
                    })
                }),
                "nodeTaints[0].effect",
            ),
            (Box::new(|s| s.regions.push(" ".into())), "regions[0]"),
        ];
        for (mutate, field) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = validate(&s).expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(!err.reason.is_empty());
        }
    }
}
