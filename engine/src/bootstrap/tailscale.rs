//! A native client for the few Tailscale API calls a GPU node's life needs: mint a one-off,
//! ephemeral, pre-authorised, tagged auth key for the machine to join the tailnet; check and
//! revoke that key; find the machine's device by hostname and delete it on teardown.
//!
//! Exists so that enrolment and cleanup do not depend on a plugin or a sidecar. Authenticates
//! with an OAuth client (client credentials grant) and caches the access token until shortly
//! before it expires; a `401` on a cached token refreshes it once and retries.
//!
//! Errors carry the operation and the API's message, never the client secret, the access token
//! or an auth key: responses are decoded field by field so that a decoding error can not quote a
//! value, and API messages are scrubbed of the credentials in use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::secret::SecretString;
use super::validate;

/// Where and as whom to call the API.
#[derive(Debug, Clone)]
pub struct TailscaleConfig {
    /// `https://api.tailscale.com`
    pub api_base: Url,
    /// `-` for the OAuth client's own tailnet.
    pub tailnet: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl TailscaleConfig {
    /// The public API.
    pub const DEFAULT_API_BASE: &'static str = "https://api.tailscale.com";
    /// The credential's default tailnet.
    pub const DEFAULT_TAILNET: &'static str = "-";

    /// The public API and the OAuth client's own tailnet.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        TailscaleConfig {
            api_base: Url::parse(Self::DEFAULT_API_BASE).expect("constant URL parses"),
            tailnet: Self::DEFAULT_TAILNET.to_string(),
            client_id: client_id.into(),
            client_secret,
        }
    }
}

/// A freshly minted auth key. Only the creation response carries the key text.
#[derive(Debug, Clone)]
pub struct AuthKey {
    pub id: String,
    pub key: SecretString,
    pub expires: Option<String>,
}

/// What the API says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// True once a single-use key was used, or the key expired or was revoked.
    pub invalid: bool,
    pub revoked: bool,
}

/// A machine on the tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub node_id: Option<String>,
    pub hostname: String,
    pub addresses: Vec<String>,
    pub tags: Vec<String>,
}

/// A failed Tailscale call. `op` names the operation (`"oauth token"`, `"mint key"`, ...).
#[derive(Debug, thiserror::Error)]
pub enum TailscaleError {
    #[error("tailscale {op}: request failed: {source}")]
    Http {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("tailscale {op}: HTTP {status}: {message}")]
    Api {
        status: u16,
        message: String,
        op: &'static str,
    },
    #[error("tailscale {op}: unexpected response: {reason}")]
    Decode { op: &'static str, reason: String },
    #[error("tailscale client configuration: {reason}")]
    Config { reason: String },
}

impl TailscaleError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            TailscaleError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Tokens are renewed this long before the API says they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Upper bound of any one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// API messages are cut to this many characters.
const MAX_MESSAGE: usize = 500;

const OP_TOKEN: &str = "oauth token";
const OP_MINT: &str = "mint key";
const OP_KEY_STATE: &str = "get key";
const OP_DELETE_KEY: &str = "delete key";
const OP_DEVICES: &str = "list devices";
const OP_DELETE_DEVICE: &str = "delete device";

struct CachedToken {
    value: SecretString,
    valid_until: Instant,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    tailnet: String,
    client_id: String,
    client_secret: SecretString,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

/// The Tailscale API client. Cheap to clone; clones share the cached access token.
#[derive(Clone)]
pub struct TailscaleClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TailscaleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailscaleClient")
            .field("api_base", &self.inner.base.as_str())
            .field("tailnet", &self.inner.tailnet)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

fn config_err(reason: impl Into<String>) -> TailscaleError {
    TailscaleError::Config {
        reason: reason.into(),
    }
}

fn decode_err(op: &'static str, reason: impl Into<String>) -> TailscaleError {
    TailscaleError::Decode {
        op,
        reason: reason.into(),
    }
}

/// Parses a JSON body. serde_json's syntax errors name a position, never the content.
fn json_body(op: &'static str, body: &[u8]) -> Result<Value, TailscaleError> {
    serde_json::from_slice(body).map_err(|e| decode_err(op, format!("body is not JSON ({e})")))
}

fn req_str<'a>(op: &'static str, v: &'a Value, field: &str) -> Result<&'a str, TailscaleError> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| decode_err(op, format!("field {field:?} is missing or not a string")))
}

fn opt_str(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn str_list(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The real API gives `revoked` as a timestamp once revoked; a boolean is accepted too.
fn revoked(v: &Value) -> bool {
    match v.get("revoked") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty() && !s.starts_with("0001-01-01"),
        _ => false,
    }
}

fn device_from(op: &'static str, v: &Value) -> Result<(Device, String), TailscaleError> {
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(decode_err(op, "a device has no \"id\"")),
    };
    let device = Device {
        id,
        node_id: opt_str(v, "nodeId"),
        hostname: opt_str(v, "hostname").unwrap_or_default(),
        addresses: str_list(v, "addresses"),
        tags: str_list(v, "tags"),
    };
    Ok((device, opt_str(v, "name").unwrap_or_default()))
}

