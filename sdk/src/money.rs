//! Exact conversion of vendor prices into the contract's micro-dollars (and back, for logs).
//!
//! Vendors quote USD as decimal strings ("2.49"), JSON numbers (2.49) or integer cents. The
//! contract carries `u64` micro-dollars so that the engine compares and sums prices exactly.
//! Strings are parsed digit by digit, never through `f64`: "0.1" is exactly 100_000 micros.
//! Digits beyond the sixth decimal are rounded half-up ("0.0000005" -> 1 micro), since some
//! vendors print long fractions of per-second rates. Floats are converted through their shortest
//! round-trip decimal form, so `2.49f64` is 2_490_000, not 2_489_999.

use std::fmt;

use crate::types::MicroUsd;

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;
/// Micro-dollars in one US cent.
pub const MICROS_PER_CENT: u64 = 10_000;

const DECIMALS: usize = 6;

/// Why a vendor amount could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The input was empty (or only whitespace).
    #[error("empty amount")]
    Empty,
    /// The amount is below zero; the contract has no negative prices or balances.
    #[error("negative amount `{0}`")]
    Negative(String),
    /// Not a plain decimal number (letters, several dots, exponent, ...).
    #[error("`{0}` is not a decimal amount")]
    Malformed(String),
    /// NaN or an infinity.
    #[error("amount is not a finite number")]
    NotFinite,
    /// Larger than `u64::MAX` micro-dollars (about 18 trillion USD).
    #[error("amount `{0}` is too large")]
    Overflow(String),
}

impl From<MoneyError> for crate::ProviderError {
    /// An amount the plugin cannot read is an unexpected answer from the provider's API.
    fn from(error: MoneyError) -> Self {
        crate::ProviderError::internal(format!("unreadable USD amount: {error}"))
    }
}

/// Parses a decimal USD amount such as `"2.49"`, `"0.0001"`, `"3"`, `"+1.5"` or `" 12.50 "`
/// into micro-dollars, exactly. A leading `$` is accepted. Negative amounts are refused.
pub fn parse_usd(input: &str) -> Result<MicroUsd, MoneyError> {
    let s = input.trim();
    let s = s.strip_prefix('$').unwrap_or(s);
    if s.is_empty() {
        return Err(MoneyError::Empty);
    }
    if s.starts_with('-') {
        return Err(MoneyError::Negative(input.trim().to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let malformed = || MoneyError::Malformed(input.trim().to_string());
    let overflow = || MoneyError::Overflow(input.trim().to_string());

    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(malformed());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }

    let mut micros: u64 = 0;
    for digit in whole.bytes() {
        micros = micros
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(digit - b'0')))
            .ok_or_else(overflow)?;
    }
    micros = micros.checked_mul(MICROS_PER_USD).ok_or_else(overflow)?;

    let kept = &fraction[..fraction.len().min(DECIMALS)];
    let mut frac_micros: u64 = 0;
    for digit in kept.bytes() {
        frac_micros = frac_micros * 10 + u64::from(digit - b'0');
    }
    frac_micros *= 10u64.pow((DECIMALS - kept.len()) as u32);
    let round_up = fraction
        .as_bytes()
        .get(DECIMALS)
        .is_some_and(|&d| d >= b'5');
    micros
        .checked_add(frac_micros + u64::from(round_up))
        .ok_or_else(overflow)
}

/// Converts a float USD amount (e.g. a JSON number) into micro-dollars through its shortest
/// round-trip decimal form, so `2.49` gives exactly 2_490_000. Refuses NaN, infinities and
/// negative numbers (`-0.0` is zero).
pub fn usd_from_f64(value: f64) -> Result<MicroUsd, MoneyError> {
    if !value.is_finite() {
        return Err(MoneyError::NotFinite);
    }
    if value == 0.0 {
        return Ok(0);
    }
    // `Display` for f64 never uses exponent notation and prints the shortest string that
    // round-trips, which is what the vendor meant.
    parse_usd(&value.to_string())
}

/// Converts a JSON value holding USD (a decimal string or a number) into micro-dollars.
pub fn usd_from_json(value: &serde_json::Value) -> Result<MicroUsd, MoneyError> {
    match value {
        serde_json::Value::String(s) => parse_usd(s),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(whole), _) => whole
                .checked_mul(MICROS_PER_USD)
                .ok_or_else(|| MoneyError::Overflow(n.to_string())),
            (None, Some(_)) => Err(MoneyError::Negative(n.to_string())),
            (None, None) => usd_from_f64(n.as_f64().ok_or(MoneyError::NotFinite)?),
        },
        other => Err(MoneyError::Malformed(other.to_string())),
    }
}

/// Converts integer US cents into micro-dollars.
pub fn cents_to_micros(cents: u64) -> Result<MicroUsd, MoneyError> {
    cents
        .checked_mul(MICROS_PER_CENT)
        .ok_or_else(|| MoneyError::Overflow(format!("{cents} cents")))
}

/// Serde `deserialize_with` helper for a USD field given as a decimal string or a number:
/// `#[serde(deserialize_with = "tgp_provider_sdk::money::deserialize_usd")] price: u64`.
pub fn deserialize_usd<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<MicroUsd, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
    usd_from_json(&value).map_err(serde::de::Error::custom)
}

/// Displays micro-dollars as dollars for logs: `$2.49`, `$0.0001`, `$3.00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usd(pub MicroUsd);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_USD;
        let fraction = format!("{:06}", self.0 % MICROS_PER_USD);
        let trimmed = fraction.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &fraction[..2]
        } else {
            trimmed
        };
        write!(f, "${whole}.{shown}")
    }
}

