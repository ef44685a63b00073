//! Credentials the host applies itself (contract 0.3).
//!
//! A plugin never holds a credential and never decides where one goes. It declares how its
//! vendor authenticates (`capabilities.auth`), the operator may configure another scheme, and
//! the host adds the credentials to every request bound for a host that receives them (by
//! default every granted host): a bearer token, HTTP Basic composed from two secrets, a key in a
//! named header or query parameter, or an OAuth2 client-credentials token that the host fetches
//! from the provider's token endpoint, caches until it expires, fetches again after a 401, and
//! never hands to the guest. A request that sets the header the credentials go in is refused, so
//! a plugin cannot replace or read them; every value (and the current token) is in the redaction
//! set of everything that goes back into the sandbox.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::bindings::http_api::HttpError;
use super::bindings::{AuthScheme, ClientAuth, Oauth2ClientCredentials};
use super::error::LoadError;
use super::grants::SecretValue;
use super::http::policy::{AllowList, Origin};

/// Refresh a token this long before the expiry its endpoint announced.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// A token whose endpoint announced no lifetime is used this long.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Longest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// What the host adds to an outgoing request (`Debug` shows where it goes, never the value).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Credential {
    /// A header (name, value).
    Header(HeaderName, SecretValue),
    /// A query parameter (name, value).
    Query(String, SecretValue),
}

/// How one plugin's requests are authenticated.
pub struct HostAuth {
    scheme: AuthScheme,
    /// Origins that receive the credentials; `None`: every granted origin.
    hosts: Option<Vec<Origin>>,
    secrets: BTreeMap<String, SecretValue>,
    /// The header the credentials go in (plugins may not set it), if they go in a header.
    reserved: Option<HeaderName>,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// The token in use, for redaction (read without waiting on a fetch in progress).
    current: std::sync::Mutex<Option<SecretValue>>,
}

struct CachedToken {
    value: SecretValue,
    valid_until: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The secret names a scheme uses.
fn secret_names(scheme: &AuthScheme) -> Vec<&str> {
    match scheme {
        AuthScheme::Bearer(s) => vec![s.as_str()],
        AuthScheme::Basic(b) => std::iter::once(b.username_secret.as_str())
            .chain(b.password_secret.as_deref())
            .collect(),
        AuthScheme::Header(n) | AuthScheme::Query(n) => vec![n.secret.as_str()],
        AuthScheme::Oauth2(o) => vec![o.client_id_secret.as_str(), o.client_secret_secret.as_str()],
    }
}

/// A short name of a scheme, for logs and messages.
pub fn scheme_name(scheme: &AuthScheme) -> &'static str {
    match scheme {
        AuthScheme::Bearer(_) => "bearer",
        AuthScheme::Basic(_) => "basic",
        AuthScheme::Header(_) => "header",
        AuthScheme::Query(_) => "query",
        AuthScheme::Oauth2(_) => "oauth2",
    }
}

fn invalid(reason: impl Into<String>) -> LoadError {
    LoadError::AuthConfig {
        reason: reason.into(),
    }
}

impl HostAuth {
    /// Checks `scheme` (names well formed, the token endpoint a granted origin) and prepares it.
    /// `hosts` are the origins that receive the credentials (empty: every granted origin); each
    /// must be granted. Secrets the scheme names need not exist yet: a request that needs a
    /// missing one gets `http-error::unauthenticated` naming it (the contract's "missing
    /// credentials are auth").
    pub fn new(
        scheme: AuthScheme,
        hosts: &[String],
        secrets: &BTreeMap<String, SecretValue>,
        allow: &AllowList,
    ) -> Result<Self, LoadError> {
        for name in secret_names(&scheme) {
            if name.trim().is_empty() {
                return Err(invalid(format!(
                    "the {} scheme names an empty secret",
                    scheme_name(&scheme)
                )));
            }
        }
        let reserved = match &scheme {
            AuthScheme::Bearer(_) | AuthScheme::Basic(_) | AuthScheme::Oauth2(_) => {
                Some(AUTHORIZATION)
            }
            AuthScheme::Header(n) => Some(
                HeaderName::from_bytes(n.name.as_bytes())
                    .map_err(|_| invalid(format!("`{}` is not a valid header name", n.name)))?,
            ),
            AuthScheme::Query(n) => {
                if n.name.trim().is_empty() {
                    return Err(invalid("the query scheme names no parameter"));
                }
                None
            }
        };
        if let AuthScheme::Oauth2(o) = &scheme {
            let url = Url::parse(&o.token_url)
                .map_err(|e| invalid(format!("token URL `{}`: {e}", o.token_url)))?;
            let origin = Origin::of(&url)
                .ok_or_else(|| invalid(format!("token URL `{}` is not http(s)", o.token_url)))?;
            if !allow.allows(&origin) {
                return Err(invalid(format!(
                    "the token URL's origin {origin} is not granted; add it to allowedHosts"
                )));
            }
        }
        let hosts = if hosts.is_empty() {
            None
        } else {
            let mut parsed = Vec::new();
            for h in hosts {
                let origin = Origin::parse(h)
                    .map_err(|reason| invalid(format!("credential host `{h}`: {reason}")))?;
                if !allow.allows(&origin) {
                    return Err(invalid(format!(
                        "credential host {origin} is not granted; add it to allowedHosts"
                    )));
                }
                parsed.push(origin);
            }
            Some(parsed)
        };
        let secrets = secret_names(&scheme)
            .into_iter()
            .filter_map(|n| secrets.get(n).map(|v| (n.to_owned(), v.clone())))
            .collect();
        Ok(Self {
            scheme,
            hosts,
            secrets,
            reserved,
            token: tokio::sync::Mutex::new(None),
            current: std::sync::Mutex::new(None),
        })
    }

