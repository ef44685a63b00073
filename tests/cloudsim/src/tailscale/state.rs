//! The simulated tailnet: access tokens, auth keys, devices and the ordered event log.
//!
//! Like the clouds, nothing runs in the background: expiry is computed from timestamps on the
//! simulated clock when someone looks, so tests can cross a token's or a key's lifetime with
//! [`SimClock::advance`]. Every change is made under one lock and appended to the event log in the
//! same critical section, so the log's order is the order the changes took effect.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Value, json};

use super::api::{ApiError, CreateKeyRequest, go_list};
use super::config::{MAX_KEY_EXPIRY, TailscaleSimConfig};
use crate::clock::{SimClock, SimTime};

/// The simulator's full view of an auth key (more than the API shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimKey {
    /// `k…CNTRL`.
    pub id: String,
    /// The secret text, `tskey-auth-<id>-<random>`.
    pub key: String,
    pub description: String,
    pub tags: Vec<String>,
    pub reusable: bool,
    pub ephemeral: bool,
    pub preauthorized: bool,
    /// Enrolled at least one device.
    pub used: bool,
    /// How many devices it enrolled.
    pub uses: u32,
    /// Revoked (by `DELETE` or [`super::TailscaleSim::revoke_key`]).
    pub revoked: bool,
    /// Deleted through the API (`DELETE …/keys/{id}`): gone from the API.
    pub deleted: bool,
    /// Past its expiry now.
    pub expired: bool,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub expires: String,
}

/// The simulator's full view of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimDevice {
    /// Numeric id (legacy).
    pub id: String,
    /// `n…CNTRL` (preferred id).
    pub node_id: String,
    /// MagicDNS name, `<hostname>.<suffix>` (with `-N` appended when the name is taken).
    pub name: String,
    /// The hostname the node reported.
    pub hostname: String,
    /// Its tailnet IPv4 address, in 100.64.0.0/10.
    pub ipv4: Ipv4Addr,
    /// Its tailnet IPv6 address, in fd7a:115c:a1e0::/48.
    pub ipv6: Ipv6Addr,
    pub tags: Vec<String>,
    pub ephemeral: bool,
    pub authorized: bool,
    /// The auth key it enrolled with.
    pub key_id: String,
    /// RFC 3339.
    pub created: String,
    /// Deleted (gone from the API).
    pub deleted: bool,
}

impl SimDevice {
    /// `[ipv4, ipv6]` as strings, the API's `addresses`.
    pub fn addresses(&self) -> Vec<String> {
        vec![self.ipv4.to_string(), self.ipv6.to_string()]
    }
}

/// Why `tailscale up --authkey` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum EnrolRefusal {
    /// No such key (never minted, or the secret part is wrong).
    #[error("invalid key: unknown auth key")]
    UnknownKey,
    /// A single-use key that already enrolled a device.
    #[error("invalid key: single-use key already used")]
    AlreadyUsed,
    /// Past its expiry.
    #[error("invalid key: auth key expired")]
    Expired,
    /// Revoked or deleted.
    #[error("invalid key: auth key revoked")]
    Revoked,
    /// `--advertise-tags` asked for tags the key does not carry.
    #[error("requested tags {} are invalid or not permitted", go_list(.0))]
    TagsNotPermitted(Vec<String>),
}

/// What happened, in the order it took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEventKind {
    KeyCreated {
        id: String,
    },
    /// A device enrolled with the key.
    KeyUsed {
        id: String,
    },
    /// Revoked without being deleted (admin console).
    KeyRevoked {
        id: String,
    },
    /// Deleted through the API.
    KeyDeleted {
        id: String,
    },
    DeviceCreated {
        id: String,
        hostname: String,
    },
    DeviceDeleted {
        id: String,
        hostname: String,
    },
}

/// One entry of the event log. `at` is real (monotonic) time, so it can be compared with events
/// other systems record (Node deletion, instance termination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    pub at: Instant,
    pub kind: SimEventKind,
}

