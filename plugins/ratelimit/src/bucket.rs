//! One limit's bucket, as the generic cell rate algorithm keeps it: a single number, the time
//! at which the bucket would be full again ("theoretical arrival time"), 8 bytes in shared data.
//! Each request pushes that time one emission interval (period / requests) further; a request
//! that would push it beyond `capacity` intervals ahead of now is refused. This is a token
//! bucket of `requests + burst` tokens refilled at `requests` per period, with exact integer
//! arithmetic and one compare-and-swap per request.

/// What one request gets from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `remaining` more requests would pass now; `reset` seconds until the bucket is full.
    Allow { remaining: u64, reset: u64 },
    /// `retry_after` seconds until a request would pass.
    Refuse { retry_after: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds one request uses up.
    interval: u128,
    /// Requests that pass at once from a full bucket.
    capacity: u128,
}

const NANOS: u128 = 1_000_000_000;

impl Bucket {
    pub fn new(requests: u64, period_seconds: u64, burst: u64) -> Self {
        let requests = u128::from(requests.max(1));
        Bucket {
            interval: (u128::from(period_seconds) * NANOS).div_ceil(requests),
            capacity: requests + u128::from(burst),
        }
    }

    fn read(state: Option<&[u8]>) -> u128 {
        state
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map_or(0, |b| u128::from(u64::from_le_bytes(b)))
    }

    fn decide(&self, state: Option<&[u8]>, now: u64) -> (Decision, u128) {
        let now = u128::from(now);
        let full_at = Self::read(state).max(now);
        let next = full_at + self.interval;
        let limit = now + self.capacity * self.interval;
        if next > limit {
            let wait = next - limit;
            return (
                Decision::Refuse {
                    retry_after: u64::try_from(wait.div_ceil(NANOS))
                        .unwrap_or(u64::MAX)
                        .max(1),
                },
                full_at,
            );
        }
        let remaining = (limit - next) / self.interval;
        let reset = (next - now).div_ceil(NANOS);
        (
            Decision::Allow {
                remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
                reset: u64::try_from(reset).unwrap_or(u64::MAX),
            },
            next,
        )
    }

    /// What a request would get, without taking anything.
    pub fn peek(&self, state: Option<&[u8]>, now: u64) -> Decision {
        self.decide(state, now).0
    }

    /// Takes one request from the bucket: the decision and, when it passes, the new state.
    pub fn take(&self, state: Option<&[u8]>, now: u64) -> (Option<Vec<u8>>, Decision) {
        match self.decide(state, now) {
            (decision @ Decision::Allow { .. }, next) => {
                let next = u64::try_from(next).unwrap_or(u64::MAX);
                (Some(next.to_le_bytes().to_vec()), decision)
            }
            (refused, _) => (None, refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// Sends `n` requests at `now`, returning how many passed.
    fn burst(bucket: &Bucket, state: &mut Option<Vec<u8>>, now: u64, n: usize) -> usize {
        let mut passed = 0;
        for _ in 0..n {
            if let (Some(next), Decision::Allow { .. }) = bucket.take(state.as_deref(), now) {
                *state = Some(next);
                passed += 1;
            }
        }
        passed
    }

    #[test]
    fn a_full_bucket_passes_requests_plus_burst_at_once() {
        let bucket = Bucket::new(10, 1, 5);
        let mut state = None;
        let t0 = 1_700_000_000 * SECOND;
        assert_eq!(burst(&bucket, &mut state, t0, 100), 15);
        // A tenth of a second later, one more.
        assert_eq!(burst(&bucket, &mut state, t0 + SECOND / 10, 100), 1);
        // Two seconds later the bucket is full again: 15, not 20.
        assert_eq!(
            burst(&bucket, &mut state, t0 + 2 * SECOND + SECOND / 10, 100),
            15
        );
    }

    #[test]
    fn the_average_rate_is_the_configured_one() {
        let bucket = Bucket::new(3, 60, 0);
        let mut state = None;
        let t0 = 1_700_000_000 * SECOND;
        let mut passed = 0;
        // One request a second for ten minutes: 3 a minute pass, plus the first full bucket.
        for s in 0..600 {
            passed += burst(&bucket, &mut state, t0 + s * SECOND, 1);
        }
        assert_eq!(passed, 3 + 30 - 1);
    }

    #[test]
    fn refusals_say_when_to_retry_and_allowances_what_is_left() {
        let bucket = Bucket::new(1, 60, 1);
        let t0 = 1_700_000_000 * SECOND;
        let (state, first) = bucket.take(None, t0);
        assert_eq!(
            first,
            Decision::Allow {
                remaining: 1,
                reset: 60
            }
        );
        let (state, second) = bucket.take(state.as_deref(), t0);
        assert_eq!(
            second,
            Decision::Allow {
                remaining: 0,
                reset: 120
            }
        );
        let (_, third) = bucket.take(state.as_deref(), t0 + 10 * SECOND);
        assert_eq!(third, Decision::Refuse { retry_after: 50 });
    }
}
