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
use std::sync::{Arc, Mutex};
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
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// Trap payload: the plugin asked for an origin it was not granted. Downcast from the call's
/// error to produce [`crate::plugins::CallError::CapabilityDenied`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("capability denied: HTTP to {what} is not on the allow-list")]
pub struct CapabilityDenied {
    pub what: String,
}

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
    /// Origins a request was sent to (allowed ones only), for diagnostics and the conformance
    /// kit's check of the plugin's declared hosts.
    contacted: Mutex<BTreeSet<String>>,
}

impl HttpContext {
    pub fn new(client: reqwest::Client, grants: &Grants) -> Self {
        Self {
            client,
            allow: AllowList::parse(&grants.allowed_hosts, &grants.provider_name),
            secrets: grants.secrets.clone(),
            limits: grants.limits.clone(),
            contacted: Mutex::new(BTreeSet::new()),
        }
    }

    /// The parsed allow-list.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Every origin a request was sent to so far (normalised, sorted).
    pub fn contacted(&self) -> Vec<String> {
        self.contacted
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn note_contacted(&self, origin: &Origin) {
        let origin = origin.to_string();
        if let Ok(mut set) = self.contacted.lock() {
            set.insert(origin);
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
        let method_name = req.method.to_ascii_uppercase();
        if !METHODS.contains(&method_name.as_str()) {
            return Ok(Err(HttpError::Invalid(format!(
                "method `{}` is not allowed",
                self.redact(&req.method)
            ))));
        }
        let Ok(mut method) = reqwest::Method::from_bytes(method_name.as_bytes()) else {
            return Ok(Err(HttpError::Invalid("bad method".into())));
        };
        let mut url = match Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => return Ok(Err(HttpError::Invalid(format!("bad URL: {e}")))),
        };
        let Some(origin) = Origin::of(&url) else {
            return Ok(Err(HttpError::Invalid(
                "only http and https URLs with a host are supported".into(),
            )));
        };
        if !self.allow.allows(&origin) {
            return Err(CapabilityDenied {
                what: origin.to_string(),
            });
        }
        self.note_contacted(&origin);
        let requested = req
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        let timeout = requested
            .map_or(self.limits.http_timeout, |t| {
                t.min(self.limits.http_timeout)
            })
            .min(budget_left);
        let deadline = Instant::now() + timeout;
        let mut body = req.body;
        let mut hops = 0;
        loop {
            let (real_url, headers) = match self.prepare(&url, &req.headers) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            let mut builder = self
                .client
                .request(method.clone(), real_url)
                .headers(headers);
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let resp =
                match tokio::time::timeout_at(deadline, builder.timeout(remaining).send()).await {
                    Err(_) => return Ok(Err(HttpError::Timeout)),
                    Ok(Err(e)) => return Ok(Err(self.map_error(&e))),
                    Ok(Ok(r)) => r,
                };
            if resp.status().is_redirection()
                && let Some(location) = resp.headers().get(LOCATION)
            {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Ok(Err(HttpError::Connect(format!(
                        "too many redirects (more than {MAX_REDIRECTS})"
                    ))));
                }
                let location = self.redact(&String::from_utf8_lossy(location.as_bytes()));
                let next = match url.join(&location) {
                    Ok(n) => n,
                    Err(e) => {
                        return Ok(Err(HttpError::Invalid(format!(
                            "bad redirect location: {e}"
                        ))));
                    }
                };
                match Origin::of(&next) {
                    Some(o) if self.allow.allows(&o) => self.note_contacted(&o),
                    Some(o) => {
                        return Ok(Err(HttpError::Denied(format!(
                            "redirect to {o} is not on the allow-list"
                        ))));
                    }
                    None => return Ok(Err(HttpError::Denied("redirect to a non-http URL".into()))),
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
            return Ok(self.read(resp, deadline).await);
        }
    }

    /// Substitutes secrets into the URL and headers (the origin was already allowed).
    fn prepare(&self, url: &Url, headers: &[Header]) -> Result<(Url, HeaderMap), HttpError> {
        // Most URLs hold no placeholder (keys usually travel in a header): skip the second parse.
        let real = if url.as_str().contains("{{secret:") || url.as_str().contains("%7B%7Bsecret:") {
            let substituted = secrets::substitute_url(url.as_str(), &self.secrets)
                .map_err(|e| HttpError::Denied(e.to_string()))?;
            let real = Url::parse(&substituted)
                .map_err(|_| HttpError::Invalid("URL invalid after secret substitution".into()))?;
            if Origin::of(&real) != Origin::of(url) {
                return Err(HttpError::Denied(
                    "secret substitution may not change the origin".into(),
                ));
            }
            real
        } else {
            url.clone()
        };
        let mut map = HeaderMap::new();
        for h in headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                HttpError::Invalid(format!("bad header name `{}`", self.redact(&h.name)))
            })?;
            let value = secrets::substitute(&h.value, &self.secrets)
                .map_err(|e| HttpError::Denied(e.to_string()))?;
            // Never echo a header value: it may hold a secret now.
            let value = HeaderValue::from_str(&value)
                .map_err(|_| HttpError::Invalid(format!("bad value for header `{name}`")))?;
            map.append(name, value);
        }
        Ok((real, map))
    }

    /// Reads the response, streaming the body and stopping past the cap.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let cap = self.limits.max_response_bytes;
        if resp.content_length().is_some_and(|len| len > cap) {
            return Err(HttpError::TooLarge(cap));
        }
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: self.redact(&String::from_utf8_lossy(value.as_bytes())),
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Err(_) => return Err(HttpError::Timeout),
                Ok(Err(e)) => return Err(self.map_error(&e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if (body.len() + chunk.len()) as u64 > cap {
                        return Err(HttpError::TooLarge(cap));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
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
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        HttpError::Connect(self.redact(&text))
    }
}
