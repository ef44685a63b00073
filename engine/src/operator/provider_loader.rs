//! The GPUProvider controller: turns each GPUProvider resource into a loaded plugin in the
//! registry, swaps it when the resource names another module, and reports what happened in its
//! status.
//!
//! The load pipeline runs here, off the request path: resolve `spec.module`
//! ([`ModuleRequest::from_spec`]), get the bytes (from a kept revision when its digest is
//! wanted again, else from the on-disk module store when an earlier load had them, else fetched
//! under a deadline and a size cap), verify the digest, then hand
//! them to the plugin host, which checks the contract version and the hosts the plugin
//! declares against the grants, compiles (through the compile cache) and validates with
//! `info()`. Only then is the new plugin swapped in ([`ProviderRegistry::activate`]); calls
//! already running finish on the old one.
//!
//! Credentials are read from the referenced Secret and handed to the host as named secrets; the
//! plugin only ever sees placeholders. A provider that fails to load keeps its previous plugin
//! (if any) serving, with condition Loaded=False and a reason a person can act on.
//!
//! [`ProviderRegistry::activate`]: super::registry::ProviderRegistry::activate

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;

use crate::crd::conditions;
use crate::crd::gpuprovider::{GPUProvider, GPUProviderStatus, ModuleRevision, ModuleSource};
use crate::modules::{
    FetchError, FetchLimits, Fetcher, MODULE_STORE_MAX_BYTES, ModuleDigest, ModuleRequest,
    ModuleStore,
};
use crate::money::Usd;
use crate::plugins::PluginHost;
use crate::plugins::{Balance, Grants, Limits, LoadError, Operation, SecretValue};

use super::ReconcileError;
use super::clock;
use super::context::Ctx;
use super::lifecycle::Note;
use super::registry::{ProviderRegistry, REVISIONS_KEPT, Revision};
use super::settings::Settings;

/// What the active revision was loaded from and with, to skip reloading when nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoadedKey {
    digest: String,
    source: String,
    grants: u64,
    secret_version: Option<String>,
}

/// Remembers what each provider was loaded from, and holds the module fetcher.
#[derive(Default)]
pub struct LoaderState {
    loaded: Mutex<HashMap<String, LoadedKey>>,
    fetcher: OnceLock<Result<Fetcher, FetchError>>,
    store: OnceLock<Option<ModuleStore>>,
}

impl LoaderState {
    /// The fetcher, built on first use with the CA bundle of `settings` (`--module-ca-file`).
    fn fetcher(&self, settings: &Settings) -> Result<&Fetcher, LoadFailure> {
        self.fetcher
            .get_or_init(|| {
                Fetcher::with_ca_bundle(Duration::from_secs(5), settings.module_ca.as_ref())
            })
            .as_ref()
            .map_err(|e| fail(e.reason(), e.to_string()))
    }

    /// The module store, in `modules/` of the host's compile cache; none without a cache
    /// directory, or when it cannot be created (logged: loads then fetch as before).
    fn store(&self, host: &PluginHost) -> Option<&ModuleStore> {
        self.store
            .get_or_init(|| {
                let dir = host.cache_dir()?.join("modules");
                ModuleStore::open(&dir, MODULE_STORE_MAX_BYTES)
                    .inspect_err(|e| {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the module store; modules are fetched at every start");
                    })
                    .ok()
            })
            .as_ref()
    }
}

/// The stored module with `digest`, read (and hashed again) off the async threads.
async fn stored_module(store: Option<&ModuleStore>, digest: &ModuleDigest) -> Option<Vec<u8>> {
    let (store, digest) = (store?.clone(), digest.clone());
    tokio::task::spawn_blocking(move || store.get(&digest))
        .await
        .ok()
        .flatten()
}

