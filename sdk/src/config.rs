//! The provider's configuration: string keys and values set by the operator per provider.
//!
//! Read single keys with [`get`]/[`require`], or declare a struct and [`load`] it: values are
//! strings, converted to the field's type (numbers, `true`/`false`, `Option`, enums by variant
//! name, and comma-separated lists for `Vec`). A missing or unconvertible key becomes an
//! `invalid-request` error naming the key, which is what the operator needs to fix it.
//!
//! The host fixes a plugin's configuration when it loads the plugin (a change of configuration
//! loads the plugin again, in new instances), so the SDK reads it from the host once per instance
//! and answers [`get`] and [`all`] from that copy.
//!
//! [`origin_of`] and [`base_url_hosts`] turn a base-URL setting into the hosts a provider
//! declares in `info()` (`Capabilities::hosts`), so that the declaration follows the
//! configuration: a plugin pointed at a loopback simulator declares the simulator's origin.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, Visitor};

use crate::types::ProviderError;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    crate::host::config_get(key)
}

/// The value of `key`, or `invalid-request` naming the key when it is unset or empty.
pub fn require(key: &str) -> Result<String, ProviderError> {
    match get(key) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::missing(key).into()),
    }
}

/// Every key and value.
pub fn all() -> Vec<(String, String)> {
    crate::host::config_all()
}

/// Builds `T` from the whole configuration (see [`from_pairs`]).
pub fn load<T: DeserializeOwned>() -> Result<T, ProviderError> {
    from_pairs(all()).map_err(ProviderError::from)
}

/// Checks a base-URL setting and normalises it: trimmed, `http://` or `https://` with a host, no
/// trailing slash. `example` is shown in the error (e.g. the vendor's real API URL); the error
/// names the key `base_url`.
pub fn base_url(raw: &str, example: &str) -> Result<String, ProviderError> {
    let url = raw.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if host.is_none_or(str::is_empty) {
        return Err(ProviderError::invalid(
            "base_url",
            format!("`{raw}` is not an http(s) URL such as {example}"),
        ));
    }
    Ok(url.to_string())
}

