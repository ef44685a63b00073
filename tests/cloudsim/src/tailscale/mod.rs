//! The "tailscale" personality: the parts of Tailscale's API v2 the operator uses to put nodes on
//! the tailnet and take them off again (OAuth client-credentials token, auth keys, devices), as
//! described in `provider-apis.md` §5.5.
//!
//! Besides the HTTP API it simulates the coordination server's side of `tailscale up --authkey`
//! ([`TailscaleSim::enrol`]), which the simulated Talos join ([`crate::talos_join`]) calls when a
//! simulated machine boots: that is where single-use, expiry and revocation of keys take effect
//! and where devices come from. An ordered event log ([`TailscaleSim::events`]) lets tests check
//! teardown order against other systems (Node deleted before device, device before key...).
//!
//! [`TailscaleSim`] is a cheap `Clone` handle; the server stops when the last clone is dropped or
//! on [`TailscaleSim::shutdown`].

mod admin;
pub mod api;
pub mod config;
pub mod endpoint;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::admin::SimCore;
use crate::auth;
use crate::calllog::CallRecord;
use crate::faults::Faults;
use crate::server::{GatewayState, SimServer, with_gateway};
use api::{ApiError, CreateKeyRequest};
use state::{Actor, TailnetState};

pub use config::TailscaleSimConfig;
pub use state::{EnrolRefusal, SimDevice, SimEvent, SimEventKind, SimKey};

/// State shared by the handlers, the gateway and the handle.
pub(crate) struct Shared {
    core: SimCore,
    cfg: TailscaleSimConfig,
    state: Mutex<TailnetState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, TailnetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who the request's credentials name: a live OAuth access token or a configured API key,
    /// as Bearer or as the HTTP Basic user name. `None` when missing, unknown or expired.
    pub(crate) fn actor(&self, headers: &HeaderMap) -> Option<Actor> {
        let token = auth::bearer(headers)
            .map(str::to_owned)
            .or_else(|| auth::basic_user(headers))?;
        if self.cfg.api_keys.contains(&token) {
            return Some(Actor::ApiKey);
        }
        self.state()
            .token_scopes(&token, self.core.clock.now())
            .map(|scopes| Actor::OAuth { scopes })
    }

    fn check_tailnet(&self, tailnet: &str) -> Result<(), ApiError> {
        if tailnet == "-" || tailnet == self.cfg.tailnet {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::NOT_FOUND, "tailnet not found"))
        }
    }
}

type S = State<Arc<Shared>>;

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

/// The client id and secret from the form, else from HTTP Basic (`id:secret`).
fn client_credentials(form: &[(String, String)], headers: &HeaderMap) -> Option<(String, String)> {
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if let (Some(id), Some(secret)) = (field("client_id"), field("client_secret")) {
        return Some((id, secret));
    }
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn oauth_token(State(s): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let form = api::parse_form(&body)
        .ok_or_else(|| ApiError::bad_request("body must be application/x-www-form-urlencoded"))?;
    if let Some((_, g)) = form.iter().find(|(k, _)| k == "grant_type")
        && g != "client_credentials"
    {
        return Err(ApiError::bad_request(format!(
            "unsupported grant_type {g:?}: only client_credentials"
        )));
    }
    let (id, secret) = client_credentials(&form, &headers).ok_or_else(ApiError::invalid_client)?;
    if id != s.cfg.client_id || secret != s.cfg.client_secret {
        return Err(ApiError::invalid_client());
    }
    let lifetime = s.cfg.token_lifetime;
    let now = s.core.clock.now();
    let token = s.state().issue_token(s.cfg.scopes.clone(), now, lifetime);
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": s.cfg.scopes.join(" "),
    }))
    .into_response())
}

async fn create_key(
    State(s): S,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    s.check_tailnet(&path(p)?)?;
    let actor = s.actor(&headers).ok_or_else(ApiError::invalid_token)?;
    let req = CreateKeyRequest::parse(&body)?;
    let v = s.state().create_key(req, &actor, &s.cfg, &s.core.clock)?;
    Ok(Json(v).into_response())
}

async fn list_keys(
    State(s): S,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    s.check_tailnet(&path(p)?)?;
    let keys = s.state().list_keys_json(&s.core.clock);
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn get_key(
    State(s): S,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (tailnet, id) = path(p)?;
    s.check_tailnet(&tailnet)?;
    s.state()
        .key_json(&id, &s.core.clock)
        .map(|v| Json(v).into_response())
        .ok_or_else(ApiError::not_found)
}

async fn delete_key(
    State(s): S,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (tailnet, id) = path(p)?;
    s.check_tailnet(&tailnet)?;
    let now = s.core.clock.now();
    if s.state().delete_key(&id, now) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found())
    }
}

async fn list_devices(
    State(s): S,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    s.check_tailnet(&path(p)?)?;
    let devices = s.state().list_devices_json(&s.core.clock);
    Ok(Json(json!({ "devices": devices })).into_response())
}

async fn get_device(
    State(s): S,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(p)?;
    s.state()
        .device_json(&id, &s.core.clock)
        .map(|v| Json(v).into_response())
        .ok_or_else(ApiError::not_found)
}

