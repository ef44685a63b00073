//! The `http` import: requests made by the host on a plugin's behalf.
//!
//! The host, not the guest, holds the network: it checks every origin (including each redirect
//! hop, followed here with the client's own redirects disabled) against the allow-list before
//! any connection, adds the provider's credentials itself (`super::auth`) and fills a launch's
//! sealed bootstrap document into the body (`super::sealed`) only for allowed requests, caps
//! time and response size, and scrubs secret values from everything handed back. A request to
//! an origin that was never granted is a capability violation: it aborts the whole call (see
//! [`CapabilityDenied`]) instead of returning an error the plugin could swallow and retry.

pub mod policy;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use tokio::time::Instant;
use url::Url;

use super::auth::{self, Credential, HostAuth};
use super::bindings::http_api::{Header, HttpError, Request, Response};
use super::error::HostError;
use super::grants::{Grants, Limits};
use super::sealed::{self, UserData};
use super::secrets::{self, SecretSet};
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
    /// The granted secret values, for redaction.
    secrets: SecretSet,
    /// [`HttpContext::secrets`] with the values the auth scheme composes from them, once set.
    with_auth: OnceLock<SecretSet>,
    /// How requests are authenticated, set once after the validating `info()` call (which
    /// declares the plugin's scheme); none: requests carry no credentials.
    auth: OnceLock<HostAuth>,
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
            secrets: SecretSet::new(grants.secrets.values().cloned()),
            with_auth: OnceLock::new(),
            auth: OnceLock::new(),
            limits: grants.limits.clone(),
            contacted,
        }
    }

    /// Sets how requests are authenticated (once, at load, after `info()`), and adds the values
    /// the scheme composes (a Basic header's `user:password`) to the redaction set.
    pub fn set_auth(&self, auth: HostAuth) {
        let _ = self
            .with_auth
            .set(self.secrets.with_extra(auth.redaction_values()));
        let _ = self.auth.set(auth);
    }

    /// The granted secrets and the values composed from them.
    fn base_secrets(&self) -> &SecretSet {
        self.with_auth.get().unwrap_or(&self.secrets)
    }

    /// The credentials scheme in use, if any.
    pub fn auth(&self) -> Option<&HostAuth> {
        self.auth.get()
    }

    /// The values to redact from what goes back to the plugin now: the granted secrets, the
    /// current OAuth2 token, and during a launch its document and the secrets in it.
    pub fn redaction(&self, sealed: Option<&UserData>) -> Cow<'_, SecretSet> {
        let token = self.auth.get().and_then(HostAuth::current_token);
        if token.is_none() && sealed.is_none() {
            return Cow::Borrowed(self.base_secrets());
        }
        let extra = token
            .into_iter()
            .chain(sealed.map(UserData::redaction_values).unwrap_or_default());
        Cow::Owned(self.base_secrets().with_extra(extra))
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
        secrets::redact_str(text, self.base_secrets())
    }

    /// Performs one guest request within `budget_left` (what remains of the call's budget),
    /// filling `sealed` (a launch's document) into the body. `Err` means the call must be
    /// aborted.
    pub async fn send(
        &self,
        req: Request,
        budget_left: Duration,
        sealed: Option<&UserData>,
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
        if let Err(e) = self.check_guest_parts(&req, &url) {
            return Ok(Err(e));
        }
        // Only now, the origin being granted: the document may go into this request's body.
        let body = match req.body.map(|b| sealed::fill(b, sealed)).transpose() {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
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
        let exchange = self.exchange(method, url, req.headers, body, timeout, sealed);
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(outcome) => Ok(outcome),
            Err(_) => Ok(Err(HttpError::Timeout)),
        }
    }

    /// Refuses what the guest may not put in a request: a user-data placeholder outside the
    /// body, the header or query parameter the credentials go in.
    fn check_guest_parts(&self, req: &Request, url: &Url) -> Result<(), HttpError> {
        let values: Vec<&str> = req.headers.iter().map(|h| h.value.as_str()).collect();
        sealed::refuse_outside_body(url.as_str(), &values)?;
        let Some(auth) = self.auth.get() else {
            return Ok(());
        };
        if let Some(reserved) = auth.reserved_header()
            && let Some(h) = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(reserved.as_str()))
        {
            return Err(HttpError::Invalid(format!(
                "header `{}` carries the provider's credentials and is set by the host",
                self.redact(&h.name)
            )));
        }
        if let Some(param) = auth.reserved_query()
            && url.query_pairs().any(|(k, _)| k == param)
        {
            return Err(HttpError::Invalid(format!(
                "query parameter `{param}` carries the provider's credentials and is set by the host"
            )));
        }
        Ok(())
    }

    /// The credential for a request to `url`, if the scheme applies to its origin.
    async fn credential_for(
        &self,
        url: &Url,
        budget: Duration,
    ) -> Result<Option<Credential>, HttpError> {
        match self.auth.get() {
            Some(auth) if auth.applies_to(url) => {
                auth.credential(&self.client, budget).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The outgoing request for one hop: the guest's method, URL, headers and body, with the
    /// credential added.
    fn outgoing(
        &self,
        method: &reqwest::Method,
        url: &Url,
        headers: &[Header],
        body: Option<&Vec<u8>>,
        credential: Option<&Credential>,
    ) -> Result<reqwest::Request, HttpError> {
        let mut url = url.clone();
        if let Some(Credential::Query(name, value)) = credential {
            url.query_pairs_mut().append_pair(name, value.expose());
        }
        let mut request = reqwest::Request::new(method.clone(), url);
        *request.headers_mut() = self.header_map(headers)?;
        if let Some(Credential::Header(name, value)) = credential {
            request
                .headers_mut()
                .insert(name.clone(), auth::header_value(value)?);
        }
        if let Some(b) = body {
            *request.body_mut() = Some(reqwest::Body::from(b.clone()));
        }
        Ok(request)
    }

    /// The request and its redirect hops (each checked against the allow-list), then the
    /// response; the caller bounds it in time. An OAuth2 token refused with a 401 is fetched
    /// again and the request tried once more.
    async fn exchange(
        &self,
        mut method: reqwest::Method,
        mut url: Url,
        headers: Vec<Header>,
        mut body: Option<Vec<u8>>,
        budget: Duration,
        sealed: Option<&UserData>,
    ) -> Result<Response, HttpError> {
        let mut hops = 0;
        let mut refreshed = false;
        loop {
            let credential = self.credential_for(&url, budget).await?;
            // After the credential: a token fetched just now is in the set.
            let redaction = self.redaction(sealed);
            let redaction = redaction.as_ref();
            let request =
                self.outgoing(&method, &url, &headers, body.as_ref(), credential.as_ref())?;
            let resp = self
                .client
                .execute(request)
                .await
                .map_err(|e| self.map_error(e, redaction))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                && credential.is_some()
                && !refreshed
                && let Some(auth) = self.auth.get()
                && auth.refreshes_on_401()
            {
                // The token may have been revoked or expired early: one new one, one retry.
                auth.invalidate().await;
                refreshed = true;
                continue;
            }
            if resp.status().is_redirection()
                && let Some(location) = resp.headers().get(LOCATION)
            {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(HttpError::Connect(format!(
                        "too many redirects (more than {MAX_REDIRECTS})"
                    )));
                }
                let location =
                    secrets::redact_str(&String::from_utf8_lossy(location.as_bytes()), redaction);
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
            return self.read(resp, redaction).await;
        }
    }

    /// The request headers as the guest wrote them (credentials are added by the host).
    fn header_map(&self, headers: &[Header]) -> Result<HeaderMap, HttpError> {
        let mut map = HeaderMap::with_capacity(headers.len());
        for h in headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                HttpError::Invalid(format!("bad header name `{}`", self.redact(&h.name)))
            })?;
            let value = HeaderValue::from_str(&h.value)
                .map_err(|_| HttpError::Invalid(format!("bad value for header `{name}`")))?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// Reads the response, streaming the body and stopping past the cap.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        redaction: &SecretSet,
    ) -> Result<Response, HttpError> {
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
                value: secrets::redact_cow(&String::from_utf8_lossy(value.as_bytes()), redaction)
                    .into_owned(),
            })
            .collect();
        // Sized from the announced length (already checked against the cap) when there is one.
        let expected = resp.content_length().unwrap_or(0);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.map_error(e, redaction))?
        {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(HttpError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: secrets::redact_bytes(body, redaction),
        })
    }

    /// The plugin's view of a failed exchange: never the URL (it may carry a credential),
    /// and redacted in case a cause quotes one.
    fn map_error(&self, e: reqwest::Error, redaction: &SecretSet) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout;
        }
        let e = e.without_url();
        HttpError::Connect(secrets::redact_str(
            &crate::error_chain::text(&e),
            redaction,
        ))
    }
}
