//! The cluster's Talos secrets, read from a Kubernetes Secret. Exists because a worker can only
//! join a Talos cluster with the trust material of that cluster (the machine token and CA, the
//! cluster id and secret, the Kubernetes bootstrap token and CA) and the operator must refuse a
//! wrong or incomplete bundle up front, naming the key to fix, rather than boot machines that
//! never join.
//!
//! # Secret keys
//!
//! Either set each value under its own key:
//!
//! | key                      | value                                                              |
//! |--------------------------|--------------------------------------------------------------------|
//! | `machine-token`          | trustd token, `[a-z0-9]{6}.[a-z0-9]{16}` (`trustdinfo.token`)       |
//! | `machine-ca.crt`         | Talos OS CA certificate, PEM text or base64 of PEM (`certs.os.crt`) |
//! | `cluster-id`             | base64 of 32 bytes (`cluster.id`)                                  |
//! | `cluster-secret`         | base64 of 32 bytes (`cluster.secret`)                              |
//! | `bootstrap-token`        | Kubernetes bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}` (`secrets.bootstraptoken`) |
//! | `cluster-ca.crt`         | Kubernetes CA certificate, PEM text or base64 of PEM (`certs.k8s.crt`) |
//! | `control-plane-endpoint` | `https://host:port` of the Kubernetes API, reachable over the tailnet |
//!
//! or put the output of `talosctl gen secrets` under the single key `secrets.yaml`, together
//! with `control-plane-endpoint` (which that file does not contain):
//!
//! ```text
//! kubectl -n tgp-system create secret generic talos-secrets \
//!   --from-file=secrets.yaml --from-literal=control-plane-endpoint=https://cp.tailnet:6443
//! ```
//!
//! A key set individually overrides the same value in `secrets.yaml`. Only certificates are
//! read from the bundle; the CA private keys it also holds are never used.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Secret key names.
pub const MACHINE_TOKEN: &str = "machine-token";
pub const MACHINE_CA_CRT: &str = "machine-ca.crt";
pub const CLUSTER_ID: &str = "cluster-id";
pub const CLUSTER_SECRET: &str = "cluster-secret";
pub const BOOTSTRAP_TOKEN: &str = "bootstrap-token";
pub const CLUSTER_CA_CRT: &str = "cluster-ca.crt";
pub const CONTROL_PLANE_ENDPOINT: &str = "control-plane-endpoint";
pub const SECRETS_YAML: &str = "secrets.yaml";

/// The values a worker's machine configuration needs. Certificates are stored as base64 of
/// PEM, the form Talos's configuration expects. `Debug` shows only the endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct TalosSecrets {
    pub machine_token: String,
    /// base64 of PEM
    pub machine_ca_crt: String,
    pub cluster_id: String,
    pub cluster_secret: String,
    pub bootstrap_token: String,
    /// base64 of PEM
    pub cluster_ca_crt: String,
    pub control_plane_endpoint: String,
}

/// A Secret key that is missing or invalid. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key:?}: {reason}")]
pub struct TalosSecretError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> TalosSecretError {
    TalosSecretError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl fmt::Debug for TalosSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const R: &str = "[redacted]";
        f.debug_struct("TalosSecrets")
            .field("machine_token", &format_args!("{R}"))
            .field("machine_ca_crt", &format_args!("{R}"))
            .field("cluster_id", &format_args!("{R}"))
            .field("cluster_secret", &format_args!("{R}"))
            .field("bootstrap_token", &format_args!("{R}"))
            .field("cluster_ca_crt", &format_args!("{R}"))
            .field("control_plane_endpoint", &self.control_plane_endpoint)
            .finish()
    }
}

