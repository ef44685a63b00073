//! The Talos join: what a `bootstrap.mode: talos` request needs between "the provider says the
//! instance runs" and "its GPUs are schedulable", and the checks that come before any of it.
//!
//! - Preflight: the Talos and Tailscale Secrets are read and checked before any provider is
//!   called, so a missing key is a condition naming it, never a launch that cannot join.
//! - User data: a single-use, ephemeral Tailscale key is minted just before the launch call and
//!   baked into the worker configuration. Only its id is kept (status); the key itself lives in
//!   the user data the provider receives and nowhere else.
//! - Registration: the Node is matched by hostname and the request label within the provider's
//!   registration timeout; it is Initialized once its GPUs are allocatable and its startup
//!   taints are gone, and only then is the request Ready.
//! - Idleness: while Ready, the node's pods say when its GPUs were last used.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;

use crate::bootstrap::delivery::{self, BootAssets, Delivery};
use crate::bootstrap::node::{self as nodes, Initialization};
use crate::bootstrap::secret::SecretString;
use crate::bootstrap::tailscale::{TailscaleClient, TailscaleConfig};
use crate::bootstrap::talos_config::{self, TailscaleEnrolment, Taint, WorkerConfig};
use crate::bootstrap::talos_secrets::TalosSecrets;
use crate::crd::GPUProvider;
use crate::crd::gpurequest::{BootstrapStatus, GPURequest, OnFailure, PendingLaunch, Phase};
use crate::operator::duration;
use crate::plugins::{BootstrapDelivery, Operation, SecretValue, UserData};

use super::super::ReconcileError;
use super::super::clock;
use super::super::context::Ctx;
use super::super::validate::ValidRequest;
use super::{Work, cond};

/// Node label naming the GPURequest a node serves.
pub const REQUEST_LABEL: &str = "tgp.io/request";
/// Node label naming the GPUProvider the node's instance runs on.
pub const PROVIDER_LABEL: &str = "tgp.io/provider";
/// Node label carrying the provider's instance id (added once the node registered).
pub const INSTANCE_LABEL: &str = "tgp.io/instance-id";
/// Node label carrying the canonical GPU type.
pub const GPU_TYPE_LABEL: &str = "tgp.io/gpu-type";

/// Condition: the Node registered with the cluster.
pub const REGISTERED: &str = "Registered";
/// Condition: the Node's GPUs are allocatable and its startup taints are gone.
pub const INITIALIZED: &str = "Initialized";

/// Keys of the Tailscale OAuth Secret.
pub const TAILSCALE_CLIENT_ID_KEY: &str = "client-id";
pub const TAILSCALE_CLIENT_SECRET_KEY: &str = "client-secret";

/// Everything a Talos launch needs, read and checked before any provider is called.
pub(crate) struct JoinInputs {
    pub secrets: TalosSecrets,
    pub tailscale: TailscaleClient,
}

/// Why a Talos request cannot go ahead yet, as a condition reason and a message naming what to
/// fix.
#[derive(Debug)]
pub(crate) struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

fn blocked(reason: &'static str, message: impl Into<String>) -> Blocked {
    Blocked {
        reason,
        message: message.into(),
    }
}