async fn delete_device(
    State(s): S,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(p)?;
    match s.state().delete_device(&id) {
        Some(_) => Ok(StatusCode::OK.into_response()),
        None => Err(ApiError::not_found()),
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

struct Inner {
    addr: SocketAddr,
    server: Mutex<Option<SimServer>>,
    shared: Arc<Shared>,
}

/// A running simulated Tailscale API and coordination server. Cheap to clone; the server stops
/// when the last clone is dropped, or gracefully on [`TailscaleSim::shutdown`].
#[derive(Clone)]
pub struct TailscaleSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TailscaleSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailscaleSim")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl TailscaleSim {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(cfg: TailscaleSimConfig) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, cfg: TailscaleSimConfig) -> anyhow::Result<Self> {
        cfg.faults
            .validate(&endpoint::keys())
            .map_err(|(field, msg)| anyhow::anyhow!("invalid faults at {field}: {msg}"))?;
        let shared = Arc::new(Shared {
            core: SimCore::new(cfg.faults.clone()),
            cfg,
            state: Mutex::new(TailnetState::new()),
        });
        let app = Router::new()
            .route("/api/v2/oauth/token", post(oauth_token))
            .route(
                "/api/v2/tailnet/{tailnet}/keys",
                get(list_keys).post(create_key),
            )
            .route(
                "/api/v2/tailnet/{tailnet}/keys/{id}",
                get(get_key).delete(delete_key),
            )
            .route("/api/v2/tailnet/{tailnet}/devices", get(list_devices))
            .route("/api/v2/device/{id}", get(get_device).delete(delete_device))
            .merge(admin::router())
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method)
            .with_state(shared.clone());
        let gateway = GatewayState {
            gateway: Arc::new(endpoint::TailscaleGateway {
                shared: shared.clone(),
            }),
            faults: shared.core.faults.clone(),
            calls: shared.core.calls.clone(),
            clock: shared.core.clock.clone(),
        };
        let server = SimServer::serve(addr, with_gateway(app, gateway)).await?;
        tracing::info!(url = %server.base_url(), "tailscale simulator listening");
        Ok(Self {
            inner: Arc::new(Inner {
                addr: server.addr(),
                server: Mutex::new(Some(server)),
                shared,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT` (the API is under `/api/v2`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The tailnet's name.
    pub fn tailnet(&self) -> String {
        self.shared().cfg.tailnet.clone()
    }

    /// Every API call received, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared().core.calls.all()
    }

    /// How many calls to `endpoint` (see [`endpoint::keys`]) were received, whatever their status.
    pub fn call_count(&self, endpoint: &str) -> usize {
        self.shared().core.calls.count(endpoint)
    }

    /// Forgets the call log.
    pub fn clear_calls(&self) {
        self.shared().core.calls.clear();
    }

    /// Replaces the fault set (and reseeds its RNG).
    pub fn set_faults(&self, f: Faults) {
        self.shared().core.faults.set(f);
    }

    /// The fault set in force, counters as they stand.
    pub fn faults(&self) -> Faults {
        self.shared().core.faults.get()
    }

    /// Moves simulated time forward: tokens and keys expire as if `by` had passed.
    pub fn advance(&self, by: Duration) {
        self.shared().core.clock.advance(by);
    }

    /// Every key ever minted, with its secret and usage (deleted ones flagged).
    pub fn keys(&self) -> Vec<SimKey> {
        let s = self.shared();
        s.state().keys(&s.core.clock)
    }

    /// One key by id.
    pub fn key(&self, id: &str) -> Option<SimKey> {
        self.keys().into_iter().find(|k| k.id == id)
    }

    /// Every device ever enrolled (deleted ones flagged).
    pub fn devices(&self) -> Vec<SimDevice> {
        self.shared().state().devices()
    }

    /// Devices not deleted.
    pub fn live_devices(&self) -> Vec<SimDevice> {
        self.devices().into_iter().filter(|d| !d.deleted).collect()
    }

    /// The event log, in the order changes took effect.
    pub fn events(&self) -> Vec<SimEvent> {
        self.shared().state().events()
    }

    /// What `tailscale up --authkey=AUTH_KEY --hostname=HOSTNAME` does: refused unless the key
    /// is valid; consumes a single-use key; creates a device carrying the key's tags with a
    /// 100.64.0.0/10 address.
    pub fn enrol(&self, auth_key: &str, hostname: &str) -> Result<SimDevice, EnrolRefusal> {
        self.enrol_with_tags(auth_key, hostname, &[])
    }

    /// [`TailscaleSim::enrol`] with `--advertise-tags`: every advertised tag must be on the key
    /// (refused with [`EnrolRefusal::TagsNotPermitted`] otherwise, the key left unused), and the
    /// device carries the advertised tags.
    pub fn enrol_with_tags(
        &self,
        auth_key: &str,
        hostname: &str,
        advertise_tags: &[String],
    ) -> Result<SimDevice, EnrolRefusal> {
        let s = self.shared();
        s.state()
            .enrol(auth_key, hostname, advertise_tags, &s.cfg, &s.core.clock)
    }

    /// Revokes a key as the admin console would: it stays visible with `invalid: true`. False
    /// for an unknown, deleted or already revoked key.
    pub fn revoke_key(&self, id: &str) -> bool {
        let s = self.shared();
        let now = s.core.clock.now();
        s.state().revoke_key(id, now)
    }

    /// Removes a device as Tailscale does on its own (an ephemeral node gone offline). False for
    /// an unknown or already deleted one.
    pub fn remove_device(&self, id_or_node_id: &str) -> bool {
        self.shared().state().delete_device(id_or_node_id).is_some()
    }

    /// Stops the server gracefully (for every clone).
    pub async fn shutdown(&self) {
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
}
