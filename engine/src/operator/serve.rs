//! The operator's own HTTP endpoint: `/metrics` for Prometheus and `/healthz` for the kubelet.
//!
//! The counters in [`Metrics`] are only useful if something can scrape them; every replica
//! serves them (a standby replica's counters stay at zero: only the leader acts).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;

use super::metrics::Metrics;

/// The content type of the OpenMetrics text format prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `/metrics` and `/healthz` on a task until it is aborted. Returns the
/// bound address (the port is chosen by the system when `addr` asks for port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app.into_make_service()).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_metrics_and_a_health_check() {
        let metrics = Arc::new(Metrics::default());
        metrics.reconciles.inc();
        metrics
            .module_swaps
            .get_or_create(&vec![("provider".to_string(), "mock".to_string())])
            .inc();
        let (addr, task) = serve(SocketAddr::from(([127, 0, 0, 1], 0)), metrics.clone())
            .await
            .expect("binds");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
        let resp = get("/metrics").await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], OPENMETRICS);
        let text = resp.text().await.unwrap();
        assert!(text.contains("tgp_reconciles_total 1"), "{text}");
        assert!(
            text.contains("tgp_module_swaps_total{provider=\"mock\"} 1"),
            "{text}"
        );
        // Counters move between scrapes.
        metrics.reconciles.inc();
        let text = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(text.contains("tgp_reconciles_total 2"), "{text}");
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/nothing").await.unwrap().status(), 404);
        task.abort();
    }
}