/// Formats micro-dollars as dollars for logs, e.g. `"$2.49"`. See [`Usd`].
pub fn format_usd(micros: MicroUsd) -> String {
    Usd(micros).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(parse_usd("2.49"), Ok(2_490_000));
        assert_eq!(parse_usd("0.0001"), Ok(100));
        assert_eq!(parse_usd("0.1"), Ok(100_000));
        assert_eq!(parse_usd("3"), Ok(3_000_000));
        assert_eq!(parse_usd("3."), Ok(3_000_000));
        assert_eq!(parse_usd(".5"), Ok(500_000));
        assert_eq!(parse_usd(" 12.50 "), Ok(12_500_000));
        assert_eq!(parse_usd("$1.25"), Ok(1_250_000));
        assert_eq!(parse_usd("+1.000001"), Ok(1_000_001));
        assert_eq!(parse_usd("0"), Ok(0));
        assert_eq!(parse_usd("-0"), Err(MoneyError::Negative("-0".into())));
    }

    #[test]
    fn rounds_sub_micro_digits_half_up() {
        assert_eq!(parse_usd("0.0000005"), Ok(1));
        assert_eq!(parse_usd("0.0000004999"), Ok(0));
        assert_eq!(parse_usd("1.2345678"), Ok(1_234_568));
        assert_eq!(parse_usd("0.4333333333"), Ok(433_333));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse_usd(""), Err(MoneyError::Empty));
        assert_eq!(parse_usd("  "), Err(MoneyError::Empty));
        assert_eq!(
            parse_usd("-2.49"),
            Err(MoneyError::Negative("-2.49".into()))
        );
        assert_eq!(parse_usd("."), Err(MoneyError::Malformed(".".into())));
        assert_eq!(
            parse_usd("1.2.3"),
            Err(MoneyError::Malformed("1.2.3".into()))
        );
        assert_eq!(parse_usd("1e3"), Err(MoneyError::Malformed("1e3".into())));
        assert_eq!(parse_usd("NaN"), Err(MoneyError::Malformed("NaN".into())));
        assert_eq!(parse_usd("1,50"), Err(MoneyError::Malformed("1,50".into())));
        assert_eq!(
            parse_usd("99999999999999999999"),
            Err(MoneyError::Overflow("99999999999999999999".into()))
        );
        assert_eq!(parse_usd("18446744073709.551615"), Ok(u64::MAX));
        assert!(matches!(
            parse_usd("18446744073709.551616"),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn converts_floats_without_binary_surprises() {
        assert_eq!(usd_from_f64(2.49), Ok(2_490_000));
        assert_eq!(usd_from_f64(0.1 + 0.2), Ok(300_000)); // 0.30000000000000004
        assert_eq!(usd_from_f64(0.0001), Ok(100));
        assert_eq!(usd_from_f64(1e-7), Ok(0));
        assert_eq!(usd_from_f64(-0.0), Ok(0));
        assert_eq!(usd_from_f64(f64::NAN), Err(MoneyError::NotFinite));
        assert_eq!(usd_from_f64(f64::INFINITY), Err(MoneyError::NotFinite));
        assert!(matches!(usd_from_f64(-1.5), Err(MoneyError::Negative(_))));
        assert!(matches!(usd_from_f64(1e30), Err(MoneyError::Overflow(_))));
    }

    #[test]
    fn converts_json_strings_and_numbers() {
        use serde_json::json;
        assert_eq!(usd_from_json(&json!("2.49")), Ok(2_490_000));
        assert_eq!(usd_from_json(&json!(2.49)), Ok(2_490_000));
        assert_eq!(usd_from_json(&json!(3)), Ok(3_000_000));
        assert!(matches!(
            usd_from_json(&json!(-3)),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            usd_from_json(&json!(null)),
            Err(MoneyError::Malformed(_))
        ));
    }

    #[test]
    fn deserializes_fields() {
        #[derive(serde::Deserialize)]
        struct Offer {
            #[serde(deserialize_with = "deserialize_usd")]
            price: MicroUsd,
        }
        let a: Offer = serde_json::from_str(r#"{"price": "2.49"}"#).unwrap();
        let b: Offer = serde_json::from_str(r#"{"price": 0.35}"#).unwrap();
        assert_eq!((a.price, b.price), (2_490_000, 350_000));
        assert!(serde_json::from_str::<Offer>(r#"{"price": "-1"}"#).is_err());
    }

    #[test]
    fn errors_become_internal_provider_errors() {
        let err: crate::ProviderError = parse_usd("abc").unwrap_err().into();
        assert_eq!(
            err,
            crate::ProviderError::internal("unreadable USD amount: `abc` is not a decimal amount")
        );
    }

    #[test]
    fn converts_cents() {
        assert_eq!(cents_to_micros(249), Ok(2_490_000));
        assert!(matches!(
            cents_to_micros(u64::MAX),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn formats_for_logs() {
        assert_eq!(format_usd(2_490_000), "$2.49");
        assert_eq!(format_usd(3_000_000), "$3.00");
        assert_eq!(format_usd(100), "$0.0001");
        assert_eq!(format_usd(1), "$0.000001");
        assert_eq!(format_usd(0), "$0.00");
        assert_eq!(format_usd(1_234_567), "$1.234567");
        for micros in [0, 1, 99, 2_490_000, 123_456_789, u64::MAX] {
            assert_eq!(parse_usd(&format_usd(micros)), Ok(micros));
        }
    }
}
