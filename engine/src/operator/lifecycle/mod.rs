//! The life of one GPURequest: quote, fund check, launch, verify, watch, end.
//!
//! Each step reads the request's status, asks providers what it must (through the registry's
//! gate), and records the outcome in status before anything else happens. Rules it never bends:
//! - the attempt (instance name, provider, offer) is written to status before `launch` is called,
//!   so a crash between the call and the next write is recovered by adoption, never a second
//!   launch;
//! - a request is Ready only after `verify` reported the instance running;
//! - an id that stays not-found past a grace period is a silent launch failure: it is terminated
//!   and the next provider is tried;
//! - deletion removes the finalizer only once every instance is confirmed gone;
//! - a `bootstrap.mode: talos` request is Ready only once its Node registered and its GPUs are
//!   allocatable ([`join`]), and its node is drained and removed before its instance is
//!   terminated ([`teardown`]).

pub mod join;
pub mod teardown;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::crd::conditions;
use crate::crd::gpurequest::{
    Attempt, BootstrapMode, GPURequest, GPURequestStatus, OnFailure, PendingLaunch, Phase,
};
use crate::money::Usd;
use crate::plugins::{
    Availability, CallError, Instance, InstanceState, LaunchRequest, Offer, Operation,
    ProviderError, Tag, TerminateOutcome,
};
use crate::pricing::{self, RankedOffer};

use super::ReconcileError;
use super::clock;
use super::context::Ctx;
use super::naming;
use super::registry::{GatedError, ProviderSlot};
use super::validate::{self, ValidRequest};

/// Condition types, as the issue and the docs name them.
pub mod cond {
    pub const QUOTED: &str = "Quoted";
    pub const FUNDED: &str = "Funded";
    pub const LAUNCHED: &str = "Launched";
    pub const VERIFIED: &str = "InstanceVerified";
    pub const READY: &str = "Ready";
    pub const HEALTHY: &str = "Healthy";
}

/// An event to publish once status is written.
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Note {
    /// An event about `request`, logged now (a warning at warn level) and published once the
    /// status is written.
    pub(crate) fn logged(request: &str, warning: bool, reason: &str, message: String) -> Self {
        if warning {
            tracing::warn!(request, reason, "{message}");
        } else {
            tracing::info!(request, reason, "{message}");
        }
        Self::new(warning, reason, message)
    }

    /// An event (a warning or a normal one), not logged.
    pub(crate) fn new(warning: bool, reason: &str, message: String) -> Self {
        Self {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            message,
        }
    }
}

/// What a step changed and asks for next.
pub struct Step {
    pub status: GPURequestStatus,
    pub notes: Vec<Note>,
    pub action: Action,
}

/// Working state of one reconcile: the status being built and the events to publish.
struct Work<'a> {
    req: &'a GPURequest,
    ctx: &'a Ctx,
    st: GPURequestStatus,
    notes: Vec<Note>,
    now: jiff::Timestamp,
}

impl<'a> Work<'a> {
    fn new(req: &'a GPURequest, ctx: &'a Ctx) -> Self {
        Work {
            req,
            ctx,
            st: req.status.clone().unwrap_or_default(),
            notes: Vec::new(),
            now: clock::now(),
        }
    }

    fn now_text(&self) -> String {
        clock::text(self.now)
    }

    fn uid(&self) -> String {
        self.req.uid().unwrap_or_default()
    }

    fn cond(&mut self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) {
        let now = self.now_text();
        let generation = self.req.metadata.generation;
        conditions::set(
            &mut self.st.conditions,
            type_,
            ok,
            reason,
            message,
            &now,
            generation,
        );
    }

    fn note(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        let note = Note::logged(&self.req.name_any(), warning, reason, message.into());
        self.notes.push(note);
    }

    fn phase(&mut self, phase: Phase) {
        if self.st.phase != phase {
            self.note(
                false,
                &format!("{phase:?}"),
                format!("phase {:?} -> {phase:?}", self.st.phase),
            );
            self.st.phase = phase;
        }
    }

    fn attempt(
        &mut self,
        provider: &str,
        offer: Option<&str>,
        price: Option<u64>,
        outcome: &str,
        reason: &str,
        message: impl Into<String>,
        instance: Option<&str>,
    ) {
        let at = self.now_text();
        self.st.attempts.push(Attempt {
            provider: provider.to_string(),
            offer_id: offer.map(str::to_string),
            hourly_price: price.map(|p| Usd(p).to_string()),
            outcome: outcome.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            instance_id: instance.map(str::to_string),
            at,
        });
        // Keep status bounded: the newest attempts matter most.
        let len = self.st.attempts.len();
        if len > 50 {
            self.st.attempts.drain(0..len - 50);
        }
    }

    fn done(self, action: Action) -> Step {
        Step {
            status: self.st,
            notes: self.notes,
            action,
        }
    }

    fn slot(&self, provider: &str) -> Option<ProviderSlot> {
        self.ctx.registry.get(provider)
    }

    fn tags(&self) -> Vec<Tag> {
        naming::ownership_tags(
            &self.ctx.settings.cluster_id,
            &self.uid(),
            &self.req.name_any(),
        )
    }

    /// Forgets the current instance (after it failed or ended).
    fn clear_instance(&mut self) {
        self.st.instance_id = None;
        self.st.instance_name = None;
        self.st.public_ip = None;
        self.st.not_found_since = None;
        self.st.pending_launch = None;
        self.st.launched_at = None;
        self.st.ready_at = None;
        self.st.expires_at = None;
        self.st.last_verified_at = None;
    }
}

/// Launch attempts that ended in failure, which count against `max_attempts`.
fn failed_launches(st: &GPURequestStatus) -> usize {
    st.attempts
        .iter()
        .filter(|a| a.outcome == "Failed" && a.instance_id.is_some() || a.outcome == "LaunchFailed")
        .count()
}

