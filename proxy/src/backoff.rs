//! Exponential backoff, the one way Gantry waits before trying again: the pause after the Nth
//! failure in a row, doubling from the first pause up to the longest.

use std::time::Duration;

/// Pauses that double from `first` up to `longest`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub longest: Duration,
}

impl Backoff {
    /// The pause after `failures` failures in a row (none after none).
    pub fn after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        self.first
            .saturating_mul(1 << (failures - 1).min(16))
            .min(self.longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_longest() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            longest: Duration::from_secs(10),
        };
        let pauses: Vec<u64> = (0..7).map(|n| backoff.after(n).as_secs()).collect();
        assert_eq!(pauses, [0, 1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(10));
    }
}
