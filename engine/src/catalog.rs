//! The canonical GPU catalogue: the names users write in a GPURequest and on the command line.
//!
//! Providers call the same GPU by different names ("NVIDIA H100 80GB HBM3", "gpu_1x_h100_sxm5",
//! "H100 SXM"). The engine speaks only canonical names and refuses any other with a list of the
//! known ones; each plugin maps canonical names to its vendor's own in one place.

/// Every canonical GPU type tgp knows, with a short description.
pub const GPU_TYPES: &[(&str, &str)] = &[
    ("H200", "NVIDIA H200 141GB"),
    ("H100-SXM", "NVIDIA H100 80GB SXM5"),
    ("H100-PCIe", "NVIDIA H100 80GB PCIe"),
    ("H100-NVL", "NVIDIA H100 NVL 94GB"),
    ("A100-80GB", "NVIDIA A100 80GB (SXM or PCIe)"),
    ("A100-40GB", "NVIDIA A100 40GB"),
    ("L40S", "NVIDIA L40S 48GB"),
    ("L40", "NVIDIA L40 48GB"),
    ("L4", "NVIDIA L4 24GB"),
    ("A6000", "NVIDIA RTX A6000 48GB"),
    ("A10", "NVIDIA A10 24GB"),
    ("A40", "NVIDIA A40 48GB"),
    ("RTX6000-Ada", "NVIDIA RTX 6000 Ada 48GB"),
    ("RTX4090", "NVIDIA GeForce RTX 4090 24GB"),
    ("RTX3090", "NVIDIA GeForce RTX 3090 24GB"),
    ("V100", "NVIDIA V100 16/32GB"),
];

/// The canonical spelling of `name` (matched case-insensitively), if it is a known GPU type.
pub fn canonical(name: &str) -> Option<&'static str> {
    GPU_TYPES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name.trim()))
}

/// The vendor names the engine's catalogue gives `canonical`, sent to plugins in
/// `gpu-spec.aliases` so that a plugin can price a GPU its own catalogue does not know. The
/// built-in GPUs need none (every bundled plugin knows its vendor's names for them); this is
/// where names an operator adds will come from.
pub fn aliases(canonical: &str) -> Vec<String> {
    let _ = canonical;
    Vec::new()
}

/// The known names, comma-separated, for error messages.
pub fn known_names() -> String {
    GPU_TYPES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_match_case_insensitively() {
        assert_eq!(canonical("h100-sxm"), Some("H100-SXM"));
        assert_eq!(canonical(" RTX4090 "), Some("RTX4090"));
        assert_eq!(canonical("H100"), None);
        assert!(known_names().contains("A100-80GB"));
    }
}
