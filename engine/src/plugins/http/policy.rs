//! Which origins a plugin may reach.
//!
//! Deny by default: only origins named in the grants' allow-list (`scheme://host[:port]`, the
//! port defaulting by scheme) are reachable. Private, loopback, link-local, CGNAT and metadata
//! addresses are never reached through a hostname (the client's resolver drops them, at connect
//! time, so DNS rebinding cannot sneak past); an IP literal is only reachable when the allow-list
//! names that exact address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Origin {
    /// The origin of a URL (http and https only).
    pub fn of(url: &Url) -> Option<Self> {
        let scheme = url.scheme().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => format!("[{ip}]"),
        };
        let port = url.port_or_known_default()?;
        Some(Self { scheme, host, port })
    }

    /// Whether `url` has this origin: `Origin::of(url) == Some(self)`, without building one
    /// (this runs on every request).
    pub fn is_of(&self, url: &Url) -> bool {
        if url.port_or_known_default() != Some(self.port)
            || !url.scheme().eq_ignore_ascii_case(&self.scheme)
        {
            return false;
        }
        match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case(&self.host),
            Some(url::Host::Ipv4(ip)) => self.host.parse::<Ipv4Addr>() == Ok(ip),
            Some(url::Host::Ipv6(ip)) => self
                .host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<Ipv6Addr>() == Ok(ip)),
            None => false,
        }
    }

    /// Parses an origin written as `scheme://host[:port]` (an allow-list entry, or a host a
    /// plugin declares): http or https, a host, no user info, path (a lone `/` is accepted),
    /// query or fragment. The host is lowercased and the port defaults by scheme, exactly as for
    /// the URLs of requests, so the two compare equal. `Err` says what is wrong.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let url = Url::parse(entry).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("scheme `{}` is not http or https", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("it carries user info".into());
        }
        if !(url.path() == "/" || url.path().is_empty()) {
            return Err(format!("it has a path (`{}`)", url.path()));
        }
        if url.query().is_some() {
            return Err("it has a query".into());
        }
        if url.fragment().is_some() {
            return Err("it has a fragment".into());
        }
        Self::of(&url).ok_or_else(|| "it has no host".to_string())
    }
}

/// The parsed allow-list of one plugin.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    origins: Vec<Origin>,
}

impl AllowList {
    /// Parses the entries; malformed entries are skipped with a warning (they can never match).
    pub fn parse(entries: &[String], provider: &str) -> Self {
        let mut origins = Vec::new();
        for entry in entries {
            match Origin::parse(entry) {
                Ok(origin) => origins.push(origin),
                Err(reason) => {
                    tracing::warn!(provider, entry = %entry, %reason, "ignoring malformed allowed_hosts entry (want scheme://host[:port])")
                }
            }
        }
        Self { origins }
    }

    /// The allowed origins, normalised.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    /// The index of `url`'s origin in [`AllowList::origins`], if it is allowed.
    pub fn position_of(&self, url: &Url) -> Option<usize> {
        self.origins.iter().position(|o| o.is_of(url))
    }
}

/// Whether an address is private, loopback, link-local, CGNAT, unspecified or otherwise not a
/// public unicast address a provider API would live on.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_non_public(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_non_public(v4);
            }
            v6_non_public(v6)
        }
    }
}

fn v4_non_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn v6_non_public(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// DNS resolver for the plugins' HTTP client that refuses names resolving to non-public
/// addresses. Used by reqwest for hostnames only (IP literals skip DNS and are governed by the
/// allow-list alone).
#[derive(Debug, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} did not resolve").into());
            }
            if let Some(bad) = addrs.iter().find(|a| is_non_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to non-public address {}; refused",
                    bad.ip()
                )
                .into());
            }
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_like_request_urls() {
        let o = |s: &str| Origin::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            o("https://API.Example.com").to_string(),
            "https://api.example.com:443"
        );
        assert_eq!(
            o("https://api.example.com:443/").to_string(),
            "https://api.example.com:443"
        );
        assert_eq!(
            o("HTTP://127.0.0.1:8080").to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(o("http://[::1]:9").to_string(), "http://[::1]:9");
        assert_eq!(o("http://h.example").port, 80);
        for (bad, why) in [
            ("api.example.com", "not a URL"),
            ("ftp://h.example", "scheme"),
            ("https://u:p@h.example", "user info"),
            ("https://h.example/v1", "path"),
            ("https://h.example/?x=1", "query"),
            ("https://h.example/#f", "fragment"),
            ("", "not a URL"),
        ] {
            match Origin::parse(bad) {
                Err(reason) => assert!(reason.contains(why), "{bad}: {reason}"),
                Ok(o) => panic!("{bad} parsed as {o}"),
            }
        }
        let list = AllowList::parse(&["https://a.example".into(), "nope".into()], "t");
        assert_eq!(list.origins(), [o("https://a.example:443")]);
    }

    #[test]
    fn origins_and_ranges() {
        let list = AllowList::parse(
            &[
                "https://api.example.com".into(),
                "http://127.0.0.1:8080".into(),
            ],
            "t",
        );
        let o = |s: &str| {
            Origin::of(&Url::parse(s).unwrap_or_else(|_| panic!("{s}")))
                .unwrap_or_else(|| panic!("{s}"))
        };
        assert!(list.allows(&o("https://api.example.com:443/v1?x=1")));
        assert!(list.allows(&o("https://API.example.com/")));
        assert!(!list.allows(&o("http://api.example.com/")));
        assert!(list.allows(&o("http://127.0.0.1:8080/x")));
        assert!(!list.allows(&o("http://127.0.0.1:8081/x")));
        // The allocation-free check agrees with building the origin.
        let list = AllowList::parse(
            &[
                "https://api.example.com".into(),
                "http://127.0.0.1:8080".into(),
                "http://[::1]:9".into(),
            ],
            "t",
        );
        for url in [
            "https://api.example.com:443/v1?x=1",
            "https://API.example.com./",
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "http://127.0.0.1:8080/x",
            "http://127.0.0.1:8081/x",
            "http://127.000.0.1:8080/x",
            "http://[::1]:9/",
            "http://[0:0::1]:9/",
            "http://[::2]:9/",
            "ftp://api.example.com/",
            "data:text/plain,x",
        ] {
            let parsed = Url::parse(url).unwrap_or_else(|_| panic!("{url}"));
            let by_origin =
                Origin::of(&parsed).and_then(|o| list.origins().iter().position(|a| *a == o));
            assert_eq!(list.position_of(&parsed), by_origin, "{url}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or_else(|_| panic!("{ip}"));
            assert!(is_non_public(ip), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = ip.parse().unwrap_or_else(|_| panic!("{ip}"));
            assert!(!is_non_public(ip), "{ip}");
        }
    }
}
