//! What the operator grants one plugin: its identity, the hosts it may reach, its secrets and
//! configuration, and the resource limits it runs under.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A secret value (API key, token). The host only ever applies it to outgoing HTTP requests to
/// allow-listed hosts; `Debug` and `Display` print `<redacted>` so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for substitution into outgoing requests only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Resource limits for one plugin. Memory is capped per instance (each concurrent call runs on
/// its own instance, so the worst case for a plugin is `memory_bytes * max_concurrency`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, including the HTTP requests it makes.
    pub call_timeout: Duration,
    /// Linear memory cap of one instance.
    pub memory_bytes: u64,
    /// Calls running at the same time; further calls wait for a slot.
    pub max_concurrency: usize,
    /// Cap on each HTTP request's own timeout.
    pub http_timeout: Duration,
    /// Cap on each HTTP response body.
    pub max_response_bytes: u64,
    /// Guest log lines per second (token bucket, burst of the same size); excess lines are
    /// dropped and counted.
    pub log_lines_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            memory_bytes: 64 * 1024 * 1024,
            max_concurrency: 16,
            http_timeout: Duration::from_secs(20),
            max_response_bytes: 4 * 1024 * 1024,
            log_lines_per_second: 50,
        }
    }
}

/// How the host authenticates a plugin's requests, when the operator chooses (otherwise the
/// plugin's declared `capabilities.auth` is used).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    /// The scheme; it names secrets of [`Grants::secrets`].
    pub scheme: super::bindings::AuthScheme,
    /// Origins (`scheme://host[:port]`) whose requests carry the credentials; empty: every
    /// allowed host.
    pub hosts: Vec<String>,
}

/// Everything one plugin is granted.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// The provider's name as configured by the operator (used in logs and errors).
    pub provider_name: String,
    /// Origins the plugin may reach, as `scheme://host[:port]`.
    pub allowed_hosts: Vec<String>,
    /// Secret values by name. The host applies them as the auth scheme says; the plugin never
    /// sees them.
    pub secrets: BTreeMap<String, SecretValue>,
    /// The operator's choice of auth scheme; `None`: the plugin's declared scheme.
    pub auth: Option<AuthConfig>,
    /// Values answered by the `config` import.
    pub config: BTreeMap<String, String>,
    /// Resource limits.
    pub limits: Limits,
}