#[derive(Debug, Clone)]
struct TokenRec {
    token: String,
    expires: SimTime,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct KeyRec {
    id: String,
    secret: String,
    req: CreateKeyRequest,
    expiry: Duration,
    created: SimTime,
    uses: u32,
    revoked: Option<SimTime>,
    deleted: bool,
}

impl KeyRec {
    fn expires(&self) -> SimTime {
        self.created + self.expiry
    }
    fn expired(&self, now: SimTime) -> bool {
        now >= self.expires()
    }
    fn invalid(&self, now: SimTime) -> bool {
        self.revoked.is_some() || self.expired(now) || (!self.req.reusable && self.uses > 0)
    }
}

#[derive(Debug, Clone)]
struct DeviceRec {
    view: SimDevice,
    created: SimTime,
}

/// Who is calling: an OAuth client's token (may only mint tagged keys) or a user's API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    OAuth { scopes: Vec<String> },
    ApiKey,
}

impl Actor {
    /// Whether the actor may call an endpoint needing `scope` (`auth_keys`, `devices`).
    pub fn allows(&self, scope: &str) -> bool {
        match self {
            Actor::ApiKey => true,
            Actor::OAuth { scopes } => scopes.iter().any(|s| {
                s == "all"
                    || s == scope
                    || s.strip_prefix(scope).is_some_and(|r| r.starts_with(':'))
            }),
        }
    }
}

/// The tailnet's state.
#[derive(Debug, Default)]
pub struct TailnetState {
    tokens: Vec<TokenRec>,
    keys: Vec<KeyRec>,
    devices: Vec<DeviceRec>,
    events: Vec<SimEvent>,
    next_addr: u32,
    next_seq: u64,
}

fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The reserved Tailscale service address, never handed to a device.
const QUAD100: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 100);
/// 100.64.0.0/10 holds 2^22 addresses.
const CGNAT_SIZE: u32 = 1 << 22;
const CGNAT_BASE: u32 = 0x6440_0000;

/// The MagicDNS label of a hostname: lower case, `[a-z0-9-]`, at most 63, never empty.
fn dns_label(hostname: &str) -> String {
    let mut s: String = hostname
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    s = s.trim_matches('-').to_owned();
    s.truncate(63);
    if s.is_empty() { "localhost".into() } else { s }
}

impl TailnetState {
    pub fn new() -> Self {
        Self::default()
    }

    fn log(&mut self, kind: SimEventKind) {
        self.events.push(SimEvent {
            at: Instant::now(),
            kind,
        });
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Issues an OAuth access token valid for `lifetime` from `now`.
    pub fn issue_token(&mut self, scopes: Vec<String>, now: SimTime, lifetime: Duration) -> String {
        let seq = self.seq();
        let token = format!("tskey-api-kTok{seq}CNTRL-{}", random_alnum(32));
        // Forget tokens long expired so the list stays small.
        self.tokens.retain(|t| t.expires > now);
        self.tokens.push(TokenRec {
            token: token.clone(),
            expires: now + lifetime,
            scopes,
        });
        token
    }

    /// The scopes of a live token; `None` for an unknown or expired one.
    pub fn token_scopes(&self, token: &str, now: SimTime) -> Option<Vec<String>> {
        self.tokens
            .iter()
            .find(|t| t.token == token && now < t.expires)
            .map(|t| t.scopes.clone())
    }

    /// Mints a key. OAuth callers must tag it, with tags the ACL lets them own.
    pub fn create_key(
        &mut self,
        req: CreateKeyRequest,
        actor: &Actor,
        cfg: &TailscaleSimConfig,
        clock: &SimClock,
    ) -> Result<Value, ApiError> {
        if matches!(actor, Actor::OAuth { .. }) && req.tags.is_empty() {
            return Err(ApiError::bad_request(
                "tags are required when creating an auth key with an OAuth client",
            ));
        }
        let refused: Vec<String> = req
            .tags
            .iter()
            .filter(|t| !cfg.allowed_tags.contains(t))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(ApiError::bad_request(format!(
                "requested tags {} are invalid or not permitted",
                go_list(&refused)
            )));
        }
        let seq = self.seq();
        let id = format!("k{}{seq}CNTRL", random_alnum(6));
        let secret = format!("tskey-auth-{id}-{}", random_alnum(32));
        let expiry = req
            .expiry_seconds
            .map_or(MAX_KEY_EXPIRY, Duration::from_secs);
        let rec = KeyRec {
            id: id.clone(),
            secret,
            req,
            expiry,
            created: clock.now(),
            uses: 0,
            revoked: None,
            deleted: false,
        };
        let v = key_json(&rec, clock, true);
        self.keys.push(rec);
        self.log(SimEventKind::KeyCreated { id });
        Ok(v)
    }