/// Where a value came from, for error messages.
enum Source {
    Key,
    Bundle(&'static str),
}

impl Source {
    fn describe(&self, reason: String) -> String {
        match self {
            Source::Key => reason,
            Source::Bundle(path) => format!("{reason} (value from {SECRETS_YAML} field {path})"),
        }
    }
}

/// The values found in a `talosctl gen secrets` bundle, keyed by Secret key name.
fn bundle_values(
    text: &str,
) -> Result<BTreeMap<&'static str, (String, &'static str)>, TalosSecretError> {
    // Parsed as an untyped value: typed deserialisation errors can quote the offending value.
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        err(
            SECRETS_YAML,
            format!("is not valid YAML{at}; expected the output of `talosctl gen secrets`"),
        )
    })?;
    if !doc.is_mapping() {
        return Err(err(
            SECRETS_YAML,
            "must be a YAML mapping (the output of `talosctl gen secrets`)",
        ));
    }
    let fields: [(&'static str, &'static str); 6] = [
        (CLUSTER_ID, "cluster.id"),
        (CLUSTER_SECRET, "cluster.secret"),
        (BOOTSTRAP_TOKEN, "secrets.bootstraptoken"),
        (MACHINE_TOKEN, "trustdinfo.token"),
        (MACHINE_CA_CRT, "certs.os.crt"),
        (CLUSTER_CA_CRT, "certs.k8s.crt"),
    ];
    let mut out = BTreeMap::new();
    for (key, path) in fields {
        let mut node = Some(&doc);
        for part in path.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        match node {
            None | Some(serde_yaml::Value::Null) => {}
            Some(serde_yaml::Value::String(s)) => {
                out.insert(key, (s.clone(), path));
            }
            Some(_) => {
                return Err(err(SECRETS_YAML, format!("field {path} must be a string")));
            }
        }
    }
    Ok(out)
}

