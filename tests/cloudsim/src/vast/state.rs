//! The simulated Vast.ai account: offers (one machine each), instances (contracts) and credit.
//!
//! Instances follow the shared [`Timeline`]: `actual_status` is `null` until the boot delay, then
//! `loading`, then `running`. A destroy ends the contract at once (404 afterwards). A bid below
//! the offer's `min_bid` creates a contract that stays stopped (never runs, never billed, does not
//! hold the machine) and must be destroyed by the client: Vast's low-bid quirk.

use std::net::Ipv4Addr;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::api::{ApiError, CreateRequest, Search};
use super::config::{VastConfig, VastOfferSpec};
use crate::clock::{SimClock, SimTime};
use crate::faults::FaultEngine;
use crate::lifecycle::{Phase, Timeline, Wallet};
use crate::money::{MICRO, usd_to_micro};

/// The simulator's full view of an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimVastInstance {
    pub id: u64,
    pub offer_id: u64,
    pub label: Option<String>,
    pub image: String,
    pub actual_status: Option<String>,
    pub intended_status: String,
    pub is_bid: bool,
    /// Created stopped by a bid under the floor.
    pub outbid: bool,
    pub dph_total_micro_usd: u64,
    pub public_ipaddr: Ipv4Addr,
    pub onstart: Option<String>,
    pub env: Vec<(String, String)>,
    pub destroyed: bool,
    pub vanished: bool,
    pub billed_micro_usd: u64,
}

#[derive(Debug, Clone)]
struct InstanceRec {
    id: u64,
    offer: VastOfferSpec,
    req: CreateRequest,
    outbid: bool,
    ip: Ipv4Addr,
    timeline: Timeline,
}

/// What a create produced.
#[derive(Debug, Clone)]
pub enum Created {
    /// `{"success": true, "new_contract": id}`.
    Ok(u64),
    /// Silent failure: an id that never exists.
    Ghost(u64),
    /// Created, answer lost (500).
    Lost,
}

/// Everything one simulated Vast account knows.
#[derive(Debug)]
pub struct VastState {
    offers: Vec<VastOfferSpec>,
    instances: Vec<InstanceRec>,
    next_id: u64,
    wallet: Wallet,
    boot_delay: Duration,
    run_delay: Duration,
}

fn usd(micro: u64) -> f64 {
    micro as f64 / MICRO as f64
}

impl VastState {
    pub fn new(cfg: &VastConfig) -> Self {
        Self {
            offers: cfg.offers.clone(),
            instances: Vec::new(),
            next_id: 9_000_001,
            wallet: Wallet::new(cfg.balance_micro_usd),
            boot_delay: cfg.boot_delay,
            run_delay: cfg.run_delay,
        }
    }

    fn rented(&self, offer_id: u64, now: SimTime) -> bool {
        self.instances
            .iter()
            .any(|i| i.offer.id == offer_id && !i.outbid && i.timeline.holds_capacity(now))
    }

    /// Makes an offer rentable (`stock > 0`) or not; false for an unknown id.
    pub fn set_rentable(&mut self, offer_id: u64, rentable: bool) -> bool {
        match self.offers.iter_mut().find(|o| o.id == offer_id) {
            Some(o) => {
                o.rentable = rentable;
                true
            }
            None => false,
        }
    }

    fn offer_json(&self, o: &VastOfferSpec, now: SimTime) -> Value {
        let rented = self.rented(o.id, now);
        json!({
            "id": o.id, "ask_contract_id": o.id, "bundle_id": o.id + 100_000_000,
            "machine_id": o.id % 100_000, "host_id": o.id % 10_000,
            "num_gpus": o.num_gpus, "gpu_name": o.gpu_name, "gpu_ram": o.gpu_ram_mb,
            "gpu_total_ram": o.gpu_ram_mb * o.num_gpus,
            "cpu_cores": 16 * o.num_gpus, "cpu_cores_effective": 8 * o.num_gpus,
            "cpu_ram": 64_000 * o.num_gpus, "disk_space": 500.0,
            "dph_base": usd(o.dph_total), "dph_total": usd(o.dph_total), "min_bid": usd(o.min_bid),
            "storage_cost": 0.1, "reliability": o.reliability2, "reliability2": o.reliability2,
            "score": o.reliability2 * 100.0, "geolocation": o.geolocation,
            "public_ipaddr": offer_ip(o.id).to_string(), "direct_port_count": 100,
            "cuda_max_good": 12.8, "driver_version": "570.124.04", "compute_cap": 890,
            "inet_up": 800.0, "inet_down": 900.0,
            "verification": if o.verified { "verified" } else { "unverified" }, "verified": o.verified,
            "rentable": o.rentable && !rented, "rented": rented, "external": false,
            "datacenter": o.datacenter, "hosting_type": if o.datacenter { 1 } else { 0 },
            "vms_enabled": false,
        })
    }