    /// A key's API view (without the secret); `None` if unknown or deleted.
    pub fn key_json(&self, id: &str, clock: &SimClock) -> Option<Value> {
        self.keys
            .iter()
            .find(|k| k.id == id && !k.deleted)
            .map(|k| key_json(k, clock, false))
    }

    /// Every key not deleted, API view.
    pub fn list_keys_json(&self, clock: &SimClock) -> Value {
        json!(
            self.keys
                .iter()
                .filter(|k| !k.deleted)
                .map(|k| key_json(k, clock, false))
                .collect::<Vec<_>>()
        )
    }

    /// `DELETE …/keys/{id}`: revokes and deletes. False if unknown or already deleted.
    pub fn delete_key(&mut self, id: &str, now: SimTime) -> bool {
        let Some(k) = self.keys.iter_mut().find(|k| k.id == id && !k.deleted) else {
            return false;
        };
        k.deleted = true;
        k.revoked.get_or_insert(now);
        self.log(SimEventKind::KeyDeleted { id: id.to_owned() });
        true
    }

    /// Revokes without deleting (the key stays visible, `invalid: true`). False if unknown,
    /// deleted or already revoked.
    pub fn revoke_key(&mut self, id: &str, now: SimTime) -> bool {
        let Some(k) = self
            .keys
            .iter_mut()
            .find(|k| k.id == id && !k.deleted && k.revoked.is_none())
        else {
            return false;
        };
        k.revoked = Some(now);
        self.log(SimEventKind::KeyRevoked { id: id.to_owned() });
        true
    }

