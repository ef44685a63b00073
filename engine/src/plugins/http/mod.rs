//! The `http` import: requests made by the host on a plugin's behalf.
//!
//! The host, not the guest, holds the network: it checks every origin (including each redirect
//! hop, followed here with the client's own redirects disabled) against the allow-list before
//! any connection, substitutes secret placeholders only for allowed requests, caps time and
//! response size, and scrubs secret values from everything handed back. A request to an origin
//! that was never granted is a capability violation: it aborts the whole call (see
//! [`CapabilityDenied`]) instead of returning an error the plugin could swallow and retry.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use tokio::time::Instant;
use url::Url;

use super::bindings::http_api::{Header, HttpError, Request, Response};
use super::error::HostError;
use super::grants::{Grants, Limits, SecretValue};
use super::secrets;
use policy::{AllowList, Origin};

/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 5;
const METHODS: [reqwest::Method; 6] = [
    reqwest::Method::GET,
    reqwest::Method::POST,
    reqwest::Method::PUT,
    reqwest::Method::PATCH,
    reqwest::Method::DELETE,
    reqwest::Method::HEAD,
];

/// The method named `name` (any case) if plugins may use it.
fn allowed_method(name: &str) -> Option<reqwest::Method> {
    METHODS
        .iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(name))
        .cloned()
}

/// Trap payload: the plugin asked for an origin it was not granted. Downcast from the call's
/// error to produce [`crate::plugins::CallError::CapabilityDenied`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("capability denied: HTTP to {what} is not on the allow-list")]
pub struct CapabilityDenied {
    pub what: String,
}

/// Response headers a plugin does not get: the framing and hop-by-hop headers of the exchange
/// between the host and the server. The plugin gets the whole body (its length is the list's),
/// possibly redacted, so the origin's `content-length` would not describe it anyway; each
/// header left out is also two strings less to copy into the sandbox.
const NOT_PASSED: [HeaderName; 6] = [
    reqwest::header::CONNECTION,
    reqwest::header::CONTENT_LENGTH,
    reqwest::header::TE,
    reqwest::header::TRAILER,
    reqwest::header::TRANSFER_ENCODING,
    reqwest::header::UPGRADE,
];

/// Builds the host's shared HTTP client: no automatic redirects, no proxies (they would bypass
/// the address checks), and a resolver that refuses non-public addresses.
pub fn client() -> Result<reqwest::Client, HostError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(policy::PublicOnlyResolver))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("tgp/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HostError::Http)
}

/// What one plugin's HTTP import needs.
pub struct HttpContext {
    client: reqwest::Client,
    allow: AllowList,
    secrets: BTreeMap<String, SecretValue>,
    limits: Limits,
    /// Which allow-list entries a request was sent to, for diagnostics and the conformance
    /// kit's check of the plugin's declared hosts (a flag per entry: noting a request costs no
    /// allocation and no lock).
    contacted: Vec<AtomicBool>,
}

impl HttpContext {
    pub fn new(client: reqwest::Client, grants: &Grants) -> Self {
        let allow = AllowList::parse(&grants.allowed_hosts, &grants.provider_name);
        let contacted = allow
            .origins()
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect();
        Self {
            client,
            allow,
            secrets: grants.secrets.clone(),
            limits: grants.limits.clone(),
            contacted,
        }
    }

    /// The parsed allow-list.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Every origin a request was sent to so far (normalised, sorted).
    pub fn contacted(&self) -> Vec<String> {
        let origins: BTreeSet<String> = self
            .allow
            .origins()
            .iter()
            .zip(&self.contacted)
            .filter(|(_, flag)| flag.load(Ordering::Relaxed))
            .map(|(origin, _)| origin.to_string())
            .collect();
        origins.into_iter().collect()
    }

