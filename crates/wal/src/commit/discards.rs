//! What a full disk discarded, kept only as long as a waiter may have to
//! learn of it.
//!
//! Each discard ends an *epoch*. A record queued in epoch `e` (LSN `l`)
//! was lost if a discard of epoch `e` or later started at or below `l`.
//! Waiters (an appender or `sync` in `wait_for`, an async `Durable`) hold
//! their epoch while they wait; a discard no held epoch can reach is
//! dropped, so a disk that stays full while the flusher or appenders retry
//! does not grow this without bound.

use std::collections::VecDeque;

use crate::error::WalError;
use crate::format::Lsn;

#[derive(Debug, Default)]
pub(super) struct Discards {
    /// `entries[i]` ended epoch `base + i`: from which LSN it lost records,
    /// and why.
    entries: VecDeque<(Lsn, WalError)>,
    base: usize,
    /// Epochs held by waiters, ascending, with how many hold each.
    holds: VecDeque<(usize, usize)>,
}

impl Discards {
    /// The current epoch: records queued now belong to it.
    pub(super) fn epoch(&self) -> usize {
        self.base + self.entries.len()
    }

    /// A discard of the records from `from` on ends the current epoch.
    pub(super) fn push(&mut self, from: Lsn, error: WalError) {
        self.entries.push_back((from, error));
        self.prune();
    }

    /// The error for the record `lsn` of `epoch`, if a discard lost it.
    pub(super) fn check(&self, lsn: Lsn, epoch: usize) -> Result<(), WalError> {
        let since = epoch.saturating_sub(self.base);
        for (from, error) in self.entries.iter().skip(since) {
            if lsn >= *from {
                return Err(error.clone());
            }
        }
        Ok(())
    }

    /// A waiter of `epoch` starts waiting.
    pub(super) fn hold(&mut self, epoch: usize) {
        match self.holds.iter_mut().find(|(e, _)| *e == epoch) {
            Some((_, n)) => *n += 1,
            None => {
                let at = self.holds.partition_point(|(e, _)| *e < epoch);
                self.holds.insert(at, (epoch, 1));
            }
        }
    }

    /// A waiter of `epoch` is done.
    pub(super) fn release(&mut self, epoch: usize) {
        if let Some((_, n)) = self.holds.iter_mut().find(|(e, _)| *e == epoch) {
            *n = n.saturating_sub(1);
        }
        self.holds.retain(|(_, n)| *n > 0);
        self.prune();
    }

    /// Drop the discards no held epoch can reach.
    fn prune(&mut self) {
        let needed = self.holds.front().map_or(self.epoch(), |(e, _)| *e);
        while self.base < needed && self.entries.pop_front().is_some() {
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> WalError {
        WalError::io(
            "write",
            "/log/x.wal",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )
    }

    #[test]
    fn discards_nobody_waits_for_are_dropped() {
        let mut d = Discards::default();
        for _ in 0..1000 {
            d.push(5, full());
        }
        assert_eq!((d.epoch(), d.entries.len()), (1000, 0));
    }

    #[test]
    fn a_held_epoch_keeps_what_it_must_learn() {
        let mut d = Discards::default();
        let e = d.epoch();
        d.hold(e);
        d.push(5, full());
        d.push(9, full());
        assert!(d.check(4, e).is_ok(), "below every discard");
        assert!(d.check(5, e).unwrap_err().is_disk_full());
        assert!(
            d.check(7, d.epoch() - 1).is_ok(),
            "the second discard starts at 9"
        );
        assert!(
            d.check(9, d.epoch()).is_ok(),
            "a later epoch lost nothing yet"
        );
        d.release(e);
        assert_eq!(d.entries.len(), 0);
        assert_eq!(d.epoch(), 2);
    }

    #[test]
    fn the_oldest_holder_bounds_what_is_kept() {
        let mut d = Discards::default();
        d.hold(0);
        d.push(1, full());
        d.hold(1);
        d.push(2, full());
        d.release(0);
        assert_eq!((d.base, d.entries.len()), (1, 1));
        assert!(d.check(2, 1).is_err());
        d.release(1);
        assert!(d.entries.is_empty());
    }
}
