//! Shared test fixtures: a tiny tgp-like CRD and polling helpers.
#![allow(dead_code)]

use std::time::Duration;

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tgp_apiserver::DevApiServer;

/// A cluster-scoped test kind with a status subresource, like tgp's `GpuRequest`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tgp.io",
    version = "v1alpha1",
    kind = "GpuRequest",
    plural = "gpurequests",
    status = "GpuRequestStatus"
)]
pub struct GpuRequestSpec {
    pub count: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuRequestStatus {
    pub phase: Option<String>,
    pub observed_generation: Option<i64>,
}

/// A server with the test CRD registered, and a client for it.
pub async fn server_with_crd() -> (DevApiServer, kube::Client) {
    let server = DevApiServer::start().await.expect("server starts");
    server
        .register_crd(&GpuRequest::crd())
        .expect("crd registers");
    let client = server.client().await.expect("client builds");
    (server, client)
}

/// Poll `f` until it returns `Some`, for at most `secs` seconds (generous: only a bound).
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