    /// Offers matching a search.
    pub fn search(&self, s: &Search, now: SimTime) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .offers
            .iter()
            .map(|o| self.offer_json(o, now))
            .filter(|o| s.matches(o))
            .collect();
        s.sort(&mut out);
        if let Some(l) = s.limit {
            out.truncate(l);
        }
        out
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

    /// `PUT /asks/{id}/`.
    pub fn create(
        &mut self,
        ask: &str,
        req: CreateRequest,
        clock: &SimClock,
        faults: &FaultEngine,
    ) -> Result<Created, ApiError> {
        let now = clock.now();
        let offer = ask
            .parse::<u64>()
            .ok()
            .and_then(|id| self.offers.iter().find(|o| o.id == id))
            .cloned()
            .ok_or_else(|| ApiError::no_such_ask(ask))?;
        if faults.take(|f| &mut f.insufficient_balance) {
            return Err(insufficient_credit());
        }
        if faults.take(|f| &mut f.capacity_exhausted)
            || !offer.rentable
            || self.rented(offer.id, now)
        {
            return Err(ApiError::ask_gone(ask));
        }
        let bid = req.price.map(|p| usd_to_micro(p).unwrap_or(0));
        let price = bid.unwrap_or(offer.dph_total);
        if self.balance(now) < price {
            return Err(insufficient_credit());
        }
        let id = self.next_id;
        self.next_id += 1;
        let outbid = bid.is_some_and(|b| b < offer.min_bid);
        let mut timeline =
            Timeline::new(now, self.boot_delay, self.run_delay, Duration::ZERO, price);
        timeline.vanish_after_running = faults.vanish_after_running();
        if outbid {
            timeline = timeline.stalled();
        }
        if !outbid && faults.take(|f| &mut f.silent_launch_failure) {
            tracing::info!(id, "silent launch failure: the instance will never exist");
            return Ok(Created::Ghost(id));
        }
        let min_bid = offer.min_bid;
        self.instances.push(InstanceRec {
            id,
            ip: offer_ip(offer.id),
            offer,
            req,
            outbid,
            timeline,
        });
        if outbid {
            // UNCONFIRMED status/code: the notes only say "an error that still carries new_contract".
            return Err(ApiError::std(
                StatusCode::BAD_REQUEST,
                "insufficient_bid",
                format!("Your bid is below the minimum bid of ${:.4}/hr; the instance was created in the stopped state.", usd(min_bid)),
            )
            .with("new_contract", json!(id))
            .with("ask_id", json!(ask.parse::<u64>().unwrap_or(0))));
        }
        if faults.take(|f| &mut f.lost_launch_response) {
            return Ok(Created::Lost);
        }
        Ok(Created::Ok(id))
    }

    fn visible(&self, i: &InstanceRec, now: SimTime) -> bool {
        !i.timeline.gone(now) && i.timeline.phase(now) != Phase::Ended
    }