    /// What `tailscale up --authkey=KEY --hostname=HOST [--advertise-tags=...]` does on the
    /// coordination server. Advertised tags must all be on the key; the device carries them, or
    /// the key's tags when none are advertised.
    pub fn enrol(
        &mut self,
        auth_key: &str,
        hostname: &str,
        advertise_tags: &[String],
        cfg: &TailscaleSimConfig,
        clock: &SimClock,
    ) -> Result<SimDevice, EnrolRefusal> {
        let now = clock.now();
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.secret == auth_key.trim())
            .ok_or(EnrolRefusal::UnknownKey)?;
        if key.revoked.is_some() || key.deleted {
            return Err(EnrolRefusal::Revoked);
        }
        if !key.req.reusable && key.uses > 0 {
            return Err(EnrolRefusal::AlreadyUsed);
        }
        if key.expired(now) {
            return Err(EnrolRefusal::Expired);
        }
        let refused: Vec<String> = advertise_tags
            .iter()
            .filter(|t| !key.req.tags.contains(t))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(EnrolRefusal::TagsNotPermitted(refused));
        }
        key.uses += 1;
        let key_id = key.id.clone();
        let tags = if advertise_tags.is_empty() {
            key.req.tags.clone()
        } else {
            advertise_tags.to_vec()
        };
        let ephemeral = key.req.ephemeral;
        let authorized = key.req.preauthorized || !cfg.device_approval;
        self.log(SimEventKind::KeyUsed { id: key_id.clone() });

        let ipv4 = self.next_ipv4();
        let o = ipv4.octets();
        let ipv6 = Ipv6Addr::new(
            0xfd7a,
            0x115c,
            0xa1e0,
            0,
            0,
            0,
            u16::from_be_bytes([o[0], o[1]]),
            u16::from_be_bytes([o[2], o[3]]),
        );
        let label = dns_label(hostname);
        let name = (0..)
            .map(|n| {
                if n == 0 {
                    format!("{label}.{}", cfg.dns_suffix)
                } else {
                    format!("{label}-{n}.{}", cfg.dns_suffix)
                }
            })
            .find(|cand| {
                !self
                    .devices
                    .iter()
                    .any(|d| !d.view.deleted && d.view.name == *cand)
            })
            .unwrap_or_default();
        let seq = self.seq();
        let id = format!(
            "{}{seq:06}",
            rand::rng().random_range(1_000_000_000u64..10_000_000_000)
        );
        let node_id = format!("n{}{seq}CNTRL", random_alnum(6));
        let view = SimDevice {
            id: id.clone(),
            node_id,
            name,
            hostname: hostname.to_owned(),
            ipv4,
            ipv6,
            tags,
            ephemeral,
            authorized,
            key_id,
            created: clock.rfc3339(now),
            deleted: false,
        };
        self.devices.push(DeviceRec {
            view: view.clone(),
            created: now,
        });
        self.log(SimEventKind::DeviceCreated {
            id,
            hostname: hostname.to_owned(),
        });
        Ok(view)
    }

    fn next_ipv4(&mut self) -> Ipv4Addr {
        loop {
            self.next_addr = (self.next_addr % (CGNAT_SIZE - 1)) + 1;
            let ip = Ipv4Addr::from(CGNAT_BASE + self.next_addr);
            if ip != QUAD100 {
                return ip;
            }
        }
    }

    fn find_device(&self, id: &str) -> Option<&DeviceRec> {
        self.devices
            .iter()
            .find(|d| !d.view.deleted && (d.view.id == id || d.view.node_id == id))
    }

    /// A live device's API view by `id` or `nodeId`.
    pub fn device_json(&self, id: &str, clock: &SimClock) -> Option<Value> {
        self.find_device(id).map(|d| device_json(d, clock))
    }

    /// Every live device, API view.
    pub fn list_devices_json(&self, clock: &SimClock) -> Value {
        json!(
            self.devices
                .iter()
                .filter(|d| !d.view.deleted)
                .map(|d| device_json(d, clock))
                .collect::<Vec<_>>()
        )
    }

    /// Deletes a live device by `id` or `nodeId`; its view, or `None` if unknown.
    pub fn delete_device(&mut self, id: &str) -> Option<SimDevice> {
        let d = self
            .devices
            .iter_mut()
            .find(|d| !d.view.deleted && (d.view.id == id || d.view.node_id == id))?;
        d.view.deleted = true;
        let view = d.view.clone();
        self.log(SimEventKind::DeviceDeleted {
            id: view.id.clone(),
            hostname: view.hostname.clone(),
        });
        Some(view)
    }

    /// Every key ever minted, full view.
    pub fn keys(&self, clock: &SimClock) -> Vec<SimKey> {
        let now = clock.now();
        self.keys
            .iter()
            .map(|k| SimKey {
                id: k.id.clone(),
                key: k.secret.clone(),
                description: k.req.description.clone(),
                tags: k.req.tags.clone(),
                reusable: k.req.reusable,
                ephemeral: k.req.ephemeral,
                preauthorized: k.req.preauthorized,
                used: k.uses > 0,
                uses: k.uses,
                revoked: k.revoked.is_some(),
                deleted: k.deleted,
                expired: k.expired(now),
                created: clock.rfc3339(k.created),
                expires: clock.rfc3339(k.expires()),
            })
            .collect()
    }

    /// Every device ever enrolled (deleted ones flagged).
    pub fn devices(&self) -> Vec<SimDevice> {
        self.devices.iter().map(|d| d.view.clone()).collect()
    }

    /// The event log.
    pub fn events(&self) -> Vec<SimEvent> {
        self.events.clone()
    }
}

fn key_json(k: &KeyRec, clock: &SimClock, with_secret: bool) -> Value {
    let now = clock.now();
    let mut v = json!({
        "id": k.id,
        "keyType": "auth",
        "description": k.req.description,
        "created": clock.rfc3339(k.created),
        "expires": clock.rfc3339(k.expires()),
        "expirySeconds": k.expiry.as_secs(),
        "invalid": k.invalid(now),
        "capabilities": {"devices": {"create": {
            "reusable": k.req.reusable,
            "ephemeral": k.req.ephemeral,
            "preauthorized": k.req.preauthorized,
            "tags": k.req.tags,
        }}},
        "tags": k.req.tags,
    });
    if with_secret {
        v["key"] = json!(k.secret);
    }
    if let Some(r) = k.revoked {
        v["revoked"] = json!(clock.rfc3339(r));
    }
    v
}

