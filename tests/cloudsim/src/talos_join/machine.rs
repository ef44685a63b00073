//! Reading a Talos worker's user-data the way a booting machine would: the v1alpha1 machine
//! configuration plus the `ExtensionServiceConfig` of the Tailscale extension, checked against the
//! cluster's secrets. Pure functions, so every refusal can be tested without a runtime.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use crate::tailscale::EnrolRefusal;
use crate::tailscale::api::valid_tag;

/// Why a machine never joins. Each variant names what a real Talos worker would have tripped on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// The user-data is not YAML, or a document is not a mapping.
    #[error("user-data is not valid Talos YAML: {0}")]
    InvalidYaml(String),
    /// No v1alpha1 machine configuration document.
    #[error("user-data holds no v1alpha1 machine configuration")]
    NoMachineConfig,
    /// A document that may appear once appears twice.
    #[error("duplicate document: {0}")]
    DuplicateDocument(String),
    /// `version` is not `v1alpha1`.
    #[error("unsupported machine configuration version {0:?}")]
    UnsupportedVersion(String),
    /// `machine.type` is not `worker`.
    #[error("machine.type is {0:?}, not \"worker\"")]
    NotWorker(String),
    /// A required field is absent or empty.
    #[error("{0} is missing")]
    MissingField(String),
    /// A field has the wrong type or an invalid value.
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: String, reason: String },
    /// `machine.token` (trustd) does not match the cluster's.
    #[error("machine.token does not match the cluster's machine token")]
    WrongMachineToken,
    /// `cluster.token` (bootstrap token) does not match: the kubelet's TLS bootstrap fails.
    #[error("cluster.token does not match the cluster's bootstrap token")]
    WrongBootstrapToken,
    /// `cluster.controlPlane.endpoint` is not the cluster's endpoint.
    #[error("cluster.controlPlane.endpoint is {found:?}, not the cluster's endpoint")]
    WrongEndpoint { found: String },
    /// No `ExtensionServiceConfig` named `tailscale`: the machine never reaches the tailnet.
    #[error("no ExtensionServiceConfig named \"tailscale\"")]
    NoTailscaleConfig,
    /// The Tailscale extension has no `TS_AUTHKEY`.
    #[error("the tailscale extension has no TS_AUTHKEY")]
    MissingAuthKey,
    /// `tailscale up --authkey` was refused.
    #[error("tailscale refused the auth key: {0}")]
    Tailscale(EnrolRefusal),
}

/// The cluster secrets a worker's configuration must carry.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub bootstrap_token: &'a str,
    pub machine_token: &'a str,
    pub endpoint: &'a str,
}

/// What a valid worker configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `machine.network.hostname`: the Node's name.
    pub hostname: String,
    /// `machine.nodeLabels`.
    pub labels: BTreeMap<String, String>,
    /// `machine.nodeTaints` as (key, value, effect), in key order.
    pub taints: Vec<(String, String, String)>,
    /// `TS_AUTHKEY`.
    pub auth_key: String,
    /// `TS_HOSTNAME`, if set.
    pub tailscale_hostname: Option<String>,
    /// `--advertise-tags` from `TS_EXTRA_ARGS` (empty when absent).
    pub advertise_tags: Vec<String>,
}

impl WorkerConfig {
    /// The hostname the node reports to Tailscale: `TS_HOSTNAME`, else the machine's.
    pub fn tailnet_hostname(&self) -> &str {
        self.tailscale_hostname.as_deref().unwrap_or(&self.hostname)
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn at<'v>(doc: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(doc, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

/// A string field; `Ok(None)` when absent or null, an error when not a string.
fn string_at<'v>(doc: &'v Value, path: &[&str]) -> Result<Option<&'v str>, JoinRefusal> {
    match at(doc, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(JoinRefusal::InvalidField {
            field: path.join("."),
            reason: format!("expected a string, found {}", kind_name(other)),
        }),
    }
}

fn required<'v>(doc: &'v Value, path: &[&str]) -> Result<&'v str, JoinRefusal> {
    string_at(doc, path)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| JoinRefusal::MissingField(path.join(".")))
}