    fn actual_status(i: &InstanceRec, now: SimTime) -> Option<&'static str> {
        if i.outbid {
            return Some("stopped");
        }
        match i.timeline.phase(now) {
            Phase::Pending => None,
            Phase::Booting => Some("loading"),
            Phase::Running => Some("running"),
            Phase::Stopping | Phase::Ended => Some("exited"),
        }
    }

    fn view(&self, i: &InstanceRec, now: SimTime) -> Value {
        let actual = Self::actual_status(i, now);
        let state = if i.outbid { "stopped" } else { "running" };
        let ssh_port = 20_000 + (i.id % 10_000);
        let mut ports = serde_json::Map::new();
        if actual == Some("running") {
            ports.insert(
                "22/tcp".into(),
                json!([{"HostIp": "0.0.0.0", "HostPort": ssh_port.to_string()}]),
            );
            for (k, _) in &i.req.env {
                if let Some(map) = k.strip_prefix("-p ")
                    && let Some((host, container)) = map.split_once(':')
                {
                    ports.insert(
                        format!("{container}/tcp"),
                        json!([{"HostIp": "0.0.0.0", "HostPort": host}]),
                    );
                }
            }
        }
        let o = &i.offer;
        json!({
            "id": i.id, "label": i.req.label, "machine_id": o.id % 100_000, "host_id": o.id % 10_000,
            "actual_status": actual, "intended_status": state, "cur_state": state, "next_state": state,
            "status_msg": match actual { None => "", Some("loading") => "Pulling image", Some("running") => "success, running", _ => "stopped" },
            "public_ipaddr": i.ip.to_string(), "ports": ports,
            "ssh_host": format!("ssh{}.vast.ai", i.id % 9 + 1), "ssh_port": ssh_port,
            "direct_port_start": 40_000, "direct_port_end": 40_099,
            "image_uuid": i.req.image, "image_args": i.req.args, "onstart": i.req.onstart,
            "extra_env": i.req.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "dph_total": usd(i.timeline.price_micro_usd), "dph_base": usd(i.timeline.price_micro_usd),
            "is_bid": i.req.price.is_some(), "min_bid": usd(o.min_bid),
            "start_date": i.timeline.created.as_secs_f64(),
            "gpu_name": o.gpu_name, "num_gpus": o.num_gpus, "gpu_ram": o.gpu_ram_mb,
            "geolocation": o.geolocation, "disk_space": i.req.disk_gb, "reliability2": o.reliability2,
            "template_hash_id": null, "credit_balance": null,
        })
    }

    /// `GET /instances/{id}/` data.
    pub fn get(&self, id: &str, now: SimTime) -> Option<Value> {
        let id: u64 = id.parse().ok()?;
        self.instances
            .iter()
            .find(|i| i.id == id && self.visible(i, now))
            .map(|i| self.view(i, now))
    }

    /// `GET /instances/` data.
    pub fn list(&self, now: SimTime) -> Vec<Value> {
        self.instances
            .iter()
            .filter(|i| self.visible(i, now))
            .map(|i| self.view(i, now))
            .collect()
    }

    /// `DELETE /instances/{id}/`: ends the contract now.
    pub fn destroy(&mut self, id: &str, now: SimTime) -> Result<(), ApiError> {
        let id: u64 = id.parse().map_err(|_| ApiError::instance_not_found())?;
        let idx = self
            .instances
            .iter()
            .position(|i| i.id == id && self.visible(i, now))
            .ok_or_else(ApiError::instance_not_found)?;
        self.instances[idx].timeline.stop_requested = Some(now);
        Ok(())
    }

    pub fn vanish(&mut self, id: &str, now: SimTime) -> Option<SimVastInstance> {
        let id: u64 = id.parse().ok()?;
        let i = self.instances.iter_mut().find(|i| i.id == id)?;
        if i.timeline.vanished_at.is_none() {
            i.timeline.vanished_at = Some(now);
        }
        let i = i.clone();
        Some(self.sim(&i, now))
    }

    fn sim(&self, i: &InstanceRec, now: SimTime) -> SimVastInstance {
        SimVastInstance {
            id: i.id,
            offer_id: i.offer.id,
            label: i.req.label.clone(),
            image: i.req.image.clone(),
            actual_status: Self::actual_status(i, now).map(str::to_owned),
            intended_status: if i.outbid { "stopped" } else { "running" }.into(),
            is_bid: i.req.price.is_some(),
            outbid: i.outbid,
            dph_total_micro_usd: i.timeline.price_micro_usd,
            public_ipaddr: i.ip,
            onstart: i.req.onstart.clone(),
            env: i.req.env.clone(),
            destroyed: i.timeline.stop_requested.is_some(),
            vanished: i.timeline.gone(now),
            billed_micro_usd: i.timeline.cost_within(Duration::ZERO, now),
        }
    }

    pub fn all(&self, now: SimTime) -> Vec<SimVastInstance> {
        self.instances.iter().map(|i| self.sim(i, now)).collect()
    }
}

/// UNCONFIRMED body and status: the CLI's docs only name the error "Insufficient credits".
pub fn insufficient_credit() -> ApiError {
    ApiError::std(
        StatusCode::BAD_REQUEST,
        "insufficient_credit",
        "Insufficient credits",
    )
}

/// The public address of the machine behind an offer.
fn offer_ip(offer_id: u64) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, u8::try_from(offer_id % 254 + 1).unwrap_or(1))
}