/// Reads the Tailscale OAuth Secret and returns a client (cached while the Secret is unchanged).
pub(crate) async fn tailscale_client(ctx: &Ctx) -> Result<TailscaleClient, Blocked> {
    let b = &ctx.settings.bootstrap;
    let ns = &ctx.namespace;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get_opt(&b.tailscale_secret).await.map_err(|e| {
        blocked(
            "TailscaleSecretUnreadable",
            format!("cannot read Secret {ns}/{}: {e}", b.tailscale_secret),
        )
    })?;
    let Some(secret) = secret else {
        return Err(blocked(
            "TailscaleSecretMissing",
            format!(
                "Secret {ns}/{} (the Tailscale OAuth client, keys {TAILSCALE_CLIENT_ID_KEY} and \
                 {TAILSCALE_CLIENT_SECRET_KEY}) does not exist",
                b.tailscale_secret
            ),
        ));
    };
    let version = secret.resource_version().unwrap_or_default();
    if let Some(c) = ctx.tailscale_client(&version) {
        return Ok(c);
    }
    let values = crate::secret_data::values(&secret);
    let text = |key: &str| -> Result<String, Blocked> {
        let invalid = |why: &str| {
            blocked(
                "TailscaleSecretInvalid",
                format!("Secret {ns}/{}: key {key:?} {why}", b.tailscale_secret),
            )
        };
        let raw = values.get(key).ok_or_else(|| invalid("is missing"))?;
        let s = std::str::from_utf8(raw).map_err(|_| invalid("is not UTF-8 text"))?;
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("is empty"));
        }
        Ok(s.to_string())
    };
    let client_id = text(TAILSCALE_CLIENT_ID_KEY)?;
    let client_secret = text(TAILSCALE_CLIENT_SECRET_KEY)?;
    let api_base = url::Url::parse(&b.tailscale_api).map_err(|e| {
        blocked(
            "BootstrapNotConfigured",
            format!(
                "the Tailscale API URL {:?} is invalid: {e}",
                b.tailscale_api
            ),
        )
    })?;
    let client = TailscaleClient::new(TailscaleConfig {
        api_base,
        tailnet: b.tailnet.clone(),
        client_id,
        client_secret: SecretString::new(client_secret),
    })
    .map_err(|e| blocked("BootstrapNotConfigured", e.to_string()))?;
    ctx.cache_tailscale_client(version, client.clone());
    Ok(client)
}