fn utf8<'a>(key: &str, bytes: &'a [u8]) -> Result<&'a str, TalosSecretError> {
    std::str::from_utf8(bytes).map_err(|_| err(key, "is not UTF-8 text"))
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`
fn token_shape(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

fn check_token(s: &str) -> Result<String, String> {
    if token_shape(s) {
        Ok(s.to_string())
    } else {
        Err("must be a token of the form abcdef.0123456789abcdef (6 and 16 lowercase letters or digits)".into())
    }
}

fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

fn check_32_bytes(s: &str) -> Result<String, String> {
    let bytes = STANDARD
        .decode(strip_ws(s))
        .map_err(|_| "is not valid base64".to_string())?;
    if bytes.len() == 32 {
        Ok(s.to_string())
    } else {
        Err(format!(
            "must be base64 of exactly 32 bytes (decodes to {} bytes)",
            bytes.len()
        ))
    }
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Checks PEM text holds one or more certificates whose bodies decode.
fn check_pem(text: &str) -> Result<(), String> {
    let mut rest = text.trim();
    let mut count = 0;
    while !rest.is_empty() {
        let Some(after_begin) = rest.strip_prefix(PEM_BEGIN) else {
            return Err(format!("PEM must consist of {PEM_BEGIN} blocks"));
        };
        let Some((body, after_end)) = after_begin.split_once(PEM_END) else {
            return Err(format!("PEM certificate has no {PEM_END} line"));
        };
        let der = STANDARD
            .decode(strip_ws(body))
            .map_err(|_| "PEM certificate body is not valid base64".to_string())?;
        if der.is_empty() {
            return Err("PEM certificate body is empty".into());
        }
        count += 1;
        rest = after_end.trim_start();
    }
    if count == 0 {
        return Err("PEM holds no certificate".into());
    }
    Ok(())
}

/// Accepts PEM text or base64 of PEM; returns base64 of PEM.
fn check_ca(s: &str) -> Result<String, String> {
    if s.starts_with("-----BEGIN") {
        check_pem(s)?;
        let mut pem = s.to_string();
        pem.push('\n');
        return Ok(STANDARD.encode(pem));
    }
    let decoded = STANDARD.decode(strip_ws(s)).map_err(|_| {
        format!("must be a PEM certificate ({PEM_BEGIN} ...) or base64 of one; it is neither")
    })?;
    let pem = std::str::from_utf8(&decoded)
        .map_err(|_| "decodes from base64 but is not PEM text".to_string())?;
    if !pem.trim_start().starts_with(PEM_BEGIN) {
        return Err(format!(
            "decodes from base64 but is not a PEM certificate ({PEM_BEGIN} ...)"
        ));
    }
    check_pem(pem)?;
    Ok(STANDARD.encode(&decoded))
}

/// A value check: the stored form, or a reason.
type Check = fn(&str) -> Result<String, String>;

/// A certificate in its stored form: base64 of PEM.
fn check_stored_ca(s: &str) -> Result<String, String> {
    let reason = || "must be base64 of a PEM certificate".to_string();
    let pem = STANDARD.decode(s).map_err(|_| reason())?;
    let pem = std::str::from_utf8(&pem).map_err(|_| reason())?;
    if !pem.trim_start().starts_with(PEM_BEGIN) {
        return Err(reason());
    }
    check_pem(pem)?;
    Ok(s.to_string())
}

/// `https://host:port` with an explicit port and nothing after it but an optional `/`.
fn check_endpoint(s: &str) -> Result<String, String> {
    let shape = "must be an https://host:port URL, such as https://cp.example.ts.net:6443";
    let url = url::Url::parse(s).map_err(|e| format!("{shape} ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!("{shape}: the scheme must be https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shape}: the host is missing"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{shape}: credentials in the URL are not allowed"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{shape}: no path, query or fragment"));
    }
    // `Url` hides a default port (443), so look at the authority as written.
    let Some(rest) = s
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("https://"))
        .and(s.get(8..))
    else {
        return Err(format!("{shape}: it must start with https://"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') =>
        {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(format!("{shape}: the port is missing")),
    }
}

impl TalosSecrets {
    /// Checks values already in their stored form (tokens, 32-byte ids, certificates as base64
    /// of PEM, the endpoint), for secrets built by hand rather than by
    /// [`TalosSecrets::from_secret_data`].
    pub fn validate(&self) -> Result<(), TalosSecretError> {
        let checks: [(&str, &str, Check); 7] = [
            (MACHINE_TOKEN, &self.machine_token, check_token),
            (MACHINE_CA_CRT, &self.machine_ca_crt, check_stored_ca),
            (CLUSTER_ID, &self.cluster_id, check_32_bytes),
            (CLUSTER_SECRET, &self.cluster_secret, check_32_bytes),
            (BOOTSTRAP_TOKEN, &self.bootstrap_token, check_token),
            (CLUSTER_CA_CRT, &self.cluster_ca_crt, check_stored_ca),
            (
                CONTROL_PLANE_ENDPOINT,
                &self.control_plane_endpoint,
                check_endpoint,
            ),
        ];
        for (key, value, check) in checks {
            if value.is_empty() {
                return Err(err(key, "is empty"));
            }
            check(value).map_err(|r| err(key, r))?;
        }
        Ok(())
    }

    /// Reads and validates the Secret's `data`. See the module docs for the keys.
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<TalosSecrets, TalosSecretError> {
        let bundle = match data.get(SECRETS_YAML) {
            Some(bytes) => bundle_values(utf8(SECRETS_YAML, bytes)?)?,
            None => BTreeMap::new(),
        };
        let has_bundle = data.contains_key(SECRETS_YAML);
        let get = |key: &'static str, check: Check| -> Result<String, TalosSecretError> {
            let (value, source) = match data.get(key) {
                Some(bytes) => (utf8(key, bytes)?.trim().to_string(), Source::Key),
                None => match bundle.get(key) {
                    Some((v, path)) => (v.trim().to_string(), Source::Bundle(path)),
                    None => {
                        let hint = if key == CONTROL_PLANE_ENDPOINT {
                            "missing: set it to the https://host:port of the Kubernetes API"
                                .to_string()
                        } else if has_bundle {
                            format!("missing: set the key, or fix {SECRETS_YAML}, which lacks it")
                        } else {
                            format!(
                                "missing: set the key, or provide {SECRETS_YAML} from `talosctl gen secrets`"
                            )
                        };
                        return Err(err(key, hint));
                    }
                },
            };
            if value.is_empty() {
                return Err(err(key, source.describe("is empty".into())));
            }
            check(&value).map_err(|r| err(key, source.describe(r)))
        };
        Ok(TalosSecrets {
            machine_token: get(MACHINE_TOKEN, check_token)?,
            machine_ca_crt: get(MACHINE_CA_CRT, check_ca)?,
            cluster_id: get(CLUSTER_ID, check_32_bytes)?,
            cluster_secret: get(CLUSTER_SECRET, check_32_bytes)?,
            bootstrap_token: get(BOOTSTRAP_TOKEN, check_token)?,
            cluster_ca_crt: get(CLUSTER_CA_CRT, check_ca)?,
            control_plane_endpoint: get(CONTROL_PLANE_ENDPOINT, check_endpoint)?,
        })
    }
}

/// Test fixtures shared with the other bootstrap modules' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const MACHINE_TOKEN_V: &str = "328hom.uqjzh6jnn2eie9oi";
    pub const BOOTSTRAP_TOKEN_V: &str = "abcdef.0123456789abcdef";
    pub const ENDPOINT: &str = "https://cp.example.ts.net:6443";

    /// A syntactically valid (not cryptographically meaningful) certificate.
    pub fn pem(tag: &str) -> String {
        let der = STANDARD.encode(format!("fake DER certificate {tag}"));
        format!("{PEM_BEGIN}\n{der}\n{PEM_END}\n")
    }

    pub fn b64_32(seed: u8) -> String {
        STANDARD.encode([seed; 32])
    }

    /// A complete Secret using individual keys.
    pub fn secret_data() -> BTreeMap<String, Vec<u8>> {
        [
            (MACHINE_TOKEN, MACHINE_TOKEN_V.to_string()),
            (MACHINE_CA_CRT, pem("os")),
            (CLUSTER_ID, b64_32(1)),
            (CLUSTER_SECRET, b64_32(2)),
            (BOOTSTRAP_TOKEN, BOOTSTRAP_TOKEN_V.to_string()),
            (CLUSTER_CA_CRT, STANDARD.encode(pem("k8s"))),
            (CONTROL_PLANE_ENDPOINT, ENDPOINT.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect()
    }

    pub fn secrets() -> TalosSecrets {
        TalosSecrets::from_secret_data(&secret_data()).expect("fixture is valid")
    }

    /// What `talosctl gen secrets` writes (abridged to the fields tgp reads, plus keys it
    /// ignores).
    pub fn gen_secrets_yaml() -> String {
        format!(
            "cluster:\n    id: {id}\n    secret: {secret}\nsecrets:\n    bootstraptoken: {bt}\n    secretboxencryptionsecret: {sb}\ntrustdinfo:\n    token: {mt}\ncerts:\n    etcd:\n        crt: {etcd}\n        key: c2VjcmV0\n    k8s:\n        crt: {k8s}\n        key: c2VjcmV0\n    os:\n        crt: {os}\n        key: c2VjcmV0\n",
            id = b64_32(3),
            secret = b64_32(4),
            bt = BOOTSTRAP_TOKEN_V,
            sb = b64_32(5),
            mt = MACHINE_TOKEN_V,
            etcd = STANDARD.encode(pem("etcd")),
            k8s = STANDARD.encode(pem("k8s")),
            os = STANDARD.encode(pem("os")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn with(key: &str, value: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut d = secret_data();
        d.insert(key.to_string(), value.to_vec());
        d
    }

    fn error_for(data: &BTreeMap<String, Vec<u8>>) -> TalosSecretError {
        TalosSecrets::from_secret_data(data).expect_err("should be refused")
    }

    #[test]
    fn individual_keys() {
        let s = TalosSecrets::from_secret_data(&secret_data()).unwrap();
        assert_eq!(s.machine_token, MACHINE_TOKEN_V);
        assert_eq!(s.bootstrap_token, BOOTSTRAP_TOKEN_V);
        assert_eq!(s.cluster_id, b64_32(1));
        assert_eq!(s.cluster_secret, b64_32(2));
        assert_eq!(s.control_plane_endpoint, ENDPOINT);
        // PEM text and base64 of PEM both end up as base64 of PEM.
        assert_eq!(
            STANDARD.decode(&s.machine_ca_crt).unwrap(),
            pem("os").into_bytes()
        );
        assert_eq!(
            STANDARD.decode(&s.cluster_ca_crt).unwrap(),
            pem("k8s").into_bytes()
        );
    }

    #[test]
    fn values_are_trimmed() {
        let d = with(MACHINE_TOKEN, format!("{MACHINE_TOKEN_V}\n").as_bytes());
        assert_eq!(
            TalosSecrets::from_secret_data(&d).unwrap().machine_token,
            MACHINE_TOKEN_V
        );
    }

    #[test]
    fn gen_secrets_bundle_with_endpoint() {
        let mut d = BTreeMap::new();
        d.insert(SECRETS_YAML.to_string(), gen_secrets_yaml().into_bytes());
        d.insert(
            CONTROL_PLANE_ENDPOINT.to_string(),
            ENDPOINT.as_bytes().to_vec(),
        );
        let s = TalosSecrets::from_secret_data(&d).unwrap();
        assert_eq!(s.cluster_id, b64_32(3));
        assert_eq!(s.cluster_secret, b64_32(4));
        assert_eq!(s.bootstrap_token, BOOTSTRAP_TOKEN_V);
        assert_eq!(s.machine_token, MACHINE_TOKEN_V);
        assert_eq!(
            STANDARD.decode(&s.machine_ca_crt).unwrap(),
            pem("os").into_bytes()
        );
        assert_eq!(
            STANDARD.decode(&s.cluster_ca_crt).unwrap(),
            pem("k8s").into_bytes()
        );
        assert_eq!(s.control_plane_endpoint, ENDPOINT);
    }

    #[test]
    fn individual_keys_override_the_bundle() {
        let mut d = secret_data();
        d.insert(SECRETS_YAML.to_string(), gen_secrets_yaml().into_bytes());
        let s = TalosSecrets::from_secret_data(&d).unwrap();
        assert_eq!(s.cluster_id, b64_32(1));
        assert_eq!(s.cluster_secret, b64_32(2));

        // Only one key set individually: the rest come from the bundle.
        let mut d = BTreeMap::new();
        d.insert(SECRETS_YAML.to_string(), gen_secrets_yaml().into_bytes());
        d.insert(
            CONTROL_PLANE_ENDPOINT.to_string(),
            ENDPOINT.as_bytes().to_vec(),
        );
        d.insert(CLUSTER_ID.to_string(), b64_32(9).into_bytes());
        let s = TalosSecrets::from_secret_data(&d).unwrap();
        assert_eq!(s.cluster_id, b64_32(9));
        assert_eq!(s.cluster_secret, b64_32(4));
    }

    #[test]
    fn bundle_without_endpoint_names_the_endpoint() {
        let mut d = BTreeMap::new();
        d.insert(SECRETS_YAML.to_string(), gen_secrets_yaml().into_bytes());
        let e = error_for(&d);
        assert_eq!(e.key, CONTROL_PLANE_ENDPOINT);
        assert!(e.reason.contains("missing"), "{e}");
    }

    #[test]
    fn bad_bundle() {
        let mut d = BTreeMap::new();
        d.insert(SECRETS_YAML.to_string(), b"cluster: [unclosed".to_vec());
        let e = error_for(&d);
        assert_eq!(e.key, SECRETS_YAML);
        assert!(e.reason.contains("not valid YAML"), "{e}");

        d.insert(SECRETS_YAML.to_string(), b"- a list".to_vec());
        assert_eq!(error_for(&d).key, SECRETS_YAML);

        d.insert(SECRETS_YAML.to_string(), b"cluster:\n  id: [1]\n".to_vec());
        let e = error_for(&d);
        assert_eq!(e.key, SECRETS_YAML);
        assert!(e.reason.contains("cluster.id"), "{e}");

        d.insert(SECRETS_YAML.to_string(), vec![0xff, 0xfe]);
        let e = error_for(&d);
        assert_eq!(e.key, SECRETS_YAML);
        assert!(e.reason.contains("UTF-8"));

        // A bundle missing a field, no override: names the key and the bundle.
        let text = gen_secrets_yaml().replace("trustdinfo:", "other:");
        d.insert(SECRETS_YAML.to_string(), text.into_bytes());
        d.insert(
            CONTROL_PLANE_ENDPOINT.to_string(),
            ENDPOINT.as_bytes().to_vec(),
        );
        let e = error_for(&d);
        assert_eq!(e.key, MACHINE_TOKEN);
        assert!(e.reason.contains(SECRETS_YAML), "{e}");

        // An invalid value inside the bundle names its path.
        let text = gen_secrets_yaml().replace(BOOTSTRAP_TOKEN_V, "nope");
        d.insert(SECRETS_YAML.to_string(), text.into_bytes());
        let e = error_for(&d);
        assert_eq!(e.key, BOOTSTRAP_TOKEN);
        assert!(e.reason.contains("secrets.bootstraptoken"), "{e}");
    }

    #[test]
    fn every_key_is_required() {
        for key in [
            MACHINE_TOKEN,
            MACHINE_CA_CRT,
            CLUSTER_ID,
            CLUSTER_SECRET,
            BOOTSTRAP_TOKEN,
            CLUSTER_CA_CRT,
            CONTROL_PLANE_ENDPOINT,
        ] {
            let mut d = secret_data();
            d.remove(key);
            let e = error_for(&d);
            assert_eq!(e.key, key);
            assert!(e.reason.starts_with("missing"), "{e}");
            assert_eq!(e.to_string(), format!("key {key:?}: {}", e.reason));

            let e = error_for(&with(key, b"  \n"));
            assert_eq!(e.key, key);
            assert!(e.reason.contains("empty"), "{e}");

            let e = error_for(&with(key, &[b'a', 0xc3, 0x28]));
            assert_eq!(e.key, key);
            assert!(e.reason.contains("UTF-8"), "{e}");
        }
    }

    #[test]
    fn tokens() {
        for bad in [
            "qwerty9876543210qwerty",
            "QWERTY.9876543210qwerty",
            "qwert.9876543210qwerty",
            "qwerty.9876543210qwert",
            "qwerty.9876543210qwertyu",
            "qwe-ty.9876543210qwerty",
            "qwerty.98765432.0qwerty",
        ] {
            for key in [MACHINE_TOKEN, BOOTSTRAP_TOKEN] {
                let e = error_for(&with(key, bad.as_bytes()));
                assert_eq!(e.key, key);
                assert!(e.reason.contains("abcdef.0123456789abcdef"), "{e}");
                assert!(!e.to_string().contains(bad), "the value leaked: {e}");
            }
        }
    }

    #[test]
    fn cluster_id_and_secret() {
        for key in [CLUSTER_ID, CLUSTER_SECRET] {
            let e = error_for(&with(key, STANDARD.encode([0u8; 31]).as_bytes()));
            assert_eq!(e.key, key);
            assert!(
                e.reason.contains("32 bytes") && e.reason.contains("31"),
                "{e}"
            );
            let e = error_for(&with(key, b"not base64!"));
            assert_eq!(e.key, key);
            assert!(e.reason.contains("base64"), "{e}");
        }
    }

    #[test]
    fn certificates() {
        for key in [MACHINE_CA_CRT, CLUSTER_CA_CRT] {
            // Raw PEM text and base64 of it.
            let cert = pem("x");
            for form in [cert.clone(), STANDARD.encode(&cert)] {
                let s = TalosSecrets::from_secret_data(&with(key, form.as_bytes())).unwrap();
                let got = if key == MACHINE_CA_CRT {
                    s.machine_ca_crt
                } else {
                    s.cluster_ca_crt
                };
                assert_eq!(STANDARD.decode(got).unwrap(), cert.as_bytes());
            }
            // A bundle of two certificates is fine.
            let two = format!("{}{}", pem("a"), pem("b"));
            assert!(TalosSecrets::from_secret_data(&with(key, two.as_bytes())).is_ok());

            let bad: Vec<(String, &str)> = vec![
                ("hello".into(), "neither"),
                (STANDARD.encode("hello"), "not a PEM"),
                (STANDARD.encode([0xffu8, 0xfe]), "not PEM text"),
                (format!("{PEM_BEGIN}\n!!!\n{PEM_END}\n"), "not valid base64"),
                (format!("{PEM_BEGIN}\nAAAA\n"), "no -----END"),
                (format!("{PEM_BEGIN}\n\n{PEM_END}\n"), "empty"),
                (
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into(),
                    "BEGIN CERTIFICATE",
                ),
                (
                    STANDARD.encode(format!("{PEM_BEGIN}\n!!\n{PEM_END}")),
                    "not valid base64",
                ),
            ];
            for (value, why) in bad {
                let e = error_for(&with(key, value.as_bytes()));
                assert_eq!(e.key, key);
                assert!(e.reason.contains(why), "{why}: {e}");
            }
        }
    }

    #[test]
    fn endpoint() {
        for good in [
            "https://cp.example.ts.net:6443",
            "https://100.64.0.1:6443/",
            "https://[fd7a:115c:a1e0::1]:6443",
            "https://cp:443",
        ] {
            let s = TalosSecrets::from_secret_data(&with(CONTROL_PLANE_ENDPOINT, good.as_bytes()))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(s.control_plane_endpoint, good.trim_end_matches('/'));
        }
        for (bad, why) in [
            ("cp.example:6443", "https://host:port"),
            ("http://cp:6443", "scheme must be https"),
            ("https:a", "must start with https://"),
            ("https:cp:6443", "must start with https://"),
            ("https://cp", "port is missing"),
            ("https://cp:6443/api", "no path"),
            ("https://cp:6443?x=1", "no path"),
            ("https://u:p@cp:6443", "credentials"),
            ("https://[fd7a::1]", "port is missing"),
        ] {
            let e = error_for(&with(CONTROL_PLANE_ENDPOINT, bad.as_bytes()));
            assert_eq!(e.key, CONTROL_PLANE_ENDPOINT);
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn validate_stored_form() {
        let good = secrets();
        assert_eq!(good.validate(), Ok(()));
        let mut s = good.clone();
        s.cluster_ca_crt = pem("raw");
        assert_eq!(s.validate().unwrap_err().key, CLUSTER_CA_CRT);
        let mut s = good.clone();
        s.machine_token = String::new();
        let e = s.validate().unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.reason.as_str()),
            (MACHINE_TOKEN, "is empty")
        );
        let mut s = good.clone();
        s.cluster_secret = b64_32(1)[4..].to_string();
        assert_eq!(s.validate().unwrap_err().key, CLUSTER_SECRET);
        let mut s = good;
        s.control_plane_endpoint = "https://cp".into();
        assert_eq!(s.validate().unwrap_err().key, CONTROL_PLANE_ENDPOINT);
    }

    #[test]
    fn debug_shows_only_the_endpoint() {
        let s = secrets();
        let dbg = format!("{s:?}");
        assert!(dbg.contains(ENDPOINT));
        for secret in [
            &s.machine_token,
            &s.machine_ca_crt,
            &s.cluster_id,
            &s.cluster_secret,
            &s.bootstrap_token,
            &s.cluster_ca_crt,
        ] {
            assert!(!dbg.contains(secret.as_str()), "{dbg}");
        }
        assert!(!dbg.contains("uqjzh6"));
        assert_eq!(dbg.matches("[redacted]").count(), 6);
    }
}
