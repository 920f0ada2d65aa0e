//! Response-rate limiting (RRL) on UDP, as BIND's `rate-limit` and NSD's `rrl-*` do it: an
//! authoritative server answers anyone, so a forged source address turns it into an amplifier
//! aimed at whoever owns that address. Responses are counted per client network (a /24 for
//! IPv4, a /56 for IPv6, BIND's defaults) and per kind of response: an answer by its name and
//! type, while every NXDOMAIN and every error share one count, so that random names cannot
//! spread a flood over fresh counts. Past the rate a response is dropped, except every `slip`th
//! one, which is sent truncated (TC set, no records): a real client behind the address then asks
//! again over TCP, which no forged source can. TCP is never limited.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::Instant;

/// The limit, one for every UDP query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Responses per second per client network and kind of response; 0: no limit.
    pub responses_per_second: u32,
    /// Of the responses over the rate, every `slip`th is sent truncated; 0: none, 1: all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit {
        responses_per_second: 0,
        slip: 2,
        ipv4_prefix: 24,
        ipv6_prefix: 56,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::OFF
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// Sent truncated instead.
    Slip,
    Drop,
}

/// Counts kept at most: past this, the counts that are full again are forgotten, and if that is
/// not enough, all of them.
const MOST_ACCOUNTS: usize = 1 << 16;

struct Account {
    /// Responses that may still be sent now (fractions accrue as time passes).
    credit: f64,
    last: Instant,
    /// Responses over the rate so far, for the slip.
    over: u32,
}

