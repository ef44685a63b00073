//! Money as integer micro-dollars (1 USD = 1_000_000), parsed from and printed as decimal USD.
//!
//! Users write prices as decimals ("2.50"); providers quote in floats and cents. Everything in
//! between is a `u64` count of micro-dollars, so comparisons and sums are exact. This module is
//! the one place where text becomes money and back.

use std::fmt;

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Why a text is not a price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("price is empty")]
    Empty,
    #[error("price {0:?} is negative; prices are zero or more")]
    Negative(String),
    #[error("price {0:?} is not a decimal number of US dollars (for example 2.50)")]
    NotANumber(String),
    #[error("price {0:?} has more than 6 decimal places (the smallest unit is one micro-dollar)")]
    TooPrecise(String),
    #[error("price {0:?} is too large")]
    TooLarge(String),
}

/// Parses a decimal USD amount such as `"2.5"`, `"0.000001"` or `"$3"` into micro-dollars, exactly.
pub fn parse_usd(text: &str) -> Result<u64, MoneyError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(MoneyError::Empty);
    }
    let unsigned = trimmed.strip_prefix('$').unwrap_or(trimmed);
    if unsigned.starts_with('-') {
        return Err(MoneyError::Negative(text.to_string()));
    }
    let unsigned = unsigned.strip_prefix('+').unwrap_or(unsigned);
    let (whole, frac) = match unsigned.split_once('.') {
        Some((w, f)) => (w, f),
        None => (unsigned, ""),
    };
    let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
        return Err(MoneyError::NotANumber(text.to_string()));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 {
        return Err(MoneyError::TooPrecise(text.to_string()));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| MoneyError::TooLarge(text.to_string()))?
    };
    let frac_micros: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")
            .parse()
            .map_err(|_| MoneyError::NotANumber(text.to_string()))?
    };
    whole
        .checked_mul(MICROS_PER_USD)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(|| MoneyError::TooLarge(text.to_string()))
}

/// A micro-dollar amount that prints as USD with at least two decimals: `$2.49`, `$0.000125`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(pub u64);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_USD;
        let frac = self.0 % MICROS_PER_USD;
        let mut frac_text = format!("{frac:06}");
        while frac_text.len() > 2 && frac_text.ends_with('0') {
            frac_text.pop();
        }
        write!(f, "${whole}.{frac_text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(parse_usd("2.49"), Ok(2_490_000));
        assert_eq!(parse_usd("0.000001"), Ok(1));
        assert_eq!(parse_usd("$3"), Ok(3_000_000));
        assert_eq!(parse_usd(" 10.5 "), Ok(10_500_000));
        assert_eq!(parse_usd(".25"), Ok(250_000));
        assert_eq!(parse_usd("1.500000000"), Ok(1_500_000));
    }

    #[test]
    fn refuses_what_is_not_a_price() {
        assert_eq!(parse_usd(""), Err(MoneyError::Empty));
        assert!(matches!(parse_usd("-1"), Err(MoneyError::Negative(_))));
        assert!(matches!(parse_usd("abc"), Err(MoneyError::NotANumber(_))));
        assert!(matches!(parse_usd("1.2.3"), Err(MoneyError::NotANumber(_))));
        assert!(matches!(parse_usd("."), Err(MoneyError::NotANumber(_))));
        assert!(matches!(parse_usd("1e3"), Err(MoneyError::NotANumber(_))));
        assert!(matches!(
            parse_usd("0.0000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            parse_usd("99999999999999999999"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn prints_usd() {
        assert_eq!(Usd(2_490_000).to_string(), "$2.49");
        assert_eq!(Usd(125).to_string(), "$0.000125");
        assert_eq!(Usd(3_000_000).to_string(), "$3.00");
    }
}
