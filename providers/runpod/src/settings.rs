//! The RunPod provider's configuration keys, read and validated once per call.
//!
//! Keys: `base_url` (default `https://api.runpod.io`; the plugin posts to `{base_url}/graphql`),
//! `api_key_secret` (name of the secret holding the API key; default `api_key`), `name` (the
//! provider name reported by `info`; default `runpod`), `cloud_type` (`SECURE`, `COMMUNITY` or
//! `ALL`; default `SECURE`), `image` (container image when the engine names none),
//! `container_disk_gb` (default 20), `volume_gb` (default 0) and `ports` (default `22/tcp`).

use serde::Deserialize;
use tgp_provider_sdk::{ProviderError, config};

/// The provider name when `name` is not configured.
pub const DEFAULT_NAME: &str = "runpod";
/// RunPod's API.
pub const DEFAULT_BASE_URL: &str = "https://api.runpod.io";
/// A public CUDA base image: RunPod requires an image and the engine may not name one.
pub const DEFAULT_IMAGE: &str = "nvidia/cuda:12.4.1-base-ubuntu22.04";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Settings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_secret")]
    pub api_key_secret: String,
    #[serde(default = "default_cloud_type")]
    pub cloud_type: String,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "default_container_disk")]
    pub container_disk_gb: u32,
    #[serde(default)]
    pub volume_gb: u32,
    #[serde(default = "default_ports")]
    pub ports: String,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_secret() -> String {
    "api_key".into()
}
fn default_cloud_type() -> String {
    "SECURE".into()
}
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_container_disk() -> u32 {
    20
}
fn default_ports() -> String {
    "22/tcp".into()
}

/// Which RunPod cloud to price and deploy in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudType {
    All,
    Secure,
    Community,
}

impl CloudType {
    /// The `cloudType` enum value of deploy inputs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudType::All => "ALL",
            CloudType::Secure => "SECURE",
            CloudType::Community => "COMMUNITY",
        }
    }

    /// The `secureCloud` flag of `lowestPrice` inputs (`None`: both clouds).
    pub fn secure_flag(self) -> Option<bool> {
        match self {
            CloudType::All => None,
            CloudType::Secure => Some(true),
            CloudType::Community => Some(false),
        }
    }
}

impl Settings {
    /// Loads and validates the settings from the host's configuration.
    pub fn load() -> Result<Self, ProviderError> {
        config::load::<Settings>()?.validated()
    }

    /// Checks every key and normalises `base_url` (no trailing slash).
    pub fn validated(mut self) -> Result<Self, ProviderError> {
        self.base_url = config::base_url(&self.base_url, DEFAULT_BASE_URL)?;
        if self.api_key_secret.trim().is_empty() {
            return Err(ProviderError::invalid(
                "api_key_secret",
                "must name a secret, e.g. api_key",
            ));
        }
        self.cloud_type = self.cloud_type.trim().to_ascii_uppercase();
        self.cloud()?;
        if self.image.trim().is_empty() {
            return Err(ProviderError::invalid(
                "image",
                "must name a container image",
            ));
        }
        Ok(self)
    }

    /// The configured cloud.
    pub fn cloud(&self) -> Result<CloudType, ProviderError> {
        match self.cloud_type.as_str() {
            "ALL" => Ok(CloudType::All),
            "SECURE" => Ok(CloudType::Secure),
            "COMMUNITY" => Ok(CloudType::Community),
            other => Err(ProviderError::invalid(
                "cloud_type",
                format!("`{other}` is not SECURE, COMMUNITY or ALL"),
            )),
        }
    }

    /// The GraphQL endpoint.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.base_url)
    }
}

/// The hosts `info` declares it will call (`Capabilities::hosts`): the origin of `base_url`
/// (the setting's value in `configured`), or of [`DEFAULT_BASE_URL`] when it is unset. Nothing
/// while it is invalid: every operation then fails on it before making any request.
pub fn hosts(configured: Option<String>) -> Vec<String> {
    config::base_url_hosts(configured, Some(DEFAULT_BASE_URL))
}

/// The provider name to report: the configured `name`, or [`DEFAULT_NAME`].
pub fn provider_name(configured: Option<String>) -> String {
    config::provider_name(configured, DEFAULT_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ProviderError> {
        config::from_pairs::<Settings>(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .map_err(ProviderError::from)?
        .validated()
    }

    #[test]
    fn defaults_point_at_runpod() {
        let s = load(&[]).unwrap();
        assert_eq!(s.graphql_url(), "https://api.runpod.io/graphql");
        assert_eq!(s.api_key_secret, "api_key");
        assert_eq!(s.cloud().unwrap(), CloudType::Secure);
        assert_eq!(s.image, DEFAULT_IMAGE);
        assert_eq!((s.container_disk_gb, s.volume_gb), (20, 0));
    }

    #[test]
    fn keys_are_validated_and_named() {
        let s = load(&[("base_url", "http://127.0.0.1:9/ "), ("cloud_type", "all")]).unwrap();
        assert_eq!(s.graphql_url(), "http://127.0.0.1:9/graphql");
        assert_eq!(s.cloud().unwrap().secure_flag(), None);
        for (key, value) in [
            ("base_url", "ftp://x"),
            ("cloud_type", "cheap"),
            ("api_key_secret", " "),
            ("container_disk_gb", "lots"),
            ("image", " "),
        ] {
            assert!(
                matches!(load(&[(key, value)]), Err(ProviderError::InvalidRequest(f)) if f.field == key),
                "{key}"
            );
        }
    }

    #[test]
    fn hosts_follow_base_url_or_the_runpod_api() {
        assert_eq!(hosts(None), ["https://api.runpod.io"]);
        assert_eq!(
            hosts(Some("http://127.0.0.1:8791/".into())),
            ["http://127.0.0.1:8791"]
        );
        assert!(hosts(Some("ftp://x".into())).is_empty());
        // The declared host is the one the GraphQL endpoint lives on.
        let s = load(&[("base_url", "http://127.0.0.1:8791")]).unwrap();
        assert!(
            s.graphql_url()
                .starts_with(&hosts(Some(s.base_url.clone()))[0])
        );
    }

    #[test]
    fn name_defaults_to_runpod() {
        assert_eq!(provider_name(None), "runpod");
        assert_eq!(provider_name(Some("runpod-eu".into())), "runpod-eu");
    }
}
