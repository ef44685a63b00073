//! Query-string encoding, and the literal form of secret placeholders in URLs.
//!
//! Values are percent-encoded (RFC 3986 unreserved characters stay as they are), except secret
//! placeholders, which must reach the host verbatim (`{{secret:NAME}}`, braces included) so that
//! the host can find and substitute them.

/// Percent-encodes `input` for a query-string key or value.
pub fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `pairs` (already encoded) to `url`, before any `#fragment`.
pub fn append_query(url: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return url.to_string();
    }
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = String::from(base);
    let mut separator = if !base.contains('?') {
        '?'
    } else if base.ends_with('?') || base.ends_with('&') {
        '\0'
    } else {
        '&'
    };
    for (key, value) in pairs {
        if separator != '\0' {
            out.push(separator);
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        separator = '&';
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_non_ascii_bytes() {
        assert_eq!(encode_component("H100-SXM_1.x~"), "H100-SXM_1.x~");
        assert_eq!(
            encode_component("tgp.io/cluster=c1"),
            "tgp.io%2Fcluster%3Dc1"
        );
        assert_eq!(encode_component("a b&c?d#e+f"), "a%20b%26c%3Fd%23e%2Bf");
        assert_eq!(encode_component("{{secret:x}}"), "%7B%7Bsecret%3Ax%7D%7D");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn appends_to_urls_with_or_without_a_query() {
        let pairs = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ];
        assert_eq!(append_query("http://h/p", &pairs), "http://h/p?a=1&b=2");
        assert_eq!(
            append_query("http://h/p?x=0", &pairs),
            "http://h/p?x=0&a=1&b=2"
        );
        assert_eq!(append_query("http://h/p?", &pairs), "http://h/p?a=1&b=2");
        assert_eq!(
            append_query("http://h/p#top", &pairs),
            "http://h/p?a=1&b=2#top"
        );
        assert_eq!(append_query("http://h/p", &[]), "http://h/p");
    }
}
