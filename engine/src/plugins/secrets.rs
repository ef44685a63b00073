//! Secret placeholders: substitution into outgoing requests and redaction of everything coming
//! back, so a plugin never holds a secret value and cannot be tricked into leaking one (an echo
//! server reflecting the `Authorization` header gets the placeholder back, not the key).

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::grants::SecretValue;

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// The placeholder a plugin writes for secret `name`.
pub fn placeholder(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// A placeholder naming a secret that was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown secret `{0}` (not granted to this provider)")]
pub struct UnknownSecret(pub String);

/// Replaces every `{{secret:NAME}}` in `text` with the granted value.
pub fn substitute(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<String, UnknownSecret> {
    substitute_with(text, secrets, |out, v| out.push_str(v))
}

/// [`substitute`], borrowing `text` when it holds no placeholder (most header values).
pub fn substitute_cow<'a>(
    text: &'a str,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<Cow<'a, str>, UnknownSecret> {
    if contains(text.as_bytes(), OPEN.as_bytes()) {
        substitute(text, secrets).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(text))
    }
}

/// Like [`substitute`], for a URL: each value is percent-encoded, so a key holding `&`, `=` or
/// `#` cannot change the query's structure.
pub fn substitute_url(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<String, UnknownSecret> {
    substitute_with(text, secrets, |out, v| {
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()))
    })
}

fn substitute_with(
    text: &str,
    secrets: &BTreeMap<String, SecretValue>,
    encode: impl Fn(&mut String, &str),
) -> Result<String, UnknownSecret> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    // The delimiters are ASCII, so the byte positions found are character boundaries.
    while let Some(start) = find(rest.as_bytes(), OPEN.as_bytes()) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = find(after.as_bytes(), CLOSE.as_bytes()) else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = secrets
            .get(name)
            .ok_or_else(|| UnknownSecret(name.to_owned()))?;
        encode(&mut out, value.expose());
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces every occurrence of a secret value in `text` by its placeholder.
pub fn redact_str(text: &str, secrets: &BTreeMap<String, SecretValue>) -> String {
    redact_cow(text, secrets).into_owned()
}

/// [`redact_str`], borrowing `text` when it holds no secret value (the usual case).
pub fn redact_cow<'a>(text: &'a str, secrets: &BTreeMap<String, SecretValue>) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for (name, value) in secrets {
        let v = value.expose();
        if contains(out.as_bytes(), v.as_bytes()) {
            out = Cow::Owned(out.replace(v, &placeholder(name)));
        }
    }
    out
}

/// Whether `haystack` holds `needle` (an empty needle is never found). Cheaper than
/// `str::contains` on the short texts this module scans (header values, URLs), whose searcher
/// costs more to set up than the scan itself.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// The first position of `needle` (not empty) in `haystack`. Candidates are found by their
/// first byte ([`position_of_byte`]) before the whole needle is compared, so a body without the
/// first byte of any secret costs one fast scan.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last_start {
        let at = from + position_of_byte(first, &haystack[from..=last_start])?;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The first position of `byte` in `haystack`, eight bytes at a time.
fn position_of_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let repeated = ONES * u64::from(byte);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // Zero bytes of `x` are the positions holding `byte`; this test has no false negatives.
        let x = u64::from_ne_bytes(word) ^ repeated;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        offset += 8;
    }
    haystack[offset..]
        .iter()
        .position(|&b| b == byte)
        .map(|p| p + offset)
}

/// Replaces every occurrence of a secret value in `bytes` by its placeholder.
pub fn redact_bytes(bytes: Vec<u8>, secrets: &BTreeMap<String, SecretValue>) -> Vec<u8> {
    let mut out = bytes;
    for (name, value) in secrets {
        let needle = value.expose().as_bytes();
        let Some(mut at) = find(&out, needle) else {
            continue;
        };
        let replacement = placeholder(name);
        let mut replaced = Vec::with_capacity(out.len() + replacement.len());
        let mut rest = 0;
        loop {
            replaced.extend_from_slice(&out[rest..at]);
            replaced.extend_from_slice(replacement.as_bytes());
            rest = at + needle.len();
            match find(&out[rest..], needle) {
                Some(next) => at = rest + next,
                None => break,
            }
        }
        replaced.extend_from_slice(&out[rest..]);
        out = replaced;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, SecretValue> {
        BTreeMap::from([("api_key".to_owned(), SecretValue::new("s3cr3t"))])
    }

    #[test]
    fn finds_needles_anywhere() {
        let hay = b"0123456789abcdef0123456789ABCDEFxyz";
        for start in 0..hay.len() {
            for len in 1..=(hay.len() - start).min(9) {
                let needle = &hay[start..start + len];
                let expected = hay.windows(len).position(|w| w == needle);
                assert_eq!(find(hay, needle), expected, "{needle:?}");
            }
        }
        assert_eq!(find(hay, b"nope"), None);
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"abc", b""), None);
        for (i, b) in hay.iter().enumerate() {
            assert_eq!(position_of_byte(*b, &hay[i..]), Some(0));
        }
        assert_eq!(position_of_byte(0xff, hay), None);
        assert_eq!(position_of_byte(b'z', &[0x80; 20]), None);
        assert_eq!(
            redact_bytes(b"s3cr3ts3cr3t".to_vec(), &secrets()),
            b"{{secret:api_key}}{{secret:api_key}}".to_vec()
        );
        assert_eq!(
            redact_cow("none here", &secrets()),
            Cow::Borrowed("none here")
        );
    }

    #[test]
    fn url_substitution_encodes_the_value() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), SecretValue::from("a&b=c"));
        assert_eq!(
            substitute_url("https://h/p?key={{secret:k}}&x=1", &m).unwrap(),
            "https://h/p?key=a%26b%3Dc&x=1"
        );
    }

    #[test]
    fn substitutes_and_redacts() {
        let s = secrets();
        assert_eq!(
            substitute("Bearer {{secret:api_key}}", &s).as_deref(),
            Ok("Bearer s3cr3t")
        );
        assert_eq!(
            substitute("{{secret:nope}}", &s),
            Err(UnknownSecret("nope".into()))
        );
        assert_eq!(
            substitute("plain {{secret:", &s).as_deref(),
            Ok("plain {{secret:")
        );
        assert_eq!(
            redact_str("x s3cr3t y s3cr3t", &s),
            "x {{secret:api_key}} y {{secret:api_key}}"
        );
        assert_eq!(
            redact_bytes(b"as3cr3tb".to_vec(), &s),
            b"a{{secret:api_key}}b".to_vec()
        );
    }
}