/// The counts, kept by the UDP loop.
pub(crate) struct Limiter {
    limit: RateLimit,
    accounts: HashMap<(IpAddr, u64), Account>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            accounts: HashMap::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.limit.responses_per_second > 0
    }

    /// Counts `answer` (to `query`, from `client`) and says whether it may go.
    pub fn check(&mut self, client: IpAddr, query: &[u8], answer: &[u8], now: Instant) -> Verdict {
        if !self.is_on() {
            return Verdict::Send;
        }
        let key = (self.network(client), response_kind(query, answer));
        if self.accounts.len() >= MOST_ACCOUNTS && !self.accounts.contains_key(&key) {
            self.forget_full(now);
        }
        let rate = f64::from(self.limit.responses_per_second);
        let account = self.accounts.entry(key).or_insert(Account {
            credit: rate,
            last: now,
            over: 0,
        });
        let elapsed = now.saturating_duration_since(account.last).as_secs_f64();
        account.credit = (account.credit + elapsed * rate).min(rate);
        account.last = now;
        if account.credit >= 1.0 {
            account.credit -= 1.0;
            return Verdict::Send;
        }
        account.over = account.over.wrapping_add(1);
        match self.limit.slip {
            0 => Verdict::Drop,
            slip if account.over.is_multiple_of(slip) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    fn network(&self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let keep = u32::MAX
                    .checked_shl(32 - u32::from(self.limit.ipv4_prefix.min(32)))
                    .unwrap_or(0);
                IpAddr::V4((bits & keep).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let keep = u128::MAX
                    .checked_shl(128 - u32::from(self.limit.ipv6_prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6((bits & keep).into())
            }
        }
    }

    /// Forgets the counts whose credit has refilled (their clients have been quiet for a
    /// second or more); all of them when that is not enough.
    fn forget_full(&mut self, now: Instant) {
        let rate = f64::from(self.limit.responses_per_second);
        self.accounts.retain(|_, account| {
            let elapsed = now.saturating_duration_since(account.last).as_secs_f64();
            account.credit + elapsed * rate < rate
        });
        if self.accounts.len() >= MOST_ACCOUNTS {
            self.accounts.clear();
        }
    }
}

/// Which count a response goes to: its code and, for an answer (NOERROR), its question's name
/// (without regard to case) and type.
fn response_kind(query: &[u8], answer: &[u8]) -> u64 {
    let code = answer.get(3).map_or(0, |flags| flags & 0x0f);
    let mut hasher = DefaultHasher::new();
    code.hash(&mut hasher);
    if code == 0
        && let Some(question) = question(query)
    {
        for byte in question {
            byte.to_ascii_lowercase().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The question section's bytes (name, type and class) of a message whose question is written
/// without compression, as queries' are.
fn question(message: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    loop {
        let length = usize::from(*message.get(at)?);
        if length == 0 {
            at += 1;
            break;
        }
        // A compression pointer or a reserved label type: not a plain question.
        if length & 0xc0 != 0 {
            return None;
        }
        at += 1 + length;
    }
    message.get(12..at + 4)
}

/// `answer` cut to a truncated response: its header with TC set and no records, and its
/// question; `false` when it has not exactly one plain question to keep (an answer to a query
/// of several questions, a FORMERR, is dropped instead: found by the `dns_query` fuzz target,
/// whose first finding was such an answer cut to its first question under a count of two).
pub(crate) fn truncate(answer: &mut Vec<u8>) -> bool {
    if answer.get(4..6) != Some(&[0, 1]) {
        return false;
    }
    let Some(length) = question(answer).map(|q| 12 + q.len()) else {
        return false;
    };
    answer.truncate(length);
    // QR and TC; the question count stays, the record counts go to zero.
    answer[2] |= 0x80 | 0x02;
    answer[6..12].fill(0);
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A query for `name` (type A) and its answer with code `code`.
    fn exchange(name: &str, code: u8) -> (Vec<u8>, Vec<u8>) {
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(u8::try_from(label.len()).unwrap());
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut answer = query.clone();
        answer[2] = 0x84;
        answer[3] = code;
        answer[7] = 1;
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        (query, answer)
    }

    fn limiter(rate: u32, slip: u32) -> Limiter {
        Limiter::new(RateLimit {
            responses_per_second: rate,
            slip,
            ..RateLimit::OFF
        })
    }

    #[test]
    fn past_the_rate_responses_are_dropped_and_every_slipth_truncated() {
        let mut limiter = limiter(5, 2);
        let now = Instant::now();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let (query, answer) = exchange("www.example.test", 0);
        let verdicts: Vec<Verdict> = (0..9)
            .map(|_| limiter.check(client, &query, &answer, now))
            .collect();
        assert_eq!(verdicts[..5], [Verdict::Send; 5]);
        assert_eq!(
            verdicts[5..],
            [Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // A neighbour in the same /24 shares the count; another network does not.
        let neighbour: IpAddr = "198.51.100.200".parse().unwrap();
        assert_ne!(
            limiter.check(neighbour, &query, &answer, now),
            Verdict::Send
        );
        let other: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(limiter.check(other, &query, &answer, now), Verdict::Send);
        // Another name is another count.
        let (query, answer) = exchange("mail.example.test", 0);
        assert_eq!(limiter.check(client, &query, &answer, now), Verdict::Send);
        // A second later the rate's worth may go again.
        let later = now + Duration::from_secs(1);
        let (query, answer) = exchange("www.example.test", 0);
        for _ in 0..5 {
            assert_eq!(limiter.check(client, &query, &answer, later), Verdict::Send);
        }
    }

    #[test]
    fn every_nxdomain_shares_one_count_whatever_the_name() {
        let mut limiter = limiter(3, 0);
        let now = Instant::now();
        let client: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let sent = (0..10)
            .filter(|i| {
                let (query, answer) = exchange(&format!("random{i}.example.test"), 3);
                limiter.check(client, &query, &answer, now) == Verdict::Send
            })
            .count();
        assert_eq!(sent, 3);
    }

    #[test]
    fn a_truncated_response_keeps_the_header_and_question_only() {
        let (query, mut answer) = exchange("www.example.test", 0);
        assert!(truncate(&mut answer));
        assert_eq!(answer.len(), query.len());
        assert_eq!(answer[2] & 0x82, 0x82);
        assert_eq!(&answer[4..6], &[0, 1]);
        assert_eq!(&answer[6..12], &[0; 6]);
        assert!(limiter(0, 2).is_on().eq(&false));
        // Two questions: not cut (a slip would misstate the count).
        let (_, mut two) = exchange("www.example.test", 1);
        two[5] = 2;
        assert!(!truncate(&mut two));
    }
}
