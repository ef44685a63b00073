//! The operator's resources: `GPURequest` (what a user wants) and `GPUProvider` (where it can
//! come from), group `tgp.io`, generated from these Rust types. `tgp crd` prints their YAML.

pub mod conditions;
pub mod gpuprovider;
pub mod gpurequest;

pub use conditions::Condition;
pub use gpuprovider::{GPUProvider, GPUProviderSpec, GPUProviderStatus};
pub use gpurequest::{GPURequest, GPURequestSpec, GPURequestStatus, Phase};

/// The API group of every tgp resource.
pub const GROUP: &str = "tgp.io";
/// The served version.
pub const VERSION: &str = "v1alpha1";
/// The finalizer that keeps a GPURequest until its instance is confirmed gone.
pub const FINALIZER: &str = "tgp.io/instance-cleanup";

/// Both CRDs as one multi-document YAML stream, as `tgp crd` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [GPURequest::crd(), GPUProvider::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// The chart ships the CRDs; they must be exactly what the types generate.
    /// Regenerate with `tgp crd > charts/tgp/crds/tgp-crds.yaml`.
    #[test]
    fn committed_crds_match_the_types() {
        let committed = include_str!("../../../charts/tgp/crds/tgp-crds.yaml");
        let generated = super::crds_yaml().expect("CRDs serialize");
        assert!(
            committed == generated,
            "charts/tgp/crds/tgp-crds.yaml is out of date: run `tgp crd > charts/tgp/crds/tgp-crds.yaml`"
        );
    }

    #[test]
    fn schema_rejects_what_admission_can() {
        let crd = serde_json::to_value(<super::GPURequest as kube::CustomResourceExt>::crd())
            .expect("json");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["gpuCount"]["minimum"].as_f64(), Some(1.0));
        assert!(spec["maxHourlyPrice"]["pattern"].is_string());
        assert!(spec["bootstrap"]["properties"]["mode"]["enum"].is_array());
    }
}
