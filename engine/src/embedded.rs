//! The default set-up that needs no configuration: the mock provider plugin, embedded in the
//! binary, talking to the mock cloud simulator started in-process on loopback.
//!
//! This is what makes `tgp quote` and `tgp demo` work on a fresh clone: no account, no cluster,
//! no bill. The plugin still runs in the same sandbox, with the same grants, as any other.

use std::collections::BTreeMap;

use tgp_cloudsim::{MockCloud, MockCloudConfig};

use crate::plugins::{Grants, Limits, LoadError, PluginHost, SecretValue};
use crate::provider_set::ActiveProvider;

/// The mock provider component, built by `engine/build.rs`.
pub const MOCK_PLUGIN: &[u8] = include_bytes!(env!("TGP_MOCK_PLUGIN_WASM"));

/// Grants for the mock plugin talking to the cloud at `base_url` with `api_key`.
pub fn mock_grants(name: &str, base_url: &str, api_key: &str) -> Grants {
    let mut config = BTreeMap::new();
    config.insert("base_url".to_string(), base_url.to_string());
    config.insert("name".to_string(), name.to_string());
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "api_key".to_string(),
        SecretValue::from(api_key.to_string()),
    );
    Grants {
        provider_name: name.to_string(),
        allowed_hosts: vec![base_url.to_string()],
        secrets,
        auth: None,
        config,
        limits: Limits::default(),
    }
}

/// A running default set-up. Dropping it stops the simulator.
pub struct DefaultSetup {
    pub cloud: MockCloud,
    pub providers: Vec<ActiveProvider>,
}

/// Starts the mock cloud on loopback and loads the embedded mock provider against it.
pub async fn start_default(host: &PluginHost) -> Result<DefaultSetup, DefaultSetupError> {
    let config = MockCloudConfig::default();
    let api_key = config.api_key.clone();
    let cloud = MockCloud::start(config)
        .await
        .map_err(DefaultSetupError::Simulator)?;
    let grants = mock_grants("mock", &cloud.base_url(), &api_key);
    let plugin = host.load(MOCK_PLUGIN.to_vec(), grants).await?;
    Ok(DefaultSetup {
        cloud,
        providers: vec![ActiveProvider {
            name: "mock".into(),
            priority: 0,
            plugin,
        }],
    })
}

/// Why the default set-up could not start.
#[derive(Debug, thiserror::Error)]
pub enum DefaultSetupError {
    #[error("cannot start the mock cloud simulator: {0}")]
    Simulator(anyhow::Error),
    #[error("cannot load the embedded mock provider: {0}")]
    Plugin(#[from] LoadError),
}
