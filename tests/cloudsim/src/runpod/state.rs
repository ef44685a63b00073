//! The simulated RunPod account: GPU stock, pods and balance, with pods rendered as the full
//! GraphQL `Pod` objects that selections are projected from.
//!
//! Pods follow the shared [`Timeline`]: `desiredStatus` is `RUNNING` from the deploy on, with
//! `runtime: null` until the boot delay has passed; `podTerminate` shows `TERMINATED` for the stop
//! delay and then the pod is gone (`pod` is `null`). Pods are billed from the deploy on (RunPod
//! bills a rented pod whether or not its container came up) until terminated or vanished.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::config::{GpuTypeSpec, RunpodConfig};
use crate::clock::{SimClock, SimTime};
use crate::faults::FaultEngine;
use crate::lifecycle::{Phase, Timeline, Wallet, spend_per_hour};
use crate::money::MICRO;

/// The real "no capacity" message.
pub const NO_INSTANCES: &str = "There are no longer any instances available with the requested specifications. Please refresh and try again.";
/// The real "not enough disk" message.
pub const NO_DISK: &str = "There are no longer any instances available with enough disk space.";
/// The real message for terminating an unknown pod.
pub const NOT_FOUND_TO_TERMINATE: &str = "pod not found to terminate";
/// The real generic failure message.
pub const SOMETHING_WENT_WRONG: &str =
    "Something went wrong. Please try again later or contact support.";
/// UNCONFIRMED: no public sample of the real text exists.
pub const INSUFFICIENT_BALANCE: &str = "Insufficient balance";
/// UNCONFIRMED: the real text of a bid under the floor is not known.
pub const BID_TOO_LOW: &str = "Your bid price is below the minimum bid price for this GPU type.";

/// A deploy mutation's input, validated.
#[derive(Debug, Clone, Default)]
pub struct DeployInput {
    pub name: String,
    pub image_name: String,
    pub gpu_type_id: String,
    pub gpu_count: u32,
    /// `ALL`, `SECURE` or `COMMUNITY`.
    pub cloud_type: String,
    pub data_center_id: Option<String>,
    pub container_disk_gb: u32,
    pub volume_gb: u32,
    pub volume_mount_path: Option<String>,
    pub docker_args: String,
    pub ports: String,
    pub env: Vec<(String, String)>,
    pub deploy_cost: Option<f64>,
    /// `Some` for `podRentInterruptable`: USD per GPU per hour.
    pub bid_per_gpu: Option<f64>,
    pub min_vcpu: u32,
    pub min_memory_gb: u32,
}

/// Why a deploy was refused (rendered as a GraphQL error with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

/// Outcome of a deploy that passed the checks.
#[derive(Debug, Clone)]
pub enum Deployed {
    /// A real pod (its full object).
    Created(Value),
    /// Silent failure: an id and an object, but the pod never exists.
    Ghost(Value),
    /// Created, but the answer is lost (a generic error is returned).
    Lost(Value),
}

#[derive(Debug, Clone)]
struct PodRec {
    id: String,
    machine_id: String,
    seq: u64,
    input: DeployInput,
    gpu: GpuTypeSpec,
    secure: bool,
    ip: Ipv4Addr,
    timeline: Timeline,
}

/// The simulator's full view of a pod (more than the API shows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimPod {
    pub id: String,
    pub name: String,
    pub gpu_type_id: String,
    pub gpu_count: u32,
    pub interruptible: bool,
    pub cost_per_hr_micro_usd: u64,
    /// `RUNNING` / `TERMINATED` (`TERMINATED` also once gone).
    pub desired_status: String,
    /// The container is up (`runtime` non-null).
    pub runtime_up: bool,
    pub public_ip: Ipv4Addr,
    pub env: Vec<(String, String)>,
    pub image_name: String,
    pub docker_args: String,
    pub vanished: bool,
    /// Terminated and past the stop delay (`pod` is null).
    pub terminated: bool,
    pub billed_micro_usd: u64,
}

#[derive(Debug, Clone)]
struct GpuEntry {
    spec: GpuTypeSpec,
    /// Free GPUs = `base_stock - GPUs held by pods`.
    base_stock: u32,
}

/// Everything one simulated RunPod knows.
#[derive(Debug)]
pub struct RunpodState {
    gpus: Vec<GpuEntry>,
    pods: Vec<PodRec>,
    next_seq: u64,
    wallet: Wallet,
    boot_delay: Duration,
    stop_delay: Duration,
}

fn usd(micro: u64) -> f64 {
    micro as f64 / MICRO as f64
}

