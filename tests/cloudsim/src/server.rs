//! The machinery every personality is served by.
//!
//! A personality supplies an axum router for its API plus a [`Gateway`] (how to name endpoints,
//! check credentials and render injected faults in its own error format). This module wraps the
//! API router in the gateway middleware, which applies latency, authentication, generic faults and
//! the call log uniformly, and runs the whole thing on a loopback listener owned by a
//! [`SimServer`] handle.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::calllog::{CallLog, CallRecord};
use crate::clock::SimClock;
use crate::faults::{FaultEngine, Injected};

/// What a personality tells the shared gateway.
pub trait Gateway: Send + Sync + 'static {
    /// The personality's name, stored in call records.
    fn personality(&self) -> &'static str;
    /// The endpoint key of a call (used for faults and the call log), or `None` for paths that
    /// are not part of the personality's API (admin routes): those bypass the gateway entirely.
    fn classify(&self, method: &Method, path: &str) -> Option<&'static str>;
    /// Whether calls classified as `endpoint` can only be named from their body (GraphQL, where
    /// every operation is a `POST /graphql`). The middleware then buffers the body and asks
    /// [`Gateway::refine`].
    fn wants_body(&self, _endpoint: &'static str) -> bool {
        false
    }
    /// The endpoint key of a call given its body; only asked when [`Gateway::wants_body`] is true.
    fn refine(&self, endpoint: &'static str, _body: &[u8]) -> &'static str {
        endpoint
    }
    /// Checks credentials (headers, or a query parameter for APIs that accept one); `Err` is the
    /// response to send.
    fn authorize(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(), Box<Response>>;
    /// The cloud's own rate limits (not injected faults), checked after auth and before faults;
    /// `Err` is the response to send. None by default.
    fn throttle(
        &self,
        _endpoint: &str,
        _headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<(), Box<Response>> {
        Ok(())
    }
    /// Renders an injected fault on `endpoint` in the personality's error format.
    fn render_fault(&self, endpoint: &str, fault: Injected) -> Response;
}

/// The largest body the gateway buffers to classify a call.
const MAX_INSPECTED_BODY: usize = 16 * 1024 * 1024;

/// Shared pieces the gateway middleware needs.
#[derive(Clone)]
pub struct GatewayState {
    /// The personality.
    pub gateway: Arc<dyn Gateway>,
    /// Its faults.
    pub faults: Arc<FaultEngine>,
    /// Its call log.
    pub calls: Arc<CallLog>,
    /// Its clock.
    pub clock: Arc<SimClock>,
}

/// Wraps a personality's router (admin routes and fallbacks included) in the gateway. For API
/// calls: latency, then auth, then 429/500 faults, then the handler; every API call is recorded
/// with its final status. Calls the gateway does not classify pass straight through.
pub fn with_gateway(api: Router, state: GatewayState) -> Router {
    api.layer(middleware::from_fn_with_state(state, gateway_middleware))
}

async fn gateway_middleware(State(s): State<GatewayState>, req: Request, next: Next) -> Response {
    let at_ms = s.clock.now_ms();
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let Some(mut endpoint) = s.gateway.classify(&method, req.uri().path()) else {
        return next.run(req).await;
    };
    let mut req = req;
    if s.gateway.wants_body(endpoint) {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_INSPECTED_BODY)
            .await
            .unwrap_or_default();
        endpoint = s.gateway.refine(endpoint, &bytes);
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let latency = s.faults.latency(endpoint);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // Auth before faults, so that a rejected call does not use up a test's fault counters.
    let checked = s
        .gateway
        .authorize(endpoint, req.headers(), req.uri())
        .and_then(|()| s.gateway.throttle(endpoint, req.headers(), req.uri()));
    let response = match checked {
        Err(denied) => *denied,
        Ok(()) => match s.faults.decide(endpoint) {
            Some(fault) => s.gateway.render_fault(endpoint, fault),
            None => next.run(req).await,
        },
    };
    s.calls.push(CallRecord {
        personality: s.gateway.personality().to_owned(),
        endpoint: endpoint.to_owned(),
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        at_ms,
        answered_at: std::time::Instant::now(),
    });
    response
}

/// A router served on loopback until shut down or dropped.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (which must be a loopback address) and serves `app` on a tokio task.
    pub async fn serve(addr: SocketAddr, app: Router) -> anyhow::Result<Self> {
        if !is_loopback(addr.ip()) {
            bail!("the simulator only binds loopback addresses, not {addr}");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        Ok(Self::serve_listener(listener, addr, app))
    }

    /// Serves `app` on an already bound `listener` (plain TCP, or TLS: see `files::tls`)
    /// whose local address is `addr`.
    pub(crate) fn serve_listener<L>(listener: L, addr: SocketAddr, app: Router) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "simulator server stopped with an error");
            }
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then stops.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
