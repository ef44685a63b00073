//! The GPUProvider controller: turns each GPUProvider resource into a loaded plugin in the
//! registry, and reports what happened in its status.
//!
//! Credentials are read from the referenced Secret and handed to the host as named secrets; the
//! plugin only ever sees placeholders. A provider that fails to load keeps its previous plugin
//! (if any) serving, with condition Loaded=False and a reason a person can act on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use sha2::{Digest, Sha256};

use crate::crd::conditions;
use crate::crd::gpuprovider::{GPUProvider, GPUProviderStatus};
use crate::money::Usd;
use crate::plugins::{Balance, Grants, Limits, Operation, SecretValue};

use super::ReconcileError;
use super::clock;
use super::context::Ctx;

/// What was loaded for a provider, to skip reloading when nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoadedKey {
    generation: Option<i64>,
    digest: String,
    secret_version: Option<String>,
}

/// Remembers what each provider was loaded from.
#[derive(Default)]
pub struct LoaderState {
    loaded: Mutex<HashMap<String, LoadedKey>>,
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
    let data = secret.data.clone().unwrap_or_default();
    let string_data = secret.string_data.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for (name, key) in &creds.keys {
        let value = match (data.get(key), string_data.get(key)) {
            (Some(bytes), _) => String::from_utf8(bytes.0.clone()).map_err(|_| {
                fail(
                    "SecretKeyInvalid",
                    format!(
                        "spec.credentials.keys.{name}: key {key} of Secret {} is not UTF-8",
                        creds.secret_name
                    ),
                )
            })?,
            (None, Some(s)) => s.clone(),
            (None, None) => {
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

fn read_module(gp: &GPUProvider) -> Result<(Vec<u8>, String), LoadFailure> {
    let Some(path) = gp.spec.module.path.as_deref() else {
        return Err(fail(
            "NoModuleSource",
            "spec.module: set path to the plugin's .wasm file",
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| {
        fail(
            "ModuleUnreadable",
            format!("spec.module.path: cannot read {path}: {e}"),
        )
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = gp.spec.module.digest.as_deref() {
        let expected_hex = expected.strip_prefix("sha256:").unwrap_or(expected);
        if !expected_hex.eq_ignore_ascii_case(&digest) {
            return Err(fail(
                "DigestMismatch",
                format!(
                    "spec.module.digest: expected sha256:{expected_hex}, the module is sha256:{digest}; refusing it"
                ),
            ));
        }
    }
    Ok((bytes, digest))
}

fn limits(gp: &GPUProvider) -> Limits {
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
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &gp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
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
            write_status(&ctx, &gp, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let loaded = async {
        let (bytes, digest) = read_module(&gp)?;
        let (secrets, secret_version) = read_secrets(&ctx, &gp).await?;
        let key = LoadedKey {
            generation,
            digest: digest.clone(),
            secret_version,
        };
        let unchanged = state
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            == Some(&key);
        if unchanged && ctx.registry.get(&name).is_some() {
            return Ok(false);
        }
        let grants = Grants {
            provider_name: name.clone(),
            allowed_hosts: gp.spec.allowed_hosts.clone(),
            secrets,
            config: gp.spec.config.clone(),
            limits: limits(&gp),
        };
        let plugin = ctx
            .host
            .load(bytes, grants)
            .await
            .map_err(|e| fail("LoadFailed", e.to_string()))?;
        ctx.registry.upsert(&name, gp.spec.priority, plugin);
        state
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), key);
        Ok::<bool, LoadFailure>(true)
    }
    .await;
    match loaded {
        Ok(fresh) => {
            if let Some(slot) = ctx.registry.get(&name) {
                let info = slot.plugin.info();
                status.plugin_name = Some(info.name.clone());
                status.version = Some(info.version.clone());
                status.digest = Some(format!("sha256:{}", slot.plugin.digest()));
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
                if fresh {
                    status.loaded_at = Some(now.clone());
                }
                status.last_error = None;
                conditions::set(
                    &mut status.conditions,
                    "Loaded",
                    true,
                    "Loaded",
                    format!(
                        "{} {} (contract {})",
                        info.name,
                        info.version,
                        slot.plugin.contract_version()
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
            let serving = ctx.registry.get(&name).is_some();
            let message = if serving {
                format!("{}; the previously loaded plugin keeps serving", f.message)
            } else {
                f.message.clone()
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
    write_status(&ctx, &gp, &status).await?;
    Ok(Action::requeue(ctx.settings.health_interval))
}