impl RunpodState {
    /// A fresh account.
    pub fn new(cfg: &RunpodConfig) -> Self {
        let mut s = Self {
            gpus: Vec::new(),
            pods: Vec::new(),
            next_seq: 1,
            wallet: Wallet::new(cfg.balance_micro_usd),
            boot_delay: cfg.boot_delay,
            stop_delay: cfg.stop_delay,
        };
        for g in &cfg.gpu_types {
            s.add_gpu_type(g.clone(), Duration::ZERO);
        }
        s
    }

    fn held(&self, gpu_id: &str, now: SimTime) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.gpu.id == gpu_id && p.timeline.holds_capacity(now))
            .map(|p| p.input.gpu_count)
            .fold(0u32, u32::saturating_add)
    }

    fn free(&self, e: &GpuEntry, now: SimTime) -> u32 {
        e.base_stock.saturating_sub(self.held(&e.spec.id, now))
    }

    /// Adds or replaces a GPU type; `spec.stock` is the number free now.
    pub fn add_gpu_type(&mut self, spec: GpuTypeSpec, now: SimTime) {
        let base_stock = spec.stock.saturating_add(self.held(&spec.id, now));
        let e = GpuEntry { spec, base_stock };
        match self.gpus.iter_mut().find(|g| g.spec.id == e.spec.id) {
            Some(g) => *g = e,
            None => self.gpus.push(e),
        }
    }

    /// Sets the free GPUs of a type now; false for an unknown type.
    pub fn set_stock(&mut self, gpu_id: &str, stock: u32, now: SimTime) -> bool {
        let held = self.held(gpu_id, now);
        match self.gpus.iter_mut().find(|g| g.spec.id == gpu_id) {
            Some(g) => {
                g.base_stock = stock.saturating_add(held);
                true
            }
            None => false,
        }
    }

    fn timelines(&self) -> impl Iterator<Item = &Timeline> {
        self.pods.iter().map(|p| &p.timeline)
    }

    /// `clientBalance` now, micro-USD.
    pub fn balance(&self, now: SimTime) -> u64 {
        self.wallet.balance(now, self.timelines())
    }

    /// Sets the balance as of now.
    pub fn set_balance(&mut self, micro: u64, now: SimTime) {
        self.wallet.set(micro, now);
    }

    /// `currentSpendPerHr`, micro-USD.
    pub fn spend_per_hour(&self, now: SimTime) -> u64 {
        spend_per_hour(now, self.timelines())
    }

    /// Full `GpuType` objects (without `lowestPrice`, which depends on its arguments), filtered
    /// by `input.id` / `input.ids` when given.
    pub fn gpu_types(&self, ids: Option<&[String]>) -> Vec<Value> {
        self.gpus
            .iter()
            .filter(|g| ids.is_none_or(|ids| ids.contains(&g.spec.id)))
            .map(|g| {
                let s = &g.spec;
                let dcs: Vec<Value> = s
                    .data_centers
                    .iter()
                    .map(|d| json!({"__typename": "DataCenter", "id": d, "name": d, "listed": true}))
                    .collect();
                json!({
                    "__typename": "GpuType",
                    "id": s.id, "displayName": s.display_name, "manufacturer": "Nvidia",
                    "memoryInGb": s.memory_gb, "cudaCores": 0,
                    "secureCloud": s.secure_cloud, "communityCloud": s.community_cloud,
                    "securePrice": usd(s.secure_price), "communityPrice": usd(s.community_price),
                    "secureSpotPrice": usd(s.min_bid_price), "communitySpotPrice": usd(s.min_bid_price),
                    "oneWeekPrice": null, "oneMonthPrice": null, "threeMonthPrice": null,
                    "sixMonthPrice": null, "oneYearPrice": null, "clusterPrice": null,
                    "maxGpuCount": s.max_gpu_count,
                    "maxGpuCountSecureCloud": if s.secure_cloud { s.max_gpu_count } else { 0 },
                    "maxGpuCountCommunityCloud": if s.community_cloud { s.max_gpu_count } else { 0 },
                    "minPodGpuCount": 1, "nodeGroupDatacenters": dcs, "nodeGroupGpuSizes": [],
                    "throughput": null,
                })
            })
            .collect()
    }

    /// The `lowestPrice(input: ...)` object of a GPU type.
    pub fn lowest_price(&self, gpu_id: &str, input: &Value, now: SimTime) -> Value {
        let Some(e) = self.gpus.iter().find(|g| g.spec.id == gpu_id) else {
            return Value::Null;
        };
        let s = &e.spec;
        let count = input
            .get("gpuCount")
            .and_then(Value::as_u64)
            .map_or(1, |c| u32::try_from(c).unwrap_or(u32::MAX));
        let secure = input.get("secureCloud").and_then(Value::as_bool);
        let dc = input.get("dataCenterId").and_then(Value::as_str);
        let price = match secure {
            Some(true) => s.secure_price,
            Some(false) => s.community_price,
            None if s.community_cloud => s.community_price.min(s.secure_price),
            None => s.secure_price,
        };
        let cloud_ok = match secure {
            Some(true) => s.secure_cloud,
            Some(false) => s.community_cloud,
            None => true,
        };
        let free = self.free(e, now);
        let available = cloud_ok
            && count >= 1
            && count <= s.max_gpu_count
            && free >= count
            && dc.is_none_or(|d| s.data_centers.iter().any(|x| x == d));
        let stock_status = if !available {
            Value::Null
        } else if free >= count * 4 {
            json!("High")
        } else if free >= count * 2 {
            json!("Medium")
        } else {
            json!("Low")
        };
        let counts: Vec<u32> = (1..=s.max_gpu_count.min(free)).collect();
        json!({
            "__typename": "LowestPrice",
            "gpuName": s.display_name, "gpuTypeId": s.id,
            "minimumBidPrice": usd(s.min_bid_price), "uninterruptablePrice": usd(price),
            "minVcpu": 8 * count, "minMemory": 30 * count, "minDisk": 0,
            "minDownload": 500, "minUpload": 500,
            "stockStatus": stock_status,
            "rentedCount": self.held(&s.id, now), "totalCount": e.base_stock,
            "rentalPercentage": 0.0,
            "countryCode": input.get("countryCode").cloned().unwrap_or(Value::Null),
            "supportPublicIp": true, "compliance": [],
            "maxUnreservedGpuCount": free.min(s.max_gpu_count),
            "availableGpuCounts": counts,
        })
    }

    /// The data centres of the catalogue.
    pub fn data_centers(&self) -> Vec<Value> {
        let mut ids: Vec<&String> = self
            .gpus
            .iter()
            .flat_map(|g| &g.spec.data_centers)
            .collect();
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|d| json!({"__typename": "DataCenter", "id": d, "name": d, "listed": true}))
            .collect()
    }

    /// Runs the deploy checks and deploys.
    pub fn deploy(
        &mut self,
        input: DeployInput,
        clock: &SimClock,
        faults: &FaultEngine,
    ) -> Result<Deployed, DeployError> {
        let now = clock.now();
        let no = || DeployError(NO_INSTANCES.into());
        let entry = self
            .gpus
            .iter()
            .find(|g| g.spec.id == input.gpu_type_id)
            .ok_or_else(no)?;
        let spec = entry.spec.clone();
        let secure = match input.cloud_type.as_str() {
            "SECURE" => true,
            "COMMUNITY" => false,
            _ => spec.secure_cloud && !spec.community_cloud,
        };
        let cloud_ok = match input.cloud_type.as_str() {
            "SECURE" => spec.secure_cloud,
            "COMMUNITY" => spec.community_cloud,
            _ => spec.secure_cloud || spec.community_cloud,
        };
        if !cloud_ok
            || input.gpu_count > spec.max_gpu_count
            || input
                .data_center_id
                .as_ref()
                .is_some_and(|d| !spec.data_centers.contains(d))
        {
            return Err(no());
        }
        if input.container_disk_gb.saturating_add(input.volume_gb) > spec.max_disk_gb {
            return Err(DeployError(NO_DISK.into()));
        }
        let per_gpu = match input.bid_per_gpu {
            Some(bid) => {
                let bid_micro = crate::money::usd_to_micro(bid).unwrap_or(0);
                if bid_micro < spec.min_bid_price {
                    return Err(DeployError(BID_TOO_LOW.into()));
                }
                bid_micro
            }
            None if secure => spec.secure_price,
            None => spec.community_price,
        };
        let cost = per_gpu.saturating_mul(u64::from(input.gpu_count));
        if input
            .deploy_cost
            .and_then(crate::money::usd_to_micro)
            .is_some_and(|ceiling| ceiling < cost)
        {
            return Err(no());
        }
        if faults.take(|f| &mut f.insufficient_balance) {
            return Err(DeployError(INSUFFICIENT_BALANCE.into()));
        }
        if faults.take(|f| &mut f.capacity_exhausted) || self.free(entry, now) < input.gpu_count {
            return Err(no());
        }
        if self.balance(now) < cost {
            return Err(DeployError(INSUFFICIENT_BALANCE.into()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut timeline =
            Timeline::new(now, Duration::ZERO, self.boot_delay, self.stop_delay, cost);
        timeline.bill_from_creation = true;
        timeline.vanish_after_running = faults.vanish_after_running();
        let rec = PodRec {
            id: pod_id(seq),
            machine_id: machine_id(seq),
            seq,
            input,
            gpu: spec,
            secure,
            ip: Ipv4Addr::new(203, 0, 113, u8::try_from((seq - 1) % 254 + 1).unwrap_or(1)),
            timeline,
        };
        let view = self.full_pod(&rec, now);
        if faults.take(|f| &mut f.silent_launch_failure) {
            tracing::info!(id = %rec.id, "silent launch failure: the pod will never exist");
            return Ok(Deployed::Ghost(view));
        }
        self.pods.push(rec);
        if faults.take(|f| &mut f.lost_launch_response) {
            return Ok(Deployed::Lost(view));
        }
        Ok(Deployed::Created(view))
    }

    fn visible(&self, p: &PodRec, now: SimTime) -> bool {
        !p.timeline.gone(now) && p.timeline.phase(now) != Phase::Ended
    }

    /// The full `Pod` object, or `None` when RunPod would answer `pod: null`.
    pub fn pod(&self, id: &str, now: SimTime) -> Option<Value> {
        self.pods
            .iter()
            .find(|p| p.id == id && self.visible(p, now))
            .map(|p| self.full_pod(p, now))
    }

    /// Every visible pod (`myself { pods }`).
    pub fn pods(&self, now: SimTime) -> Vec<Value> {
        self.pods
            .iter()
            .filter(|p| self.visible(p, now))
            .map(|p| self.full_pod(p, now))
            .collect()
    }

    /// `podTerminate`: starts termination (idempotent while still visible).
    pub fn terminate(&mut self, id: &str, now: SimTime) -> Result<(), DeployError> {
        let visible: Vec<bool> = self.pods.iter().map(|p| self.visible(p, now)).collect();
        let idx = self
            .pods
            .iter()
            .zip(visible)
            .position(|(p, v)| p.id == id && v)
            .ok_or_else(|| DeployError(NOT_FOUND_TO_TERMINATE.into()))?;
        let t = &mut self.pods[idx].timeline;
        if t.stop_requested.is_none() {
            t.stop_requested = Some(now);
        }
        Ok(())
    }

    /// Vanishes a pod now; its simulator view, or `None` for an unknown id.
    pub fn vanish(&mut self, id: &str, now: SimTime) -> Option<SimPod> {
        let p = self.pods.iter_mut().find(|p| p.id == id)?;
        if p.timeline.vanished_at.is_none() {
            p.timeline.vanished_at = Some(now);
        }
        let p = p.clone();
        Some(self.sim_pod(&p, now))
    }

    /// Every pod ever deployed, simulator view.
    pub fn all(&self, now: SimTime) -> Vec<SimPod> {
        self.pods.iter().map(|p| self.sim_pod(p, now)).collect()
    }

    fn sim_pod(&self, p: &PodRec, now: SimTime) -> SimPod {
        let phase = p.timeline.phase(now);
        SimPod {
            id: p.id.clone(),
            name: p.input.name.clone(),
            gpu_type_id: p.gpu.id.clone(),
            gpu_count: p.input.gpu_count,
            interruptible: p.input.bid_per_gpu.is_some(),
            cost_per_hr_micro_usd: p.timeline.price_micro_usd,
            desired_status: if p.timeline.stop_requested.is_some() {
                "TERMINATED"
            } else {
                "RUNNING"
            }
            .into(),
            runtime_up: phase == Phase::Running && !p.timeline.gone(now),
            public_ip: p.ip,
            env: p.input.env.clone(),
            image_name: p.input.image_name.clone(),
            docker_args: p.input.docker_args.clone(),
            vanished: p.timeline.gone(now),
            terminated: phase == Phase::Ended,
            billed_micro_usd: p.timeline.cost_within(Duration::ZERO, now),
        }
    }

    fn full_pod(&self, p: &PodRec, now: SimTime) -> Value {
        let phase = p.timeline.phase(now);
        let terminating = p.timeline.stop_requested.is_some_and(|s| s <= now);
        let runtime = if phase == Phase::Running {
            let ports: Vec<Value> = parse_ports(&p.input.ports)
                .into_iter()
                .enumerate()
                .map(|(i, (port, kind))| {
                    let public = kind == "tcp";
                    let offset = u16::try_from(i).unwrap_or(0);
                    json!({
                        "__typename": "PodRuntimePorts",
                        "ip": if public { p.ip.to_string() } else { format!("100.65.{}.{}", p.seq / 250 % 250, p.seq % 250 + 1) },
                        "isIpPublic": public,
                        "privatePort": port,
                        "publicPort": if public { 40000 + (p.seq % 2000) as u16 * 10 + offset } else { port },
                        "type": kind,
                    })
                })
                .collect();
            let gpus: Vec<Value> = (0..p.input.gpu_count)
                .map(|i| json!({"__typename": "PodRuntimeGpus", "id": format!("GPU-{:08x}-{i}", p.seq), "gpuUtilPercent": 0, "memoryUtilPercent": 0}))
                .collect();
            json!({
                "__typename": "PodRuntime",
                "uptimeInSeconds": p.timeline.uptime_secs(now),
                "ports": ports,
                "gpus": gpus,
                "container": {"__typename": "PodRuntimeContainer", "cpuPercent": 0, "memoryPercent": 0},
            })
        } else {
            Value::Null
        };
        let env: Vec<String> = p
            .input
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let dc = p
            .input
            .data_center_id
            .clone()
            .or_else(|| p.gpu.data_centers.first().cloned());
        json!({
            "__typename": "Pod",
            "id": p.id, "name": p.input.name, "imageName": p.input.image_name, "env": env,
            "machineId": p.machine_id,
            "machine": {
                "__typename": "Machine",
                "podHostId": format!("{}-{}", p.id, 64_410_000 + p.seq),
                "gpuDisplayName": p.gpu.display_name,
                "location": dc, "dataCenterId": dc,
                "secureCloud": p.secure,
            },
            "desiredStatus": if terminating { "TERMINATED" } else { "RUNNING" },
            "lastStatusChange": format!("Rented by User: {}", crate::clock::format_rfc3339(0)),
            "costPerHr": usd(p.timeline.price_micro_usd),
            "adjustedCostPerHr": usd(p.timeline.price_micro_usd),
            "gpuCount": p.input.gpu_count,
            "vcpuCount": p.input.min_vcpu.max(8 * p.input.gpu_count),
            "memoryInGb": p.input.min_memory_gb.max(30 * p.input.gpu_count),
            "containerDiskInGb": p.input.container_disk_gb,
            "volumeInGb": p.input.volume_gb,
            "volumeMountPath": p.input.volume_mount_path,
            "dockerArgs": p.input.docker_args,
            "dockerId": null,
            "podType": if p.input.bid_per_gpu.is_some() { "INTERRUPTABLE" } else { "RESERVED" },
            "ports": p.input.ports,
            "port": parse_ports(&p.input.ports).first().map(|(p, _)| *p),
            "uptimeSeconds": p.timeline.uptime_secs(now),
            "clusterIp": null,
            "runtime": runtime,
            "locked": false,
            "version": 0,
        })
    }
}

/// `"22/tcp,8888/http"` -> `[(22, "tcp"), (8888, "http")]`; malformed entries are skipped.
pub fn parse_ports(s: &str) -> Vec<(u16, String)> {
    s.split(',')
        .filter_map(|e| {
            let (port, kind) = e.trim().split_once('/')?;
            Some((port.parse().ok()?, kind.to_ascii_lowercase()))
        })
        .collect()
}

/// RunPod-looking pod ids: 14 lower-case alphanumerics, deterministic per sequence number.
fn pod_id(seq: u64) -> String {
    alnum(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995, 14)
}

fn machine_id(seq: u64) -> String {
    alnum(seq.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ 0x1234_5678, 12)
}

fn alnum(mut x: u64, len: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let c = A[(x % 36) as usize] as char;
            x = (x / 36) ^ (x << 7);
            c
        })
        .collect()
}

impl RunpodState {
    /// A representative running pod, used to validate a deploy's selection set before anything
    /// is created (a real server validates the whole document before executing it).
    pub fn pod_template(&self) -> Value {
        let gpu = self
            .gpus
            .first()
            .map(|g| g.spec.clone())
            .unwrap_or_else(|| GpuTypeSpec::new("template", "template", 1, 0, 0));
        let rec = PodRec {
            id: "template".into(),
            machine_id: "template".into(),
            seq: 0,
            input: DeployInput {
                gpu_count: 1,
                ports: "22/tcp".into(),
                ..DeployInput::default()
            },
            gpu,
            secure: true,
            ip: Ipv4Addr::LOCALHOST,
            timeline: Timeline::new(
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                0,
            ),
        };
        self.full_pod(&rec, Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ids() {
        assert_eq!(
            parse_ports("22/tcp, 8888/http,bad"),
            vec![(22, "tcp".into()), (8888, "http".into())]
        );
        assert_eq!(pod_id(1).len(), 14);
        assert_ne!(pod_id(1), pod_id(2));
    }
}
