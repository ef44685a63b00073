//! The providers a command works with, described in a file, and turned into loaded plugins.
//!
//! Outside a cluster (`tgp quote`, the benchmarks, the conformance kit) providers are described in
//! a YAML file shaped like the GPUProvider resource's spec: which module, which hosts it may call,
//! its configuration, where its secrets come from, its limits and priority. The operator builds
//! the same [`Grants`] from GPUProvider resources instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plugins::{Grants, Limits, Plugin, PluginHost, SecretValue};

/// A providers file: `providers: [...]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSetFile {
    pub providers: Vec<ProviderEntry>,
}

/// One provider in a providers file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderEntry {
    /// The name used in tables, status and logs.
    pub name: String,
    /// Path to the component (`.wasm`), relative to the providers file.
    pub module: PathBuf,
    /// `scheme://host[:port]` origins the plugin may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Plugin configuration values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets by the name the auth scheme uses, and where their values come from.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// How the host authenticates the plugin's requests, shaped like GPUProvider
    /// `spec.credentials.auth`; unset: the scheme the plugin declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::crd::gpuprovider::AuthSpec>,
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Breaks price ties: higher wins.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// Where a secret's value comes from: exactly one of `env` or `value`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the tgp process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A literal value (for simulators and tests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Per-provider sandbox limits; unset fields keep the host defaults (30 s, 64 MiB, 16 calls).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    pub timeout_seconds: Option<u64>,
    pub memory_mib: Option<u64>,
    pub concurrency: Option<usize>,
}

impl LimitsSpec {
    /// The host limits these settings ask for.
    pub fn to_limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(secs) = self.timeout_seconds {
            limits.call_timeout = Duration::from_secs(secs);
        }
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib.saturating_mul(1024 * 1024);
        }
        if let Some(n) = self.concurrency {
            limits.max_concurrency = n;
        }
        limits
    }
}

/// Why a providers file or one of its providers could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetError {
    #[error("cannot read providers file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("providers file {path} is not valid: {error}")]
    Parse {
        path: PathBuf,
        error: serde_yaml::Error,
    },
    #[error("provider {provider}: {field}: {reason}")]
    Invalid {
        provider: String,
        field: String,
        reason: String,
    },
    #[error("provider {provider}: cannot read module {path}: {error}")]
    Module {
        provider: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("provider {provider}: secret {secret}: environment variable {var} is not set")]
    MissingEnv {
        provider: String,
        secret: String,
        var: String,
    },
    #[error("provider {provider}: {error}")]
    Load {
        provider: String,
        error: crate::plugins::LoadError,
    },
}

/// A provider ready to call.
#[derive(Clone)]
pub struct ActiveProvider {
    pub name: String,
    pub priority: i32,
    pub plugin: Plugin,
}

