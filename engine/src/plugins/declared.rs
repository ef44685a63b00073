//! The hosts a plugin declares it will call (`capabilities.hosts`, contract 0.2), checked at
//! load against the origins its grants allow.
//!
//! The declaration is the plugin's own statement, computed from the configuration it was loaded
//! with (typically the origin of its `base_url`); the allow-list is what the operator granted. A
//! plugin asking for more than it was granted is refused before it serves a single call, with an
//! error naming the host, instead of failing call after call with `CapabilityDenied`. Both sides
//! are normalised the same way as request URLs (scheme, lowercase host, explicit or default
//! port), so `https://API.example.com` and `https://api.example.com:443/` are the same origin.
//! A plugin may be granted more than it declares. The declaration does not replace call-time
//! enforcement: every request is still checked against the allow-list, since a plugin can lie.

use super::error::LoadError;
use super::http::policy::{AllowList, Origin};

/// Refuses the first declared host that is malformed or not granted by `allowed`.
pub fn check(declared: &[String], allowed: &AllowList) -> Result<(), LoadError> {
    for entry in declared {
        let origin = Origin::parse(entry).map_err(|reason| LoadError::MalformedHost {
            declared: entry.clone(),
            reason,
        })?;
        if !allowed.allows(&origin) {
            return Err(LoadError::UngrantedHost {
                host: origin.to_string(),
                granted: allowed.origins().iter().map(Origin::to_string).collect(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn allow(items: &[&str]) -> AllowList {
        AllowList::parse(&strings(items), "test")
    }

    #[test]
    fn declaring_exactly_the_grants_passes() {
        let granted = allow(&["https://api.example.com", "http://127.0.0.1:8080"]);
        assert!(check(&strings(&["https://api.example.com"]), &granted).is_ok());
        assert!(
            check(
                &strings(&["http://127.0.0.1:8080", "https://api.example.com"]),
                &granted
            )
            .is_ok()
        );
        // Declaring less than granted, or nothing at all, is fine.
        assert!(check(&[], &granted).is_ok());
        assert!(check(&[], &allow(&[])).is_ok());
    }

    #[test]
    fn both_sides_are_normalised_like_request_urls() {
        let granted = allow(&["https://API.example.com/", "http://127.0.0.1:80"]);
        for same in [
            "https://api.example.com",
            "https://api.example.com:443",
            "HTTPS://Api.Example.Com/",
            "http://127.0.0.1",
        ] {
            assert!(check(&strings(&[same]), &granted).is_ok(), "{same}");
        }
        for other in [
            "http://api.example.com",
            "https://api.example.com:8443",
            "https://example.com",
            "http://127.0.0.1:8080",
        ] {
            assert!(
                matches!(
                    check(&strings(&[other]), &granted),
                    Err(LoadError::UngrantedHost { .. })
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn an_ungranted_host_is_refused_naming_it_and_the_grants() {
        let granted = allow(&["https://api.example.com", "not an origin"]);
        let err = check(
            &strings(&["https://api.example.com", "https://EVIL.example"]),
            &granted,
        )
        .expect_err("must be refused");
        match &err {
            LoadError::UngrantedHost { host, granted } => {
                assert_eq!(host, "https://evil.example:443");
                assert_eq!(granted, &strings(&["https://api.example.com:443"]));
            }
            other => panic!("expected UngrantedHost, got {other:?}"),
        }
        assert_eq!(err.reason(), "HostNotGranted");
        assert_eq!(
            err.to_string(),
            "the plugin declares it will call https://evil.example:443, which allowedHosts does \
             not grant (granted: https://api.example.com:443); add it to allowedHosts \
             (`--allow-host` with `tgp plugin`) or use another module"
        );
        let err = check(&strings(&["http://127.0.0.1:9"]), &allow(&[])).expect_err("refused");
        assert!(err.to_string().contains("(granted: none)"), "{err}");
    }

    #[test]
    fn a_malformed_declared_host_has_its_own_error() {
        let granted = allow(&["https://api.example.com"]);
        for (bad, why) in [
            ("api.example.com", "not a URL"),
            ("https://api.example.com/v1", "path"),
            ("ftp://api.example.com", "scheme"),
        ] {
            let err = check(&strings(&[bad]), &granted).expect_err(bad);
            match &err {
                LoadError::MalformedHost { declared, reason } => {
                    assert_eq!(declared, bad);
                    assert!(reason.contains(why), "{bad}: {reason}");
                }
                other => panic!("{bad}: expected MalformedHost, got {other:?}"),
            }
            assert_eq!(err.reason(), "MalformedDeclaredHost");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
