//! `tgp crd`: prints the CustomResourceDefinitions generated from the Rust types.

/// Prints both CRDs as one YAML stream.
pub fn run() -> anyhow::Result<i32> {
    print!("{}", crate::crd::crds_yaml()?);
    Ok(0)
}