    /// Whether `url`'s origin is allowed; if so, notes that a request is sent to it.
    fn admit(&self, url: &Url) -> bool {
        match self.allow.position_of(url) {
            Some(i) => {
                self.contacted[i].store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn redact(&self, text: &str) -> String {
        secrets::redact_str(text, &self.secrets)
    }

    /// Performs one guest request within `budget_left` (what remains of the call's budget).
    /// `Err` means the call must be aborted.
    pub async fn send(
        &self,
        req: Request,
        budget_left: Duration,
    ) -> Result<Result<Response, HttpError>, CapabilityDenied> {
        let Some(method) = allowed_method(&req.method) else {
            return Ok(Err(HttpError::Invalid(format!(
                "method `{}` is not allowed",
                self.redact(&req.method)
            ))));
        };
        let url = match Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => return Ok(Err(HttpError::Invalid(format!("bad URL: {e}")))),
        };
        if !self.admit(&url) {
            return match Origin::of(&url) {
                Some(origin) => Err(CapabilityDenied {
                    what: origin.to_string(),
                }),
                None => Ok(Err(HttpError::Invalid(
                    "only http and https URLs with a host are supported".into(),
                ))),
            };
        }
        let requested = req
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        let timeout = requested
            .map_or(self.limits.http_timeout, |t| {
                t.min(self.limits.http_timeout)
            })
            .min(budget_left);
        let deadline = Instant::now() + timeout;
        // One timer bounds the whole exchange (every redirect hop and the body), rather than
        // one per request, per hop and per body chunk: each timer costs a registration in the
        // runtime's timer wheel and a bounded wait in the I/O driver.
        let exchange = self.exchange(method, url, req.headers, req.body);
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(outcome) => Ok(outcome),
            Err(_) => Ok(Err(HttpError::Timeout)),
        }
    }

    /// The request and its redirect hops (each checked against the allow-list), then the
    /// response; the caller bounds it in time.
    async fn exchange(
        &self,
        mut method: reqwest::Method,
        mut url: Url,
        headers: Vec<Header>,
        mut body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        let mut hops = 0;
        loop {
            let mut request = reqwest::Request::new(method.clone(), self.real_url(&url)?);
            *request.headers_mut() = self.header_map(&headers)?;
            if let Some(b) = &body {
                *request.body_mut() = Some(reqwest::Body::from(b.clone()));
            }
            let resp = self
                .client
                .execute(request)
                .await
                .map_err(|e| self.map_error(&e))?;
            if resp.status().is_redirection()
                && let Some(location) = resp.headers().get(LOCATION)
            {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(HttpError::Connect(format!(
                        "too many redirects (more than {MAX_REDIRECTS})"
                    )));
                }
                let location = self.redact(&String::from_utf8_lossy(location.as_bytes()));
                let next = url
                    .join(&location)
                    .map_err(|e| HttpError::Invalid(format!("bad redirect location: {e}")))?;
                if !self.admit(&next) {
                    return Err(match Origin::of(&next) {
                        Some(o) => {
                            HttpError::Denied(format!("redirect to {o} is not on the allow-list"))
                        }
                        None => HttpError::Denied("redirect to a non-http URL".into()),
                    });
                }
                let status = resp.status().as_u16();
                if status == 303
                    || ((status == 301 || status == 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            return self.read(resp).await;
        }
    }

    /// The URL to request: `url` with its secret placeholders substituted (the origin was
    /// already allowed, and substitution may not change it).
    fn real_url(&self, url: &Url) -> Result<Url, HttpError> {
        // Most URLs hold no placeholder (keys usually travel in a header): skip the second parse.
        let text = url.as_str();
        if !secrets::contains(text.as_bytes(), b"{{secret:")
            && !secrets::contains(text.as_bytes(), b"%7B%7Bsecret:")
        {
            return Ok(url.clone());
        }
        let substituted = secrets::substitute_url(text, &self.secrets)
            .map_err(|e| HttpError::Denied(e.to_string()))?;
        let real = Url::parse(&substituted)
            .map_err(|_| HttpError::Invalid("URL invalid after secret substitution".into()))?;
        if Origin::of(&real) != Origin::of(url) {
            return Err(HttpError::Denied(
                "secret substitution may not change the origin".into(),
            ));
        }
        Ok(real)
    }

    /// The request headers with their secret placeholders substituted (the origin was already
    /// allowed).
    fn header_map(&self, headers: &[Header]) -> Result<HeaderMap, HttpError> {
        let mut map = HeaderMap::with_capacity(headers.len());
        for h in headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                HttpError::Invalid(format!("bad header name `{}`", self.redact(&h.name)))
            })?;
            let value = secrets::substitute_cow(&h.value, &self.secrets)
                .map_err(|e| HttpError::Denied(e.to_string()))?;
            // Never echo a header value: it may hold a secret now.
            let value = HeaderValue::from_str(&value)
                .map_err(|_| HttpError::Invalid(format!("bad value for header `{name}`")))?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// Reads the response, streaming the body and stopping past the cap.
    async fn read(&self, mut resp: reqwest::Response) -> Result<Response, HttpError> {
        let cap = self.limits.max_response_bytes;
        if resp.content_length().is_some_and(|len| len > cap) {
            return Err(HttpError::TooLarge(cap));
        }
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter(|(name, _)| !NOT_PASSED.contains(name))
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: secrets::redact_cow(
                    &String::from_utf8_lossy(value.as_bytes()),
                    &self.secrets,
                )
                .into_owned(),
            })
            .collect();
        // Sized from the announced length (already checked against the cap) when there is one.
        let expected = resp.content_length().unwrap_or(0);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.map_error(&e))? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(HttpError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: secrets::redact_bytes(body, &self.secrets),
        })
    }

    fn map_error(&self, e: &reqwest::Error) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout;
        }
        HttpError::Connect(self.redact(&crate::error_chain::text(e)))
    }
}