fn device_json(d: &DeviceRec, clock: &SimClock) -> Value {
    let v = &d.view;
    let tagged = !v.tags.is_empty();
    json!({
        "id": v.id,
        "nodeId": v.node_id,
        "name": v.name,
        "hostname": v.hostname,
        "addresses": v.addresses(),
        "tags": v.tags,
        "authorized": v.authorized,
        "isEphemeral": v.ephemeral,
        "user": if tagged { "tagged-devices" } else { "sim-user@example.com" },
        "os": "linux",
        "clientVersion": "1.80.3",
        "keyExpiryDisabled": tagged,
        "expires": if tagged {
            "0001-01-01T00:00:00Z".to_owned()
        } else {
            clock.rfc3339(d.created + Duration::from_secs(180 * 24 * 3600))
        },
        "updateAvailable": false,
        "blocksIncomingConnections": false,
        "lastSeen": clock.rfc3339(clock.now()),
        "created": clock.rfc3339(d.created),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(reusable: bool, tags: &[&str]) -> CreateKeyRequest {
        CreateKeyRequest {
            reusable,
            ephemeral: true,
            preauthorized: true,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            expiry_seconds: Some(60),
            description: String::new(),
        }
    }

    fn oauth() -> Actor {
        Actor::OAuth {
            scopes: vec!["devices".into(), "auth_keys".into()],
        }
    }

    #[test]
    fn scopes() {
        let a = Actor::OAuth {
            scopes: vec!["devices:core".into()],
        };
        assert!(a.allows("devices") && !a.allows("auth_keys"));
        let b = Actor::OAuth {
            scopes: vec!["devicesx".into()],
        };
        assert!(!b.allows("devices"));
        assert!(Actor::ApiKey.allows("auth_keys"));
    }

    #[test]
    fn single_use_and_expiry() {
        let cfg = TailscaleSimConfig::default();
        let clock = SimClock::new();
        let mut s = TailnetState::new();
        let once = s
            .create_key(req(false, &["tag:gpu-worker"]), &oauth(), &cfg, &clock)
            .unwrap();
        let once = once["key"].as_str().unwrap().to_owned();
        let d = s.enrol(&once, "gpu-1", &[], &cfg, &clock).unwrap();
        assert_eq!(d.ipv4, Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(d.name, "gpu-1.tail1234.ts.net");
        assert_eq!(
            s.enrol(&once, "gpu-2", &[], &cfg, &clock),
            Err(EnrolRefusal::AlreadyUsed)
        );
        let many = s
            .create_key(req(true, &["tag:gpu-worker"]), &oauth(), &cfg, &clock)
            .unwrap();
        let many = many["key"].as_str().unwrap().to_owned();
        let d2 = s.enrol(&many, "gpu-1", &[], &cfg, &clock).unwrap();
        assert_eq!(d2.name, "gpu-1-1.tail1234.ts.net");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            s.enrol(&many, "gpu-3", &[], &cfg, &clock),
            Err(EnrolRefusal::Expired)
        );
        assert_eq!(
            s.enrol("tskey-auth-nope", "x", &[], &cfg, &clock),
            Err(EnrolRefusal::UnknownKey)
        );
    }

    #[test]
    fn tags_are_checked() {
        let cfg = TailscaleSimConfig::default();
        let clock = SimClock::new();
        let mut s = TailnetState::new();
        let e = s
            .create_key(req(false, &[]), &oauth(), &cfg, &clock)
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = s
            .create_key(
                req(false, &["tag:gpu-worker", "tag:admin"]),
                &oauth(),
                &cfg,
                &clock,
            )
            .unwrap_err();
        assert_eq!(
            e.message,
            "requested tags [tag:admin] are invalid or not permitted"
        );
        // A user's API key may mint untagged keys.
        assert!(
            s.create_key(req(false, &[]), &Actor::ApiKey, &cfg, &clock)
                .is_ok()
        );
    }

    #[test]
    fn addresses_skip_quad100_and_labels_are_sanitised() {
        let mut s = TailnetState::new();
        s.next_addr = (u32::from(QUAD100) - CGNAT_BASE) - 1;
        assert_eq!(s.next_ipv4(), Ipv4Addr::new(100, 100, 100, 101));
        assert_eq!(dns_label("GPU_Worker.local"), "gpu-worker-local");
        assert_eq!(dns_label("--"), "localhost");
    }
}
