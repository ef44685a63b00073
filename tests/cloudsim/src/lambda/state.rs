//! The simulated Lambda Cloud account: capacity per (type, region), SSH keys, instances and the
//! internal bill.
//!
//! Instances follow the shared [`Timeline`]: `booting` (no `ip`) until the boot delay has passed,
//! then `active`; a terminate shows `terminating` for the stop delay, then `terminated` for the
//! retention period, then the instance is gone (404). Billing runs while `active`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::api::{ApiError, LaunchRequest, region_json};
use super::config::{LambdaConfig, LambdaTypeSpec, SshKeySpec};
use crate::clock::{SimClock, SimTime};
use crate::faults::FaultEngine;
use crate::lifecycle::{Phase, Timeline, Wallet};

/// The simulator's full view of an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimLambdaInstance {
    pub id: String,
    pub name: Option<String>,
    pub instance_type: String,
    pub region: String,
    /// The API status (`terminated` also once past retention).
    pub status: String,
    pub ip: Ipv4Addr,
    pub tags: Vec<(String, String)>,
    pub user_data: Option<String>,
    pub ssh_key_name: String,
    pub vanished: bool,
    pub billed_micro_usd: u64,
}

#[derive(Debug, Clone)]
struct InstanceRec {
    id: String,
    req: LaunchRequest,
    spec: LambdaTypeSpec,
    ip: Ipv4Addr,
    private_ip: Ipv4Addr,
    timeline: Timeline,
}

/// Outcome of a launch that passed the checks.
#[derive(Debug, Clone)]
pub enum Launched {
    Created(Vec<String>),
    /// Silent failure: ids that never exist.
    Ghost(Vec<String>),
    /// Created, answer lost (500).
    Lost,
}

/// Everything one simulated Lambda account knows.
#[derive(Debug)]
pub struct LambdaState {
    types: Vec<LambdaTypeSpec>,
    /// Base capacity per (type, region): free = base - held.
    base: BTreeMap<(String, String), u32>,
    ssh_keys: Vec<SshKeySpec>,
    instances: Vec<InstanceRec>,
    next_seq: u64,
    wallet: Wallet,
    boot_delay: Duration,
    stop_delay: Duration,
    retention: Duration,
    quota: u32,
}

impl LambdaState {
    pub fn new(cfg: &LambdaConfig) -> Self {
        let base = cfg
            .instance_types
            .iter()
            .flat_map(|t| {
                t.capacity
                    .iter()
                    .map(|(r, n)| ((t.name.clone(), r.clone()), *n))
            })
            .collect();
        Self {
            types: cfg.instance_types.clone(),
            base,
            ssh_keys: cfg.ssh_keys.clone(),
            instances: Vec::new(),
            next_seq: 1,
            wallet: Wallet::new(cfg.balance_micro_usd),
            boot_delay: cfg.boot_delay,
            stop_delay: cfg.stop_delay,
            retention: cfg.terminated_retention,
            quota: cfg.instance_quota,
        }
    }

