//! The mock provider's configuration keys, validated once per call.
//!
//! Keys: `base_url` (required: where the mock cloud listens), `api_key_secret` (the name of the
//! secret holding the API key; default `api_key`) and `name` (the provider name reported by
//! `info`; default `mock`, so that several mock clouds can run as distinct providers).

use serde::Deserialize;
use tgp_provider_sdk::{ProviderError, config};

/// The provider name when `name` is not configured.
pub const DEFAULT_NAME: &str = "mock";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Settings {
    /// Base URL of the mock cloud, without a trailing slash.
    pub base_url: String,
    /// Name of the secret holding the API key (the host applies it as a bearer token).
    #[serde(default = "default_secret")]
    pub api_key_secret: String,
}

fn default_secret() -> String {
    "api_key".into()
}

impl Settings {
    /// Loads and validates the settings from the host's configuration.
    pub fn load() -> Result<Self, ProviderError> {
        config::load::<Settings>()?.validated()
    }

    /// Checks `base_url` and normalises it (no trailing slash).
    pub fn validated(mut self) -> Result<Self, ProviderError> {
        self.base_url = config::base_url(&self.base_url, "http://127.0.0.1:8080")?;
        if self.api_key_secret.trim().is_empty() {
            return Err(ProviderError::invalid(
                "api_key_secret",
                "must name a secret, e.g. api_key",
            ));
        }
        Ok(self)
    }

    /// `base_url` joined with an API path such as `/v1/offers`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The hosts `info` declares it will call (`Capabilities::hosts`): the origin of `base_url`,
/// the setting's value in `configured`. Nothing while it is unset or invalid: every operation
/// then fails on it before making any request.
pub fn hosts(configured: Option<String>) -> Vec<String> {
    config::base_url_hosts(configured, None)
}

/// The provider name to report: the configured `name`, or [`DEFAULT_NAME`].
pub fn provider_name(configured: Option<String>) -> String {
    config::provider_name(configured, DEFAULT_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Settings {
        Settings {
            base_url: url.into(),
            api_key_secret: "api_key".into(),
        }
    }

    #[test]
    fn base_url_is_required_and_named() {
        let err = config::from_pairs::<Settings>(Vec::new()).unwrap_err();
        assert_eq!(
            ProviderError::from(err),
            ProviderError::invalid("base_url", "required configuration key is not set")
        );
    }

    #[test]
    fn secret_name_defaults_to_api_key() {
        let s: Settings =
            config::from_pairs(vec![("base_url".to_string(), "http://h:1".to_string())]).unwrap();
        assert_eq!(s.api_key_secret, "api_key");
    }

    #[test]
    fn base_url_is_normalised_and_checked() {
        assert_eq!(
            settings(" http://127.0.0.1:8080/ ")
                .validated()
                .unwrap()
                .url("/v1/offers"),
            "http://127.0.0.1:8080/v1/offers"
        );
        for bad in ["", "127.0.0.1:8080", "ftp://h", "http://"] {
            assert!(
                matches!(settings(bad).validated(), Err(ProviderError::InvalidRequest(f)) if f.field == "base_url"),
                "{bad}"
            );
        }
        let empty_secret = Settings {
            base_url: "http://h".into(),
            api_key_secret: " ".into(),
        };
        assert!(
            matches!(empty_secret.validated(), Err(ProviderError::InvalidRequest(f)) if f.field == "api_key_secret")
        );
    }

    #[test]
    fn hosts_are_the_origin_of_base_url() {
        assert_eq!(
            hosts(Some("http://127.0.0.1:8790/".into())),
            ["http://127.0.0.1:8790"]
        );
        assert_eq!(
            hosts(Some("https://Mock.Example:443/api".into())),
            ["https://mock.example"]
        );
        // No default cloud: unset or invalid, the plugin calls (and declares) nothing.
        assert!(hosts(None).is_empty());
        assert!(hosts(Some("127.0.0.1:8790".into())).is_empty());
    }

    #[test]
    fn name_defaults_to_mock() {
        assert_eq!(provider_name(None), "mock");
        assert_eq!(provider_name(Some("  ".into())), "mock");
        assert_eq!(provider_name(Some("mock-eu".into())), "mock-eu");
    }
}
