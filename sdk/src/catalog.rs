//! The canonical GPU catalogue, with each provider's own names for each GPU.
//!
//! The engine speaks canonical names (`H100-SXM`, `A100-80GB`, ...); every vendor names the same
//! silicon differently (RunPod gpu type ids such as `NVIDIA H100 80GB HBM3`, Lambda instance types
//! that also encode the GPU count such as `gpu_8x_h100_sxm5`, Vast `gpu_name` values such as
//! `H100 SXM`). Keeping every translation in this one table means a new GPU or a vendor rename is
//! one edit, and the plugins and the engine can never disagree about what a name means.
//!
//! Where a provider does not offer a GPU, its entry is empty and the lookups answer `None`: a
//! plugin then quotes no offers for it. An unknown canonical name is a caller error; plugins refuse
//! it with [`unknown_gpu_error`] (`invalid-request` on field `gpu-type`, listing the known names).
//!
//! Sources: RunPod ids and Vast names from the research notes and public clients (SkyPilot's
//! `GPU_NAME_MAP`, gpuhunt, vast-cli); Lambda families from Lambda's instance-type listing
//! (`gpu_1x_a10`, `gpu_8x_a100_80gb_sxm4`, ...). Names not given by the notes are best knowledge
//! and marked as such in the plugins' READMEs.

use crate::types::ProviderError;

/// One GPU model and its names at each provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuModel {
    /// The canonical name the engine uses.
    pub canonical: &'static str,
    /// RunPod gpu type ids; the first is the one launched, the others are recognised.
    pub runpod: &'static [&'static str],
    /// Lambda instance-type families: type `gpu_{N}x_{family}` has N of these GPUs.
    pub lambda: &'static [&'static str],
    /// Vast `gpu_name` values; the first is the preferred one.
    pub vast: &'static [&'static str],
    /// Vast shares names between memory sizes (`A100 PCIE` is 40 or 80 GB): the GPU memory band
    /// in GB, `[min, max)`, that an offer's `gpu_ram` must fall in. `None` accepts any.
    pub vast_ram_gb: Option<(u32, u32)>,
}

