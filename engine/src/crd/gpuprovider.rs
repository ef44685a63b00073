//! `GPUProvider`: one configured cloud: which plugin module to load, what it may reach, its
//! credentials (by Secret reference, never inline), its configuration, limits and priority.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tgp.io",
    version = "v1alpha1",
    kind = "GPUProvider",
    plural = "gpuproviders",
    shortname = "gpup",
    status = "GPUProviderStatus",
    printcolumn = r#"{"name":"Plugin","type":"string","jsonPath":".status.pluginName"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"Loaded","type":"string","jsonPath":".status.conditions[?(@.type==\"Loaded\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GPUProviderSpec {
    /// Where the plugin module comes from.
    pub module: ModuleSource,
    /// Credentials: a Secret in the operator's namespace, which of its keys become which secret
    /// names, and how the host applies them to the plugin's requests (the plugin never sees
    /// them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// `scheme://host[:port]` origins the plugin may call. Everything else is refused.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Plugin configuration values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: ProviderLimits,
    /// Breaks price ties between providers: higher wins.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a node booted on this provider may take to register with the cluster before
    /// its instance is terminated, e.g. "30m" (large GPU machines on some clouds take 20-30
    /// minutes to boot). Unset: the operator's `--registration-timeout` (15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub registration_timeout: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The plugin module: exactly one source (`path`, `configMap`, `url` or `oci`), and the sha256
/// digest that pins it (required for every source but `path`). Bytes that do not hash to the
/// digest are refused before anything else looks at them. Changing any of this swaps the
/// provider to the new module while calls keep running; pointing `digest` back at an earlier
/// revision rolls back (see docs/hot-swap.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.path), has(self.configMap), has(self.url), has(self.oci)].filter(x, x).size() == 1",
        "message": "set exactly one of path, configMap, url, oci"
    },
    {
        "rule": "has(self.path) || has(self.digest)",
        "message": "digest (sha256:<hex>) is required for configMap, url and oci sources"
    }
]))]
pub struct ModuleSource {
    /// A path on the operator's filesystem (development, and images that ship plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A key of a ConfigMap's `binaryData` in the operator's namespace
    /// (`kubectl create configmap NAME --from-file=KEY=module.wasm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapModule>,
    /// An `https://` URL of the module (`http://` is accepted for loopback hosts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(https://|http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?/)"
    ))]
    pub url: Option<String>,
    /// An OCI artifact whose single layer is the module
    /// (media type `application/vnd.tgp.provider.wasm.v1` or
    /// `application/vnd.wasm.content.layer.v1+wasm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciModule>,
    /// `sha256:<hex>` of the module bytes (for OCI: the module layer's digest). Required for
    /// every source but `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-fA-F]{64}$"))]
    pub digest: Option<String>,
    /// Deadline of one fetch, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<u64>,
    /// Largest module accepted, in MiB (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 512))]
    pub max_size_mib: Option<u64>,
}

/// A module kept in a ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapModule {
    /// ConfigMap name, in the operator's namespace.
    pub name: String,
    /// The `binaryData` key holding the module.
    pub key: String,
}

/// A module published as an OCI artifact. The registry is reached over https, its certificate
/// checked against the public roots plus the operator's `--module-ca-file` bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": r#"!has(self.plainHttp) || !self.plainHttp || self.reference.matches('^(oci://)?(127\\.[0-9.]+|localhost)(:[0-9]+)?/')"#,
        "fieldPath": ".plainHttp",
        "message": "plainHttp is allowed only for loopback registries (127.0.0.0/8, localhost); other registries are reached over https"
    }
]))]
pub struct OciModule {
    /// `registry/repository:tag` or `registry/repository@sha256:<manifest digest>`.
    pub reference: String,
    /// A `kubernetes.io/dockerconfigjson` Secret in the operator's namespace; anonymous pull
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// Reach the registry over plain http instead of https (like ORAS' `--plain-http`).
    /// Allowed only for loopback registries (`127.0.0.0/8`, `localhost`): a local development
    /// registry or a test. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Secret name (in the operator's namespace).
    pub secret_name: String,
    /// Secret name used by the auth scheme (e.g. `api_key`) -> key in the Secret.
    pub keys: BTreeMap<String, String>,
    /// How the host authenticates the plugin's requests with these secrets. Unset: the scheme
    /// the plugin declares (the bundled providers declare `bearer` with the secret `api_key`).
    /// The plugin never sees the values, whatever the scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

/// How the host authenticates a provider's requests: set exactly one of `bearer`, `basic`,
/// `header`, `query`, `oauth2`. Secrets are named as in `credentials.keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.bearer), has(self.basic), has(self.header), has(self.query), has(self.oauth2)].filter(x, x).size() == 1",
        "message": "set exactly one of bearer, basic, header, query, oauth2"
    }
]))]
pub struct AuthSpec {
    /// `Authorization: Bearer <secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerAuthSpec>,
    /// HTTP Basic from a user-name secret and an optional password secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuthSpec>,
    /// The secret (after `prefix`) in a named header, e.g. `X-API-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedCredentialSpec>,
    /// The secret (after `prefix`) in a named query parameter, e.g. `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<NamedCredentialSpec>,
    /// OAuth2 client credentials: the host fetches a token from `tokenUrl` (which must be in
    /// `allowedHosts`), caches it until it expires, fetches a new one after a 401, and sends it
    /// as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Spec>,
    /// Origins (`scheme://host[:port]`, each in `allowedHosts`) whose requests carry the
    /// credentials. Empty: every allowed host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// A bearer token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerAuthSpec {
    /// The secret holding the token.
    pub secret: String,
}