    /// The scheme in use.
    pub fn scheme(&self) -> &AuthScheme {
        &self.scheme
    }

    /// Whether requests to `url` carry the credentials.
    pub fn applies_to(&self, url: &Url) -> bool {
        match &self.hosts {
            None => true,
            Some(hosts) => hosts.iter().any(|o| o.is_of(url)),
        }
    }

    /// The header the credentials go in, which a plugin may not set.
    pub fn reserved_header(&self) -> Option<&HeaderName> {
        self.reserved.as_ref()
    }

    /// The query parameter the credentials go in, which a plugin may not set.
    pub fn reserved_query(&self) -> Option<&str> {
        match &self.scheme {
            AuthScheme::Query(n) => Some(n.name.as_str()),
            _ => None,
        }
    }

    /// The OAuth2 token in use, if any (to be redacted like a secret).
    pub fn current_token(&self) -> Option<SecretValue> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a 401 should be answered by fetching a new token and trying once more.
    pub fn refreshes_on_401(&self) -> bool {
        matches!(self.scheme, AuthScheme::Oauth2(_))
    }

    /// Drops the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.token.lock().await = None;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn secret(&self, name: &str) -> Result<&SecretValue, HttpError> {
        self.secrets.get(name).ok_or_else(|| {
            HttpError::Unauthenticated(format!(
                "secret `{name}` ({} scheme) is not configured for this provider",
                scheme_name(&self.scheme)
            ))
        })
    }

    /// The credential to add to a request, fetching an OAuth2 token when none is cached.
    /// `budget` bounds a token fetch.
    pub async fn credential(
        &self,
        client: &reqwest::Client,
        budget: Duration,
    ) -> Result<Credential, HttpError> {
        let header = |value: String| -> Result<Credential, HttpError> {
            Ok(Credential::Header(AUTHORIZATION, SecretValue::new(value)))
        };
        match &self.scheme {
            AuthScheme::Bearer(s) => header(format!("Bearer {}", self.secret(s)?.expose())),
            AuthScheme::Basic(b) => {
                let user = self.secret(&b.username_secret)?.expose();
                let password = match &b.password_secret {
                    Some(p) => self.secret(p)?.expose(),
                    None => "",
                };
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                header(format!("Basic {encoded}"))
            }
            AuthScheme::Header(n) => Ok(Credential::Header(
                self.reserved.clone().unwrap_or(AUTHORIZATION),
                SecretValue::new(format!("{}{}", n.prefix, self.secret(&n.secret)?.expose())),
            )),
            AuthScheme::Query(n) => Ok(Credential::Query(
                n.name.clone(),
                SecretValue::new(format!("{}{}", n.prefix, self.secret(&n.secret)?.expose())),
            )),
            AuthScheme::Oauth2(o) => {
                let token = self.token(o, client, budget).await?;
                header(format!("Bearer {}", token.expose()))
            }
        }
    }

    /// The cached token, or a new one from the token endpoint.
    async fn token(
        &self,
        o: &Oauth2ClientCredentials,
        client: &reqwest::Client,
        budget: Duration,
    ) -> Result<SecretValue, HttpError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.valid_until
        {
            return Ok(t.value.clone());
        }
        let id = self.secret(&o.client_id_secret)?.clone();
        let secret = self.secret(&o.client_secret_secret)?.clone();
        let fetched = tokio::time::timeout(budget, fetch_token(o, &id, &secret, client))
            .await
            .map_err(|_| HttpError::Timeout)??;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched.value.clone());
        let value = fetched.value.clone();
        *cached = Some(fetched);
        Ok(value)
    }

    /// Every credential value this scheme can send, in the forms the host sends it, for
    /// redaction: the secrets it uses, a query value percent-encoded as the URL carries it, the
    /// composed values (a Basic header is base64 of `user:password`) and the token.
    pub fn redaction_values(&self) -> Vec<SecretValue> {
        let mut values: Vec<SecretValue> = self.secrets.values().cloned().collect();
        if let AuthScheme::Query(n) = &self.scheme
            && let Ok(v) = self.secret(&n.secret)
        {
            let raw = format!("{}{}", n.prefix, v.expose());
            let encoded: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
            values.push(SecretValue::new(raw));
            values.push(SecretValue::new(encoded));
        }
        if let AuthScheme::Basic(b) = &self.scheme
            && let Ok(user) = self.secret(&b.username_secret)
        {
            let password = b
                .password_secret
                .as_deref()
                .and_then(|p| self.secrets.get(p))
                .map_or("", |v| v.expose());
            let pair = format!("{}:{password}", user.expose());
            values.push(SecretValue::new(
                base64::engine::general_purpose::STANDARD.encode(&pair),
            ));
            values.push(SecretValue::new(pair));
        }
        values.extend(self.current_token());
        values
    }
}