/// Offers (provider, offer id) and whole providers this request must not use again.
fn exclusions(st: &GPURequestStatus) -> (Vec<(String, String)>, Vec<String>) {
    let mut offers = Vec::new();
    let mut providers = Vec::new();
    for a in &st.attempts {
        match (a.outcome.as_str(), a.reason.as_str()) {
            ("Failed", "SilentLaunchFailure" | "InstanceFailed" | "BootTimeout" | "Auth") => {
                providers.push(a.provider.clone())
            }
            ("LaunchFailed", _) => {
                if let Some(o) = &a.offer_id {
                    offers.push((a.provider.clone(), o.clone()));
                }
            }
            _ => {}
        }
    }
    (offers, providers)
}

/// Reason word for a provider error.
fn reason_of(e: &GatedError) -> &'static str {
    match e {
        GatedError::Refused(_) => "RateLimited",
        GatedError::Call(CallError::Provider(p)) => match p {
            ProviderError::Auth(_) => "Auth",
            ProviderError::Billing(_) => "InsufficientBalance",
            ProviderError::Capacity(_) => "Capacity",
            ProviderError::Quota(_) => "Quota",
            ProviderError::RateLimited(_) => "RateLimited",
            ProviderError::InvalidRequest(_) => "InvalidRequest",
            ProviderError::NotFound(_) => "NotFound",
            ProviderError::Transient(_) => "Transient",
            ProviderError::Unsupported(_) => "Unsupported",
            ProviderError::Internal(_) => "ProviderInternal",
        },
        GatedError::Call(CallError::Timeout { .. }) => "PluginTimeout",
        GatedError::Call(_) => "PluginFailure",
    }
}

/// True if a failed launch may still have created an instance (we cannot tell).
fn launch_outcome_unknown(e: &GatedError) -> bool {
    match e {
        GatedError::Refused(_) => false,
        GatedError::Call(CallError::Provider(p)) => {
            matches!(p, ProviderError::Transient(_) | ProviderError::Internal(_))
        }
        GatedError::Call(_) => true,
    }
}

fn offer_from_pending(p: &PendingLaunch) -> Offer {
    Offer {
        offer_id: p.offer_id.clone(),
        gpu_type: p.gpu_type.clone(),
        count: p.gpu_count,
        region: p.region.clone(),
        price_per_hour: p.price_micro_usd,
        spot: p.spot,
        availability: Availability::Available,
    }
}

/// Reads the request fresh from the API server: the controller's cache can lag behind our own
/// status writes, and every decision here must see the attempt recorded by the previous pass.
pub async fn fresh(ctx: &Ctx, req: &GPURequest) -> Result<Option<GPURequest>, ReconcileError> {
    let api: Api<GPURequest> = Api::all(ctx.client.clone());
    Ok(api.get_opt(&req.name_any()).await?)
}

/// Reconciles a live (not deleting) request.
pub async fn apply(req: Arc<GPURequest>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let Some(req) = fresh(&ctx, &req).await? else {
        return Ok(Action::await_change());
    };
    if req.metadata.deletion_timestamp.is_some() {
        // Deletion started since the cache saw it; the cleanup pass handles it.
        return Ok(Action::requeue(Duration::ZERO));
    }
    let step = apply_step(&req, &ctx).await?;
    commit(&req, &ctx, step).await
}

/// Writes the step's status (if changed) and publishes its events.
pub async fn commit(req: &GPURequest, ctx: &Ctx, mut step: Step) -> Result<Action, ReconcileError> {
    let old = req.status.clone().unwrap_or_default();
    step.status.observed_generation = req.metadata.generation;
    if step.status != old {
        write_status(ctx, req, &step.status).await?;
        if step.status.phase != old.phase {
            // Progress: later retries start again from the base delay instead of inheriting
            // the backoff of failures from an earlier phase.
            ctx.reset_failures(req);
        }
    }
    for note in step.notes {
        ctx.publish(req, note).await;
    }
    Ok(step.action)
}

