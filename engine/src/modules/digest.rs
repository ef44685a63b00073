//! The sha256 digest that pins a module: parsed strictly from the resource (`sha256:<64 hex>`),
//! compared in constant form (lowercase hex) with the digest of the bytes actually received.

use std::fmt;

use sha2::{Digest, Sha256};

use super::error::FetchError;

/// A sha256 digest of a module's bytes. Displays as `sha256:<hex>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ModuleDigest(String);

impl ModuleDigest {
    /// Parses `sha256:<64 hex digits>` (either case). `field` names the resource field in the
    /// error.
    pub fn parse(text: &str, field: &'static str) -> Result<Self, FetchError> {
        let invalid = |why: &str| FetchError::InvalidSource {
            field,
            message: format!("{why}; expected sha256:<64 hex digits>, got {text:?}"),
        };
        let Some(hex) = text.trim().strip_prefix("sha256:") else {
            return Err(invalid("the digest must start with sha256:"));
        };
        if hex.len() != 64 {
            return Err(invalid(&format!(
                "a sha256 digest has 64 hex digits, this one has {}",
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("the digest is not hexadecimal"));
        }
        Ok(Self(hex.to_ascii_lowercase()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// The lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Self::of(bytes) == *self
    }

    /// Refuses `bytes` unless they hash to this digest; `source` says where they came from.
    pub fn verify(&self, bytes: &[u8], source: &str) -> Result<(), FetchError> {
        let actual = Self::of(bytes);
        if actual == *self {
            Ok(())
        } else {
            Err(FetchError::DigestMismatch {
                expected: self.to_string(),
                actual: actual.to_string(),
                source_desc: source.to_string(),
                size: bytes.len() as u64,
            })
        }
    }
}

impl fmt::Display for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleDigest(sha256:{})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_normalises() {
        let d = ModuleDigest::parse(&EMPTY.to_uppercase().replace("SHA256", "sha256"), "f")
            .expect("upper-case hex is accepted");
        assert_eq!(d.to_string(), EMPTY);
        assert!(d.matches(b""));
        assert_eq!(ModuleDigest::of(b""), d);
    }

    #[test]
    fn rejects_malformed_digests_naming_the_field() {
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0",
            "sha256:e3b0",
            "sha256:zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = ModuleDigest::parse(bad, "spec.module.digest").unwrap_err();
            assert_eq!(err.reason(), "InvalidModuleSource", "{bad}");
            assert!(err.to_string().contains("spec.module.digest"), "{err}");
        }
    }

    #[test]
    fn verify_names_both_digests() {
        let d = ModuleDigest::parse(EMPTY, "f").unwrap();
        assert!(d.verify(b"", "test").is_ok());
        let err = d.verify(b"x", "test").unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch");
        let text = err.to_string();
        assert!(text.contains(EMPTY), "{text}");
        assert!(text.contains(&ModuleDigest::of(b"x").to_string()), "{text}");
    }
}