/// Every canonical GPU, in the engine's order.
pub const GPUS: &[GpuModel] = &[
    GpuModel {
        canonical: "H200",
        runpod: &["NVIDIA H200"],
        lambda: &[],
        vast: &["H200", "H200 SXM"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "H100-SXM",
        runpod: &["NVIDIA H100 80GB HBM3"],
        lambda: &["h100_sxm5"],
        vast: &["H100 SXM"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "H100-PCIe",
        runpod: &["NVIDIA H100 PCIe"],
        lambda: &["h100_pcie"],
        vast: &["H100 PCIE"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "H100-NVL",
        runpod: &["NVIDIA H100 NVL"],
        lambda: &[],
        vast: &["H100 NVL"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "A100-80GB",
        runpod: &["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"],
        lambda: &["a100_80gb_sxm4"],
        vast: &["A100 SXM4", "A100 PCIE"],
        vast_ram_gb: Some((60, 1000)),
    },
    GpuModel {
        canonical: "A100-40GB",
        runpod: &[],
        // `gpu_1x_a100` is 40 GB PCIe, `gpu_1x_a100_sxm4` and `gpu_8x_a100` are 40 GB SXM4.
        lambda: &["a100", "a100_sxm4"],
        vast: &["A100 SXM4", "A100 PCIE"],
        vast_ram_gb: Some((0, 60)),
    },
    GpuModel {
        canonical: "L40S",
        runpod: &["NVIDIA L40S"],
        lambda: &[],
        vast: &["L40S"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "L40",
        runpod: &["NVIDIA L40"],
        lambda: &[],
        vast: &["L40"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "L4",
        runpod: &["NVIDIA L4"],
        lambda: &[],
        vast: &["L4"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "A6000",
        runpod: &["NVIDIA RTX A6000"],
        lambda: &["a6000"],
        vast: &["RTX A6000"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "A10",
        runpod: &[],
        lambda: &["a10"],
        vast: &["A10"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "A40",
        runpod: &["NVIDIA A40"],
        lambda: &[],
        vast: &["A40"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "RTX6000-Ada",
        runpod: &["NVIDIA RTX 6000 Ada Generation"],
        // Lambda's `gpu_1x_rtx6000` is the Turing Quadro RTX 6000, not the Ada card.
        lambda: &[],
        vast: &["RTX 6000Ada"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "RTX4090",
        runpod: &["NVIDIA GeForce RTX 4090"],
        lambda: &[],
        vast: &["RTX 4090"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "RTX3090",
        runpod: &["NVIDIA GeForce RTX 3090"],
        lambda: &[],
        vast: &["RTX 3090"],
        vast_ram_gb: None,
    },
    GpuModel {
        canonical: "V100",
        runpod: &[
            "Tesla V100-SXM2-16GB",
            "Tesla V100-PCIE-16GB",
            "Tesla V100-FHHL-16GB",
            "Tesla V100-SXM2-32GB",
        ],
        lambda: &["v100"],
        vast: &["Tesla V100"],
        vast_ram_gb: None,
    },
];

/// The catalogue entry for a canonical name (case-insensitive).
pub fn model(name: &str) -> Option<&'static GpuModel> {
    let name = name.trim();
    GPUS.iter().find(|g| g.canonical.eq_ignore_ascii_case(name))
}

/// The canonical spelling of `name` (case-insensitive), e.g. `"h100-sxm"` -> `"H100-SXM"`.
pub fn canonical(name: &str) -> Option<&'static str> {
    model(name).map(|g| g.canonical)
}

/// Every canonical name, in catalogue order.
pub fn known_names() -> Vec<&'static str> {
    GPUS.iter().map(|g| g.canonical).collect()
}

/// The error a plugin returns for a GPU name that is not in the catalogue.
pub fn unknown_gpu_error(name: &str) -> ProviderError {
    ProviderError::invalid(
        "gpu-type",
        format!(
            "unknown GPU type `{name}`; known types: {}",
            known_names().join(", ")
        ),
    )
}

/// The canonical name of `name`, or the `invalid-request` error naming the known ones.
pub fn require(name: &str) -> Result<&'static str, ProviderError> {
    canonical(name).ok_or_else(|| unknown_gpu_error(name))
}

/// The GPU a spec asks for: the catalogue's spelling of `spec.gpu_type`, or, for a GPU this
/// catalogue does not know but the engine's does (the spec then carries the operator's vendor
/// `aliases`), the engine's name as given. Unknown and without aliases is refused like
/// [`require`]. Quote with the plugin's own names for a known GPU, and with
/// [`crate::GpuSpec::is_alias`] for the rest.
pub fn resolve(spec: &crate::GpuSpec) -> Result<String, ProviderError> {
    match canonical(&spec.gpu_type) {
        Some(name) => Ok(name.to_string()),
        None if !spec.aliases.is_empty() => Ok(spec.gpu_type.trim().to_string()),
        None => Err(unknown_gpu_error(&spec.gpu_type)),
    }
}

/// RunPod's gpu type id for a canonical name; `None` when RunPod does not offer it.
pub fn runpod_id(canonical: &str) -> Option<&'static str> {
    model(canonical)?.runpod.first().copied()
}

/// The canonical name of a RunPod gpu type id (exact, as RunPod spells it).
pub fn from_runpod_id(id: &str) -> Option<&'static str> {
    GPUS.iter()
        .find(|g| g.runpod.contains(&id))
        .map(|g| g.canonical)
}

/// Lambda instance-type names holding `count` GPUs of `canonical` (Lambda encodes the count in
/// the type). Names are candidates: only those in Lambda's `/instance-types` answer exist.
pub fn lambda_types(canonical: &str, count: u32) -> Vec<String> {
    match model(canonical) {
        Some(g) if count > 0 => g
            .lambda
            .iter()
            .map(|family| format!("gpu_{count}x_{family}"))
            .collect(),
        _ => Vec::new(),
    }
}

/// The canonical GPU and GPU count of a Lambda instance type such as `gpu_8x_a100_80gb_sxm4`.
pub fn from_lambda_type(name: &str) -> Option<(&'static str, u32)> {
    let rest = name.strip_prefix("gpu_")?;
    let (count, family) = rest.split_once("x_")?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
    GPUS.iter()
        .find(|g| g.lambda.contains(&family))
        .map(|g| (g.canonical, count))
}

/// Vast's preferred `gpu_name` for a canonical name; `None` when Vast does not list it.
pub fn vast_name(canonical: &str) -> Option<&'static str> {
    model(canonical)?.vast.first().copied()
}

/// Every Vast `gpu_name` that may be `canonical` (see [`from_vast_offer`] for the memory check).
pub fn vast_names(canonical: &str) -> &'static [&'static str] {
    model(canonical).map_or(&[], |g| g.vast)
}

/// The canonical name of a Vast `gpu_name`, when the name alone decides it (`A100 PCIE` does not:
/// it is 40 or 80 GB; use [`from_vast_offer`]).
pub fn from_vast_name(name: &str) -> Option<&'static str> {
    let mut matches = GPUS.iter().filter(|g| g.vast.contains(&name));
    let first = matches.next()?;
    match matches.next() {
        None => Some(first.canonical),
        Some(_) => None,
    }
}

/// The canonical name of a Vast offer or instance from its `gpu_name` and per-GPU `gpu_ram` in
/// MB (Vast reports MB; 1 GB = 1000 MB as the Vast CLI counts).
pub fn from_vast_offer(name: &str, gpu_ram_mb: Option<f64>) -> Option<&'static str> {
    let candidates: Vec<&GpuModel> = GPUS.iter().filter(|g| g.vast.contains(&name)).collect();
    if let [only] = candidates[..] {
        return Some(only.canonical);
    }
    let ram_gb = gpu_ram_mb.filter(|r| r.is_finite() && *r >= 0.0)? / 1000.0;
    candidates
        .into_iter()
        .find(|g| {
            g.vast_ram_gb
                .is_some_and(|(min, max)| ram_gb >= f64::from(min) && ram_gb < f64::from(max))
        })
        .map(|g| g.canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_accepts_operator_gpus_with_aliases_only() {
        let mut spec = crate::GpuSpec::new("h100-sxm", 1);
        assert_eq!(resolve(&spec).as_deref(), Ok("H100-SXM"));
        spec.gpu_type = "B200".into();
        assert!(
            matches!(resolve(&spec), Err(ProviderError::InvalidRequest(f)) if f.field == "gpu-type")
        );
        spec.aliases = vec!["NVIDIA B200".into()];
        assert_eq!(resolve(&spec).as_deref(), Ok("B200"));
    }

    #[test]
    fn has_exactly_the_engine_list() {
        assert_eq!(
            known_names(),
            [
                "H200",
                "H100-SXM",
                "H100-PCIe",
                "H100-NVL",
                "A100-80GB",
                "A100-40GB",
                "L40S",
                "L40",
                "L4",
                "A6000",
                "A10",
                "A40",
                "RTX6000-Ada",
                "RTX4090",
                "RTX3090",
                "V100"
            ]
        );
    }

    #[test]
    fn canonical_is_case_insensitive() {
        assert_eq!(canonical("h100-sxm"), Some("H100-SXM"));
        assert_eq!(canonical(" rtx6000-ada "), Some("RTX6000-Ada"));
        assert_eq!(canonical("H100"), None);
        assert_eq!(canonical(""), None);
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let ProviderError::InvalidRequest(f) = require("B300").unwrap_err() else {
            panic!("not invalid-request")
        };
        assert_eq!(f.field, "gpu-type");
        assert!(f.reason.contains("`B300`"), "{}", f.reason);
        assert!(f.reason.contains("H100-SXM, H100-PCIe"), "{}", f.reason);
        assert_eq!(require("a10"), Ok("A10"));
    }

    #[test]
    fn runpod_ids_round_trip() {
        assert_eq!(runpod_id("H100-SXM"), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(runpod_id("rtx4090"), Some("NVIDIA GeForce RTX 4090"));
        assert_eq!(runpod_id("A100-80GB"), Some("NVIDIA A100-SXM4-80GB"));
        assert_eq!(runpod_id("A100-40GB"), None);
        assert_eq!(runpod_id("A10"), None);
        assert_eq!(runpod_id("nope"), None);
        assert_eq!(from_runpod_id("NVIDIA A100 80GB PCIe"), Some("A100-80GB"));
        assert_eq!(from_runpod_id("NVIDIA RTX A6000"), Some("A6000"));
        assert_eq!(from_runpod_id("NVIDIA RTX A5000"), None);
        for g in GPUS {
            if let Some(id) = runpod_id(g.canonical) {
                assert_eq!(from_runpod_id(id), Some(g.canonical));
            }
        }
    }

    #[test]
    fn lambda_types_encode_the_count() {
        assert_eq!(lambda_types("H100-SXM", 8), ["gpu_8x_h100_sxm5"]);
        assert_eq!(lambda_types("A100-80GB", 8), ["gpu_8x_a100_80gb_sxm4"]);
        assert_eq!(
            lambda_types("a100-40gb", 1),
            ["gpu_1x_a100", "gpu_1x_a100_sxm4"]
        );
        assert!(lambda_types("RTX4090", 1).is_empty());
        assert!(lambda_types("H100-SXM", 0).is_empty());
        assert_eq!(
            from_lambda_type("gpu_8x_a100_80gb_sxm4"),
            Some(("A100-80GB", 8))
        );
        assert_eq!(from_lambda_type("gpu_1x_a100_sxm4"), Some(("A100-40GB", 1)));
        assert_eq!(from_lambda_type("gpu_2x_h100_sxm5"), Some(("H100-SXM", 2)));
        assert_eq!(from_lambda_type("gpu_1x_a10"), Some(("A10", 1)));
        assert_eq!(from_lambda_type("gpu_8x_v100"), Some(("V100", 8)));
        for bad in [
            "gpu_1x_gh200",
            "gpu_1x_rtx6000",
            "gpu_0x_a10",
            "gpu_x_a10",
            "cpu_4x_a10",
            "gpu_1xa10",
            "gpu_-1x_a10",
            "",
        ] {
            assert_eq!(from_lambda_type(bad), None, "{bad}");
        }
        for g in GPUS {
            for count in [1, 2, 8] {
                for t in lambda_types(g.canonical, count) {
                    assert_eq!(from_lambda_type(&t), Some((g.canonical, count)));
                }
            }
        }
    }

    #[test]
    fn vast_names_and_memory() {
        assert_eq!(vast_name("H100-SXM"), Some("H100 SXM"));
        assert_eq!(vast_name("RTX4090"), Some("RTX 4090"));
        assert_eq!(vast_names("A100-80GB"), ["A100 SXM4", "A100 PCIE"]);
        assert!(vast_names("nope").is_empty());
        assert_eq!(from_vast_name("RTX 4090"), Some("RTX4090"));
        assert_eq!(from_vast_name("H200 SXM"), Some("H200"));
        assert_eq!(
            from_vast_name("A100 PCIE"),
            None,
            "ambiguous without memory"
        );
        assert_eq!(from_vast_name("RTX 5090"), None);
        assert_eq!(
            from_vast_offer("A100 PCIE", Some(81920.0)),
            Some("A100-80GB")
        );
        assert_eq!(
            from_vast_offer("A100 SXM4", Some(40960.0)),
            Some("A100-40GB")
        );
        assert_eq!(from_vast_offer("A100 PCIE", None), None);
        assert_eq!(from_vast_offer("A100 PCIE", Some(f64::NAN)), None);
        assert_eq!(from_vast_offer("H100 SXM", None), Some("H100-SXM"));
    }
}