/// HTTP Basic credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthSpec {
    /// The secret holding the user name.
    pub username_secret: String,
    /// The secret holding the password; unset sends an empty password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
}

/// A credential in a named header or query parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedCredentialSpec {
    /// The header or parameter name.
    pub name: String,
    /// The secret holding the value.
    pub secret: String,
    /// Text before the value, e.g. `Token `.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// OAuth2 client credentials (RFC 6749 section 4.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Spec {
    /// The token endpoint, e.g. `https://api.datacrunch.io/v1/oauth2/token`.
    pub token_url: String,
    /// The secret holding the client id.
    pub client_id_secret: String,
    /// The secret holding the client secret.
    pub client_secret_secret: String,
    /// Scopes to ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Where the client id and secret go in the token request: `body` (default) or `basic`.
    #[serde(default)]
    pub client_auth: ClientAuthSpec,
}

/// Where an OAuth2 client sends its id and secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuthSpec {
    /// `client_id` and `client_secret` in the form body.
    #[default]
    Body,
    /// HTTP Basic with the client id and secret.
    Basic,
}

impl AuthSpec {
    /// The host's auth configuration, or the field that is wrong and why (`field` is relative
    /// to this object, e.g. `bearer.secret`).
    pub fn to_config(&self) -> Result<crate::plugins::AuthConfig, (String, String)> {
        use crate::plugins::{
            AuthConfig, AuthScheme, BasicAuth, ClientAuth, NamedCredential, Oauth2ClientCredentials,
        };
        let named = |n: &NamedCredentialSpec| NamedCredential {
            name: n.name.clone(),
            secret: n.secret.clone(),
            prefix: n.prefix.clone(),
        };
        let mut schemes: Vec<(&str, AuthScheme)> = Vec::new();
        if let Some(b) = &self.bearer {
            schemes.push(("bearer", AuthScheme::Bearer(b.secret.clone())));
        }
        if let Some(b) = &self.basic {
            schemes.push((
                "basic",
                AuthScheme::Basic(BasicAuth {
                    username_secret: b.username_secret.clone(),
                    password_secret: b.password_secret.clone(),
                }),
            ));
        }
        if let Some(h) = &self.header {
            schemes.push(("header", AuthScheme::Header(named(h))));
        }
        if let Some(q) = &self.query {
            schemes.push(("query", AuthScheme::Query(named(q))));
        }
        if let Some(o) = &self.oauth2 {
            schemes.push((
                "oauth2",
                AuthScheme::Oauth2(Oauth2ClientCredentials {
                    token_url: o.token_url.clone(),
                    client_id_secret: o.client_id_secret.clone(),
                    client_secret_secret: o.client_secret_secret.clone(),
                    scopes: o.scopes.clone(),
                    client_auth: match o.client_auth {
                        ClientAuthSpec::Body => ClientAuth::Body,
                        ClientAuthSpec::Basic => ClientAuth::Basic,
                    },
                }),
            ));
        }
        match schemes.len() {
            1 => Ok(AuthConfig {
                scheme: schemes.remove(0).1,
                hosts: self.hosts.clone(),
            }),
            0 => Err((
                String::new(),
                "set one of bearer, basic, header, query, oauth2".into(),
            )),
            _ => Err((
                String::new(),
                format!(
                    "set exactly one scheme; found {}",
                    schemes
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}

/// Sandbox limits; unset fields use the defaults (30 s, 64 MiB, 16 concurrent calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 4096))]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUProviderStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_version: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// USD, decimal text; absent when the provider has no balance API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The module revision serving calls now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<ModuleRevision>,
    /// The last good revisions, newest first (the active one included). Setting
    /// `spec.module.digest` back to one of them rolls back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<ModuleRevision>,
}

/// One module that loaded and served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRevision {
    /// `sha256:<hex>` of the module.
    pub digest: String,
    /// The plugin's name, from its `info()`.
    #[serde(default)]
    pub plugin_name: String,
    /// The plugin's version, from its `info()`.
    pub version: String,
    /// RFC 3339 time the revision became active.
    pub loaded_at: String,
    /// Where the module came from (`path ...`, `configMap ns/name key k`, a URL,
    /// `oci://reference`).
    pub source: String,
    /// Whether the compiled code came from the compile cache (no compilation).
    #[serde(default)]
    pub from_cache: bool,
    /// Time from the start of the load (fetch included) to the swap, in milliseconds.
    #[serde(default)]
    pub load_millis: u64,
}