/// A scalar as Go's YAML decoder would put it in a `map[string]string`.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `map[string]string` at `path`; empty when absent.
fn string_map(doc: &Value, path: &[&str]) -> Result<BTreeMap<String, String>, JoinRefusal> {
    let field = path.join(".");
    let Some(v) = at(doc, path) else {
        return Ok(BTreeMap::new());
    };
    let Value::Mapping(m) = v else {
        return Err(JoinRefusal::InvalidField {
            field,
            reason: format!("expected a mapping, found {}", kind_name(v)),
        });
    };
    m.iter()
        .map(|(k, v)| match (scalar_string(k), scalar_string(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(JoinRefusal::InvalidField {
                field: field.clone(),
                reason: "keys and values must be scalars".into(),
            }),
        })
        .collect()
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// A Kubernetes "name" part: 1–63 characters, alphanumeric at both ends, `-_.` inside.
fn valid_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|c| is_alnum(*c) || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lower case, at most 253, labels of `[a-z0-9-]` joined by dots.
pub fn valid_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A label or taint key: `[prefix/]name`.
fn valid_qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => valid_dns_subdomain(prefix) && valid_name_part(name),
        None => valid_name_part(k),
    }
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty() || valid_name_part(v)
}

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Splits the user-data into documents; empty documents are dropped.
fn documents(user_data: &str) -> Result<Vec<Value>, JoinRefusal> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(user_data).enumerate() {
        let v = Value::deserialize(de)
            .map_err(|e| JoinRefusal::InvalidYaml(format!("document {}: {e}", i + 1)))?;
        match v {
            Value::Null => {}
            Value::Mapping(_) => docs.push(v),
            other => {
                return Err(JoinRefusal::InvalidYaml(format!(
                    "document {} is {}, not a mapping",
                    i + 1,
                    kind_name(&other)
                )));
            }
        }
    }
    Ok(docs)
}

/// Checks a worker's user-data against the cluster's secrets, as a booting Talos machine and the
/// control plane would: machine configuration first, then the Tailscale extension's settings.
pub fn parse_worker(user_data: &str, expected: Expected<'_>) -> Result<WorkerConfig, JoinRefusal> {
    let docs = documents(user_data)?;
    let mut machine_docs = docs.iter().filter(|d| d.get("kind").is_none());
    let doc = machine_docs.next().ok_or(JoinRefusal::NoMachineConfig)?;
    if machine_docs.next().is_some() {
        return Err(JoinRefusal::DuplicateDocument(
            "v1alpha1 machine configuration".into(),
        ));
    }

    let version = required(doc, &["version"])?;
    if version != "v1alpha1" {
        return Err(JoinRefusal::UnsupportedVersion(version.to_owned()));
    }
    let ty = required(doc, &["machine", "type"])?;
    if ty != "worker" {
        return Err(JoinRefusal::NotWorker(ty.to_owned()));
    }
    if required(doc, &["machine", "token"])? != expected.machine_token {
        return Err(JoinRefusal::WrongMachineToken);
    }
    if required(doc, &["cluster", "token"])? != expected.bootstrap_token {
        return Err(JoinRefusal::WrongBootstrapToken);
    }
    let endpoint = required(doc, &["cluster", "controlPlane", "endpoint"])?;
    if endpoint != expected.endpoint {
        return Err(JoinRefusal::WrongEndpoint {
            found: endpoint.to_owned(),
        });
    }
    let hostname = required(doc, &["machine", "network", "hostname"])?;
    if !valid_dns_subdomain(hostname) {
        return Err(JoinRefusal::InvalidField {
            field: "machine.network.hostname".into(),
            reason: format!("{hostname:?} is not a valid node name (lower-case DNS subdomain)"),
        });
    }

    let labels = string_map(doc, &["machine", "nodeLabels"])?;
    for (k, v) in &labels {
        if !valid_qualified_key(k) || !valid_label_value(v) {
            return Err(JoinRefusal::InvalidField {
                field: format!("machine.nodeLabels.{k}"),
                reason: format!("{k}={v:?} is not a valid Kubernetes label"),
            });
        }
    }
    let mut taints = Vec::new();
    for (k, spec) in string_map(doc, &["machine", "nodeTaints"])? {
        let field = format!("machine.nodeTaints.{k}");
        let Some((value, effect)) = spec.rsplit_once(':') else {
            return Err(JoinRefusal::InvalidField {
                field,
                reason: format!("{spec:?} is not \"value:Effect\" or \":Effect\""),
            });
        };
        if !EFFECTS.contains(&effect) {
            return Err(JoinRefusal::InvalidField {
                field,
                reason: format!("effect {effect:?} is not one of {EFFECTS:?}"),
            });
        }
        if !valid_qualified_key(&k) || !valid_label_value(value) {
            return Err(JoinRefusal::InvalidField {
                field,
                reason: format!("{k}={value:?} is not a valid taint key and value"),
            });
        }
        taints.push((k, value.to_owned(), effect.to_owned()));
    }

    let mut ts_docs = docs.iter().filter(|d| {
        d.get("kind").and_then(Value::as_str) == Some("ExtensionServiceConfig")
            && d.get("name").and_then(Value::as_str) == Some("tailscale")
    });
    let ts = ts_docs.next().ok_or(JoinRefusal::NoTailscaleConfig)?;
    if ts_docs.next().is_some() {
        return Err(JoinRefusal::DuplicateDocument(
            "ExtensionServiceConfig tailscale".into(),
        ));
    }
    let api_version = required(ts, &["apiVersion"])?;
    if api_version != "v1alpha1" {
        return Err(JoinRefusal::InvalidField {
            field: "ExtensionServiceConfig.apiVersion".into(),
            reason: format!("{api_version:?} is not \"v1alpha1\""),
        });
    }
    let env_field = "ExtensionServiceConfig(tailscale).environment";
    let env: Vec<(String, String)> = match at(ts, &["environment"]) {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|s| s.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| JoinRefusal::InvalidField {
                        field: env_field.into(),
                        reason: "entries must be strings \"NAME=value\"".into(),
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(JoinRefusal::InvalidField {
                field: env_field.into(),
                reason: format!("expected a list, found {}", kind_name(other)),
            });
        }
    };
    // Like a process environment, the last assignment wins.
    let var = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let auth_key = var("TS_AUTHKEY").ok_or(JoinRefusal::MissingAuthKey)?;
    let advertise_tags = advertised_tags(var("TS_EXTRA_ARGS").as_deref().unwrap_or(""))?;
    Ok(WorkerConfig {
        hostname: hostname.to_owned(),
        labels,
        taints,
        auth_key,
        tailscale_hostname: var("TS_HOSTNAME"),
        advertise_tags,
    })
}