/// Merge-patches the whole status (absent optional fields are sent as null and so cleared).
pub async fn write_status(
    ctx: &Ctx,
    req: &GPURequest,
    status: &GPURequestStatus,
) -> Result<(), ReconcileError> {
    let api: Api<GPURequest> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &req.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn apply_step(req: &GPURequest, ctx: &Ctx) -> Result<Step, ReconcileError> {
    let mut w = Work::new(req, ctx);
    let valid = match validate::validate(&req.spec) {
        Ok(v) => v,
        Err(e) => {
            if w.st.instance_id.is_some() || w.st.pending_launch.is_some() {
                // The spec was edited into nonsense while an instance exists: keep watching it;
                // deletion still cleans up. Say so.
                w.cond(
                    cond::READY,
                    w.st.phase == Phase::Ready,
                    "InvalidSpec",
                    format!("{e}; the existing instance is kept until the request is deleted"),
                );
                return Ok(w.done(Action::requeue(ctx.settings.health_interval)));
            }
            let message = format!("{e}. Fix the field; no provider was called.");
            if conditions::get(&w.st.conditions, cond::READY)
                .is_none_or(|c| c.reason != "InvalidSpec" || c.message != message)
            {
                w.note(true, "InvalidSpec", message.clone());
            }
            w.cond(cond::READY, false, "InvalidSpec", message);
            w.st.phase = Phase::Failed;
            return Ok(w.done(Action::await_change()));
        }
    };
    let talos = req.spec.bootstrap.mode == BootstrapMode::Talos;
    let launching = matches!(
        w.st.phase,
        Phase::Pending | Phase::Quoting | Phase::Launching
    );
    let inputs = if talos && launching {
        match join::preflight(ctx).await {
            Ok(inputs) => Some(inputs),
            Err(b) => {
                // Nothing is quoted or launched until the node could actually join.
                let message = format!("{}; nothing was launched", b.message);
                if conditions::get(&w.st.conditions, cond::READY)
                    .is_none_or(|c| c.reason != b.reason || c.message != message)
                {
                    w.note(true, b.reason, message.clone());
                }
                w.cond(cond::READY, false, b.reason, message);
                if w.st.pending_launch.is_none() {
                    w.st.phase = Phase::Pending;
                }
                let delay = ctx.retry_delay(req);
                return Ok(w.done(Action::requeue(delay)));
            }
        }
    } else {
        None
    };
    let action = match w.st.phase {
        Phase::Pending | Phase::Quoting | Phase::Launching => {
            launch_step(&mut w, &valid, inputs.as_ref()).await?
        }
        Phase::Verifying | Phase::Bootstrapping => verify_step(&mut w, &valid).await?,
        Phase::Joining => join::join_step(&mut w, &valid).await?,
        Phase::Ready => health_step(&mut w, &valid).await?,
        Phase::Terminating => end_step(&mut w).await?,
        Phase::Terminated | Phase::Failed => Action::await_change(),
    };
    Ok(w.done(action))
}

/// Pending/Quoting/Launching: recover a recorded attempt, or pick the best offer and launch it.
async fn launch_step(
    w: &mut Work<'_>,
    valid: &ValidRequest,
    inputs: Option<&join::JoinInputs>,
) -> Result<Action, ReconcileError> {
    let settings = &w.ctx.settings;
    if let Some(pending) = w.st.pending_launch.clone() {
        return launch_recorded(w, pending, inputs).await;
    }
    if failed_launches(&w.st) >= settings.max_attempts {
        let message = format!(
            "gave up after {} failed launch attempts; see status.attempts",
            settings.max_attempts
        );
        w.cond(cond::READY, false, "TooManyAttempts", message.clone());
        w.note(true, "TooManyAttempts", message);
        w.st.phase = Phase::Failed;
        return Ok(Action::await_change());
    }
    w.phase(Phase::Quoting);
    let Some(choice) = choose_offer(w, valid).await else {
        // Nothing fits now: stay pending, look again later.
        w.st.phase = Phase::Pending;
        let delay = w.ctx.retry_delay(w.req);
        return Ok(Action::requeue(delay));
    };
    let attempt_no =
        w.st.attempts
            .iter()
            .filter(|a| a.outcome == "Launched" || a.outcome == "LaunchFailed")
            .count()
            + 1;
    let instance_name = naming::instance_name(&w.uid(), attempt_no);
    let offer = &choice.offer;
    w.st.provider = Some(choice.provider.clone());
    w.st.offer = Some(offer.offer_id.clone());
    w.st.region = Some(offer.region.clone());
    w.st.hourly_price = Some(Usd(offer.price_per_hour).to_string());
    w.st.instance_name = Some(instance_name.clone());
    // A new machine: nothing of an earlier one's node or tailnet state applies to it.
    w.st.bootstrap = None;
    w.st.node_name = None;
    w.st.pending_launch = Some(PendingLaunch {
        provider: choice.provider.clone(),
        offer_id: offer.offer_id.clone(),
        gpu_type: offer.gpu_type.clone(),
        gpu_count: offer.count,
        region: offer.region.clone(),
        price_micro_usd: offer.price_per_hour,
        spot: offer.spot,
        instance_name,
        started_at: w.now_text(),
    });
    w.phase(Phase::Launching);
    // The attempt must be durable before the launch call: write now, launch on the next pass.
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// A launch is recorded in status: find it on the provider (adopt) or make the call.
async fn launch_recorded(
    w: &mut Work<'_>,
    pending: PendingLaunch,
    inputs: Option<&join::JoinInputs>,
) -> Result<Action, ReconcileError> {
    let Some(slot) = w.slot(&pending.provider) else {
        w.cond(
            cond::LAUNCHED,
            false,
            "ProviderUnavailable",
            format!(
                "provider {} is not loaded; waiting for it before launching or adopting",
                pending.provider
            ),
        );
        return Ok(Action::requeue(w.ctx.settings.verify_interval));
    };
    // Did an earlier pass already launch it? Ask the provider by our tag.
    let owner = Tag {
        key: naming::REQUEST_TAG.into(),
        value: w.uid(),
    };
    let listed = slot
        .call(Operation::ListOwned, slot.plugin.list_owned(&owner))
        .await;
    let listed = match listed {
        Ok(list) => list,
        Err(e) => {
            // Never launch when we cannot tell whether the instance already exists.
            w.cond(
                cond::LAUNCHED,
                false,
                "ListFailed",
                format!(
                    "cannot check {} for an instance launched earlier: {e}; retrying",
                    pending.provider
                ),
            );
            let delay = e.retry_after().unwrap_or_else(|| w.ctx.retry_delay(w.req));
            return Ok(Action::requeue(delay));
        }
    };
    if let Some(found) = listed.iter().find(|i| {
        i.name == pending.instance_name
            && !matches!(i.state, InstanceState::Terminated | InstanceState::NotFound)
    }) {
        let found = found.clone();
        w.note(
            false,
            "Adopted",
            format!(
                "found instance {} ({}) on {} launched before a restart; adopting it",
                found.instance_id, found.name, pending.provider
            ),
        );
        launched(w, &pending, &found, "Adopted");
        return Ok(Action::requeue(Duration::ZERO));
    }
    let user_data = match inputs {
        None => None,
        Some(inputs) => {
            let supported = slot.plugin.info().capabilities.bootstrap.clone();
            let Some(how) = join::delivery_for(&supported) else {
                // The provider's module changed under us and can no longer boot Talos.
                let message = format!(
                    "{} can no longer boot Talos (bootstrap: {}); trying another provider",
                    pending.provider,
                    delivery_names(&supported)
                );
                w.attempt(
                    &pending.provider,
                    Some(&pending.offer_id),
                    Some(pending.price_micro_usd),
                    "Skipped",
                    "NoTalosBoot",
                    message.clone(),
                    None,
                );
                w.note(true, "NoTalosBoot", message);
                w.st.pending_launch = None;
                w.st.phase = Phase::Quoting;
                return Ok(Action::requeue(Duration::ZERO));
            };
            match join::user_data(w, inputs, &pending, how).await {
                Ok(doc) => Some(doc),
                Err(b) => {
                    w.cond(
                        cond::LAUNCHED,
                        false,
                        b.reason,
                        format!("{}; retrying", b.message),
                    );
                    w.note(true, b.reason, b.message);
                    return Ok(Action::requeue(w.ctx.retry_delay(w.req)));
                }
            }
        }
    };
    let request = LaunchRequest {
        offer: offer_from_pending(&pending),
        instance_name: pending.instance_name.clone(),
        tags: w.tags(),
        // Filled in by the host from the sealed document.
        user_data: None,
        image: None,
        terminate_after_seconds: None,
    };
    match slot
        .call(
            Operation::Launch,
            slot.plugin.launch(&request, user_data.as_ref()),
        )
        .await
    {
        Ok(instance) => {
            w.note(
                false,
                "Launched",
                format!(
                    "launched {} on {} ({} at {}/h); verifying",
                    instance.instance_id,
                    pending.provider,
                    pending.offer_id,
                    Usd(pending.price_micro_usd)
                ),
            );
            launched(w, &pending, &instance, "Launched");
            Ok(Action::requeue(Duration::ZERO))
        }
        Err(e) if launch_outcome_unknown(&e) => {
            // The launch may have happened: keep the record, and look for it by tag next time.
            let message = format!(
                "launch on {} did not answer clearly ({e}); checking for the instance before retrying",
                pending.provider
            );
            w.cond(cond::LAUNCHED, false, reason_of(&e), message.clone());
            w.note(true, reason_of(&e), message);
            Ok(Action::requeue(w.ctx.retry_delay(w.req)))
        }
        Err(e) => {
            let reason = reason_of(&e);
            let outcome = if matches!(e, GatedError::Refused(_)) || reason == "RateLimited" {
                "Deferred"
            } else {
                "LaunchFailed"
            };
            let message = format!("launch on {} failed: {e}", pending.provider);
            w.attempt(
                &pending.provider,
                Some(&pending.offer_id),
                Some(pending.price_micro_usd),
                outcome,
                reason,
                message.clone(),
                None,
            );
            w.cond(
                cond::LAUNCHED,
                false,
                reason,
                format!("{message}; trying the next offer"),
            );
            w.note(true, reason, format!("{message}; trying the next offer"));
            w.st.pending_launch = None;
            w.st.phase = Phase::Quoting;
            // Nothing was launched: the node's key will never be used.
            drop_unused_key(w).await;
            Ok(Action::requeue(Duration::ZERO))
        }
    }
}

/// Records a launched (or adopted) instance and moves to Verifying.
fn launched(w: &mut Work<'_>, pending: &PendingLaunch, instance: &Instance, how: &str) {
    w.attempt(
        &pending.provider,
        Some(&pending.offer_id),
        Some(pending.price_micro_usd),
        "Launched",
        how,
        format!("instance {}", instance.instance_id),
        Some(&instance.instance_id),
    );
    w.st.instance_id = Some(instance.instance_id.clone());
    w.st.instance_name = Some(pending.instance_name.clone());
    w.st.provider = Some(pending.provider.clone());
    w.st.offer = Some(pending.offer_id.clone());
    w.st.region = instance.region.clone().or(Some(pending.region.clone()));
    w.st.hourly_price =
        Some(Usd(instance.price_per_hour.unwrap_or(pending.price_micro_usd)).to_string());
    w.st.public_ip = instance.public_ip.clone();
    w.st.launched_at = Some(w.now_text());
    w.st.pending_launch = None;
    w.st.not_found_since = None;
    w.cond(
        cond::LAUNCHED,
        true,
        how,
        format!("instance {} on {}", instance.instance_id, pending.provider),
    );
    w.cond(
        cond::VERIFIED,
        false,
        "Verifying",
        "waiting for the provider to report the instance running",
    );
    w.phase(Phase::Verifying);
}

/// Quotes every eligible provider, checks balances, and returns the best offer to try.
async fn choose_offer(w: &mut Work<'_>, valid: &ValidRequest) -> Option<RankedOffer> {
    let (excluded_offers, excluded_providers) = exclusions(&w.st);
    let mut skipped: Vec<(String, String, String)> = Vec::new();
    let mut eligible = Vec::new();
    for slot in w.ctx.registry.all() {
        if !valid.providers.is_empty() && !valid.providers.contains(&slot.name) {
            continue;
        }
        if excluded_providers.contains(&slot.name) {
            skipped.push((
                slot.name.clone(),
                "Excluded".into(),
                "an earlier attempt on this provider failed".into(),
            ));
            continue;
        }
        if let Some(why) = slot.gate.unhealthy() {
            skipped.push((
                slot.name.clone(),
                "Unhealthy".into(),
                format!("authentication failed: {why}"),
            ));
            continue;
        }
        if let Some(wait) = slot.gate.blocked_for() {
            skipped.push((
                slot.name.clone(),
                "RateLimited".into(),
                format!(
                    "the provider asked for no calls for {}s",
                    wait.as_secs().max(1)
                ),
            ));
            continue;
        }
        let info = slot.plugin.info();
        if w.req.spec.bootstrap.mode == BootstrapMode::Talos
            && join::delivery_for(&info.capabilities.bootstrap).is_none()
        {
            skipped.push((
                slot.name.clone(),
                "NoTalosBoot".into(),
                format!(
                    "bootstrap.mode talos needs a platform that boots Talos from user-data or \
                     runs cloud-init; this one offers {} (unprivileged containers cannot boot \
                     Talos or run a kubelet)",
                    delivery_names(&info.capabilities.bootstrap)
                ),
            ));
            continue;
        }
        if valid.gpu.spot && !info.capabilities.spot {
            skipped.push((
                slot.name.clone(),
                "NoSpot".into(),
                "spot requested; the provider has no spot capacity".into(),
            ));
            continue;
        }
        eligible.push(slot);
    }
    for name in &valid.providers {
        if w.ctx.registry.get(name).is_none() {
            skipped.push((
                name.clone(),
                "NotLoaded".into(),
                "no loaded GPUProvider has this name".into(),
            ));
        }
    }
    let quotes = futures::future::join_all(eligible.iter().map(|slot| async move {
        (
            slot,
            slot.call(Operation::Quote, slot.plugin.quote(&valid.gpu))
                .await,
        )
    }))
    .await;
    let mut offers = Vec::new();
    let mut answered = 0usize;
    for (slot, result) in quotes {
        match result {
            Ok(list) => {
                answered += 1;
                let fitting: Vec<RankedOffer> = list
                    .into_iter()
                    .filter(|o| pricing::fits(o, &valid.gpu).is_ok())
                    .filter(|o| !excluded_offers.contains(&(slot.name.clone(), o.offer_id.clone())))
                    .map(|offer| RankedOffer {
                        provider: slot.name.clone(),
                        priority: slot.priority,
                        offer,
                    })
                    .collect();
                if fitting.is_empty() {
                    skipped.push((
                        slot.name.clone(),
                        "NoFittingOffer".into(),
                        "no offer matches type, count, region, spot and price".into(),
                    ));
                }
                offers.extend(fitting);
            }
            Err(e) => skipped.push((
                slot.name.clone(),
                reason_of(&e).into(),
                format!("quote failed: {e}"),
            )),
        }
    }
    pricing::rank(&mut offers);

    // Balance pre-check, once per provider, for providers that have a balance.
    let mut unfunded: Vec<String> = Vec::new();
    let min_hours = w.ctx.settings.min_billable;
    let mut checked: Vec<(String, Result<Option<u64>, String>)> = Vec::new();
    for candidate in &offers {
        if checked.iter().any(|(p, _)| p == &candidate.provider) {
            continue;
        }
        let Some(slot) = w.ctx.registry.get(&candidate.provider) else {
            continue;
        };
        if !slot.plugin.info().capabilities.balance {
            checked.push((slot.name.clone(), Ok(None)));
            continue;
        }
        let r = match slot.call(Operation::Balance, slot.plugin.balance()).await {
            Ok(crate::plugins::Balance::Amount(a)) => Ok(Some(a.available)),
            Ok(crate::plugins::Balance::Unsupported) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        checked.push((slot.name.clone(), r));
    }
    let mut chosen = None;
    for candidate in offers {
        let balance = checked
            .iter()
            .find(|(p, _)| p == &candidate.provider)
            .map(|(_, r)| r.clone());
        let needed =
            (candidate.offer.price_per_hour as u128 * min_hours.as_secs() as u128 / 3600) as u64;
        match balance {
            Some(Ok(Some(available))) if available < needed => {
                if !unfunded.contains(&candidate.provider) {
                    unfunded.push(candidate.provider.clone());
                    skipped.push((
                        candidate.provider.clone(),
                        "InsufficientBalance".into(),
                        format!(
                            "balance {} cannot cover {} for the minimum billable period",
                            Usd(available),
                            Usd(needed)
                        ),
                    ));
                }
            }
            Some(Err(e)) => {
                if !unfunded.contains(&candidate.provider) {
                    unfunded.push(candidate.provider.clone());
                    skipped.push((
                        candidate.provider.clone(),
                        "BalanceUnknown".into(),
                        format!("balance check failed: {e}"),
                    ));
                }
            }
            _ => {
                if chosen.is_none() {
                    chosen = Some(candidate);
                }
            }
        }
    }
    for (provider, reason, message) in &skipped {
        let already =
            w.st.attempts
                .iter()
                .rev()
                .take(20)
                .any(|a| &a.provider == provider && a.outcome == "Skipped" && &a.reason == reason);
        if !already {
            w.attempt(
                provider,
                None,
                None,
                "Skipped",
                reason,
                message.clone(),
                None,
            );
        }
    }
    let summary: Vec<String> = skipped
        .iter()
        .map(|(p, r, _)| format!("{p}: {r}"))
        .collect();
    match &chosen {
        Some(c) => {
            w.cond(
                cond::QUOTED,
                true,
                "OfferChosen",
                format!(
                    "{} at {}/h ({} of {} providers answered)",
                    c.provider,
                    Usd(c.offer.price_per_hour),
                    answered,
                    eligible.len()
                ),
            );
            w.cond(
                cond::FUNDED,
                true,
                "BalanceSufficient",
                format!("{} can pay for the offer", c.provider),
            );
        }
        None => {
            let reason = if !unfunded.is_empty()
                && skipped
                    .iter()
                    .all(|(_, r, _)| r == "InsufficientBalance" || r == "BalanceUnknown")
            {
                "InsufficientBalance"
            } else {
                "NoOffers"
            };
            let message = if summary.is_empty() {
                "no provider is configured for this request".to_string()
            } else {
                format!("no usable offer: {}", summary.join("; "))
            };
            w.cond(cond::QUOTED, false, reason, message.clone());
            if !unfunded.is_empty() {
                w.cond(
                    cond::FUNDED,
                    false,
                    "InsufficientBalance",
                    format!("no funded provider: {}", unfunded.join(", ")),
                );
            }
            w.note(true, reason, message);
        }
    }
    chosen
}

/// Verifying: wait for the provider to report the instance running.
async fn verify_step(w: &mut Work<'_>, valid: &ValidRequest) -> Result<Action, ReconcileError> {
    let settings = w.ctx.settings.clone();
    let (Some(provider), Some(id)) = (w.st.provider.clone(), w.st.instance_id.clone()) else {
        // No instance recorded: back to launching.
        w.st.phase = Phase::Quoting;
        return Ok(Action::requeue(Duration::ZERO));
    };
    let Some(slot) = w.slot(&provider) else {
        w.cond(
            cond::VERIFIED,
            false,
            "ProviderUnavailable",
            format!("provider {provider} is not loaded"),
        );
        return Ok(Action::requeue(settings.verify_interval));
    };
    let (state, instance) = match slot.look_up(&id).await {
        Ok(answer) => answer,
        Err(e) => {
            w.cond(
                cond::VERIFIED,
                false,
                reason_of(&e),
                format!("verify failed: {e}; retrying"),
            );
            return Ok(Action::requeue(
                e.retry_after().unwrap_or(settings.verify_interval),
            ));
        }
    };
    let launched_at = clock::parse(w.st.launched_at.as_deref()).unwrap_or(w.now);
    match state {
        InstanceState::Running => {
            if let Some(ip) = instance.and_then(|i| i.public_ip) {
                w.st.public_ip = Some(ip);
            }
            w.st.not_found_since = None;
            w.cond(
                cond::VERIFIED,
                true,
                "Running",
                format!("{provider} reports instance {id} running"),
            );
            if w.req.spec.bootstrap.mode == BootstrapMode::Talos {
                // Running is not ready: the node must join and offer its GPUs first.
                join::start_join(w);
                return Ok(Action::requeue(Duration::ZERO));
            }
            // Bootstrap mode none: verified running is ready.
            became_ready(
                w,
                valid,
                "InstanceRunning",
                format!("instance {id} on {provider} is running"),
            );
            Ok(Action::requeue(next_health_check(w, valid)))
        }
        // Not running yet, or in a state expected to pass (a restart, a reading the plugin could
        // not interpret): wait, within the boot timeout.
        InstanceState::Pending
        | InstanceState::Booting
        | InstanceState::Rebooting
        | InstanceState::Unknown => {
            w.st.not_found_since = None;
            if clock::since(launched_at, w.now) > settings.boot_timeout {
                return abandon(
                    w,
                    &slot,
                    &id,
                    "BootTimeout",
                    format!(
                        "instance {id} was not running {}s after launch",
                        settings.boot_timeout.as_secs()
                    ),
                )
                .await;
            }
            w.cond(
                cond::VERIFIED,
                false,
                "Booting",
                format!("{provider} reports instance {id} {:?}", state).to_lowercase(),
            );
            Ok(Action::requeue(settings.verify_interval))
        }
        InstanceState::NotFound => {
            let since = match clock::parse(w.st.not_found_since.as_deref()) {
                Some(t) => t,
                None => {
                    w.st.not_found_since = Some(w.now_text());
                    w.now
                }
            };
            let missing_for = clock::since(since, w.now);
            if missing_for >= settings.not_found_grace {
                return abandon(
                    w,
                    &slot,
                    &id,
                    "SilentLaunchFailure",
                    format!("launch answered with id {id}, but {provider} has reported no such instance for {}s", missing_for.as_secs()),
                )
                .await;
            }
            w.cond(
                cond::VERIFIED,
                false,
                "NotFoundYet",
                format!(
                    "{provider} does not know instance {id} yet; waiting up to {}s",
                    settings.not_found_grace.as_secs()
                ),
            );
            Ok(Action::requeue(
                settings
                    .verify_interval
                    .min(settings.not_found_grace.saturating_sub(missing_for))
                    .max(Duration::from_millis(50)),
            ))
        }
        InstanceState::Failed
        | InstanceState::Terminated
        | InstanceState::Stopping
        | InstanceState::Stopped
        | InstanceState::Preempted => {
            abandon(
                w,
                &slot,
                &id,
                "InstanceFailed",
                format!("{provider} reports instance {id} {state:?} before it ever ran"),
            )
            .await
        }
    }
}

/// Marks the request Ready (the instance verified running, and for Talos the node initialized).
fn became_ready(w: &mut Work<'_>, valid: &ValidRequest, reason: &str, message: String) {
    w.st.ready_at = Some(w.now_text());
    w.st.last_verified_at = Some(w.now_text());
    w.st.expires_at = valid
        .max_lifetime
        .map(|d| clock::text(clock::add(w.now, d)));
    w.cond(cond::HEALTHY, true, "Running", "instance verified running");
    w.cond(cond::READY, true, reason, message);
    w.phase(Phase::Ready);
    w.ctx.health_checked(w.req);
}

/// Names of delivery methods, for messages.
fn delivery_names(list: &[crate::plugins::BootstrapDelivery]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
}

/// Deletes a minted Tailscale key that no instance will use (best effort: it is single-use and
/// expires anyway) and forgets the join state.
async fn drop_unused_key(w: &mut Work<'_>) {
    let Some(key) =
        w.st.bootstrap
            .as_ref()
            .and_then(|b| b.tailscale_key_id.clone())
    else {
        return;
    };
    match join::tailscale_client(w.ctx).await {
        Ok(c) => {
            if let Err(e) = c.delete_key(&key).await {
                tracing::warn!(request = %w.req.name_any(), "deleting unused Tailscale key {key}: {e}");
            }
        }
        Err(b) => {
            tracing::warn!(request = %w.req.name_any(), "deleting unused Tailscale key {key}: {}", b.message)
        }
    }
    w.st.bootstrap = None;
}

/// Gives up on an instance that never became usable: terminates it (idempotently), records
/// why, and goes back to choosing an offer (this provider excluded).
async fn abandon(
    w: &mut Work<'_>,
    slot: &ProviderSlot,
    id: &str,
    reason: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    let result = slot
        .call(Operation::Terminate, slot.plugin.terminate(id))
        .await;
    let cleanup = match &result {
        Ok(TerminateOutcome::AlreadyGone) => "the provider says it is already gone".to_string(),
        Ok(o) => format!("terminate answered {o:?}"),
        Err(e) => format!("terminate failed ({e}); garbage collection will retry"),
    };
    let offer = w.st.offer.clone();
    let price = crate::money::parse_usd(
        w.st.hourly_price
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('$'),
    )
    .ok();
    w.attempt(
        &slot.name,
        offer.as_deref(),
        price,
        "Failed",
        reason,
        format!("{message}; {cleanup}"),
        Some(id),
    );
    w.cond(
        cond::VERIFIED,
        false,
        reason,
        format!("{message}; {cleanup}"),
    );
    w.note(
        true,
        reason,
        format!("{message}; {cleanup}; trying the next offer"),
    );
    w.clear_instance();
    drop_unused_key(w).await;
    w.st.phase = Phase::Quoting;
    Ok(Action::requeue(Duration::ZERO))
}

/// When the next health check is due: the interval, or the lifetime's end if sooner.
fn next_health_check(w: &Work<'_>, _valid: &ValidRequest) -> Duration {
    let interval = w.ctx.settings.health_interval;
    match clock::parse(w.st.expires_at.as_deref()) {
        Some(expiry) => clock::since(w.now, expiry)
            .min(interval)
            .max(Duration::from_millis(50)),
        None => interval,
    }
}

/// Ready: the lifetime limit, then a fresh verify.
async fn health_step(w: &mut Work<'_>, valid: &ValidRequest) -> Result<Action, ReconcileError> {
    let settings = w.ctx.settings.clone();
    if let Some(expiry) = clock::parse(w.st.expires_at.as_deref())
        && w.now >= expiry
    {
        w.cond(
            cond::READY,
            false,
            "MaxLifetimeReached",
            format!("maxLifetime reached at {expiry}; terminating the instance"),
        );
        w.note(
            false,
            "MaxLifetimeReached",
            "maxLifetime reached; terminating the instance",
        );
        w.phase(Phase::Terminating);
        return Ok(Action::requeue(Duration::ZERO));
    }
    let (Some(provider), Some(id)) = (w.st.provider.clone(), w.st.instance_id.clone()) else {
        w.st.phase = Phase::Quoting;
        return Ok(Action::requeue(Duration::ZERO));
    };
    // Only when due: this pass may have been triggered by our own status write.
    if let Some(wait) = w.ctx.health_check_wait(w.req) {
        return Ok(Action::requeue(wait.min(next_health_check(w, valid))));
    }
    let Some(slot) = w.slot(&provider) else {
        w.cond(
            cond::HEALTHY,
            false,
            "ProviderUnavailable",
            format!("provider {provider} is not loaded; cannot check the instance"),
        );
        return Ok(Action::requeue(settings.verify_interval));
    };
    let state = match slot.look_up(&id).await {
        Ok((state, _)) => state,
        Err(e) => {
            // The provider did not answer: that says nothing about the instance. Retry soon.
            w.cond(
                cond::HEALTHY,
                true,
                "CheckFailed",
                format!(
                    "last check failed ({e}); the instance was running at {}",
                    w.st.last_verified_at.clone().unwrap_or_default()
                ),
            );
            return Ok(Action::requeue(
                e.retry_after().unwrap_or(settings.verify_interval),
            ));
        }
    };
    w.ctx.health_checked(w.req);
    if state == InstanceState::Running {
        w.st.last_verified_at = Some(w.now_text());
        accrue(w);
        w.cond(cond::HEALTHY, true, "Running", "instance verified running");
        if let Some(idle) = valid.idle_timeout
            && let Some(message) = join::idle_check(w, idle).await?
        {
            w.cond(cond::READY, false, "IdleTimeout", message.clone());
            w.note(false, "IdleTimeout", message);
            w.phase(Phase::Terminating);
            return Ok(Action::requeue(Duration::ZERO));
        }
        return Ok(Action::requeue(next_health_check(w, valid)));
    }
    // Lost: vanished, preempted, or terminated outside tgp.
    let message = format!("{provider} reports instance {id} {state:?}; it is no longer usable");
    w.cond(cond::HEALTHY, false, "InstanceLost", message.clone());
    w.cond(cond::READY, false, "InstanceLost", message.clone());
    // Its node (if it joined) is gone with it: remove the Node and its tailnet device first.
    let mut st = w.st.clone();
    let mut notes = Vec::new();
    if let Err(e) = teardown::node_and_tailnet(w.ctx, w.req, &mut st, &mut notes, true).await {
        tracing::warn!(request = %w.req.name_any(), "removing the lost instance's node: {e}");
    }
    w.st = st;
    w.notes.extend(notes);
    let cleanup = slot
        .call(Operation::Terminate, slot.plugin.terminate(&id))
        .await;
    if let Err(e) = &cleanup {
        tracing::warn!(request = %w.req.name_any(), "terminate after loss failed: {e}; garbage collection will retry");
    }
    accrue(w);
    w.attempt(
        &provider,
        w.st.offer.clone().as_deref(),
        None,
        "Lost",
        "InstanceLost",
        message.clone(),
        Some(&id),
    );
    if w.req.spec.on_failure == OnFailure::Replace {
        w.note(true, "InstanceLost", format!("{message}; replacing it"));
        w.clear_instance();
        w.st.phase = Phase::Quoting;
        return Ok(Action::requeue(Duration::ZERO));
    }
    w.note(true, "InstanceLost", message);
    w.st.phase = Phase::Failed;
    Ok(Action::await_change())
}

/// Updates accrued cost from launch time and price.
fn accrue(w: &mut Work<'_>) {
    let (Some(launched), Some(price)) = (
        clock::parse(w.st.launched_at.as_deref()),
        w.st.hourly_price.as_deref(),
    ) else {
        return;
    };
    let Ok(per_hour) = crate::money::parse_usd(price) else {
        return;
    };
    let secs = clock::since(launched, w.now).as_secs() as u128;
    let cost = (per_hour as u128 * secs / 3600) as u64;
    w.st.accrued_cost = Some(Usd(cost).to_string());
}

/// Terminating (lifetime end): terminate until the provider confirms, then Terminated.
async fn end_step(w: &mut Work<'_>) -> Result<Action, ReconcileError> {
    let mut st = w.st.clone();
    let mut notes = Vec::new();
    let progress = teardown::node_and_tailnet(w.ctx, w.req, &mut st, &mut notes, false).await;
    w.st = st;
    w.notes.extend(notes);
    let tailscale_retry;
    match progress? {
        teardown::Progress::Draining(message) => {
            w.cond(cond::READY, false, "Draining", message);
            return Ok(Action::requeue(teardown::drain_poll(w.ctx)));
        }
        teardown::Progress::NodeGone { tailscale_pending } => {
            w.st.node_name = None;
            tailscale_retry = tailscale_pending;
        }
    }
    match terminate_confirmed(w.ctx, w.st.provider.as_deref(), w.st.instance_id.as_deref()).await {
        Ok(true) if tailscale_retry => {
            // The instance is gone; the tailnet clean-up gets its remaining retries.
            Ok(Action::requeue(w.ctx.retry_delay(w.req)))
        }
        Ok(true) => {
            accrue(w);
            w.note(false, "Terminated", "instance terminated");
            w.cond(cond::HEALTHY, false, "Terminated", "instance terminated");
            w.phase(Phase::Terminated);
            Ok(Action::await_change())
        }
        Ok(false) => Ok(Action::requeue(w.ctx.settings.terminate_interval)),
        Err(e) => {
            w.cond(
                cond::READY,
                false,
                "TerminationPending",
                format!("{e}; retrying"),
            );
            Ok(Action::requeue(w.ctx.retry_delay(w.req)))
        }
    }
}

/// Terminates `id` on `provider`; true once the provider confirms it gone.
pub async fn terminate_confirmed(
    ctx: &Ctx,
    provider: Option<&str>,
    id: Option<&str>,
) -> Result<bool, ReconcileError> {
    let (Some(provider), Some(id)) = (provider, id) else {
        return Ok(true);
    };
    let slot = ctx
        .registry
        .get(provider)
        .ok_or_else(|| ReconcileError::ProviderMissing {
            provider: provider.to_string(),
            what: format!("terminate instance {id}"),
        })?;
    let provider_err = |source: GatedError| ReconcileError::Provider {
        provider: provider.to_string(),
        source,
    };
    match slot
        .call(Operation::Terminate, slot.plugin.terminate(id))
        .await
        .map_err(provider_err)?
    {
        TerminateOutcome::Terminated | TerminateOutcome::AlreadyGone => Ok(true),
        TerminateOutcome::Terminating => {
            // Confirm through verify: only terminated or unknown counts as gone.
            let (state, _) = slot.look_up(id).await.map_err(provider_err)?;
            Ok(matches!(
                state,
                InstanceState::Terminated | InstanceState::NotFound
            ))
        }
    }
}

/// Deletion: end every instance this request may own, then let the finalizer go.
/// Returns an error (so the finalizer stays) until termination is confirmed.
pub async fn cleanup(req: Arc<GPURequest>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let req = match fresh(&ctx, &req).await? {
        Some(r) => Arc::new(r),
        None => return Ok(Action::await_change()),
    };
    let mut st = req.status.clone().unwrap_or_default();
    let uid = req.uid().unwrap_or_default();
    let mut targets: Vec<(String, String)> = Vec::new();
    if let (Some(p), Some(id)) = (&st.provider, &st.instance_id)
        && st.phase != Phase::Terminated
    {
        targets.push((p.clone(), id.clone()));
    }
    if let Some(pending) = &st.pending_launch {
        // A launch may have happened without its id reaching status: find it by tag.
        let slot =
            ctx.registry
                .get(&pending.provider)
                .ok_or_else(|| ReconcileError::ProviderMissing {
                    provider: pending.provider.clone(),
                    what: "look for an instance launched before deletion".into(),
                })?;
        let owner = Tag {
            key: naming::REQUEST_TAG.into(),
            value: uid.clone(),
        };
        let listed = slot
            .call(Operation::ListOwned, slot.plugin.list_owned(&owner))
            .await
            .map_err(|source| ReconcileError::Provider {
                provider: pending.provider.clone(),
                source,
            })?;
        for i in listed {
            if !matches!(i.state, InstanceState::Terminated | InstanceState::NotFound)
                && !targets.iter().any(|(_, id)| id == &i.instance_id)
            {
                targets.push((pending.provider.clone(), i.instance_id));
            }
        }
    }
    if st.phase != Phase::Terminating && !targets.is_empty() {
        st.phase = Phase::Terminating;
        let now = clock::text(clock::now());
        conditions::set(
            &mut st.conditions,
            cond::READY,
            false,
            "Deleting",
            "the request is being deleted; terminating its instance",
            &now,
            req.metadata.generation,
        );
        if let Err(e) = write_status(&ctx, &req, &st).await {
            tracing::debug!("status write during deletion failed: {e}");
        }
        ctx.publish(
            req.as_ref(),
            Note {
                type_: EventType::Normal,
                reason: "Terminating".into(),
                message: "request deleted; terminating its instance".into(),
            },
        )
        .await;
    }
    // A joined node goes first: cordon, drain, delete the Node, remove it from the tailnet.
    let mut notes = Vec::new();
    let before = st.clone();
    let progress = teardown::node_and_tailnet(&ctx, &req, &mut st, &mut notes, false).await;
    if st != before
        && let Err(e) = write_status(&ctx, &req, &st).await
    {
        tracing::debug!("status write during deletion failed: {e}");
    }
    for note in notes {
        ctx.publish(req.as_ref(), note).await;
    }
    let tailscale_pending = match progress? {
        teardown::Progress::Draining(message) => {
            return Err(ReconcileError::TerminationPending(message));
        }
        teardown::Progress::NodeGone { tailscale_pending } => tailscale_pending,
    };
    let mut pending = Vec::new();
    for (provider, id) in &targets {
        match terminate_confirmed(&ctx, Some(provider), Some(id)).await {
            Ok(true) => {}
            Ok(false) => pending.push(format!("{id} on {provider} is still terminating")),
            Err(e) => pending.push(e.to_string()),
        }
    }
    if tailscale_pending {
        pending.push("the node's Tailscale clean-up failed; retrying".into());
    }
    if !pending.is_empty() {
        return Err(ReconcileError::TerminationPending(pending.join("; ")));
    }
    if !targets.is_empty() {
        ctx.publish(
            req.as_ref(),
            Note {
                type_: EventType::Normal,
                reason: "Terminated".into(),
                message: "instance terminated; releasing the request".into(),
            },
        )
        .await;
    }
    // The request is about to go: forget what memory holds about it.
    ctx.forget(&req);
    Ok(Action::await_change())
}
