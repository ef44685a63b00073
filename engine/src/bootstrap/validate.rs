//! Syntax checks shared by the bootstrap documents: Kubernetes names and labels, CIDR prefixes,
//! Tailscale tags, Image Factory identifiers. Exists so that a bad value is refused here, with a
//! reason a person can act on, instead of producing a machine that boots and never joins.
//!
//! Each check returns `Err(reason)`; the caller adds the field name.

use std::net::IpAddr;

/// An RFC 1123 label as Kubernetes uses it for node names: 1 to 63 characters, lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters (has {})", s.len()));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// An RFC 1123 subdomain (the prefix of a label key): dot-separated labels, at most 253
/// characters.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters (has {})", s.len()));
    }
    for part in s.split('.') {
        dns_label(part).map_err(|r| format!("part {part:?} {r}"))?;
    }
    Ok(())
}

/// The name part of a Kubernetes qualified name, also the syntax of a non-empty label value:
/// at most 63 characters, alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn qualified_name_part(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters (has {})", s.len()));
    }
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("must not be empty".into());
    };
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A Kubernetes label (or taint) key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn label_key(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            dns_subdomain(prefix).map_err(|r| format!("prefix {r}"))?;
            qualified_name_part(name).map_err(|r| format!("name {r}"))
        }
        None => qualified_name_part(s),
    }
}

/// A Kubernetes label (or taint) value: empty, or a qualified-name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    qualified_name_part(s)
}

/// A CIDR prefix such as `100.64.0.0/10` or `fd7a:115c:a1e0::/48`. A leading `!` (Talos's
/// exclusion syntax in `validSubnets`) is accepted.
pub fn cidr(s: &str) -> Result<(), String> {
    let body = s.strip_prefix('!').unwrap_or(s);
    let Some((addr, len)) = body.split_once('/') else {
        return Err("must be a CIDR prefix such as 100.64.0.0/10".into());
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match len.parse::<u8>() {
        Ok(n) if n <= max && !len.starts_with('+') => Ok(()),
        _ => Err(format!("prefix length must be a number from 0 to {max}")),
    }
}

/// A Tailscale ACL tag: `tag:` followed by letters, digits and `-`, starting with a letter.
pub fn tailscale_tag(s: &str) -> Result<(), String> {
    let Some(name) = s.strip_prefix("tag:") else {
        return Err("must start with \"tag:\"".into());
    };
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the name after \"tag:\" must start with a letter".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("the name after \"tag:\" may contain only letters, digits and '-'".into());
    }
    Ok(())
}

/// An Image Factory schematic id: the 64 lowercase hex digits of a SHA-256.
pub fn schematic_id(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err("must be 64 lowercase hex digits (the id the Image Factory returns)".into())
    }
}

/// A Talos version tag: `v<major>.<minor>.<patch>`, optionally with a pre-release suffix such as
/// `-beta.0`.
pub fn talos_version(s: &str) -> Result<(), String> {
    let reason = || format!("{s:?} is not a Talos version such as v1.11.3");
    let rest = s.strip_prefix('v').ok_or_else(reason)?;
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(reason());
    }
    if let Some(pre) = pre
        && (pre.is_empty()
            || !pre
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        return Err(reason());
    }
    Ok(())
}

/// Text that is safe to put on one line of a generated file: no control characters (newlines
/// would start a new environment entry or YAML line).
pub fn single_line(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        Err("must not contain control characters or line breaks".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(dns_label("gpu-node-1").is_ok());
        assert!(dns_label("a").is_ok());
        assert!(dns_label(&"a".repeat(63)).is_ok());
        assert!(dns_label(&"a".repeat(64)).unwrap_err().contains("63"));
        assert!(dns_label("").is_err());
        assert!(dns_label("-a").is_err());
        assert!(dns_label("a-").is_err());
        assert!(dns_label("Gpu").is_err());
        assert!(dns_label("a.b").is_err());
        assert!(dns_label("a_b").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("tgp.io/request").is_ok());
        assert!(label_key("node-role.kubernetes.io/gpu").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("My_Key.1").is_ok());
        assert!(label_key("").is_err());
        assert!(label_key("/x").unwrap_err().contains("prefix"));
        assert!(label_key("tgp.io/").unwrap_err().contains("name"));
        assert!(label_key("Tgp.io/x").unwrap_err().contains("prefix"));
        assert!(label_key("a/b/c").is_err());
        assert!(label_key(&format!("x/{}", "a".repeat(64))).is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("H100_80GB.v2").is_ok());
        assert!(label_value("-x").is_err());
        assert!(label_value("a b").is_err());
        assert!(label_value(&"a".repeat(64)).is_err());
    }

    #[test]
    fn cidrs() {
        assert!(cidr("100.64.0.0/10").is_ok());
        assert!(cidr("fd7a:115c:a1e0::/48").is_ok());
        assert!(cidr("!10.0.0.3/32").is_ok());
        assert!(cidr("0.0.0.0/0").is_ok());
        assert!(cidr("100.64.0.0").is_err());
        assert!(cidr("100.64.0.0/33").is_err());
        assert!(cidr("::/129").is_err());
        assert!(cidr("100.64.0/10").is_err());
        assert!(cidr("100.64.0.0/+1").is_err());
        assert!(cidr("100.64.0.0/x").is_err());
    }

    #[test]
    fn tags_ids_versions() {
        assert!(tailscale_tag("tag:gpu-worker").is_ok());
        assert!(tailscale_tag("gpu").is_err());
        assert!(tailscale_tag("tag:").is_err());
        assert!(tailscale_tag("tag:1x").is_err());
        assert!(tailscale_tag("tag:a b").is_err());
        assert!(schematic_id(&"ab".repeat(32)).is_ok());
        assert!(schematic_id(&"AB".repeat(32)).is_err());
        assert!(schematic_id(&"ab".repeat(31)).is_err());
        assert!(schematic_id(&"zz".repeat(32)).is_err());
        assert!(talos_version("v1.11.3").is_ok());
        assert!(talos_version("v1.12.0-beta.0").is_ok());
        assert!(talos_version("1.11.3").is_err());
        assert!(talos_version("v1.11").is_err());
        assert!(talos_version("v1.11.x").is_err());
        assert!(talos_version("v1..3").is_err());
        assert!(talos_version("v1.11.3-").is_err());
        assert!(talos_version("v1.11.3-a b").is_err());
        assert!(single_line("abc").is_ok());
        assert!(single_line("a\nb").is_err());
    }
}
