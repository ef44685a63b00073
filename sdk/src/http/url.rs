//! Query-string encoding.
//!
//! Keys and values are percent-encoded (RFC 3986 unreserved characters stay as they are).

/// Percent-encodes `input` for a query-string key or value.
pub fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    encode_into(&mut out, input);
    out
}

fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Appends `input`, percent-encoded like [`encode_component`], to `out`.
pub fn encode_into(out: &mut String, input: &str) {
    // Keys and values are mostly plain words and numbers: copy runs of unreserved bytes whole.
    let bytes = input.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if unreserved(byte) {
            continue;
        }
        // A run of unreserved (ASCII) bytes starts and ends on character boundaries.
        if start < i {
            out.push_str(&input[start..i]);
        }
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(&input[start..]);
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `url` with `query` (encoded `key=value` pairs joined by `&`) appended, before any
/// `#fragment`.
pub fn append_query(url: &str, query: &str) -> String {
    if query.is_empty() {
        return url.to_string();
    }
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + query.len() + 1);
    out.push_str(base);
    if !base.contains('?') {
        out.push('?');
    } else if !(base.ends_with('?') || base.ends_with('&')) {
        out.push('&');
    }
    out.push_str(query);
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
        assert_eq!(encode_component("{{user-data}}"), "%7B%7Buser-data%7D%7D");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn appends_to_urls_with_or_without_a_query() {
        let query = "a=1&b=2";
        assert_eq!(append_query("http://h/p", query), "http://h/p?a=1&b=2");
        assert_eq!(
            append_query("http://h/p?x=0", query),
            "http://h/p?x=0&a=1&b=2"
        );
        assert_eq!(append_query("http://h/p?", query), "http://h/p?a=1&b=2");
        assert_eq!(
            append_query("http://h/p?x=0&", query),
            "http://h/p?x=0&a=1&b=2"
        );
        assert_eq!(
            append_query("http://h/p#top", query),
            "http://h/p?a=1&b=2#top"
        );
        assert_eq!(append_query("http://h/p", ""), "http://h/p");
    }

    #[test]
    fn encodes_into_an_existing_string() {
        let mut out = String::from("k=");
        encode_into(&mut out, "a b/c");
        encode_into(&mut out, "");
        encode_into(&mut out, "plain");
        encode_into(&mut out, "é");
        assert_eq!(out, "k=a%20b%2Fcplain%C3%A9");
    }
}
