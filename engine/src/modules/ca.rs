//! Extra certificate authorities for remote module sources: `tgp run --module-ca-file PATH`.
//!
//! An operator inside a company network usually fetches modules from a file server or an OCI
//! registry whose certificate an internal CA signed. The bundle is read once, at start-up, and
//! every certificate in it is checked then, so that a missing file, a file with no certificate
//! or a certificate the TLS library cannot use stops `tgp run` with a message naming the flag,
//! instead of surfacing later as a refused module. The certificates are trusted in addition
//! to the public roots, by URL sources and OCI registries alike. The two clients take them in
//! different forms (URL sources: reqwest certificates; the OCI client builds its own TLS client
//! from PEM), so each certificate is kept in both, from the same PEM block.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::tls::error_chain_text;

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

/// CA certificates trusted for URL and OCI module sources, in addition to the public roots.
#[derive(Clone)]
pub struct ModuleCaBundle {
    path: PathBuf,
    /// For the URL sources' client.
    certs: Vec<reqwest::Certificate>,
    /// The PEM block of each certificate of `certs`, in the same order (for the OCI client).
    pems: Vec<Vec<u8>>,
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
        let blocks = certificate_blocks(pem).map_err(&invalid)?;
        if blocks.is_empty() {
            return Err(CaBundleError::NoCertificate {
                path: shown.clone(),
            });
        }
        let count = blocks.len();
        let mut certs = Vec::with_capacity(count);
        for (i, block) in blocks.iter().enumerate() {
            let which = format!("certificate {} of {count}", i + 1);
            let parsed = reqwest::Certificate::from_pem_bundle(block).map_err(|e| {
                invalid(format!(
                    "{which}: the -----BEGIN CERTIFICATE----- block is not valid PEM ({})",
                    error_chain_text(&e)
                ))
            })?;
            let [cert] = <[reqwest::Certificate; 1]>::try_from(parsed).map_err(|_| {
                invalid(format!(
                    "{which}: the -----BEGIN CERTIFICATE----- block is not one PEM certificate"
                ))
            })?;
            // The TLS library parses a root only when a client is built: build one per
            // certificate now, so that a bad one is named here rather than failing every fetch.
            reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert.clone())
                .build()
                .map_err(|e| {
                    invalid(format!(
                        "{which} is not a usable X.509 certificate ({})",
                        error_chain_text(&e)
                    ))
                })?;
            certs.push(cert);
        }
        Ok(Self {
            path: path.to_path_buf(),
            certs,
            pems: blocks.into_iter().map(<[u8]>::to_vec).collect(),
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

    /// The PEM block of each certificate (one `-----BEGIN CERTIFICATE-----` block each).
    pub(crate) fn pem_blocks(&self) -> impl Iterator<Item = &[u8]> {
        self.pems.iter().map(Vec::as_slice)
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

const BEGIN_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END_CERTIFICATE: &[u8] = b"-----END CERTIFICATE-----";

/// The `-----BEGIN CERTIFICATE-----` blocks of `pem`, each from its first line to its last
/// (other PEM blocks, comments and blank lines are skipped); markers are matched at the start
/// of a line, as the TLS library's PEM reader matches them.
fn certificate_blocks(pem: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut blocks = Vec::new();
    let mut start = None;
    let mut offset = 0;
    for line in pem.split_inclusive(|b| *b == b'\n') {
        let at = offset;
        offset += line.len();
        let text = line.trim_ascii_end();
        match start {
            None if text == BEGIN_CERTIFICATE => start = Some(at),
            None => {}
            Some(begin) if text.starts_with(END_CERTIFICATE) => {
                blocks.push(&pem[begin..offset]);
                start = None;
            }
            Some(_) if text.starts_with(b"-----BEGIN ") => {
                return Err(format!(
                    "certificate {} has no -----END CERTIFICATE----- line before the next \
                     -----BEGIN line",
                    blocks.len() + 1
                ));
            }
            Some(_) => {}
        }
    }
    if start.is_some() {
        return Err(format!(
            "certificate {} has no -----END CERTIFICATE----- line (the file is cut short?)",
            blocks.len() + 1
        ));
    }
    Ok(blocks)
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
        let (a, b) = (ca_pem("a"), ca_pem("b"));
        let text = format!(
            "# internal CAs\n{a}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{b}"
        );
        std::fs::write(&two, text).unwrap();
        let bundle = ModuleCaBundle::from_pem_file(&two).unwrap();
        assert_eq!(bundle.len(), 2);
        // Each certificate's own PEM block is kept, for the OCI client: the two CAs, in order,
        // without the comment or the key.
        let blocks: Vec<String> = bundle
            .pem_blocks()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            assert!(
                block.starts_with("-----BEGIN CERTIFICATE-----\n"),
                "{block}"
            );
            assert!(
                block.trim_end().ends_with("-----END CERTIFICATE-----"),
                "{block}"
            );
            assert!(
                !block.contains("PRIVATE KEY") && !block.contains('#'),
                "{block}"
            );
            assert_eq!(
                reqwest::Certificate::from_pem_bundle(block.as_bytes())
                    .unwrap()
                    .len(),
                1
            );
        }
        assert_eq!(blocks[0].trim_end(), a.trim_end());
        assert_eq!(blocks[1].trim_end(), b.trim_end());

        // Windows line endings.
        let crlf = ca_pem("c").replace('\n', "\r\n");
        let bundle = ModuleCaBundle::from_pem(crlf.as_bytes(), Path::new("crlf.pem")).unwrap();
        assert_eq!(bundle.pem_blocks().count(), 1);
    }

    #[test]
    fn a_certificate_block_cut_short_is_refused_naming_it() {
        let one = ca_pem("a");
        let cut = &one[..one.len() / 2];
        for (text, which) in [
            (
                cut.to_string(),
                "certificate 1 has no -----END CERTIFICATE----- line",
            ),
            (
                format!("{one}{cut}"),
                "certificate 2 has no -----END CERTIFICATE----- line",
            ),
            (
                format!("{cut}\n{one}"),
                "certificate 1 has no -----END CERTIFICATE----- line before the next",
            ),
        ] {
            let err = ModuleCaBundle::from_pem(text.as_bytes(), Path::new("/ca.pem")).unwrap_err();
            assert!(matches!(err, CaBundleError::Invalid { .. }), "{err:?}");
            assert!(err.to_string().contains(which), "{which:?} in {err}");
        }
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
