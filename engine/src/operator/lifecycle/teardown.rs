//! Taking a joined node away, in the order that loses no work and leaks nothing: cordon, drain
//! (evictions that honour PodDisruptionBudgets, retried until the drain timeout), delete the
//! Node, remove its Tailscale device and key. The instance is terminated by the caller after
//! this says the node is gone.
//!
//! Every step is idempotent and its progress is kept in `status.bootstrap`, so the passes of a
//! deletion (or of the end of a lifetime) pick up where the previous one stopped. Tailscale
//! failures are reported and retried for a bounded number of passes, but never hold up the
//! instance's termination: an instance left running costs money, a stale tailnet device does
//! not (ephemeral devices also expire on their own).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;

use crate::bootstrap::node as nodes;
use crate::crd::gpurequest::{GPURequest, GPURequestStatus};

use super::super::ReconcileError;
use super::super::clock;
use super::super::context::Ctx;
use super::Note;
use super::join::{self, REQUEST_LABEL};

/// Where a teardown stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The node is gone (or never existed). `tailscale_pending` is true while a failed
    /// Tailscale clean-up still has retries left.
    NodeGone { tailscale_pending: bool },
    /// Pods are still being evicted; call again later.
    Draining(String),
}

fn note(notes: &mut Vec<Note>, req: &GPURequest, warning: bool, reason: &str, message: String) {
    notes.push(Note::logged(&req.name_any(), warning, reason, message));
}

/// Removes the request's node and tailnet presence. `force` skips waiting for a drain (used
/// when the node never became usable).
pub(crate) async fn node_and_tailnet(
    ctx: &Ctx,
    req: &GPURequest,
    st: &mut GPURequestStatus,
    notes: &mut Vec<Note>,
    force: bool,
) -> Result<Progress, ReconcileError> {
    let Some(mut bs) = st.bootstrap.clone() else {
        return Ok(Progress::NodeGone {
            tailscale_pending: false,
        });
    };
    let now = clock::now();
    let hostname = bs.hostname.clone().or_else(|| st.node_name.clone());
    if let (Some(name), None) = (hostname.clone(), bs.node_deleted_at.clone()) {
        let api: Api<Node> = Api::all(ctx.client.clone());
        let label = join::request_label_value(req);
        let ours = api
            .get_opt(&name)
            .await?
            .filter(|n| nodes::matches(n, &name, (REQUEST_LABEL, &label)));
        if ours.is_some() {
            nodes::cordon(&api, &name).await?;
            let progress = nodes::drain_pass(&ctx.client, &name).await?;
            if !progress.remaining.is_empty() {
                let started = match clock::parse(bs.drain_started_at.as_deref()) {
                    Some(t) => t,
                    None => {
                        bs.drain_started_at = Some(clock::text(now));
                        note(
                            notes,
                            req,
                            false,
                            "Draining",
                            format!(
                                "cordoned node {name}; evicting {} pod(s)",
                                progress.remaining.len()
                            ),
                        );
                        now
                    }
                };
                let limit = ctx.settings.bootstrap.drain_timeout;
                let waited = clock::since(started, now);
                let blocked = if progress.blocked.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; refused by a PodDisruptionBudget: {}",
                        progress.blocked.join(", ")
                    )
                };
                if waited < limit && !force {
                    st.bootstrap = Some(bs);
                    return Ok(Progress::Draining(format!(
                        "draining node {name}: {} pod(s) left{blocked}",
                        progress.remaining.len()
                    )));
                }
                note(
                    notes,
                    req,
                    true,
                    "DrainTimeout",
                    format!(
                        "node {name} still runs {} after {}s ({}){blocked}; deleting the node anyway",
                        progress.remaining.join(", "),
                        waited.as_secs(),
                        if force {
                            "the node never became usable"
                        } else {
                            "drain timeout"
                        },
                    ),
                );
            }
            nodes::delete_node(&api, &name).await?;
            note(
                notes,
                req,
                false,
                "NodeDeleted",
                format!("node {name} deleted"),
            );
        }
        bs.node_deleted_at = Some(clock::text(now));
    }
    let limit = ctx.settings.bootstrap.tailscale_cleanup_attempts;
    let mut tailscale_pending = false;
    if bs.tailscale_key_id.is_none() && bs.tailscale_device_id.is_none() {
        // Never enrolled through tgp: nothing of it is on the tailnet.
        bs.tailscale_cleaned_at
            .get_or_insert_with(|| clock::text(now));
    }
    if bs.tailscale_cleaned_at.is_none() && bs.tailscale_cleanup_failures < limit {
        match tailscale_cleanup(
            ctx,
            &bs.tailscale_key_id,
            &bs.tailscale_device_id,
            &hostname,
        )
        .await
        {
            Ok(done) => {
                bs.tailscale_cleaned_at = Some(clock::text(now));
                if !done.is_empty() {
                    note(notes, req, false, "TailscaleCleaned", done);
                }
            }
            Err(e) => {
                bs.tailscale_cleanup_failures += 1;
                let left = limit - bs.tailscale_cleanup_failures;
                let what = if left > 0 {
                    format!("retrying ({left} more)")
                } else {
                    "giving up: remove the device by hand if it is still listed (ephemeral \
                     devices expire on their own)"
                        .to_string()
                };
                note(
                    notes,
                    req,
                    true,
                    "TailscaleCleanupFailed",
                    format!(
                        "removing node {}'s Tailscale device and key failed: {e}; {what}",
                        hostname.as_deref().unwrap_or("?")
                    ),
                );
                tailscale_pending = left > 0;
            }
        }
    }
    st.bootstrap = Some(bs);
    Ok(Progress::NodeGone { tailscale_pending })
}

/// Deletes the node's device (by recorded id, else by hostname) and its key. Returns what was
/// removed, for the event. Garbage collection uses it too, with only a hostname.
pub(crate) async fn tailscale_cleanup(
    ctx: &Ctx,
    key_id: &Option<String>,
    device_id: &Option<String>,
    hostname: &Option<String>,
) -> Result<String, String> {
    if key_id.is_none() && device_id.is_none() && hostname.is_none() {
        return Ok(String::new());
    }
    let client = join::tailscale_client(ctx).await.map_err(|b| b.message)?;
    let mut done = Vec::new();
    let device = match (device_id, hostname) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(h)) => client
            .find_device(h)
            .await
            .map_err(|e| e.to_string())?
            .map(|d| d.id),
        (None, None) => None,
    };
    if let Some(id) = device {
        client.delete_device(&id).await.map_err(|e| e.to_string())?;
        done.push(format!("device {id}"));
    }
    if let Some(id) = key_id {
        client.delete_key(id).await.map_err(|e| e.to_string())?;
        done.push(format!("key {id}"));
    }
    Ok(if done.is_empty() {
        String::new()
    } else {
        format!("removed Tailscale {}", done.join(" and "))
    })
}

/// Requeue delay while a drain is in progress.
pub(crate) fn drain_poll(ctx: &Ctx) -> Duration {
    ctx.settings.verify_interval.max(Duration::from_millis(200))
}
