//! [`Deletions`]: which records the tombstones of a log delete.

use std::collections::HashMap;

use uuid::Uuid;

use crate::SessionEvent;

/// One tombstone, as it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tombstone {
    /// The tombstone's own LSN: it covers only LSNs below it.
    lsn: u64,
    after_lsn: Option<u64>,
    ranges: Vec<(u64, u64)>,
}

impl Tombstone {
    /// `ranges` sorted and merged (see [`Deletions::note`]): a binary
    /// search.
    fn covers(&self, lsn: u64) -> bool {
        lsn < self.lsn
            && (self.after_lsn.is_some_and(|after| lsn > after) || {
                let end = self.ranges.partition_point(|&(a, _)| a <= lsn);
                end.checked_sub(1)
                    .and_then(|i| self.ranges.get(i))
                    .is_some_and(|&(_, b)| b >= lsn)
            })
    }
}

/// `ranges` sorted by first LSN, overlapping and adjacent ones merged.
fn merged(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|(a, b)| a <= b).collect();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (a, b) in sorted {
        match out.last_mut() {
            Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The tombstones (`SessionEvent::SessionDeleted` records) of one log,
/// and the rule that says which records they delete.
///
/// A record of session `S` at LSN `n` is **deleted** if and only if some
/// tombstone of `S` (a `SessionDeleted` record whose frame names `S`) at
/// an LSN `t > n` has `after_lsn = Some(a)` with `n > a`, or a range
/// `(first, last)` with `first <= n <= last`. A tombstone itself is never
/// deleted. LSNs are those of one log: a reader of several logs (a
/// stream) keeps one `Deletions` per log.
///
/// # Examples
///
/// ```
/// use logbook_bus::{Deletions, SessionEvent};
///
/// let s = uuid::Uuid::new_v4();
/// let mut d = Deletions::default();
/// let pop = SessionEvent::SessionDeleted { after_lsn: Some(4), ranges: vec![(2, 2)], reason: "pop".into() };
/// assert!(d.note(s, 9, &pop));
/// assert!(d.covers(s, 2) && d.covers(s, 5) && d.covers(s, 8));
/// assert!(!d.covers(s, 3) && !d.covers(s, 9) && !d.covers(s, 10));
/// assert!(!d.covers(uuid::Uuid::new_v4(), 5));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletions {
    by_session: HashMap<Uuid, Vec<Tombstone>>,
}

impl Deletions {
    /// An empty set: nothing deleted.
    #[must_use]
    pub fn new() -> Deletions {
        Deletions::default()
    }

    /// Take note of the record at `lsn` of `session` holding `event`:
    /// `true` if it is a tombstone (now counted), `false` otherwise.
    pub fn note(&mut self, session: Uuid, lsn: u64, event: &SessionEvent) -> bool {
        let SessionEvent::SessionDeleted {
            after_lsn, ranges, ..
        } = event
        else {
            return false;
        };
        self.by_session.entry(session).or_default().push(Tombstone {
            lsn,
            after_lsn: *after_lsn,
            ranges: merged(ranges),
        });
        true
    }

    /// Whether the record at `lsn` of `session` is deleted (see the rule
    /// above). A tombstone's own LSN is never covered by itself; callers
    /// must not ask about a tombstone (tombstones are never deleted).
    #[must_use]
    pub fn covers(&self, session: Uuid, lsn: u64) -> bool {
        self.by_session
            .get(&session)
            .is_some_and(|t| t.iter().any(|t| t.covers(lsn)))
    }

    /// Whether the record at `lsn` of `session`, holding `event`, is left
    /// out of session content: deleted, and not itself a tombstone.
    #[must_use]
    pub fn hides(&self, session: Uuid, lsn: u64, event: &SessionEvent) -> bool {
        !event.is_tombstone() && self.covers(session, lsn)
    }

    /// Whether no tombstone was noted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Whether `session` has a tombstone.
    #[must_use]
    pub fn has(&self, session: Uuid) -> bool {
        self.by_session.contains_key(&session)
    }

    /// The LSN of the latest tombstone of `session` that deletes the whole
    /// session (`after_lsn = Some(0)`), if any: every record of the session
    /// below it is deleted.
    #[must_use]
    pub fn whole(&self, session: Uuid) -> Option<u64> {
        self.by_session
            .get(&session)?
            .iter()
            .filter(|t| t.after_lsn == Some(0))
            .map(|t| t.lsn)
            .max()
    }

    /// The sessions that have tombstones.
    pub fn sessions(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.by_session.keys().copied()
    }
}

/// The inclusive ranges covering `lsns` (sorted, deduplicated first): the
/// compact form a `SessionDeleted` tombstone carries.
///
/// # Examples
///
/// ```
/// assert_eq!(logbook_bus::lsn_ranges([5, 1, 2, 3, 9, 5]), [(1, 3), (5, 5), (9, 9)]);
/// ```
#[must_use]
pub fn lsn_ranges(lsns: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut lsns: Vec<u64> = lsns.into_iter().collect();
    lsns.sort_unstable();
    lsns.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for lsn in lsns {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(lsn) => *last = lsn,
            _ => out.push((lsn, lsn)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ranges cover exactly the LSNs given.
        #[test]
        fn ranges_cover_exactly(lsns in proptest::collection::vec(0u64..64, 0..40)) {
            let ranges = lsn_ranges(lsns.iter().copied());
            for n in 0..70u64 {
                let inside = ranges.iter().any(|&(a, b)| a <= n && n <= b);
                prop_assert_eq!(inside, lsns.contains(&n));
            }
            for w in ranges.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }

        /// Coverage by ranges in any order, overlapping or not, is
        /// membership in one of them.
        #[test]
        fn ranges_in_any_order_cover_their_members(
            ranges in proptest::collection::vec((0u64..60, 0u64..8), 0..12),
            n in 0u64..80,
        ) {
            let ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(a, w)| (a, a + w)).collect();
            let s = Uuid::from_u128(3);
            let mut d = Deletions::new();
            d.note(s, 100, &SessionEvent::SessionDeleted { after_lsn: None, ranges: ranges.clone(), reason: String::new() });
            prop_assert_eq!(d.covers(s, n), ranges.iter().any(|&(a, b)| a <= n && n <= b));
        }

        /// A tombstone never covers its own LSN, one after it, or a
        /// tombstone; a whole-session one covers every LSN below it.
        #[test]
        fn coverage_rule(t in 1u64..100, n in 0u64..200, after in proptest::option::of(0u64..100)) {
            let s = Uuid::from_u128(7);
            let mut d = Deletions::new();
            let tomb = SessionEvent::SessionDeleted { after_lsn: after, ranges: vec![], reason: String::new() };
            prop_assert!(d.note(s, t, &tomb));
            let want = n < t && after.is_some_and(|a| n > a);
            prop_assert_eq!(d.covers(s, n), want);
            prop_assert!(!d.hides(s, n, &tomb));
        }
    }

    #[test]
    fn whole_is_the_latest_whole_tombstone() {
        let s = Uuid::from_u128(1);
        let mut d = Deletions::new();
        let whole = SessionEvent::SessionDeleted {
            after_lsn: Some(0),
            ranges: vec![],
            reason: String::new(),
        };
        assert!(!d.note(s, 3, &SessionEvent::Done));
        assert_eq!(d.whole(s), None);
        d.note(s, 5, &whole);
        d.note(s, 9, &whole);
        assert_eq!(d.whole(s), Some(9));
        assert!(d.covers(s, 1) && d.covers(s, 8) && !d.covers(s, 9));
    }
}
