//! When to renew: at `renewBefore` ahead of expiry when set, else when a third of the lifetime is
//! left (cert-manager's default), moved earlier by up to a tenth of that margin by a per-name
//! jitter so that certificates issued together do not all renew together.

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

/// The renewal time of a certificate valid from `not_before` to `not_after`. `key` (the
/// certificate's name) spreads renewals of certificates with the same validity.
pub fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Option<Duration>,
    key: &str,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let margin = renew_before
        .filter(|m| *m < lifetime)
        .unwrap_or(lifetime / 3);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let spread = margin / 10;
    let jitter = if spread.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(
            hasher.finish() % u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX).max(1),
        )
    };
    not_after - margin - jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn a_third_of_the_lifetime_by_default_with_a_spread() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        let times: Vec<SystemTime> = (0..50)
            .map(|i| renewal_time(start, end, None, &format!("cert-{i}")))
            .collect();
        for t in &times {
            assert!(*t <= end - 30 * DAY && *t >= end - 33 * DAY, "{t:?}");
        }
        let distinct: std::collections::HashSet<_> = times.iter().collect();
        assert!(distinct.len() > 40, "renewals spread out");
        assert_eq!(
            renewal_time(start, end, None, "a"),
            renewal_time(start, end, None, "a")
        );
    }

    #[test]
    fn renew_before_wins_when_shorter_than_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        let t = renewal_time(start, end, Some(10 * DAY), "x");
        assert!(t <= end - 10 * DAY && t >= end - 11 * DAY);
        let too_long = renewal_time(start, end, Some(100 * DAY), "x");
        assert!(too_long >= end - 33 * DAY);
    }
}