/// The origin of an http(s) URL, `scheme://host[:port]`: what a provider declares in
/// `Capabilities::hosts` for the API it reaches at that URL. The scheme and host are
/// lowercased; the path, query and fragment are dropped; a port is kept unless it is the
/// scheme's default. A URL that is not http(s) with a host (or that carries user info) is an
/// `invalid-request` on `base_url`.
///
/// ```
/// use tgp_provider_sdk::config::origin_of;
/// assert_eq!(origin_of("https://API.example.com/v1/").unwrap(), "https://api.example.com");
/// assert_eq!(origin_of("http://127.0.0.1:8790").unwrap(), "http://127.0.0.1:8790");
/// assert_eq!(origin_of("https://api.example.com:443").unwrap(), "https://api.example.com");
/// ```
pub fn origin_of(url: &str) -> Result<String, ProviderError> {
    let bad = |why: &str| ProviderError::invalid("base_url", format!("`{url}` {why}"));
    let not_http = || bad("is not an http(s) URL such as https://api.example.com");
    let (scheme, rest) = url.trim().split_once("://").ok_or_else(not_http)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(not_http()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "carries user info; put credentials in a secret instead",
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed IPv6 address"))?;
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(bad("has an invalid IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("has text after its IPv6 address"))?,
                ),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        },
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad(
            "has a host with characters a host name cannot hold (write an international name in its xn-- form)",
        ));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| bad("has a port that is not a number from 0 to 65535"))?,
        ),
    };
    Ok(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The hosts to declare (`Capabilities::hosts`, see `ProviderInfo::hosts`) for a provider that
/// calls one API at its `base_url` setting: the origin of `configured` (the setting's value,
/// `config::get("base_url")`) or, when that is unset or blank, of `default` (the vendor's API,
/// if the provider has one). Empty when no usable URL results: such a provider fails every
/// operation on its configuration before making any request, so it calls no host. Pure, so it
/// can be unit-tested natively.
///
/// ```
/// use tgp_provider_sdk::config::base_url_hosts;
/// let vendor = Some("https://api.vendor.example");
/// assert_eq!(base_url_hosts(None, vendor), ["https://api.vendor.example"]);
/// assert_eq!(base_url_hosts(Some("http://127.0.0.1:8790/".into()), vendor), ["http://127.0.0.1:8790"]);
/// assert!(base_url_hosts(None, None).is_empty());
/// ```
pub fn base_url_hosts(configured: Option<String>, default: Option<&str>) -> Vec<String> {
    configured
        .filter(|v| !v.trim().is_empty())
        .or_else(|| default.map(str::to_string))
        .and_then(|raw| base_url(&raw, "").ok())
        .and_then(|url| origin_of(&url).ok())
        .into_iter()
        .collect()
}

/// The provider name to report in `info()`: the configured `name` (trimmed), or `default` when
/// it is unset or blank. Lets one plugin serve as several distinct providers.
pub fn provider_name(configured: Option<String>, default: &str) -> String {
    value_or(configured, default)
}

/// A configured value (trimmed), or `default` when it is unset or blank: for settings `info()`
/// reads directly, e.g. the name of the secret its auth scheme uses:
/// `AuthScheme::bearer(config::value_or(config::get("api_key_secret"), "api_key"))`.
pub fn value_or(configured: Option<String>, default: &str) -> String {
    configured
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Builds `T` from key/value pairs. Unknown keys are ignored unless `T` denies them; use
/// `#[serde(default)]` for optional keys with defaults.
pub fn from_pairs<T: DeserializeOwned>(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    T::deserialize(PairsDeserializer {
        pairs: pairs.into_iter().collect(),
    })
}

/// A configuration problem, naming the key when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending key.
    pub key: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn missing(key: &str) -> Self {
        Self {
            key: Some(key.to_string()),
            reason: "required configuration key is not set".into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "configuration key `{key}`: {}", self.reason),
            None => write!(f, "configuration: {}", self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

impl de::Error for ConfigError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Self {
            key: None,
            reason: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::missing(field)
    }
}

impl From<ConfigError> for ProviderError {
    fn from(error: ConfigError) -> Self {
        ProviderError::invalid(error.key.unwrap_or_else(|| "config".into()), error.reason)
    }
}

/// The whole configuration, seen as a map.
struct PairsDeserializer {
    pairs: Vec<(String, String)>,
}

impl<'de> Deserializer<'de> for PairsDeserializer {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_map(PairsAccess {
            pairs: self.pairs.into_iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct PairsAccess {
    pairs: std::vec::IntoIter<(String, String)>,
    current: Option<(String, String)>,
}

impl<'de> MapAccess<'de> for PairsAccess {
    type Error = ConfigError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConfigError> {
        let Some((key, value)) = self.pairs.next() else {
            return Ok(None);
        };
        let parsed = seed.deserialize(key.clone().into_deserializer()).map(Some);
        self.current = Some((key, value));
        parsed
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConfigError> {
        let (key, value) = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| ConfigError {
                key: Some(key),
                reason: e.reason,
            })
    }
}

/// One configuration value: a string, converted on demand to what the field wants.
struct ValueDeserializer(String);

impl ValueDeserializer {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, ConfigError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("`{}` is not {what}", self.0)))
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            visitor.$visit(self.parse::<$ty>(concat!("a valid ", stringify!($ty)))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for ValueDeserializer {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        match self.0.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => visitor.visit_bool(true),
            "false" | "no" | "off" | "0" => visitor.visit_bool(false),
            _ => Err(de::Error::custom(format!(
                "`{}` is not true or false",
                self.0
            ))),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    /// A comma-separated list; an empty value is an empty list.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let items: Vec<ValueDeserializer> = self
            .0
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| ValueDeserializer(s.to_string()))
            .collect();
        visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_enum(self.0.trim().to_string().into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, ConfigError> for ValueDeserializer {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_url_is_normalised_and_checked() {
        assert_eq!(super::base_url(" http://h:1/ ", "x").unwrap(), "http://h:1");
        assert_eq!(
            super::base_url("https://api.example", "x").unwrap(),
            "https://api.example"
        );
        for bad in ["", "nope", "ftp://h", "http://", "https:///"] {
            match super::base_url(bad, "https://api.example") {
                Err(crate::ProviderError::InvalidRequest(f)) => {
                    assert_eq!(f.field, "base_url");
                    assert!(f.reason.contains("https://api.example"), "{}", f.reason);
                }
                other => panic!("{bad:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn origins_drop_the_path_and_default_port() {
        for (url, origin) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com/", "https://api.example.com"),
            (
                "HTTPS://API.Example.COM/v1/graphql?x=1#f",
                "https://api.example.com",
            ),
            ("https://api.example.com:443/v1", "https://api.example.com"),
            (
                "https://api.example.com:8443",
                "https://api.example.com:8443",
            ),
            ("http://127.0.0.1:8790", "http://127.0.0.1:8790"),
            ("http://127.0.0.1:80/x", "http://127.0.0.1"),
            (" http://h:1/ ", "http://h:1"),
            ("http://[::1]:9/", "http://[::1]:9"),
            ("http://[FD00::1]", "http://[fd00::1]"),
            ("https://cloud.lambda.ai/api/v1", "https://cloud.lambda.ai"),
        ] {
            assert_eq!(super::origin_of(url).as_deref(), Ok(origin), "{url}");
        }
    }

    #[test]
    fn malformed_origins_name_base_url() {
        for (bad, why) in [
            ("", "not an http(s) URL"),
            ("api.example.com", "not an http(s) URL"),
            ("ftp://h", "not an http(s) URL"),
            ("http://", "no host"),
            ("https:///v1", "no host"),
            ("https://user:pw@h", "user info"),
            ("http://h:port", "port"),
            ("http://h:70000", "port"),
            ("http://[::1", "IPv6"),
            ("http://[zz]", "IPv6"),
            ("http://[::1]x", "after its IPv6"),
            ("http://exa mple.com", "characters"),
            ("http://bücher.example", "xn--"),
        ] {
            match super::origin_of(bad) {
                Err(crate::ProviderError::InvalidRequest(f)) => {
                    assert_eq!(f.field, "base_url", "{bad}");
                    assert!(f.reason.contains(why), "{bad}: {}", f.reason);
                    assert!(f.reason.contains(bad.trim()), "{bad}: {}", f.reason);
                }
                other => panic!("{bad:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn base_url_hosts_follow_the_setting_then_the_default() {
        let vendor = Some("https://api.vendor.example");
        assert_eq!(
            super::base_url_hosts(None, vendor),
            ["https://api.vendor.example"]
        );
        assert_eq!(
            super::base_url_hosts(Some("  ".into()), vendor),
            ["https://api.vendor.example"]
        );
        assert_eq!(
            super::base_url_hosts(Some("http://127.0.0.1:8790/".into()), vendor),
            ["http://127.0.0.1:8790"]
        );
        assert_eq!(
            super::base_url_hosts(Some("http://127.0.0.1:8790".into()), None),
            ["http://127.0.0.1:8790"]
        );
        // Nothing usable: the plugin will call nothing, so it declares nothing.
        assert!(super::base_url_hosts(None, None).is_empty());
        assert!(super::base_url_hosts(Some("ftp://h".into()), vendor).is_empty());
        assert!(super::base_url_hosts(Some("nope".into()), None).is_empty());
    }

    #[test]
    fn provider_name_falls_back_to_the_default() {
        assert_eq!(super::provider_name(None, "mock"), "mock");
        assert_eq!(super::provider_name(Some("  ".into()), "mock"), "mock");
        assert_eq!(
            super::provider_name(Some(" mock-eu ".into()), "mock"),
            "mock-eu"
        );
    }

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Safe,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Settings {
        base_url: String,
        #[serde(default = "default_secret")]
        api_key_secret: String,
        name: Option<String>,
        #[serde(default)]
        retries: u32,
        #[serde(default)]
        spot: bool,
        #[serde(default)]
        ratio: f64,
        #[serde(default)]
        regions: Vec<String>,
        mode: Option<Mode>,
    }

    fn default_secret() -> String {
        "api_key".into()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn loads_and_coerces_values() {
        let s: Settings = from_pairs(pairs(&[
            ("base_url", "http://127.0.0.1:9"),
            ("retries", " 3 "),
            ("spot", "true"),
            ("ratio", "0.5"),
            ("regions", "us-east-1, eu-west-1,"),
            ("mode", "safe"),
            ("unrelated", "ignored"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            Settings {
                base_url: "http://127.0.0.1:9".into(),
                api_key_secret: "api_key".into(),
                name: None,
                retries: 3,
                spot: true,
                ratio: 0.5,
                regions: vec!["us-east-1".into(), "eu-west-1".into()],
                mode: Some(Mode::Safe),
            }
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let err = from_pairs::<Settings>(pairs(&[("name", "x")])).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("base_url"));
        assert_eq!(
            ProviderError::from(err),
            ProviderError::invalid("base_url", "required configuration key is not set")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err =
            from_pairs::<Settings>(pairs(&[("base_url", "x"), ("retries", "many")])).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("retries"));
        assert!(err.reason.contains("many"), "{}", err.reason);
        let err =
            from_pairs::<Settings>(pairs(&[("base_url", "x"), ("spot", "maybe")])).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("spot"));
        let err =
            from_pairs::<Settings>(pairs(&[("base_url", "x"), ("mode", "turbo")])).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("mode"));
    }

    #[test]
    fn unset_configuration_natively_is_empty() {
        assert_eq!(get("base_url"), None);
        assert_eq!(
            require("base_url"),
            Err(ProviderError::invalid(
                "base_url",
                "required configuration key is not set"
            ))
        );
        assert!(all().is_empty());
    }
}
