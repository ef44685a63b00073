//! Contract version negotiation.
//!
//! A component names the contract it was built for in its export name
//! (`tgp:provider/provider@X.Y.Z`). The host accepts the same MAJOR.MINOR while the contract is
//! 0.x and the same MAJOR from 1.0 on, and refuses anything else at load, naming both versions,
//! instead of failing later with an obscure link error.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::LoadError;

/// The contract version this engine implements (`wit/provider.wit`). 0.3 made credentials and
/// bootstrap documents host-held (see the WIT's version history); plugins built for 0.2 or
/// earlier are refused.
pub const CONTRACT_VERSION: &str = "0.3.0";

const EXPORT_PREFIX: &str = "tgp:provider/provider";

/// A parsed `MAJOR.MINOR.PATCH[-pre]` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
}

fn parse(version: &str) -> Option<Version> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let _patch: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Version { major, minor })
}

/// How this host describes the versions it accepts, e.g. `0.2.x`.
pub fn host_range() -> String {
    match parse(CONTRACT_VERSION) {
        Some(v) if v.major == 0 => format!("{}.{}.x", v.major, v.minor),
        Some(v) => format!("{}.x", v.major),
        None => CONTRACT_VERSION.to_owned(),
    }
}

/// Whether a plugin built for `plugin` can run on this host.
pub fn compatible(plugin: &str) -> bool {
    match (parse(plugin), parse(CONTRACT_VERSION)) {
        (Some(p), Some(h)) if h.major == 0 => p.major == 0 && p.minor == h.minor,
        (Some(p), Some(h)) => p.major == h.major,
        _ => false,
    }
}

/// Finds the contract version a component was built for and checks it against this host.
pub fn check(engine: &Engine, component: &Component) -> Result<String, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let Some(found) = exports.iter().find(|name| name.starts_with(EXPORT_PREFIX)) else {
        return Err(LoadError::NotAProvider {
            exports: exports.join(", "),
        });
    };
    let version = match found
        .strip_prefix(EXPORT_PREFIX)
        .and_then(|rest| rest.strip_prefix('@'))
    {
        Some(v) => v.to_owned(),
        None => {
            return Err(LoadError::Incompatible {
                plugin: "(unversioned)".into(),
                host: host_range(),
            });
        }
    };
    if !compatible(&version) {
        return Err(LoadError::Incompatible {
            plugin: version,
            host: host_range(),
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_minor_accepted_while_zero_x() {
        assert!(compatible("0.3.0"));
        assert!(compatible("0.3.7"));
        assert!(compatible("0.3.1-rc.1"));
        assert!(
            !compatible("0.2.0"),
            "0.2 plugins place secrets and read user-data themselves: refused"
        );
        assert!(!compatible("0.1.0"));
        assert!(!compatible("0.4.0"));
        assert!(!compatible("1.0.0"));
        assert!(!compatible("0.3"));
        assert!(!compatible("garbage"));
        assert_eq!(host_range(), "0.3.x");
    }

    #[test]
    fn refusing_a_previous_contract_names_both_versions() {
        let err = LoadError::Incompatible {
            plugin: "0.2.0".into(),
            host: host_range(),
        };
        let text = err.to_string();
        assert!(
            text.contains("tgp:provider@0.2.0") && text.contains("tgp:provider@0.3.x"),
            "{text}"
        );
    }

    #[test]
    fn the_wit_file_and_the_engine_agree() {
        let wit = include_str!("../../../wit/provider.wit");
        assert!(
            wit.contains(&format!("package tgp:provider@{CONTRACT_VERSION};")),
            "wit/provider.wit does not declare tgp:provider@{CONTRACT_VERSION}"
        );
    }

    #[test]
    fn the_sdk_vendors_the_contract_unchanged() {
        // The SDK carries its own copy so that it builds outside this repository; it must be
        // this file, byte for byte (copy wit/provider.wit to sdk/wit/provider.wit).
        assert_eq!(
            include_str!("../../../sdk/wit/provider.wit"),
            include_str!("../../../wit/provider.wit"),
            "sdk/wit/provider.wit differs from wit/provider.wit"
        );
    }
}
