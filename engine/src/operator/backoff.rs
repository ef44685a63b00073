//! Exponential backoff with jitter and a cap, for every retry the operator makes.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `failures` (1-based): `base * 2^(failures-1)`, capped at `max`,
/// then scaled by a random factor in [0.8, 1.2] so that many objects do not retry in step.
pub fn delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let factor: f64 = rand::rng().random_range(0.8..=1.2);
    raw.mul_f64(factor).min(max.mul_f64(1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let first = delay(base, max, 1);
            assert!(first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400));
            let third = delay(base, max, 3);
            assert!(third >= Duration::from_millis(6400) && third <= Duration::from_millis(9600));
            assert!(delay(base, max, 30) <= Duration::from_secs(72));
        }
    }
}