/// One client-credentials token request (RFC 6749 §4.4).
async fn fetch_token(
    o: &Oauth2ClientCredentials,
    id: &SecretValue,
    secret: &SecretValue,
    client: &reqwest::Client,
) -> Result<CachedToken, HttpError> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    let scope = o.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let mut request = client
        .post(&o.token_url)
        .header("accept", "application/json");
    match o.client_auth {
        ClientAuth::Body => {
            form.push(("client_id", id.expose()));
            form.push(("client_secret", secret.expose()));
        }
        ClientAuth::Basic => {
            request = request.basic_auth(id.expose(), Some(secret.expose()));
        }
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        // Never the error's URL or text beyond its kind: the request carried the client secret.
        .map_err(|e| HttpError::Connect(format!("token endpoint: {}", connect_kind(&e))))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| HttpError::Connect(format!("token endpoint: {}", connect_kind(&e))))?;
    if bytes.len() > MAX_TOKEN_RESPONSE {
        return Err(HttpError::Unauthenticated(
            "the token endpoint's answer is too large".into(),
        ));
    }
    if !status.is_success() {
        // The body may echo the client's credentials: say only what kind of refusal it was.
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "no error code".into());
        return Err(HttpError::Unauthenticated(format!(
            "the token endpoint refused the client: HTTP {} ({code})",
            status.as_u16()
        )));
    }
    let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|_| {
        HttpError::Unauthenticated("the token endpoint answered without an access_token".into())
    })?;
    if answer.access_token.is_empty()
        || answer
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(HttpError::Unauthenticated(
            "the token endpoint answered with no usable bearer token".into(),
        ));
    }
    let lifetime = answer
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let usable = lifetime
        .saturating_sub(TOKEN_EXPIRY_MARGIN)
        .max(Duration::from_secs(1).min(lifetime));
    Ok(CachedToken {
        value: SecretValue::new(answer.access_token),
        valid_until: Instant::now() + usable,
    })
}

/// What kind of failure a client error was, without its URL.
fn connect_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    }
}