/// Why a provider could not be loaded, with the reason word for its condition.
#[derive(Debug)]
struct LoadFailure {
    reason: &'static str,
    message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> LoadFailure {
    LoadFailure {
        reason,
        message: message.into(),
    }
}

impl From<FetchError> for LoadFailure {
    fn from(e: FetchError) -> Self {
        fail(e.reason(), e.to_string())
    }
}

impl From<LoadError> for LoadFailure {
    fn from(e: LoadError) -> Self {
        fail(e.reason(), e.to_string())
    }
}

async fn read_secrets(
    ctx: &Ctx,
    gp: &GPUProvider,
) -> Result<(BTreeMap<String, SecretValue>, Option<String>), LoadFailure> {
    let Some(creds) = &gp.spec.credentials else {
        return Ok((BTreeMap::new(), None));
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secret = match api.get_opt(&creds.secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(fail(
                "SecretNotFound",
                format!(
                    "spec.credentials.secretName: Secret {}/{} does not exist",
                    ctx.namespace, creds.secret_name
                ),
            ));
        }
        Err(e) => {
            return Err(fail(
                "SecretUnreadable",
                format!(
                    "cannot read Secret {}/{}: {e}",
                    ctx.namespace, creds.secret_name
                ),
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (name, key) in &creds.keys {
        let value = match crate::secret_data::value(&secret, key) {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| {
                fail(
                    "SecretKeyInvalid",
                    format!(
                        "spec.credentials.keys.{name}: key {key} of Secret {} is not UTF-8",
                        creds.secret_name
                    ),
                )
            })?,
            None => {
                return Err(fail(
                    "SecretKeyMissing",
                    format!(
                        "spec.credentials.keys.{name}: Secret {}/{} has no key {key}",
                        ctx.namespace, creds.secret_name
                    ),
                ));
            }
        };
        out.insert(
            name.clone(),
            SecretValue::from(value.trim_end_matches('\n').to_string()),
        );
    }
    Ok((out, secret.metadata.resource_version.clone()))
}

/// The fetch bounds `spec.module` asks for (defaults: 32 MiB, 30 s).
fn fetch_limits(m: &ModuleSource) -> FetchLimits {
    let defaults = FetchLimits::default();
    let timeout = m
        .timeout_seconds
        .map(|s| Duration::from_secs(s.clamp(1, 600)))
        .unwrap_or(defaults.timeout);
    FetchLimits {
        max_bytes: m
            .max_size_mib
            .map(|mib| mib.clamp(1, 512) * 1024 * 1024)
            .unwrap_or(defaults.max_bytes),
        timeout,
        connect_timeout: defaults.connect_timeout.min(timeout),
    }
}

/// A fingerprint of everything granted to the plugin but its secret values (whose Secret's
/// resourceVersion is compared instead).
fn grants_fingerprint(gp: &GPUProvider) -> u64 {
    let granted = serde_json::json!({
        "allowedHosts": gp.spec.allowed_hosts,
        "config": gp.spec.config,
        "limits": gp.spec.limits,
        "credentials": gp.spec.credentials,
    });
    let mut hasher = DefaultHasher::new();
    granted.to_string().hash(&mut hasher);
    hasher.finish()
}

fn limits_of(gp: &GPUProvider) -> Limits {
    let mut l = Limits::default();
    if let Some(s) = gp.spec.limits.timeout_seconds {
        l.call_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(m) = gp.spec.limits.memory_mib {
        l.memory_bytes = m.max(8) * 1024 * 1024;
    }
    if let Some(c) = gp.spec.limits.concurrency {
        l.max_concurrency = c.max(1);
    }
    l
}

async fn write_status(
    ctx: &Ctx,
    gp: &GPUProvider,
    status: &GPUProviderStatus,
) -> Result<(), ReconcileError> {
    let api: Api<GPUProvider> = Api::all(ctx.client.clone());
    let mut body = serde_json::to_value(status).unwrap_or_default();
    // A merge patch leaves absent keys alone: clear what no longer applies explicitly.
    if let Some(fields) = body.as_object_mut() {
        for (key, absent) in [
            ("activeRevision", status.active_revision.is_none()),
            ("lastError", status.last_error.is_none()),
        ] {
            if absent {
                fields.insert(key.to_string(), serde_json::Value::Null);
            }
        }
    }
    let patch = serde_json::json!({ "status": body });
    api.patch_status(
        &gp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Loads the module `gp` names unless the active revision already is that module with the
/// same grants. Returns whether a new revision was swapped in.
async fn load(
    gp: &GPUProvider,
    ctx: &Ctx,
    state: &LoaderState,
    name: &str,
    now: &str,
) -> Result<bool, LoadFailure> {
    let started = Instant::now();
    let request = ModuleRequest::from_spec(&gp.spec.module, &ctx.namespace)?;
    let limits = fetch_limits(&gp.spec.module);
    let fetcher = state.fetcher(&ctx.settings)?;
    // A path without a digest is read on every pass, to notice a changed file.
    let mut fetched = None;
    let digest = match &request.digest {
        Some(d) => d.clone(),
        None => {
            let f = fetcher.fetch(&request, &limits, Some(&ctx.client)).await?;
            let d = f.digest.clone();
            fetched = Some(f.bytes);
            d
        }
    };
    let (secrets, secret_version) = read_secrets(ctx, gp).await?;
    let key = LoadedKey {
        digest: digest.to_string(),
        source: request.location.describe(),
        grants: grants_fingerprint(gp),
        secret_version,
    };
    let unchanged = state
        .loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        == Some(&key);
    if unchanged && ctx.registry.get(name).is_some() {
        ctx.registry.set_priority(name, gp.spec.priority);
        return Ok(false);
    }
    let bytes = match fetched {
        Some(bytes) => bytes,
        None => match ctx.registry.kept_module(name, &key.digest) {
            // A rollback (or a grants change): the verified bytes of a kept revision.
            Some(kept) if digest.matches(&kept) => {
                tracing::info!(provider = %name, digest = %key.digest, "module taken from a kept revision");
                kept.to_vec()
            }
            // After a restart: the verified bytes of an earlier load, whatever the source does.
            _ => match stored_module(state.store(&ctx.host), &digest).await {
                Some(bytes) => {
                    tracing::info!(provider = %name, digest = %key.digest, "module taken from the module store");
                    bytes
                }
                None => {
                    fetcher
                        .fetch(&request, &limits, Some(&ctx.client))
                        .await?
                        .bytes
                }
            },
        },
    };
    let module: Arc<[u8]> = Arc::from(bytes.as_slice());
    let auth = match gp.spec.credentials.as_ref().and_then(|c| c.auth.as_ref()) {
        None => None,
        Some(spec) => Some(spec.to_config().map_err(|(field, reason)| {
            let field = if field.is_empty() {
                "spec.credentials.auth".to_string()
            } else {
                format!("spec.credentials.auth.{field}")
            };
            fail("InvalidAuth", format!("{field}: {reason}"))
        })?),
    };
    let grants = Grants {
        provider_name: name.to_string(),
        allowed_hosts: gp.spec.allowed_hosts.clone(),
        secrets,
        auth,
        config: gp.spec.config.clone(),
        limits: limits_of(gp),
    };
    let plugin = ctx.host.load(bytes, grants).await?;
    let revision = Revision {
        digest: key.digest.clone(),
        plugin_name: plugin.info().name.clone(),
        version: plugin.info().version.clone(),
        contract_version: plugin.contract_version().to_string(),
        source: key.source.clone(),
        loaded_at: now.to_string(),
        from_cache: plugin.loaded_from_cache(),
        load_time: started.elapsed(),
        module: Some(module.clone()),
    };
    tracing::info!(
        provider = %name,
        plugin = %revision.plugin_name,
        version = %revision.version,
        digest = %revision.digest,
        source = %revision.source,
        from_cache = revision.from_cache,
        load_ms = revision.load_time.as_millis() as u64,
        "provider revision active"
    );
    ctx.registry
        .activate(name, gp.spec.priority, plugin, revision);
    if let Some(store) = state.store(&ctx.host).cloned() {
        // Off the async threads; a failure is logged there and costs a fetch after a restart.
        let _ = tokio::task::spawn_blocking(move || store.put(&digest, &module)).await;
    }
    state
        .loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), key);
    Ok(true)
}

fn status_revision(r: &Revision) -> ModuleRevision {
    ModuleRevision {
        digest: r.digest.clone(),
        plugin_name: r.plugin_name.clone(),
        version: r.version.clone(),
        loaded_at: r.loaded_at.clone(),
        source: r.source.clone(),
        from_cache: r.from_cache,
        load_millis: r.load_time.as_millis() as u64,
    }
}

/// The active revision and the history as this process knows them, followed by older entries
/// of the stored history (kept across operator restarts), at most [`REVISIONS_KEPT`].
fn record_revisions(status: &mut GPUProviderStatus, registry: &ProviderRegistry, name: &str) {
    status.active_revision = registry.active_revision(name).map(|r| status_revision(&r));
    let mut merged: Vec<ModuleRevision> = registry
        .revisions(name)
        .iter()
        .map(status_revision)
        .collect();
    for old in &status.revisions {
        if !merged.iter().any(|r| r.digest == old.digest) {
            merged.push(old.clone());
        }
    }
    merged.truncate(REVISIONS_KEPT);
    status.revisions = merged;
}

/// Reconciles one GPUProvider.
pub async fn reconcile(
    gp: Arc<GPUProvider>,
    ctx: Arc<Ctx>,
    state: Arc<LoaderState>,
) -> Result<Action, ReconcileError> {
    let name = gp.name_any();
    let now = clock::text(clock::now());
    let generation = gp.metadata.generation;
    let mut status = gp.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    if gp.metadata.deletion_timestamp.is_some() || !gp.spec.enabled {
        ctx.registry.remove(&name);
        state
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        status.active_revision = None;
        conditions::set(
            &mut status.conditions,
            "Loaded",
            false,
            "Disabled",
            "spec.enabled is false; no request will use this provider",
            &now,
            generation,
        );
        if gp.metadata.deletion_timestamp.is_none() {
            report(
                &ctx,
                &gp,
                loaded_condition(gp.status.as_ref()),
                &status,
                false,
            )
            .await;
            write_status(&ctx, &gp, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let before = loaded_condition(gp.status.as_ref());
    let loaded = load(&gp, &ctx, &state, &name, &now).await;
    record_revisions(&mut status, &ctx.registry, &name);
    let swapped = matches!(loaded, Ok(true));
    match loaded {
        Ok(_) => {
            if let (Some(slot), Some(active)) =
                (ctx.registry.get(&name), ctx.registry.active_revision(&name))
            {
                let info = slot.plugin.info();
                status.plugin_name = Some(info.name.clone());
                status.version = Some(info.version.clone());
                status.digest = Some(active.digest.clone());
                status.contract_version = Some(slot.plugin.contract_version().to_string());
                let mut caps = Vec::new();
                if info.capabilities.spot {
                    caps.push("spot".to_string());
                }
                if info.capabilities.balance {
                    caps.push("balance".to_string());
                }
                caps.extend(
                    info.capabilities
                        .bootstrap
                        .iter()
                        .map(|d| d.name().to_string()),
                );
                status.capabilities = caps;
                status.loaded_at = Some(active.loaded_at.clone());
                status.last_error = None;
                conditions::set(
                    &mut status.conditions,
                    "Loaded",
                    true,
                    "Loaded",
                    format!(
                        "{} {} ({}) from {} (contract {}); {} in {} ms",
                        info.name,
                        info.version,
                        active.digest,
                        active.source,
                        slot.plugin.contract_version(),
                        if active.from_cache {
                            "loaded from the compile cache"
                        } else {
                            "compiled"
                        },
                        active.load_time.as_millis()
                    ),
                    &now,
                    generation,
                );
                if info.capabilities.balance {
                    match slot.call(Operation::Balance, slot.plugin.balance()).await {
                        Ok(Balance::Amount(a)) => {
                            status.last_balance = Some(Usd(a.available).to_string())
                        }
                        Ok(Balance::Unsupported) => status.last_balance = None,
                        Err(e) => status.last_error = Some(format!("balance: {e}")),
                    }
                }
                match slot.gate.unhealthy() {
                    Some(why) => conditions::set(
                        &mut status.conditions,
                        "Healthy",
                        false,
                        "AuthFailed",
                        format!("the provider rejected the credentials: {why}; fix the Secret"),
                        &now,
                        generation,
                    ),
                    None => conditions::set(
                        &mut status.conditions,
                        "Healthy",
                        true,
                        "Healthy",
                        "calls succeed",
                        &now,
                        generation,
                    ),
                };
            }
        }
        Err(f) => {
            tracing::warn!(provider = %name, reason = f.reason, "{}", f.message);
            let message = match ctx.registry.active_revision(&name) {
                Some(active) => format!(
                    "{}; revision {} ({} {}) keeps serving",
                    f.message, active.digest, active.plugin_name, active.version
                ),
                None => f.message.clone(),
            };
            conditions::set(
                &mut status.conditions,
                "Loaded",
                false,
                f.reason,
                message,
                &now,
                generation,
            );
            status.last_error = Some(f.message);
        }
    }
    report(&ctx, &gp, before, &status, swapped).await;
    write_status(&ctx, &gp, &status).await?;
    Ok(Action::requeue(ctx.settings.health_interval))
}

/// The `Loaded` condition's status, reason and message.
fn loaded_condition(status: Option<&GPUProviderStatus>) -> Option<(String, String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == "Loaded")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Tells people what changed, once: an event and a metric when a module was swapped in, and
/// when a load was refused or the provider disabled (only when the `Loaded` condition changed,
/// so a refused spec retried on every pass is reported once).
async fn report(
    ctx: &Ctx,
    gp: &GPUProvider,
    before: Option<(String, String, String)>,
    status: &GPUProviderStatus,
    swapped: bool,
) {
    let Some(now) = loaded_condition(Some(status)) else {
        return;
    };
    let name = gp.name_any();
    let (state, reason, message) = now.clone();
    let note = if swapped {
        ctx.metrics
            .module_swaps
            .get_or_create(&vec![("provider".to_string(), name.clone())])
            .inc();
        tracing::info!(provider = %name, "module swapped in: {message}");
        Note::new(false, "ModuleLoaded", message)
    } else if before.as_ref() == Some(&now) || state == "True" {
        return;
    } else if reason == "Disabled" {
        Note::new(false, "Disabled", message)
    } else {
        ctx.metrics
            .module_refusals
            .get_or_create(&vec![
                ("provider".to_string(), name.clone()),
                ("reason".to_string(), reason.clone()),
            ])
            .inc();
        // The refusal itself is logged at warn where it happens (above).
        Note::new(true, &reason, message)
    };
    // One action per spec generation: a later swap or refusal is an event of its own, with its
    // own note, rather than a repeat of the first.
    let action = format!(
        "LoadGeneration{}",
        gp.metadata.generation.unwrap_or_default()
    );
    ctx.publish_as(gp, note, &action).await;
}