/// Checks the operator's bootstrap settings and reads both Secrets. Nothing is launched, or
/// even quoted, for a Talos request until this passes.
pub(crate) async fn preflight(ctx: &Ctx) -> Result<JoinInputs, Blocked> {
    let b = &ctx.settings.bootstrap;
    let ns = &ctx.namespace;
    if b.schematic_id.trim().is_empty() {
        return Err(blocked(
            "BootstrapNotConfigured",
            "the operator has no Image Factory schematic (--talos-schematic): Talos workers \
             need an installer image with the NVIDIA and Tailscale extensions; see \
             docs/bootstrap.md",
        ));
    }
    talos_config::installer_image(&b.factory_host, &b.schematic_id, &b.talos_version)
        .map_err(|e| blocked("BootstrapNotConfigured", e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get_opt(&b.talos_secret).await.map_err(|e| {
        blocked(
            "TalosSecretUnreadable",
            format!("cannot read Secret {ns}/{}: {e}", b.talos_secret),
        )
    })?;
    let Some(secret) = secret else {
        return Err(blocked(
            "TalosSecretMissing",
            format!(
                "Secret {ns}/{} (the cluster's Talos secrets) does not exist; see \
                 docs/bootstrap.md for its keys",
                b.talos_secret
            ),
        ));
    };
    let secrets =
        TalosSecrets::from_secret_data(&crate::secret_data::values(&secret)).map_err(|e| {
            blocked(
                "TalosSecretInvalid",
                format!("Secret {ns}/{}: {e}", b.talos_secret),
            )
        })?;
    let tailscale = tailscale_client(ctx).await?;
    Ok(JoinInputs { secrets, tailscale })
}

/// The delivery a provider's platform supports for a Talos join, if any.
pub(crate) fn delivery_for(supported: &[BootstrapDelivery]) -> Option<Delivery> {
    supported.iter().find_map(|d| match d {
        BootstrapDelivery::TalosUserData => Some(Delivery::TalosUserData),
        BootstrapDelivery::CloudInit => Some(Delivery::CloudInit),
        BootstrapDelivery::ContainerOnly => None,
    })
}

fn valid_label_value(v: &str) -> bool {
    crate::bootstrap::validate::label_value(v).is_ok()
}

/// The `tgp.io/request` label value: the request's name, or its UID when the name cannot be a
/// label value.
pub fn request_label_value(req: &GPURequest) -> String {
    let name = req.name_any();
    if valid_label_value(&name) {
        name
    } else {
        req.uid().unwrap_or_default()
    }
}

/// Mints the node's Tailscale key and renders the user data for the launch of `pending`.
/// The key's id is recorded in status before this returns; the key is only in the result,
/// which is sealed: the plugin host fills it into the launch request and redacts it, and each
/// join secret in it, from everything the plugin sees.
pub(super) async fn user_data(
    w: &mut Work<'_>,
    inputs: &JoinInputs,
    pending: &PendingLaunch,
    how: Delivery,
) -> Result<UserData, Blocked> {
    let b = &w.ctx.settings.bootstrap;
    let hostname = pending.instance_name.clone();
    // A key minted for an earlier launch pass that found no instance was never used: drop it.
    if let Some(old) =
        w.st.bootstrap
            .as_ref()
            .and_then(|s| s.tailscale_key_id.clone())
        && let Err(e) = inputs.tailscale.delete_key(&old).await
    {
        tracing::warn!(request = %w.req.name_any(), "deleting unused Tailscale key {old}: {e}");
    }
    let mut labels = w.req.spec.node_labels.clone();
    labels.insert(REQUEST_LABEL.into(), request_label_value(w.req));
    if valid_label_value(&pending.provider) {
        labels.insert(PROVIDER_LABEL.into(), pending.provider.clone());
    }
    if valid_label_value(&pending.gpu_type) {
        labels.insert(GPU_TYPE_LABEL.into(), pending.gpu_type.clone());
    }
    let taints = w
        .req
        .spec
        .node_taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
        })
        .collect();
    let installer =
        talos_config::installer_image(&b.factory_host, &b.schematic_id, &b.talos_version)
            .map_err(|e| blocked("BootstrapNotConfigured", e.to_string()))?;
    let key = inputs
        .tailscale
        .mint_node_key(
            &b.tailscale_tags,
            b.key_expiry,
            &format!("tgp node {hostname}"),
        )
        .await
        .map_err(|e| blocked("TailscaleKeyFailed", format!("minting the node's key: {e}")))?;
    let bs = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
    bs.hostname = Some(hostname.clone());
    bs.tailscale_key_id = Some(key.id.clone());
    bs.delivery = Some(
        match how {
            Delivery::TalosUserData => "TalosUserData",
            Delivery::CloudInit => "CloudInit",
        }
        .into(),
    );
    let join_secrets = [
        SecretValue::new(key.key.expose()),
        SecretValue::new(inputs.secrets.bootstrap_token.as_str()),
        SecretValue::new(inputs.secrets.machine_token.as_str()),
        SecretValue::new(inputs.secrets.cluster_secret.as_str()),
    ];
    let config = WorkerConfig {
        secrets: &inputs.secrets,
        hostname: hostname.clone(),
        labels,
        taints,
        node_ip_subnets: b.node_ip_subnets.clone(),
        installer_image: installer,
        install_disk: b.install_disk.clone(),
        tailscale: TailscaleEnrolment {
            auth_key: key.key,
            hostname,
            tags: b.tailscale_tags.clone(),
            accept_dns: false,
        },
    };
    let talos = talos_config::render(&config)
        .map_err(|e| blocked("BootstrapConfigInvalid", e.to_string()))?;
    let boot = BootAssets {
        factory_url: format!("https://{}", b.factory_host),
        schematic_id: b.schematic_id.clone(),
        talos_version: b.talos_version.clone(),
    };
    let document = delivery::user_data(how, &talos, &boot)
        .map_err(|e| blocked("BootstrapConfigInvalid", e.to_string()))?;
    let format = match how {
        Delivery::TalosUserData => BootstrapDelivery::TalosUserData,
        Delivery::CloudInit => BootstrapDelivery::CloudInit,
    };
    Ok(UserData::new(document, format).with_secrets(join_secrets))
}

/// The registration timeout for nodes on `provider`: its GPUProvider's override, else the
/// operator's setting.
async fn registration_timeout(ctx: &Ctx, provider: &str) -> Duration {
    let default = ctx.settings.bootstrap.registration_timeout;
    let api: Api<GPUProvider> = Api::all(ctx.client.clone());
    match api.get_opt(provider).await {
        Ok(Some(gp)) => gp
            .spec
            .registration_timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(default),
        _ => default,
    }
}

/// Verified running: start waiting for the Node.
pub(super) fn start_join(w: &mut Work<'_>) {
    let now = w.now_text();
    let bs = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
    if bs.hostname.is_none() {
        bs.hostname = w.st.instance_name.clone();
    }
    bs.join_started_at = Some(now);
    let hostname = bs.hostname.clone().unwrap_or_default();
    w.cond(
        REGISTERED,
        false,
        "WaitingForNode",
        format!("waiting for node {hostname} to join over Tailscale and register"),
    );
    w.cond(
        INITIALIZED,
        false,
        "WaitingForNode",
        "the node has not registered yet",
    );
    w.cond(
        cond::READY,
        false,
        "Joining",
        format!("instance running; waiting for node {hostname} to register"),
    );
    w.phase(Phase::Joining);
}

