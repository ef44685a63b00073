//! Redaction of secret values from everything handed back to a plugin or written about it.
//!
//! Since contract 0.3 the host applies credentials itself and fills bootstrap documents in, so
//! nothing is substituted here any more: this module only finds every configured secret value
//! (API keys, composed credentials, OAuth2 tokens, a launch's bootstrap document and the join
//! secrets in it) and replaces it with [`REDACTED`], longest value first, so that an echoing
//! server cannot hand a secret to the plugin and a plugin cannot write one into a log line.

use std::borrow::Cow;

use super::grants::SecretValue;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The values to redact, longest first (so a value that contains another is replaced whole),
/// without empty or duplicate values.
#[derive(Clone, Default)]
pub struct SecretSet {
    values: Vec<SecretValue>,
}

impl SecretSet {
    /// A set of `values`.
    pub fn new(values: impl IntoIterator<Item = SecretValue>) -> Self {
        let mut values: Vec<SecretValue> = values
            .into_iter()
            .filter(|v| !v.expose().is_empty())
            .collect();
        values.sort_by(|a, b| {
            b.expose()
                .len()
                .cmp(&a.expose().len())
                .then_with(|| a.expose().cmp(b.expose()))
        });
        values.dedup();
        Self { values }
    }

    /// This set and `extra` (a token, a launch's document), as one set.
    pub fn with_extra(&self, extra: impl IntoIterator<Item = SecretValue>) -> Self {
        Self::new(self.values.iter().cloned().chain(extra))
    }
}

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSet({} values)", self.values.len())
    }
}

/// Replaces every occurrence of a secret value in `text` by [`REDACTED`].
pub fn redact_str(text: &str, secrets: &SecretSet) -> String {
    redact_cow(text, secrets).into_owned()
}

/// [`redact_str`], borrowing `text` when it holds no secret value (the usual case).
pub fn redact_cow<'a>(text: &'a str, secrets: &SecretSet) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for value in &secrets.values {
        let v = value.expose();
        if contains(out.as_bytes(), v.as_bytes()) {
            out = Cow::Owned(out.replace(v, REDACTED));
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

/// Replaces every occurrence of a secret value in `bytes` by [`REDACTED`].
pub fn redact_bytes(bytes: Vec<u8>, secrets: &SecretSet) -> Vec<u8> {
    let mut out = bytes;
    for value in &secrets.values {
        let needle = value.expose().as_bytes();
        let Some(mut at) = find(&out, needle) else {
            continue;
        };
        let mut replaced = Vec::with_capacity(out.len());
        let mut rest = 0;
        loop {
            replaced.extend_from_slice(&out[rest..at]);
            replaced.extend_from_slice(REDACTED.as_bytes());
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

    fn secrets() -> SecretSet {
        SecretSet::new([SecretValue::new("s3cr3t")])
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
            b"[redacted][redacted]".to_vec()
        );
        assert_eq!(
            redact_cow("none here", &secrets()),
            Cow::Borrowed("none here")
        );
    }

    #[test]
    fn redacts_everywhere_longest_first() {
        let s = secrets();
        assert_eq!(
            redact_str("x s3cr3t y s3cr3t", &s),
            "x [redacted] y [redacted]"
        );
        assert_eq!(
            redact_bytes(b"as3cr3tb".to_vec(), &s),
            b"a[redacted]b".to_vec()
        );
        // One value inside another: the longer is replaced whole, whatever the insertion order.
        let overlapping = SecretSet::new([
            SecretValue::new("acme"),
            SecretValue::new("acme.8f3Kq2ZxT7"),
        ]);
        assert_eq!(
            redact_str("key=acme.8f3Kq2ZxT7 user=acme", &overlapping),
            "key=[redacted] user=[redacted]"
        );
        let extended = s.with_extra([SecretValue::new("tok3n"), SecretValue::new("")]);
        assert_eq!(
            redact_str("s3cr3t tok3n", &extended),
            "[redacted] [redacted]"
        );
        assert!(SecretSet::new([SecretValue::new("")]).values.is_empty());
    }
}