/// Validates a header value built from a credential (no control characters).
pub fn header_value(value: &SecretValue) -> Result<HeaderValue, HttpError> {
    let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
        HttpError::Unauthenticated(
            "a configured credential holds characters a header cannot carry".into(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::{BasicAuth, NamedCredential};

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(
            &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "p",
        )
    }

    fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(*v)))
            .collect()
    }

    fn header_of(c: Credential) -> (String, String) {
        match c {
            Credential::Header(n, v) => (n.to_string(), v.expose().to_owned()),
            Credential::Query(n, v) => (format!("?{n}"), v.expose().to_owned()),
        }
    }

    #[tokio::test]
    async fn static_schemes_compose_their_credentials() {
        let client = reqwest::Client::new();
        let s = secrets(&[("key", "k3y"), ("user", "alice"), ("pw", "p:w")]);
        let a = allow(&["https://api.example.com"]);
        let cases = [
            (
                AuthScheme::Bearer("key".into()),
                ("authorization", "Bearer k3y".to_string()),
            ),
            (
                AuthScheme::Basic(BasicAuth {
                    username_secret: "user".into(),
                    password_secret: Some("pw".into()),
                }),
                (
                    "authorization",
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("alice:p:w")
                    ),
                ),
            ),
            (
                AuthScheme::Header(NamedCredential {
                    name: "X-API-Key".into(),
                    secret: "key".into(),
                    prefix: "Token ".into(),
                }),
                ("x-api-key", "Token k3y".to_string()),
            ),
            (
                AuthScheme::Query(NamedCredential {
                    name: "api_key".into(),
                    secret: "key".into(),
                    prefix: String::new(),
                }),
                ("?api_key", "k3y".to_string()),
            ),
        ];
        for (scheme, (name, value)) in cases {
            let auth = HostAuth::new(scheme, &[], &s, &a).unwrap();
            let got = header_of(
                auth.credential(&client, Duration::from_secs(1))
                    .await
                    .unwrap(),
            );
            assert_eq!(got, (name.to_string(), value));
        }
    }

    #[tokio::test]
    async fn a_missing_secret_is_unauthenticated_naming_it() {
        let auth = HostAuth::new(
            AuthScheme::Bearer("api_key".into()),
            &[],
            &BTreeMap::new(),
            &allow(&["https://a.example"]),
        )
        .unwrap();
        let err = auth
            .credential(&reqwest::Client::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::Unauthenticated(m) if m.contains("api_key")),
            "{err:?}"
        );
    }

    #[test]
    fn configuration_errors_are_refused_at_load() {
        let a = allow(&["https://api.example.com"]);
        let s = secrets(&[("k", "v")]);
        let bad = [
            AuthScheme::Bearer(" ".into()),
            AuthScheme::Header(NamedCredential {
                name: "bad header".into(),
                secret: "k".into(),
                prefix: String::new(),
            }),
            AuthScheme::Oauth2(Oauth2ClientCredentials {
                token_url: "https://evil.example/token".into(),
                client_id_secret: "k".into(),
                client_secret_secret: "k".into(),
                scopes: vec![],
                client_auth: ClientAuth::Body,
            }),
        ];
        for scheme in bad {
            let err = HostAuth::new(scheme.clone(), &[], &s, &a)
                .err()
                .unwrap_or_else(|| panic!("{scheme:?} must be refused"));
            assert_eq!(err.reason(), "InvalidAuth");
        }
        assert!(
            HostAuth::new(
                AuthScheme::Bearer("k".into()),
                &["https://other.example".into()],
                &s,
                &a
            )
            .is_err(),
            "credential hosts must be granted"
        );
    }

    #[test]
    fn credential_hosts_limit_where_credentials_go() {
        let a = allow(&["https://api.example.com", "https://prices.example.com"]);
        let auth = HostAuth::new(
            AuthScheme::Bearer("k".into()),
            &["https://api.example.com".into()],
            &secrets(&[("k", "v")]),
            &a,
        )
        .unwrap();
        assert!(auth.applies_to(&Url::parse("https://api.example.com/v1").unwrap()));
        assert!(!auth.applies_to(&Url::parse("https://prices.example.com/v1").unwrap()));
        let everywhere =
            HostAuth::new(AuthScheme::Bearer("k".into()), &[], &secrets(&[]), &a).unwrap();
        assert!(everywhere.applies_to(&Url::parse("https://prices.example.com/").unwrap()));
    }

    #[test]
    fn basic_credentials_are_redacted_in_their_composed_form() {
        let auth = HostAuth::new(
            AuthScheme::Basic(BasicAuth {
                username_secret: "u".into(),
                password_secret: Some("p".into()),
            }),
            &[],
            &secrets(&[("u", "alice"), ("p", "hunter2")]),
            &allow(&["https://a.example"]),
        )
        .unwrap();
        let values: Vec<String> = auth
            .redaction_values()
            .iter()
            .map(|v| v.expose().to_owned())
            .collect();
        assert!(values.contains(&"alice:hunter2".to_string()), "{values:?}");
        assert!(values.contains(&"hunter2".to_string()));
    }
}
