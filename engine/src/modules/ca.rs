//! Extra certificate authorities for URL module sources: `tgp run --module-ca-file PATH`.
//!
//! An operator inside a company network usually fetches modules from a server whose
//! certificate an internal CA signed. The bundle is read once, at start-up, and every
//! certificate in it is checked then, so that a missing file, a file with no certificate or a
//! certificate the TLS library cannot use stops `tgp run` with a message naming the flag,
//! instead of surfacing later as a refused module. The certificates are trusted in addition
//! to the public roots, for URL sources only (OCI registries are reached by the OCI client,
//! with its own TLS settings).

use std::io::Read;
use std::path::{Path, PathBuf};

/// The flag that names the bundle, for messages.
pub const MODULE_CA_FLAG: &str = "--module-ca-file";

/// A bundle larger than this is refused: a CA bundle is a few kilobytes (the whole public
/// root store is about 200 KiB); anything larger is the wrong file.
const MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a CA bundle cannot be used. Every message names the flag and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaBundleError {
    #[error("{MODULE_CA_FLAG} {path}: cannot read the file: {detail}")]
    Unreadable { path: String, detail: String },
    #[error(
        "{MODULE_CA_FLAG} {path}: the file is larger than {limit} bytes; it must hold PEM CA \
         certificates only"
    )]
    TooLarge { path: String, limit: u64 },
    #[error(
        "{MODULE_CA_FLAG} {path}: the file holds no certificate; it must hold one or more PEM \
         blocks starting with -----BEGIN CERTIFICATE-----"
    )]
    NoCertificate { path: String },
    #[error("{MODULE_CA_FLAG} {path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// CA certificates trusted for URL module sources, in addition to the public roots.
#[derive(Clone)]
pub struct ModuleCaBundle {
    path: PathBuf,
    certs: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for ModuleCaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCaBundle")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl ModuleCaBundle {
    /// Reads and checks the PEM file at `path`.
    pub fn from_pem_file(path: &Path) -> Result<Self, CaBundleError> {
        let shown = path.display().to_string();
        let unreadable = |e: std::io::Error| CaBundleError::Unreadable {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        if file.metadata().map_err(unreadable)?.is_dir() {
            return Err(CaBundleError::Unreadable {
                path: shown,
                detail: "it is a directory, not a PEM file".into(),
            });
        }
        let mut pem = Vec::new();
        file.take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(unreadable)?;
        if pem.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(CaBundleError::TooLarge {
                path: shown,
                limit: MAX_BUNDLE_BYTES,
            });
        }
        Self::from_pem(&pem, path)
    }

    /// Checks the PEM text `pem`; `path` is where it came from (for messages).
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<Self, CaBundleError> {
        let shown = path.display().to_string();
        let invalid = |detail: String| CaBundleError::Invalid {
            path: shown.clone(),
            detail,
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            invalid(format!(
                "a -----BEGIN CERTIFICATE----- block is not valid PEM ({})",
                error_chain(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(CaBundleError::NoCertificate { path: shown });
        }
        // The TLS library parses a root only when a client is built: build one per
        // certificate now, so that a bad one is named here rather than failing every fetch.
        for (i, cert) in certs.iter().enumerate() {
            reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert.clone())
                .build()
                .map_err(|e| {
                    invalid(format!(
                        "certificate {} of {} is not a usable X.509 certificate ({})",
                        i + 1,
                        certs.len(),
                        error_chain(&e)
                    ))
                })?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// The file the certificates were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates the bundle holds (at least one).
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: a bundle with no certificate is refused.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub(crate) fn certificates(&self) -> &[reqwest::Certificate] {
        &self.certs
    }

    /// "the N CA certificate(s) of --module-ca-file PATH", for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "the {} CA certificate{} of {MODULE_CA_FLAG} {}",
            self.certs.len(),
            if self.certs.len() == 1 { "" } else { "s" },
            self.path.display()
        )
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem(name: &str) -> String {
        tgp_cloudsim::files::TestCa::generate(name).unwrap().pem()
    }

    #[test]
    fn reads_one_or_more_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.pem");
        std::fs::write(&one, ca_pem("a")).unwrap();
        let bundle = ModuleCaBundle::from_pem_file(&one).unwrap();
        assert_eq!(bundle.len(), 1);
        assert_eq!(bundle.path(), one);
        assert!(
            bundle
                .describe()
                .contains("1 CA certificate of --module-ca-file")
        );

        // Two CAs, with a comment and a private key around them (the key is not a
        // certificate and is skipped).
        let two = dir.path().join("two.pem");
        let text = format!(
            "# internal CAs\n{}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{}",
            ca_pem("a"),
            ca_pem("b")
        );
        std::fs::write(&two, text).unwrap();
        assert_eq!(ModuleCaBundle::from_pem_file(&two).unwrap().len(), 2);
    }

    #[test]
    fn refuses_what_is_not_a_bundle_naming_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let err = ModuleCaBundle::from_pem_file(&missing).unwrap_err();
        assert!(matches!(err, CaBundleError::Unreadable { .. }), "{err:?}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        for path in [&empty, &text] {
            let err = ModuleCaBundle::from_pem_file(path).unwrap_err();
            assert_eq!(
                err,
                CaBundleError::NoCertificate {
                    path: path.display().to_string()
                }
            );
        }

        // PEM armour around bytes that are not a certificate.
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = ModuleCaBundle::from_pem_file(&garbage).unwrap_err();
        assert!(matches!(err, CaBundleError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("certificate 1 of 1"), "{err}");

        let err = ModuleCaBundle::from_pem_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");

        for (err, path) in [
            (
                ModuleCaBundle::from_pem_file(&missing).unwrap_err(),
                &missing,
            ),
            (ModuleCaBundle::from_pem_file(&text).unwrap_err(), &text),
            (
                ModuleCaBundle::from_pem_file(&garbage).unwrap_err(),
                &garbage,
            ),
        ] {
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("--module-ca-file {}: ", path.display())),
                "{text}"
            );
        }
    }
}