/// The tags of `--advertise-tags=a,b` (or `--advertise-tags a,b`, or Go's single-dash form) in
/// `tailscale up`'s extra arguments.
fn advertised_tags(extra_args: &str) -> Result<Vec<String>, JoinRefusal> {
    let mut words = extra_args.split_whitespace();
    let mut value = None;
    while let Some(w) = words.next() {
        let flag = w.trim_start_matches('-');
        if w.starts_with('-') && flag == "advertise-tags" {
            value = Some(words.next().unwrap_or_default());
        } else if w.starts_with('-')
            && let Some(v) = flag.strip_prefix("advertise-tags=")
        {
            value = Some(v);
        }
    }
    let tags: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
        return Err(JoinRefusal::InvalidField {
            field: "ExtensionServiceConfig(tailscale).environment.TS_EXTRA_ARGS".into(),
            reason: format!("advertised tag {bad:?} does not look like \"tag:name\""),
        });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: Expected<'static> = Expected {
        bootstrap_token: "abcdef.0123456789abcdef",
        machine_token: "328hom.uqjzh6jnn2eie9oi",
        endpoint: "https://100.64.0.1:6443",
    };

    fn config(machine_extra: &str, env: &str) -> String {
        format!(
            "version: v1alpha1\nmachine:\n  type: worker\n  token: 328hom.uqjzh6jnn2eie9oi\n  network:\n    hostname: gpu-1\n{machine_extra}cluster:\n  token: abcdef.0123456789abcdef\n  controlPlane:\n    endpoint: https://100.64.0.1:6443\n---\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: tailscale\nenvironment:\n{env}"
        )
    }

    #[test]
    fn parses_a_valid_worker() {
        let c = parse_worker(
            &config(
                "  nodeLabels:\n    tgp.dev/request: r1\n    count: 2\n  nodeTaints:\n    nvidia.com/gpu: present:NoSchedule\n    tgp.dev/booting: :NoExecute\n",
                "  - TS_AUTHKEY=tskey-auth-k1-x\n  - TS_HOSTNAME=gpu-1-ts\n",
            ),
            EXPECTED,
        )
        .unwrap();
        assert_eq!(c.hostname, "gpu-1");
        assert_eq!(c.labels["tgp.dev/request"], "r1");
        assert_eq!(c.labels["count"], "2");
        assert_eq!(
            c.taints,
            vec![
                (
                    "nvidia.com/gpu".into(),
                    "present".into(),
                    "NoSchedule".into()
                ),
                ("tgp.dev/booting".into(), "".into(), "NoExecute".into()),
            ]
        );
        assert_eq!(c.auth_key, "tskey-auth-k1-x");
        assert_eq!(c.tailnet_hostname(), "gpu-1-ts");
        assert!(c.advertise_tags.is_empty());
    }

    #[test]
    fn advertise_tags_in_extra_args() {
        let t = |s: &str| advertised_tags(s);
        assert_eq!(
            t("--accept-routes --advertise-tags=tag:a,tag:b").unwrap(),
            vec!["tag:a".to_owned(), "tag:b".to_owned()]
        );
        assert_eq!(
            t("-advertise-tags tag:a").unwrap(),
            vec!["tag:a".to_owned()]
        );
        assert!(t("--ssh").unwrap().is_empty());
        assert!(t("").unwrap().is_empty());
        assert!(t("--advertise-tags").unwrap().is_empty());
        assert!(matches!(
            t("--advertise-tags=gpu"),
            Err(JoinRefusal::InvalidField { .. })
        ));
    }

    #[test]
    fn refusals_are_precise() {
        let env = "  - TS_AUTHKEY=k\n";
        let bad_taint = config("  nodeTaints:\n    a: b:Sometimes\n", env);
        assert!(matches!(
            parse_worker(&bad_taint, EXPECTED),
            Err(JoinRefusal::InvalidField { field, .. }) if field == "machine.nodeTaints.a"
        ));
        let no_effect = config("  nodeTaints:\n    a: b\n", env);
        assert!(matches!(
            parse_worker(&no_effect, EXPECTED),
            Err(JoinRefusal::InvalidField { .. })
        ));
        let bad_label = config("  nodeLabels:\n    \"-x\": y\n", env);
        assert!(matches!(
            parse_worker(&bad_label, EXPECTED),
            Err(JoinRefusal::InvalidField { .. })
        ));
        assert_eq!(
            parse_worker(&config("", "  - TS_HOSTNAME=x\n"), EXPECTED),
            Err(JoinRefusal::MissingAuthKey)
        );
        assert_eq!(
            parse_worker(&config("", "  - TS_AUTHKEY=\n"), EXPECTED),
            Err(JoinRefusal::MissingAuthKey)
        );
        let cp = config("", env).replace("type: worker", "type: controlplane");
        assert_eq!(
            parse_worker(&cp, EXPECTED),
            Err(JoinRefusal::NotWorker("controlplane".into()))
        );
        let v2 = config("", env).replace("version: v1alpha1\n", "version: v2\n");
        assert_eq!(
            parse_worker(&v2, EXPECTED),
            Err(JoinRefusal::UnsupportedVersion("v2".into()))
        );
        let no_token = config("", env).replace("  token: 328hom.uqjzh6jnn2eie9oi\n", "");
        assert_eq!(
            parse_worker(&no_token, EXPECTED),
            Err(JoinRefusal::MissingField("machine.token".into()))
        );
        let mt = config("", env).replace("328hom.uqjzh6jnn2eie9oi", "other.token");
        assert_eq!(
            parse_worker(&mt, EXPECTED),
            Err(JoinRefusal::WrongMachineToken)
        );
        let upper = config("", env).replace("hostname: gpu-1", "hostname: GPU_1");
        assert!(matches!(
            parse_worker(&upper, EXPECTED),
            Err(JoinRefusal::InvalidField { field, .. }) if field == "machine.network.hostname"
        ));
        let only_machine = config("", env);
        let only_machine = only_machine.split("---").next().unwrap();
        assert_eq!(
            parse_worker(only_machine, EXPECTED),
            Err(JoinRefusal::NoTailscaleConfig)
        );
        assert_eq!(
            parse_worker("", EXPECTED),
            Err(JoinRefusal::NoMachineConfig)
        );
        assert!(matches!(
            parse_worker("just text", EXPECTED),
            Err(JoinRefusal::InvalidYaml(_))
        ));
        assert!(matches!(
            parse_worker("a: [1,\n", EXPECTED),
            Err(JoinRefusal::InvalidYaml(_))
        ));
        let twice = format!(
            "{}\n---\n{}",
            config("", env).split("---").next().unwrap(),
            config("", env)
        );
        assert!(matches!(
            parse_worker(&twice, EXPECTED),
            Err(JoinRefusal::DuplicateDocument(_))
        ));
        let env_map = config("", "  TS_AUTHKEY: k\n");
        assert!(matches!(
            parse_worker(&env_map, EXPECTED),
            Err(JoinRefusal::InvalidField { .. })
        ));
    }

    #[test]
    fn key_syntax() {
        assert!(valid_qualified_key("nvidia.com/gpu.present"));
        assert!(valid_qualified_key("a"));
        assert!(!valid_qualified_key("Bad.Prefix/x"));
        assert!(!valid_qualified_key("a/"));
        assert!(!valid_qualified_key(&"x".repeat(64)));
        assert!(valid_dns_subdomain("gpu-1.example"));
        assert!(!valid_dns_subdomain("-gpu"));
    }
}
