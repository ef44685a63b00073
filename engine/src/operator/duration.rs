//! Durations as users write them in resources: `90s`, `30m`, `8h`, `1h30m`, `2d`.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration: {reason} (write e.g. 90s, 30m, 8h, 1h30m, 2d)")]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

/// Parses a sequence of `<integer><unit>` with units `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            '-' => return Err(err("it is negative")),
            _ => return Err(err("it has an unknown unit")),
        };
        if digits.is_empty() {
            return Err(err("a unit has no number before it"));
        }
        let n: u64 = digits.parse().map_err(|_| err("a number is too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("it is too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(err("the last number has no unit"));
    }
    if total == 0 {
        return Err(err("it is zero"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "10", "h", "5x", "-5m", "0s", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
