//! The Vast.ai provider's configuration keys, read and validated once per call.
//!
//! Keys: `base_url` (default `https://console.vast.ai`; paths are under `/api/v0`),
//! `api_key_secret` (default `api_key`), `name` (default `vast`), `image` (container image when
//! the engine names none), `disk_gb` (default 32), `min_reliability` (default 0.98),
//! `verified_only` (default true) and `bid_margin_percent` (spot bids this much above the
//! current minimum bid, default 10, so that a bid is not outbid at once).

use serde::Deserialize;
use tgp_provider_sdk::{ProviderError, config};

/// The provider name when `name` is not configured.
pub const DEFAULT_NAME: &str = "vast";
/// Vast's API server.
pub const DEFAULT_BASE_URL: &str = "https://console.vast.ai";
/// A public CUDA base image: Vast requires an image and the engine may not name one.
pub const DEFAULT_IMAGE: &str = "nvidia/cuda:12.4.1-base-ubuntu22.04";

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Settings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_secret")]
    pub api_key_secret: String,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "default_disk")]
    pub disk_gb: u32,
    #[serde(default = "default_reliability")]
    pub min_reliability: f64,
    #[serde(default = "default_true")]
    pub verified_only: bool,
    #[serde(default = "default_margin")]
    pub bid_margin_percent: u32,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_secret() -> String {
    "api_key".into()
}
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_disk() -> u32 {
    32
}
fn default_reliability() -> f64 {
    0.98
}
fn default_true() -> bool {
    true
}
fn default_margin() -> u32 {
    10
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
        if self.image.trim().is_empty() {
            return Err(ProviderError::invalid(
                "image",
                "must name a container image",
            ));
        }
        if self.disk_gb < 8 {
            return Err(ProviderError::invalid(
                "disk_gb",
                "Vast needs at least 8 GB",
            ));
        }
        if !(0.0..=1.0).contains(&self.min_reliability) {
            return Err(ProviderError::invalid(
                "min_reliability",
                "must be between 0 and 1",
            ));
        }
        if self.bid_margin_percent > 1000 {
            return Err(ProviderError::invalid(
                "bid_margin_percent",
                "must be at most 1000",
            ));
        }
        Ok(self)
    }

    /// `base_url` joined with an API path such as `/bundles/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v0{path}", self.base_url)
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
    fn defaults_point_at_vast() {
        let s = load(&[]).unwrap();
        assert_eq!(
            s.url("/bundles/"),
            "https://console.vast.ai/api/v0/bundles/"
        );
        assert_eq!(
            (s.disk_gb, s.verified_only, s.bid_margin_percent),
            (32, true, 10)
        );
        assert_eq!(s.min_reliability, 0.98);
    }

    #[test]
    fn keys_are_validated_and_named() {
        let s = load(&[
            ("base_url", "http://127.0.0.1:7/"),
            ("verified_only", "false"),
        ])
        .unwrap();
        assert_eq!(s.url("/instances/"), "http://127.0.0.1:7/api/v0/instances/");
        assert!(!s.verified_only);
        for (key, value) in [
            ("base_url", "x"),
            ("disk_gb", "4"),
            ("min_reliability", "1.5"),
            ("bid_margin_percent", "5000"),
            ("image", ""),
            ("api_key_secret", " "),
        ] {
            assert!(
                matches!(load(&[(key, value)]), Err(ProviderError::InvalidRequest(f)) if f.field == key),
                "{key}"
            );
        }
    }

    #[test]
    fn hosts_follow_base_url_or_the_vast_api() {
        assert_eq!(hosts(None), ["https://console.vast.ai"]);
        assert_eq!(
            hosts(Some("http://127.0.0.1:8793/".into())),
            ["http://127.0.0.1:8793"]
        );
        assert!(hosts(Some("x".into())).is_empty());
        let s = load(&[]).unwrap();
        assert!(s.url("/bundles/").starts_with(&hosts(None)[0]));
    }

    #[test]
    fn name_defaults_to_vast() {
        assert_eq!(provider_name(None), "vast");
        assert_eq!(provider_name(Some("vast-2".into())), "vast-2");
    }
}
