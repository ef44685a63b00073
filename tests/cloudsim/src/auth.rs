//! Reading credentials off a request, the ways real clouds accept them.
//!
//! Every personality checks an API key, but each cloud takes it differently (Bearer header, HTTP
//! Basic with the key as user name, a legacy `?api_key=` query parameter), so the extraction is
//! shared here and each gateway decides which forms it honours.

use axum::http::{HeaderMap, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The user name of an `Authorization: Basic base64(user:password)` header (the password is
/// ignored: clouds that take Basic put the key in the user name).
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_owned())
}

/// The (percent-decoded) value of query parameter `name`, the first if repeated.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// Whether the request carries an `Authorization` header at all.
pub fn has_authorization(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
}

/// Decodes `%XX` escapes and `+` (as a space), as in query strings and form bodies.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn reads_each_form() {
        assert_eq!(bearer(&with_auth("Bearer abc ")), Some("abc"));
        assert_eq!(bearer(&with_auth("Basic abc")), None);
        // "key:" base64
        assert_eq!(
            basic_user(&with_auth("Basic a2V5Og==")).as_deref(),
            Some("key")
        );
        assert_eq!(basic_user(&with_auth("Basic !!!")), None);
        let uri: Uri = "/graphql?x=1&api_key=k%2B1".parse().unwrap();
        assert_eq!(query_param(&uri, "api_key").as_deref(), Some("k+1"));
        assert_eq!(query_param(&uri, "nope"), None);
        let bad: Uri = "/g?api_key=%zz".parse().unwrap();
        assert_eq!(query_param(&bad, "api_key"), None);
    }
}
