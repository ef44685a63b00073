//! Garbage collection, both ways, on an interval.
//!
//! Forward: every instance carrying this cluster's tag that no live request references (seen so
//! for longer than a grace period) is terminated and counted. Backward: a ready request whose
//! instance is missing from a provider's listing is marked for an immediate verify (the lifecycle
//! decides; a listing alone never fails a request). A listing that fails is an error for that
//! provider this round, never "nothing exists".
//!
//! Nodes too: a Node tgp joined (label `tgp.io/request`) that no request references any more
//! (its request was force-deleted, say) is deleted after the same grace period, and its tailnet
//! device with it, so a machine that is gone does not linger as a NotReady node.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::crd::GPURequest;
use crate::crd::gpurequest::Phase;
use crate::plugins::{InstanceState, Operation, Tag};

use super::context::Ctx;
use super::naming;

/// Annotation that asks the lifecycle to verify a request's instance now.
pub const VERIFY_ANNOTATION: &str = "tgp.io/verify-requested";

/// What one garbage-collection round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// (provider, instance id) terminated as orphans.
    pub terminated: Vec<(String, String)>,
    /// Orphans seen but still inside the grace period.
    pub waiting: usize,
    /// Providers whose listing failed this round.
    pub list_failures: Vec<String>,
    /// Requests marked for an immediate verify.
    pub marked: Vec<String>,
    /// Nodes tgp joined that no request references any more, deleted.
    pub nodes_deleted: Vec<String>,
}

/// An orphan: (provider, instance id) for instances, ("node", name) for Nodes.
type OrphanKey = (String, String);

/// Remembers when each orphan was first seen, across rounds.
#[derive(Default)]
pub struct GcState {
    first_seen: HashMap<OrphanKey, Instant>,
    /// The orphans seen in the round in progress; the others are forgotten when it ends.
    this_round: HashSet<OrphanKey>,
}

impl GcState {
    /// Notes `key` as orphaned in this round; true once it has been orphaned (in this round and
    /// every one before) for `grace`.
    fn grace_over(&mut self, key: &OrphanKey, grace: Duration) -> bool {
        self.this_round.insert(key.clone());
        self.first_seen
            .entry(key.clone())
            .or_insert_with(Instant::now)
            .elapsed()
            >= grace
    }

    /// `key` was removed: nothing to remember of it.
    fn removed(&mut self, key: &OrphanKey) {
        self.first_seen.remove(key);
        self.this_round.remove(key);
    }

    /// Ends a round: what it did not see orphaned is not an orphan any more (it was adopted
    /// or is gone), so its grace period starts again should it ever be orphaned anew.
    fn end_round(&mut self) {
        let seen = std::mem::take(&mut self.this_round);
        self.first_seen.retain(|k, _| seen.contains(k));
    }
}

