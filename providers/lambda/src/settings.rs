//! The Lambda Cloud provider's configuration keys, read and validated once per call.
//!
//! Keys: `base_url` (default `https://cloud.lambda.ai`; paths are under `/api/v1`),
//! `api_key_secret` (name of the secret holding the API key; default `api_key`), `name` (the
//! provider name reported by `info`; default `lambda`), `ssh_key_name` (the one SSH key name
//! Lambda requires at launch: launch refuses without it, before any request), and optionally
//! `image_family` or `image_id` (the Lambda image to boot; default: Lambda's latest Lambda Stack).

use serde::Deserialize;
use tgp_provider_sdk::{ProviderError, config};

/// The provider name when `name` is not configured.
pub const DEFAULT_NAME: &str = "lambda";
/// Lambda's production API server (OpenAPI 1.8.3; `cloud.lambdalabs.com` is the deprecated
/// secondary server that redirects to it).
pub const DEFAULT_BASE_URL: &str = "https://cloud.lambda.ai";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Settings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_secret")]
    pub api_key_secret: String,
    #[serde(default)]
    pub ssh_key_name: Option<String>,
    #[serde(default)]
    pub image_family: Option<String>,
    #[serde(default)]
    pub image_id: Option<String>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_secret() -> String {
    "api_key".into()
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
        let blank_to_none =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        self.ssh_key_name = blank_to_none(self.ssh_key_name);
        self.image_family = blank_to_none(self.image_family);
        self.image_id = blank_to_none(self.image_id);
        if self.image_family.is_some() && self.image_id.is_some() {
            return Err(ProviderError::invalid(
                "image_id",
                "set either image_family or image_id, not both",
            ));
        }
        Ok(self)
    }

    /// The SSH key name, required to launch.
    pub fn require_ssh_key(&self) -> Result<&str, ProviderError> {
        self.ssh_key_name.as_deref().ok_or_else(|| {
            ProviderError::invalid(
                "ssh_key_name",
                "Lambda launches need exactly one SSH key: set `ssh_key_name` to the name of a key registered in the Lambda account",
            )
        })
    }

    /// `base_url` joined with an API path such as `/instance-types`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base_url)
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
    fn defaults_point_at_lambda() {
        let s = load(&[]).unwrap();
        assert_eq!(
            s.url("/instance-types"),
            "https://cloud.lambda.ai/api/v1/instance-types"
        );
        assert_eq!(s.api_key_secret, "api_key");
        assert!(
            matches!(s.require_ssh_key(), Err(ProviderError::InvalidRequest(f)) if f.field == "ssh_key_name")
        );
    }

    #[test]
    fn keys_are_validated_and_named() {
        let s = load(&[
            ("base_url", "http://127.0.0.1:9/"),
            ("ssh_key_name", " tgp "),
            ("image_family", " "),
        ])
        .unwrap();
        assert_eq!(s.url("/instances"), "http://127.0.0.1:9/api/v1/instances");
        assert_eq!(s.require_ssh_key(), Ok("tgp"));
        assert_eq!(s.image_family, None);
        for (pairs, key) in [
            (vec![("base_url", "nope")], "base_url"),
            (vec![("api_key_secret", "")], "api_key_secret"),
            (vec![("image_family", "a"), ("image_id", "b")], "image_id"),
        ] {
            assert!(
                matches!(load(&pairs), Err(ProviderError::InvalidRequest(f)) if f.field == key),
                "{key}"
            );
        }
    }

    #[test]
    fn hosts_follow_base_url_or_the_lambda_api() {
        assert_eq!(hosts(None), ["https://cloud.lambda.ai"]);
        assert_eq!(
            hosts(Some("http://127.0.0.1:8792".into())),
            ["http://127.0.0.1:8792"]
        );
        assert!(hosts(Some("nope".into())).is_empty());
        let s = load(&[]).unwrap();
        assert!(s.url("/instances").starts_with(&hosts(None)[0]));
    }

    #[test]
    fn name_defaults_to_lambda() {
        assert_eq!(provider_name(None), "lambda");
        assert_eq!(provider_name(Some("lambda-us".into())), "lambda-us");
    }
}