impl ProviderSetFile {
    /// Reads and checks a providers file; module paths become relative to the file's folder.
    pub fn read(path: &Path) -> Result<Self, ProviderSetError> {
        let text = std::fs::read_to_string(path).map_err(|error| ProviderSetError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut file: ProviderSetFile =
            serde_yaml::from_str(&text).map_err(|error| ProviderSetError::Parse {
                path: path.to_path_buf(),
                error,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for entry in &mut file.providers {
            if entry.module.is_relative() {
                entry.module = base.join(&entry.module);
            }
        }
        file.validate()?;
        Ok(file)
    }

    /// Names are unique and non-empty; every entry names a module.
    pub fn validate(&self) -> Result<(), ProviderSetError> {
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.providers {
            let invalid = |field: &str, reason: String| ProviderSetError::Invalid {
                provider: entry.name.clone(),
                field: field.to_string(),
                reason,
            };
            if entry.name.trim().is_empty() {
                return Err(invalid("name", "must not be empty".into()));
            }
            if !seen.insert(entry.name.clone()) {
                return Err(invalid("name", "is used by more than one provider".into()));
            }
            if entry.module.as_os_str().is_empty() {
                return Err(invalid("module", "must name a .wasm file".into()));
            }
            if entry.limits.concurrency == Some(0) {
                return Err(invalid("limits.concurrency", "must be at least 1".into()));
            }
            if entry.limits.timeout_seconds == Some(0) {
                return Err(invalid(
                    "limits.timeoutSeconds",
                    "must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

impl ProviderEntry {
    /// The grants this entry gives its plugin, with secrets resolved.
    pub fn grants(&self) -> Result<Grants, ProviderSetError> {
        let mut secrets = BTreeMap::new();
        for (name, source) in &self.secrets {
            let value = match (&source.env, &source.value) {
                (None, Some(v)) => v.clone(),
                (Some(var), None) => {
                    std::env::var(var).map_err(|_| ProviderSetError::MissingEnv {
                        provider: self.name.clone(),
                        secret: name.clone(),
                        var: var.clone(),
                    })?
                }
                _ => {
                    return Err(ProviderSetError::Invalid {
                        provider: self.name.clone(),
                        field: format!("secrets.{name}"),
                        reason: "set exactly one of env or value".into(),
                    });
                }
            };
            secrets.insert(name.clone(), SecretValue::from(value));
        }
        let auth = match &self.auth {
            None => None,
            Some(spec) => {
                Some(
                    spec.to_config()
                        .map_err(|(field, reason)| ProviderSetError::Invalid {
                            provider: self.name.clone(),
                            field: if field.is_empty() {
                                "auth".into()
                            } else {
                                format!("auth.{field}")
                            },
                            reason,
                        })?,
                )
            }
        };
        Ok(Grants {
            provider_name: self.name.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            secrets,
            auth,
            config: self.config.clone(),
            limits: self.limits.to_limits(),
        })
    }

    /// Reads the module and loads it into `host`.
    pub async fn load(&self, host: &PluginHost) -> Result<ActiveProvider, ProviderSetError> {
        let grants = self.grants()?;
        let bytes = std::fs::read(&self.module).map_err(|error| ProviderSetError::Module {
            provider: self.name.clone(),
            path: self.module.clone(),
            error,
        })?;
        let plugin = host
            .load(bytes, grants)
            .await
            .map_err(|error| ProviderSetError::Load {
                provider: self.name.clone(),
                error,
            })?;
        Ok(ActiveProvider {
            name: self.name.clone(),
            priority: self.priority,
            plugin,
        })
    }
}

/// Loads every enabled provider in parallel. Failures are returned beside the successes so that
/// one broken provider never hides the others.
pub async fn load_all(
    host: &PluginHost,
    entries: &[ProviderEntry],
) -> (Vec<ActiveProvider>, Vec<ProviderSetError>) {
    let loads = entries.iter().filter(|e| e.enabled).map(|e| e.load(host));
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for result in futures::future::join_all(loads).await {
        match result {
            Ok(p) => ok.push(p),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let file: ProviderSetFile = serde_yaml::from_str(
            "providers:\n  - name: a\n    module: a.wasm\n    secrets: {api_key: {env: A_KEY}, other: {value: x}}\n    limits: {timeoutSeconds: 5}\n",
        )
        .expect("documented shape parses");
        file.validate().expect("valid");
        assert_eq!(
            file.providers[0].secrets["api_key"].env.as_deref(),
            Some("A_KEY")
        );
        assert_eq!(
            file.providers[0].limits.to_limits().call_timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_secret_needs_exactly_one_source() {
        let file: ProviderSetFile =
            serde_yaml::from_str("providers:\n  - name: a\n    module: a.wasm\n    secrets: {api_key: {env: X, value: y}}\n").expect("parses");
        let err = file.providers[0].grants().expect_err("refused");
        assert!(err.to_string().contains("secrets.api_key"), "{err}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let file: ProviderSetFile = serde_yaml::from_str(
            "providers:\n  - {name: a, module: a.wasm}\n  - {name: a, module: b.wasm}\n",
        )
        .expect("parses");
        assert!(file.validate().is_err());
    }
}
