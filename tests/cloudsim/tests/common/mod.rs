//! Helpers shared by the simulators' HTTPS tests (`files_tls`, `oci_tls`).

use std::time::Duration;

/// A client that trusts `ca_pem` only (no public roots), as a test asks for.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the CA is PEM");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The whole chain of `e`'s messages.
pub fn chain(e: &reqwest::Error) -> String {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A module-sized body: 160,000 bytes that are not all alike.
pub fn module() -> Vec<u8> {
    (0..40_000u32).flat_map(|i| i.to_le_bytes()).collect()
}