/// Joining: wait for the Node, then for its GPUs; give up after the registration timeout.
pub(super) async fn join_step(
    w: &mut Work<'_>,
    valid: &ValidRequest,
) -> Result<Action, ReconcileError> {
    let poll = w.ctx.settings.verify_interval;
    let provider = w.st.provider.clone().unwrap_or_default();
    let bs = w.st.bootstrap.clone().unwrap_or_default();
    let Some(hostname) = bs.hostname.clone().or_else(|| w.st.instance_name.clone()) else {
        w.st.phase = Phase::Quoting;
        return Ok(Action::requeue(Duration::ZERO));
    };
    let started = clock::parse(bs.join_started_at.as_deref()).unwrap_or(w.now);
    let timeout = registration_timeout(w.ctx, &provider).await;
    let waited = clock::since(started, w.now);
    let api: Api<Node> = Api::all(w.ctx.client.clone());
    let label = request_label_value(w.req);
    let node = api
        .get_opt(&hostname)
        .await?
        .filter(|n| nodes::matches(n, &hostname, (REQUEST_LABEL, &label)));
    let Some(node) = node else {
        if waited >= timeout {
            return registration_failed(
                w,
                "RegistrationTimeout",
                format!(
                    "node {hostname} did not register within {}s of its instance running",
                    timeout.as_secs()
                ),
            )
            .await;
        }
        w.cond(
            REGISTERED,
            false,
            "WaitingForNode",
            format!(
                "waiting for node {hostname} to register ({}s of {}s)",
                waited.as_secs(),
                timeout.as_secs()
            ),
        );
        return Ok(Action::requeue(poll.min(timeout - waited)));
    };
    if bs.registered_at.is_none() {
        let now = w.now_text();
        let b = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
        b.registered_at = Some(now);
        w.st.node_name = Some(hostname.clone());
        w.cond(
            REGISTERED,
            true,
            "NodeRegistered",
            format!("node {hostname} registered"),
        );
        w.note(
            false,
            "NodeRegistered",
            format!("node {hostname} registered with the cluster"),
        );
        // Record the node's tailnet device now, so teardown removes exactly this one.
        match tailscale_client(w.ctx).await {
            Ok(client) => match client.find_device(&hostname).await {
                Ok(Some(device)) => {
                    let b = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
                    b.tailscale_device_id = Some(device.id.clone());
                    b.tailnet_ip = device.addresses.first().cloned();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = %hostname, "looking up the node's Tailscale device: {e}")
                }
            },
            Err(b) => {
                tracing::warn!(node = %hostname, "looking up the node's Tailscale device: {}", b.message)
            }
        }
        if let Some(id) = w.st.instance_id.clone().filter(|id| valid_label_value(id)) {
            let patch = serde_json::json!({"metadata": {"labels": {INSTANCE_LABEL: id}}});
            if let Err(e) = api
                .patch(&hostname, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(node = %hostname, "labelling the node with its instance id: {e}");
            }
        }
    }
    match nodes::initialization(&node, valid.gpu.count) {
        Initialization::Ready => {
            let now = w.now_text();
            let b = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
            b.initialized_at = Some(now);
            w.cond(
                INITIALIZED,
                true,
                "GPUsAllocatable",
                format!(
                    "node {hostname} has {} allocatable {} and no startup taints",
                    valid.gpu.count,
                    nodes::GPU_RESOURCE
                ),
            );
            let id = w.st.instance_id.clone().unwrap_or_default();
            super::became_ready(
                w,
                valid,
                "NodeReady",
                format!("node {hostname} (instance {id} on {provider}) is ready for GPU work"),
            );
            Ok(Action::requeue(super::next_health_check(w, valid)))
        }
        Initialization::Waiting(why) => {
            if waited >= timeout {
                return registration_failed(
                    w,
                    "InitializationTimeout",
                    format!(
                        "node {hostname} registered but was not initialized within {}s: {why}",
                        timeout.as_secs()
                    ),
                )
                .await;
            }
            w.cond(INITIALIZED, false, "WaitingForGPUs", why);
            Ok(Action::requeue(poll.min(timeout - waited)))
        }
    }
}