/// Runs one round.
pub async fn run_once(ctx: &Ctx, state: &mut GcState) -> Result<GcReport, kube::Error> {
    let api: Api<GPURequest> = Api::all(ctx.client.clone());
    let requests = api.list(&ListParams::default()).await?.items;
    let by_uid: HashMap<String, &GPURequest> = requests
        .iter()
        .filter_map(|r| r.uid().map(|u| (u, r)))
        .collect();
    let owner = Tag {
        key: naming::CLUSTER_TAG.into(),
        value: ctx.settings.cluster_id.clone(),
    };
    let mut report = GcReport::default();
    state.this_round.clear();
    for slot in ctx.registry.all() {
        let listed = match slot
            .call(Operation::ListOwned, slot.plugin.list_owned(&owner))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(provider = %slot.name, "garbage collection: listing owned instances failed: {e}");
                ctx.metrics.gc_list_failures.inc();
                report.list_failures.push(slot.name.clone());
                continue;
            }
        };
        let live: Vec<_> = listed
            .iter()
            .filter(|i| !matches!(i.state, InstanceState::Terminated | InstanceState::NotFound))
            .filter(|i| {
                naming::tag_value(&i.tags, naming::CLUSTER_TAG)
                    == Some(ctx.settings.cluster_id.as_str())
            })
            .collect();
        for inst in &live {
            let request =
                naming::tag_value(&inst.tags, naming::REQUEST_TAG).and_then(|uid| by_uid.get(uid));
            let referenced = request.is_some_and(|r| {
                let st = r.status.clone().unwrap_or_default();
                st.instance_id.as_deref() == Some(inst.instance_id.as_str())
                    || st
                        .pending_launch
                        .as_ref()
                        .is_some_and(|p| p.instance_name == inst.name && p.provider == slot.name)
            });
            if referenced {
                continue;
            }
            let key = (slot.name.clone(), inst.instance_id.clone());
            if !state.grace_over(&key, ctx.settings.gc_grace) {
                report.waiting += 1;
                continue;
            }
            match slot
                .call(
                    Operation::Terminate,
                    slot.plugin.terminate(&inst.instance_id),
                )
                .await
            {
                Ok(outcome) => {
                    tracing::warn!(provider = %slot.name, instance = %inst.instance_id, name = %inst.name, ?outcome, "garbage collection: terminated an instance no request owns");
                    ctx.metrics.orphans_terminated.inc();
                    state.removed(&key);
                    report.terminated.push(key);
                }
                Err(e) => {
                    tracing::warn!(provider = %slot.name, instance = %inst.instance_id, "garbage collection: terminate failed: {e}; retrying next round")
                }
            }
        }
        // Backward: ready requests on this provider whose instance is not listed.
        let listed_ids: HashSet<&str> = live.iter().map(|i| i.instance_id.as_str()).collect();
        for r in &requests {
            let st = r.status.clone().unwrap_or_default();
            let on_this = st.provider.as_deref() == Some(slot.name.as_str());
            if r.metadata.deletion_timestamp.is_some() || !on_this || st.phase != Phase::Ready {
                continue;
            }
            let Some(id) = st.instance_id.as_deref() else {
                continue;
            };
            if listed_ids.contains(id) {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"annotations": {VERIFY_ANNOTATION: super::clock::text(super::clock::now())}}});
            match api
                .patch(
                    &r.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => report.marked.push(r.name_any()),
                Err(e) => {
                    tracing::warn!(request = %r.name_any(), "garbage collection: marking for verify failed: {e}")
                }
            }
        }
    }
    orphan_nodes(ctx, &requests, state, &mut report).await?;
    state.end_round();
    Ok(report)
}

/// Deletes Nodes tgp joined whose request no longer references them (after the grace period).
async fn orphan_nodes(
    ctx: &Ctx,
    requests: &[GPURequest],
    state: &mut GcState,
    report: &mut GcReport,
) -> Result<(), kube::Error> {
    use super::lifecycle::join::REQUEST_LABEL;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let listed = nodes
        .list(&ListParams::default().labels(REQUEST_LABEL))
        .await?
        .items;
    let referenced: HashSet<String> = requests
        .iter()
        .filter_map(|r| r.status.as_ref())
        .flat_map(|st| {
            let hostname = st.bootstrap.as_ref().and_then(|b| b.hostname.clone());
            st.node_name.clone().into_iter().chain(hostname)
        })
        .collect();
    for node in listed {
        let name = node.name_any();
        if referenced.contains(&name) {
            continue;
        }
        let key = ("node".to_string(), name.clone());
        if !state.grace_over(&key, ctx.settings.gc_grace) {
            report.waiting += 1;
            continue;
        }
        match crate::bootstrap::node::delete_node(&nodes, &name).await {
            Ok(_) => {
                tracing::warn!(node = %name, "garbage collection: deleted a node no request owns");
                report.nodes_deleted.push(name.clone());
                state.removed(&key);
                // Its tailnet device, found by hostname as in any teardown (best effort).
                let hostname = Some(name.clone());
                if let Err(e) =
                    super::lifecycle::teardown::tailscale_cleanup(ctx, &None, &None, &hostname)
                        .await
                {
                    tracing::warn!(node = %name, "garbage collection: removing its Tailscale device: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(node = %name, "garbage collection: deleting an orphaned node failed: {e}; retrying next round")
            }
        }
    }
    Ok(())
}

/// Runs rounds every `gc_interval` until the task is dropped.
pub async fn run_forever(ctx: std::sync::Arc<Ctx>) {
    let mut state = GcState::default();
    let mut tick = tokio::time::interval(ctx.settings.gc_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match run_once(&ctx, &mut state).await {
            Ok(report) if !report.terminated.is_empty() || !report.marked.is_empty() => {
                tracing::info!(?report, "garbage collection round")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("garbage collection: listing requests failed: {e}"),
        }
    }
}
