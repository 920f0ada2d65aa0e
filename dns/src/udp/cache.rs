//! Answers kept by the bytes of the query that got them, so that a question asked again (the
//! common case for an authoritative server: the same names, asked by many resolvers) is answered
//! by a copy with the query's id put in, without parsing, looking up or encoding anything: what
//! NSD does with its precompiled answers. An answer is the same for the same query bytes and the
//! same zones, except where it depends on the sender (transfers) or the time (TSIG): those are
//! never kept. Every answer is forgotten when the zones served change, and all are forgotten
//! when there are too many to keep, so a flood of distinct names costs bounded memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::answer::Zones;
use crate::server::Counter;

/// The most answers kept.
const MAX_ANSWERS: usize = 10_000;

/// A kept answer, with what counts it in the query metrics.
pub(crate) struct Kept {
    answer: Box<[u8]>,
    pub count: Counter,
}

#[derive(Default)]
pub(crate) struct AnswerCache {
    /// The zones the answers came from (swapped whole when they change), held so that their
    /// address cannot be taken by others.
    zones: Option<Arc<Zones>>,
    answers: HashMap<Box<[u8]>, Kept>,
}

/// What a query is known by: all of it but its id (the first two bytes).
fn key(query: &[u8]) -> Option<&[u8]> {
    query.get(2..)
}

impl AnswerCache {
    /// Forgets every answer if `zones` are not the zones they came from.
    pub fn serving(&mut self, zones: Arc<Zones>) {
        if !self
            .zones
            .as_ref()
            .is_some_and(|kept| Arc::ptr_eq(kept, &zones))
        {
            self.answers.clear();
            self.zones = Some(zones);
        }
    }

    /// The kept answer to `query`, written into `out` with the query's id.
    pub fn answer(&self, query: &[u8], out: &mut Vec<u8>) -> Option<&Kept> {
        let kept = self.answers.get(key(query)?)?;
        out.clear();
        out.extend_from_slice(&kept.answer);
        if let (Some(id), Some(slot)) = (query.get(..2), out.get_mut(..2)) {
            slot.copy_from_slice(id);
        }
        Some(kept)
    }

    /// Keeps `answer` to `query`.
    pub fn keep(&mut self, query: &[u8], answer: &[u8], count: Counter) {
        let Some(key) = key(query) else {
            return;
        };
        if self.answers.len() >= MAX_ANSWERS {
            self.answers.clear();
        }
        self.answers.insert(
            key.into(),
            Kept {
                answer: answer.into(),
                count,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_given_back_with_the_id_of_the_query_and_forgotten_with_its_zones() {
        let first = Arc::new(Zones::default());
        let second = Arc::new(Zones::default());
        let mut cache = AnswerCache::default();
        cache.serving(first.clone());
        cache.keep(b"\x00\x01question", b"\x00\x01answer", Box::new(|| {}));
        let mut out = Vec::new();
        assert!(cache.answer(b"\x12\x34question", &mut out).is_some());
        assert_eq!(out, b"\x12\x34answer");
        assert!(cache.answer(b"\x12\x34other", &mut out).is_none());
        cache.serving(first);
        assert!(cache.answer(b"\x12\x34question", &mut out).is_some());
        cache.serving(second);
        assert!(cache.answer(b"\x12\x34question", &mut out).is_none());
    }
}