    fn held(&self, ty: &str, region: &str, now: SimTime) -> u32 {
        let n = self
            .instances
            .iter()
            .filter(|i| {
                i.spec.name == ty && i.req.region_name == region && i.timeline.holds_capacity(now)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn free(&self, ty: &str, region: &str, now: SimTime) -> u32 {
        self.base
            .get(&(ty.to_owned(), region.to_owned()))
            .copied()
            .unwrap_or(0)
            .saturating_sub(self.held(ty, region, now))
    }

    /// Sets the capacity of `"{type}@{region}"` now; false for an unknown type.
    pub fn set_capacity(&mut self, ty: &str, region: &str, n: u32, now: SimTime) -> bool {
        if !self.types.iter().any(|t| t.name == ty) {
            return false;
        }
        let held = self.held(ty, region, now);
        self.base
            .insert((ty.to_owned(), region.to_owned()), n.saturating_add(held));
        true
    }

    fn type_json(t: &LambdaTypeSpec) -> Value {
        json!({
            "name": t.name, "description": t.description, "gpu_description": t.gpu_description,
            "price_cents_per_hour": t.price_cents_per_hour,
            "specs": {"vcpus": t.vcpus, "memory_gib": t.memory_gib, "storage_gib": t.storage_gib, "gpus": t.gpus},
        })
    }

    /// `GET /instance-types` data: a map keyed by type name.
    pub fn instance_types(&self, now: SimTime) -> Value {
        let mut m = serde_json::Map::new();
        for t in &self.types {
            let regions: Vec<Value> = self
                .base
                .keys()
                .filter(|(ty, r)| *ty == t.name && self.free(ty, r, now) > 0)
                .map(|(_, r)| region_json(r))
                .collect();
            m.insert(t.name.clone(), json!({"instance_type": Self::type_json(t), "regions_with_capacity_available": regions}));
        }
        Value::Object(m)
    }

    /// `GET /ssh-keys` data.
    pub fn ssh_keys(&self) -> Value {
        json!(
            self.ssh_keys
                .iter()
                .map(|k| json!({"id": k.id, "name": k.name, "public_key": k.public_key}))
                .collect::<Vec<_>>()
        )
    }

    fn timelines(&self) -> impl Iterator<Item = &Timeline> {
        self.instances.iter().map(|i| &i.timeline)
    }

    pub fn balance(&self, now: SimTime) -> u64 {
        self.wallet.balance(now, self.timelines())
    }

    pub fn set_balance(&mut self, micro: u64, now: SimTime) {
        self.wallet.set(micro, now);
    }

    /// Runs the launch checks and launches `quantity` instances.
    pub fn launch(
        &mut self,
        req: LaunchRequest,
        clock: &SimClock,
        faults: &FaultEngine,
    ) -> Result<Launched, ApiError> {
        let now = clock.now();
        if !self.ssh_keys.iter().any(|k| k.name == req.ssh_key_name) {
            return Err(ApiError::not_found("Specified SSH key does not exist."));
        }
        let spec = self
            .types
            .iter()
            .find(|t| t.name == req.instance_type_name)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Specified instance type does not exist."))?;
        if !req.file_system_names.is_empty() {
            return Err(ApiError::not_found("Specified file system does not exist."));
        }
        if faults.take(|f| &mut f.insufficient_balance) {
            return Err(ApiError::account_inactive());
        }
        if faults.take(|f| &mut f.capacity_exhausted)
            || self.free(&spec.name, &req.region_name, now) < req.quantity
        {
            return Err(ApiError::insufficient_capacity());
        }
        let live = self
            .instances
            .iter()
            .filter(|i| i.timeline.holds_capacity(now))
            .count();
        if live + req.quantity as usize > self.quota as usize {
            return Err(ApiError::quota_exceeded());
        }
        let price = spec.price_cents_per_hour * 10_000;
        if self.balance(now) < price.saturating_mul(u64::from(req.quantity)) {
            return Err(ApiError::account_inactive());
        }
        let ghost = faults.take(|f| &mut f.silent_launch_failure);
        let vanish = faults.vanish_after_running();
        let mut ids = Vec::new();
        for _ in 0..req.quantity {
            let seq = self.next_seq;
            self.next_seq += 1;
            let id = format!(
                "{:016x}{:016x}",
                seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                seq
            );
            ids.push(id.clone());
            if ghost {
                continue;
            }
            let mut timeline =
                Timeline::new(now, Duration::ZERO, self.boot_delay, self.stop_delay, price);
            timeline.vanish_after_running = vanish;
            let n = u8::try_from((seq - 1) % 254 + 1).unwrap_or(1);
            self.instances.push(InstanceRec {
                id,
                req: req.clone(),
                spec: spec.clone(),
                ip: Ipv4Addr::new(198, 51, 100, n),
                private_ip: Ipv4Addr::new(10, 19, 0, n),
                timeline,
            });
        }
        if ghost {
            return Ok(Launched::Ghost(ids));
        }
        if faults.take(|f| &mut f.lost_launch_response) {
            return Ok(Launched::Lost);
        }
        Ok(Launched::Created(ids))
    }

    fn status(&self, i: &InstanceRec, now: SimTime) -> &'static str {
        match i.timeline.phase(now) {
            Phase::Pending | Phase::Booting => "booting",
            Phase::Running => "active",
            Phase::Stopping => "terminating",
            Phase::Ended => "terminated",
        }
    }

    fn visible(&self, i: &InstanceRec, now: SimTime) -> bool {
        !i.timeline.gone(now)
            && i.timeline
                .ended_at(now)
                .is_none_or(|e| e + self.retention > now)
    }

    fn view(&self, i: &InstanceRec, now: SimTime) -> Value {
        let status = self.status(i, now);
        let mut v = json!({
            "id": i.id, "status": status,
            "ssh_key_names": [i.req.ssh_key_name], "file_system_names": i.req.file_system_names,
            "file_system_mounts": [],
            "region": region_json(&i.req.region_name),
            "instance_type": Self::type_json(&i.spec),
            "hostname": i.req.hostname.clone().unwrap_or_else(|| format!("{}-{}", i.ip.to_string().replace('.', "-"), "lambda")),
            "tags": i.req.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "firewall_rulesets": [],
            "actions": {
                "migrate": {"available": false, "reason_code": "not_supported", "reason_description": "Migration is not supported for this instance."},
                "rebuild": {"available": status == "active"},
                "restart": {"available": status == "active"},
                "cold_reboot": {"available": status == "active"},
            },
        });
        if let Some(n) = &i.req.name {
            v["name"] = json!(n);
        }
        if status == "active" {
            v["ip"] = json!(i.ip.to_string());
            v["private_ip"] = json!(i.private_ip.to_string());
            v["jupyter_token"] = json!(format!("{:032x}", i.ip.to_bits()));
            v["jupyter_url"] = json!(format!(
                "https://jupyter-{}.lambdaspaces.com/?token={:032x}",
                i.id,
                i.ip.to_bits()
            ));
        }
        v
    }

    /// `GET /instances/{id}` data.
    pub fn get(&self, id: &str, now: SimTime) -> Option<Value> {
        self.instances
            .iter()
            .find(|i| i.id == id && self.visible(i, now))
            .map(|i| self.view(i, now))
    }

    /// `GET /instances` data.
    pub fn list(&self, now: SimTime) -> Vec<Value> {
        self.instances
            .iter()
            .filter(|i| self.visible(i, now))
            .map(|i| self.view(i, now))
            .collect()
    }

    /// Terminates all of `ids`, or none if one is unknown. The answer shows freshly terminated
    /// instances as `terminating`, even with a zero stop delay.
    pub fn terminate(&mut self, ids: &[String], now: SimTime) -> Result<Vec<Value>, ApiError> {
        let mut idx = Vec::new();
        for id in ids {
            let i = self
                .instances
                .iter()
                .position(|i| &i.id == id && self.visible(i, now))
                .ok_or_else(|| ApiError::not_found("Specified instance does not exist."))?;
            idx.push(i);
        }
        let mut out = Vec::new();
        for i in idx {
            let fresh = self.instances[i].timeline.stop_requested.is_none();
            if fresh {
                self.instances[i].timeline.stop_requested = Some(now);
            }
            let mut v = self.view(&self.instances[i], now);
            if fresh {
                v["status"] = json!("terminating");
            }
            out.push(v);
        }
        Ok(out)
    }

    pub fn vanish(&mut self, id: &str, now: SimTime) -> Option<SimLambdaInstance> {
        let i = self.instances.iter_mut().find(|i| i.id == id)?;
        if i.timeline.vanished_at.is_none() {
            i.timeline.vanished_at = Some(now);
        }
        let i = i.clone();
        Some(self.sim(&i, now))
    }

    fn sim(&self, i: &InstanceRec, now: SimTime) -> SimLambdaInstance {
        SimLambdaInstance {
            id: i.id.clone(),
            name: i.req.name.clone(),
            instance_type: i.spec.name.clone(),
            region: i.req.region_name.clone(),
            status: self.status(i, now).to_owned(),
            ip: i.ip,
            tags: i.req.tags.clone(),
            user_data: i.req.user_data.clone(),
            ssh_key_name: i.req.ssh_key_name.clone(),
            vanished: i.timeline.gone(now),
            billed_micro_usd: i.timeline.cost_within(Duration::ZERO, now),
        }
    }

    pub fn all(&self, now: SimTime) -> Vec<SimLambdaInstance> {
        self.instances.iter().map(|i| self.sim(i, now)).collect()
    }
}
