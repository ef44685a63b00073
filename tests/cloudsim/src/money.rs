//! Money on the wire.
//!
//! Clouds give prices as decimal strings; the simulator keeps integer micro-USD internally so
//! billing never drifts through floating point. Shared by every personality.

/// Micro-USD per USD.
pub const MICRO: u64 = 1_000_000;

/// Formats micro-USD as a decimal string with at least two and at most six decimals:
/// `2_490_000` -> `"2.49"`, `99_999_308` -> `"99.999308"`.
pub fn format_usd(micro: u64) -> String {
    let whole = micro / MICRO;
    let frac = format!("{:06}", micro % MICRO);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{whole}.{frac}")
}

/// Parses a non-negative decimal USD string (at most six decimals) into micro-USD.
pub fn parse_usd(s: &str) -> Option<u64> {
    let s = s.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_micro: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    whole.checked_mul(MICRO)?.checked_add(frac_micro)
}

/// Converts a float USD amount (CLI convenience) into micro-USD, rounding to the nearest micro.
pub fn usd_to_micro(usd: f64) -> Option<u64> {
    if !usd.is_finite() || usd < 0.0 || usd > (u64::MAX / MICRO) as f64 {
        return None;
    }
    Some((usd * MICRO as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_usd(2_490_000), "2.49");
        assert_eq!(format_usd(100_000_000), "100.00");
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(99_999_308), "99.999308");
        assert_eq!(format_usd(1_500_000), "1.50");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_usd("0.00"), Some(0));
        assert_eq!(parse_usd("2.49"), Some(2_490_000));
        assert_eq!(parse_usd("100"), Some(100_000_000));
        assert_eq!(parse_usd(".5"), Some(500_000));
        assert_eq!(parse_usd("1.0000001"), None);
        assert_eq!(parse_usd("-1"), None);
        assert_eq!(parse_usd("abc"), None);
        assert_eq!(parse_usd(""), None);
        assert_eq!(parse_usd("."), None);
    }
}
