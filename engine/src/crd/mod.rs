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