/// The node never joined (or never got its GPUs): remove what exists of it, terminate the
/// instance, and fail over or fail as `spec.onFailure` says.
async fn registration_failed(
    w: &mut Work<'_>,
    reason: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    let provider = w.st.provider.clone().unwrap_or_default();
    let id = w.st.instance_id.clone().unwrap_or_default();
    // The node and the tailnet device go first, exactly as in any teardown.
    let mut st = w.st.clone();
    let mut notes = Vec::new();
    let _ = super::teardown::node_and_tailnet(w.ctx, w.req, &mut st, &mut notes, true).await;
    w.st = st;
    w.notes.extend(notes);
    let cleanup = match w.slot(&provider) {
        Some(slot) => match slot
            .call(Operation::Terminate, slot.plugin.terminate(&id))
            .await
        {
            Ok(o) => format!("instance {id} terminated ({o:?})"),
            Err(e) => {
                format!("terminating instance {id} failed ({e}); garbage collection will retry")
            }
        },
        None => {
            format!("provider {provider} is not loaded; garbage collection will terminate {id}")
        }
    };
    let offer = w.st.offer.clone();
    w.attempt(
        &provider,
        offer.as_deref(),
        None,
        "Failed",
        reason,
        format!("{message}; {cleanup}"),
        Some(&id),
    );
    w.cond(REGISTERED, false, reason, message.clone());
    super::accrue(w);
    w.clear_instance();
    w.st.node_name = None;
    w.st.bootstrap = None;
    if w.req.spec.on_failure == OnFailure::Replace {
        w.note(
            true,
            reason,
            format!("{message}; {cleanup}; trying the next offer"),
        );
        w.cond(
            cond::READY,
            false,
            reason,
            format!("{message}; {cleanup}; trying the next offer"),
        );
        w.st.phase = Phase::Quoting;
        return Ok(Action::requeue(Duration::ZERO));
    }
    w.note(true, reason, format!("{message}; {cleanup}"));
    w.cond(cond::READY, false, reason, format!("{message}; {cleanup}"));
    w.st.phase = Phase::Failed;
    Ok(Action::await_change())
}

/// While Ready: when the node's GPUs were last used, and whether idleTimeout has passed.
/// Returns the idle message when the request should end.
pub(super) async fn idle_check(
    w: &mut Work<'_>,
    idle_timeout: Duration,
) -> Result<Option<String>, ReconcileError> {
    let Some(node) = w.st.node_name.clone() else {
        return Ok(None);
    };
    let api: Api<Pod> = Api::all(w.ctx.client.clone());
    let pods = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let used = nodes::gpu_use(&pods.items, &node);
    let bs = w.st.bootstrap.get_or_insert_with(BootstrapStatus::default);
    let mut last = clock::parse(bs.gpu_last_used_at.as_deref());
    if used.in_use || bs.gpu_in_use {
        // In use now, or it was at the last check and has ended since: the end lies between
        // the two checks, so count from now rather than risk ending a job early.
        last = Some(w.now);
    } else if let Some(finished) = used.last_finished {
        last = Some(last.map_or(finished, |l| l.max(finished)));
    }
    bs.gpu_in_use = used.in_use;
    if let Some(l) = last {
        bs.gpu_last_used_at = Some(clock::text(l));
    }
    if used.in_use {
        return Ok(None);
    }
    let since = last
        .or_else(|| clock::parse(w.st.ready_at.as_deref()))
        .unwrap_or(w.now);
    let idle = clock::since(since, w.now);
    // Both ends are stored to the second, so the real gap may be up to a second shorter than
    // `idle`: only a gap that is surely the full timeout ends the request.
    if idle >= idle_timeout + clock::PRECISION {
        let what = if last.is_some() {
            format!(
                "no pod has used the GPUs of node {node} since {}",
                clock::text(since)
            )
        } else {
            format!("no pod has used the GPUs of node {node} since it became ready")
        };
        return Ok(Some(format!(
            "{what} (idleTimeout {}s); terminating the instance",
            idle_timeout.as_secs()
        )));
    }
    Ok(None)
}
