//! A fallback classification of HTTP error statuses into [`ProviderError`].
//!
//! Most vendor APIs use statuses the conventional way; a provider maps the cases its API
//! documents precisely (with the vendor's error codes and fields) and hands everything else to
//! [`error_for_status`], so that no status ever becomes an unclassified failure.

use super::Response;
use crate::types::ProviderError;

/// How many bytes of a response body an error message quotes.
const SNIPPET_BYTES: usize = 300;

/// Classifies an HTTP status, with `message` as the error text:
/// 400/422 -> invalid-request (field `request`), 401/403 -> auth, 402 -> billing,
/// 404/410 -> not-found, 408 -> transient, 429 -> rate-limited (`retry_after_ms`),
/// 5xx -> transient, anything else (409, 418, ...) -> internal.
/// Returns `None` for 1xx/2xx/3xx, which are not errors.
pub fn classify_status(
    status: u16,
    retry_after_ms: Option<u64>,
    message: &str,
) -> Option<ProviderError> {
    let text = || format!("HTTP {status}: {message}");
    Some(match status {
        100..=399 => return None,
        400 | 422 => ProviderError::invalid("request", text()),
        401 | 403 => ProviderError::auth(text()),
        402 => ProviderError::billing(text()),
        404 | 410 => ProviderError::not_found(text()),
        408 => ProviderError::transient(text()),
        429 => ProviderError::rate_limited(retry_after_ms),
        500..=599 => ProviderError::transient(text()),
        _ => ProviderError::internal(text()),
    })
}

/// `Err` with the fallback classification of `response`'s status (quoting the start of its
/// body), or `Ok(response)` when the status is not an error.
pub fn error_for_status(response: Response) -> Result<Response, ProviderError> {
    match classify_status(
        response.status,
        response.retry_after_ms(),
        &body_snippet(&response.body),
    ) {
        Some(err) => Err(err),
        None => Ok(response),
    }
}

/// The start of a body as text, for error messages: at most a few hundred bytes, cut at a
/// character boundary, lossy for non-UTF-8.
pub fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= SNIPPET_BYTES {
        return text.to_string();
    }
    let mut end = SNIPPET_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Parses a `Retry-After` value given in seconds (integer or decimal) into milliseconds,
/// rounding up. HTTP-date values and garbage give `None` (the host then applies its backoff).
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let secs: f64 = value.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((secs * 1000.0).ceil().min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classifies_common_statuses() {
        assert_eq!(classify_status(200, None, ""), None);
        assert_eq!(classify_status(304, None, ""), None);
        assert!(
            matches!(classify_status(401, None, "no"), Some(ProviderError::Auth(m)) if m == "HTTP 401: no")
        );
        assert!(matches!(
            classify_status(403, None, ""),
            Some(ProviderError::Auth(_))
        ));
        assert!(matches!(
            classify_status(402, None, ""),
            Some(ProviderError::Billing(_))
        ));
        assert!(matches!(
            classify_status(404, None, ""),
            Some(ProviderError::NotFound(_))
        ));
        assert!(
            matches!(classify_status(400, None, ""), Some(ProviderError::InvalidRequest(f)) if f.field == "request")
        );
        assert_eq!(
            classify_status(429, Some(3000), ""),
            Some(ProviderError::RateLimited(Some(3000)))
        );
        assert!(matches!(
            classify_status(500, None, ""),
            Some(ProviderError::Transient(_))
        ));
        assert!(matches!(
            classify_status(503, None, ""),
            Some(ProviderError::Transient(_))
        ));
        assert!(matches!(
            classify_status(418, None, ""),
            Some(ProviderError::Internal(_))
        ));
    }

    #[test]
    fn error_for_status_reads_retry_after_and_body() {
        let limited = response(429, &[("retry-after", "2")], "");
        assert_eq!(
            error_for_status(limited),
            Err(ProviderError::RateLimited(Some(2000)))
        );
        let down = response(502, &[], "bad gateway");
        assert_eq!(
            error_for_status(down),
            Err(ProviderError::transient("HTTP 502: bad gateway"))
        );
        let ok = response(201, &[], "{}");
        assert_eq!(error_for_status(ok.clone()), Ok(ok));
    }

    #[test]
    fn parses_retry_after_seconds() {
        assert_eq!(parse_retry_after("3"), Some(3000));
        assert_eq!(parse_retry_after(" 0 "), Some(0));
        assert_eq!(parse_retry_after("1.5"), Some(1500));
        assert_eq!(parse_retry_after("0.0001"), Some(1));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("inf"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn snippets_are_short_and_cut_at_char_boundaries() {
        let long = "é".repeat(400);
        let snippet = body_snippet(long.as_bytes());
        assert!(snippet.len() <= SNIPPET_BYTES + 3);
        assert!(snippet.ends_with("..."));
        assert_eq!(body_snippet(b"  short \n"), "short");
        assert_eq!(body_snippet(&[0xff, b'a']), "\u{fffd}a");
    }
}