/// An id that stays one path segment (`url` drops `.` and `..` segments).
fn check_id(what: &str, id: &str) -> Result<(), TailscaleError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(config_err(format!("{what} id {id:?} is not valid")));
    }
    Ok(())
}

impl TailscaleClient {
    /// Checks the configuration and builds the HTTP client. Makes no request.
    pub fn new(cfg: TailscaleConfig) -> Result<Self, TailscaleError> {
        let base = cfg.api_base;
        if !matches!(base.scheme(), "https" | "http") || base.cannot_be_a_base() {
            return Err(config_err(format!(
                "api_base {:?} must be an http(s) URL such as {}",
                base.as_str(),
                TailscaleConfig::DEFAULT_API_BASE
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config_err("api_base must not carry credentials"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config_err("api_base must not have a query or fragment"));
        }
        if cfg.tailnet.is_empty() || validate::single_line(&cfg.tailnet).is_err() {
            return Err(config_err(
                "tailnet must be \"-\" (the client's tailnet) or a tailnet name",
            ));
        }
        if cfg.client_id.is_empty() {
            return Err(config_err("client_id is empty"));
        }
        if cfg.client_secret.is_empty() {
            return Err(config_err("client_secret is empty"));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("tgp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_err(format!("could not build the HTTP client: {e}")))?;
        Ok(TailscaleClient {
            inner: Arc::new(Inner {
                http,
                base,
                tailnet: cfg.tailnet,
                client_id: cfg.client_id,
                client_secret: cfg.client_secret,
                token: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// `{base}/api/v2/<segments...>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v2"]).extend(segments);
        }
        url
    }

    fn tailnet_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["tailnet", self.inner.tailnet.as_str()];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    /// Replaces the credentials in a message from the server, and bounds its length.
    fn scrub(&self, message: &str, token: Option<&SecretString>) -> String {
        let mut out = message.to_string();
        for secret in [Some(&self.inner.client_secret), token]
            .into_iter()
            .flatten()
        {
            if !secret.is_empty() {
                out = out.replace(secret.expose(), "[redacted]");
            }
        }
        if out.chars().count() > MAX_MESSAGE {
            out = out.chars().take(MAX_MESSAGE).collect::<String>() + "…";
        }
        out
    }

    fn api_error(
        &self,
        op: &'static str,
        status: u16,
        body: &[u8],
        token: Option<&SecretString>,
    ) -> TailscaleError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        let message = if message.is_empty() {
            "(no message)".to_string()
        } else {
            self.scrub(&message, token)
        };
        TailscaleError::Api {
            status,
            message,
            op,
        }
    }

    /// A valid access token, and whether it was fetched by this call. `stale` is a token the API
    /// refused: it is replaced unless another caller already did.
    async fn token(
        &self,
        stale: Option<&SecretString>,
    ) -> Result<(SecretString, bool), TailscaleError> {
        let mut cached = self.inner.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.valid_until
            && stale != Some(&t.value)
        {
            return Ok((t.value.clone(), false));
        }
        *cached = None;
        let url = self.url(&["oauth", "token"]);
        let resp = self
            .inner
            .http
            .post(url)
            .form(&[
                ("client_id", self.inner.client_id.as_str()),
                ("client_secret", self.inner.client_secret.expose()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .map_err(|source| TailscaleError::Http {
                op: OP_TOKEN,
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| TailscaleError::Http {
            op: OP_TOKEN,
            source,
        })?;
        if !(200..300).contains(&status) {
            return Err(self.api_error(OP_TOKEN, status, &body, None));
        }
        let v = json_body(OP_TOKEN, &body)?;
        let value = SecretString::new(req_str(OP_TOKEN, &v, "access_token")?);
        if let Some(kind) = v.get("token_type").and_then(Value::as_str)
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(decode_err(
                OP_TOKEN,
                format!("token_type {kind:?} is not Bearer"),
            ));
        }
        let lifetime =
            Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(0));
        let now = Instant::now();
        // A token that lives no longer than the margin is used once and not cached.
        let valid_until = now + lifetime.saturating_sub(TOKEN_MARGIN);
        tracing::debug!(
            expires_in = lifetime.as_secs(),
            "tailscale: new access token"
        );
        if valid_until > now {
            *cached = Some(CachedToken {
                value: value.clone(),
                valid_until,
            });
        }
        Ok((value, true))
    }

    async fn send_once(
        &self,
        op: &'static str,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        token: &SecretString,
    ) -> Result<(u16, Vec<u8>), TailscaleError> {
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.expose());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| TailscaleError::Http { op, source })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| TailscaleError::Http { op, source })?;
        Ok((status, bytes.to_vec()))
    }

    /// One authenticated call. `Ok(None)` for a 404 when `not_found_ok`; `Ok(Some(body))` for a
    /// 2xx; an error otherwise.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<Value>,
        not_found_ok: bool,
    ) -> Result<Option<Vec<u8>>, TailscaleError> {
        let (mut token, fresh) = self.token(None).await?;
        let (mut status, mut reply) = self
            .send_once(op, &method, &url, body.as_ref(), &token)
            .await?;
        if status == 401 && !fresh {
            tracing::debug!(op, "tailscale: cached access token refused, refreshing");
            token = self.token(Some(&token)).await?.0;
            (status, reply) = self
                .send_once(op, &method, &url, body.as_ref(), &token)
                .await?;
        }
        tracing::debug!(op, status, "tailscale: response");
        match status {
            200..=299 => Ok(Some(reply)),
            404 if not_found_ok => Ok(None),
            _ => Err(self.api_error(op, status, &reply, Some(&token))),
        }
    }

    /// Mints a single-use, ephemeral, pre-authorised auth key carrying `tags`, valid for
    /// `expiry` (whole seconds, at least one).
    pub async fn mint_node_key(
        &self,
        tags: &[String],
        expiry: Duration,
        description: &str,
    ) -> Result<AuthKey, TailscaleError> {
        for tag in tags {
            validate::tailscale_tag(tag).map_err(|r| config_err(format!("tag {tag:?} {r}")))?;
        }
        if expiry.as_secs() == 0 {
            return Err(config_err("key expiry must be at least one second"));
        }
        let body = json!({
            "capabilities": {"devices": {"create": {
                "reusable": false,
                "ephemeral": true,
                "preauthorized": true,
                "tags": tags,
            }}},
            "expirySeconds": expiry.as_secs(),
            "description": description,
        });
        let url = self.tailnet_url(&["keys"]);
        let reply = self
            .call(OP_MINT, Method::POST, url, Some(body), false)
            .await?
            .unwrap_or_default();
        let v = json_body(OP_MINT, &reply)?;
        let key = AuthKey {
            id: req_str(OP_MINT, &v, "id")?.to_string(),
            key: SecretString::new(req_str(OP_MINT, &v, "key")?),
            expires: opt_str(&v, "expires"),
        };
        tracing::info!(key_id = %key.id, "tailscale: minted node auth key");
        Ok(key)
    }

    /// The key's state; `None` if the API does not know it.
    pub async fn key_state(&self, id: &str) -> Result<Option<KeyState>, TailscaleError> {
        check_id("key", id)?;
        let url = self.tailnet_url(&["keys", id]);
        let Some(reply) = self
            .call(OP_KEY_STATE, Method::GET, url, None, true)
            .await?
        else {
            return Ok(None);
        };
        let v = json_body(OP_KEY_STATE, &reply)?;
        if !v.is_object() {
            return Err(decode_err(OP_KEY_STATE, "body is not an object"));
        }
        Ok(Some(KeyState {
            invalid: v.get("invalid").and_then(Value::as_bool).unwrap_or(false),
            revoked: revoked(&v),
        }))
    }

    /// Revokes a key. A key the API does not know is already gone.
    pub async fn delete_key(&self, id: &str) -> Result<(), TailscaleError> {
        check_id("key", id)?;
        let url = self.tailnet_url(&["keys", id]);
        self.call(OP_DELETE_KEY, Method::DELETE, url, None, true)
            .await?;
        Ok(())
    }

    /// Every device whose `hostname`, or the first label of whose MagicDNS `name`, is
    /// `hostname` (ASCII case-insensitive). Tailscale keeps the hostname but suffixes the name
    /// (`gpu-1-1`) when a hostname is reused, so all of a machine's incarnations are found.
    pub async fn find_devices(&self, hostname: &str) -> Result<Vec<Device>, TailscaleError> {
        if hostname.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.tailnet_url(&["devices"]);
        let reply = self
            .call(OP_DEVICES, Method::GET, url, None, false)
            .await?
            .unwrap_or_default();
        let v = json_body(OP_DEVICES, &reply)?;
        let list = v
            .get("devices")
            .and_then(Value::as_array)
            .ok_or_else(|| decode_err(OP_DEVICES, "field \"devices\" is missing or not a list"))?;
        let mut exact = Vec::new();
        let mut by_name = Vec::new();
        for item in list {
            let (device, name) = device_from(OP_DEVICES, item)?;
            let first_label = name.split('.').next().unwrap_or_default();
            if device.hostname.eq_ignore_ascii_case(hostname) {
                exact.push(device);
            } else if first_label.eq_ignore_ascii_case(hostname) {
                by_name.push(device);
            }
        }
        exact.extend(by_name);
        Ok(exact)
    }

    /// The device of `hostname` (see [`TailscaleClient::find_devices`]), a `hostname` match
    /// before a `name` match.
    pub async fn find_device(&self, hostname: &str) -> Result<Option<Device>, TailscaleError> {
        Ok(self.find_devices(hostname).await?.into_iter().next())
    }

    /// Deletes a device (by `nodeId` or numeric `id`). A device the API does not know is
    /// already gone.
    pub async fn delete_device(&self, id: &str) -> Result<(), TailscaleError> {
        check_id("device", id)?;
        let url = self.url(&["device", id]);
        self.call(OP_DELETE_DEVICE, Method::DELETE, url, None, true)
            .await?;
        tracing::info!(device_id = id, "tailscale: deleted device");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
