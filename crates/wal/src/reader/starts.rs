//! Where a read of one session's latest records may start: the session's
//! LSNs as the segments' session indexes list them, newest first
//! ([`Reader::session_starts`]). Nothing here reads a record: only segment
//! headers and index files. The read that follows (`from_lsn(start)` with
//! [`Reader::session`]) checks every record it returns as always.

use std::sync::Arc;

use uuid::Uuid;

use super::Reader;
use crate::format::Lsn;
use crate::fs::{Fs, OpenMode};
use crate::segment::{self, SegmentEntry};

/// Start LSNs for reads of one session's latest records, newest first:
/// what [`Reader::session_starts`] returns.
///
/// Each item is an LSN from which a read ([`Reader::from_lsn`]) holds at
/// least as many of the session's records as a read from the item before:
/// one more for each record an index lists, and whatever lies past what a
/// segment's index covers (a tail that grew since its index was stored:
/// the first item of such a segment is where its index stops). A segment
/// without a usable index is one item, its base LSN: it is read whole.
/// The last item is at or below the session's first record. The
/// iteration stops early at an encrypted segment ([`SessionStarts::encrypted`]):
/// a reader with keys opens every record of such a segment in order to
/// check the log's chain, and does not trust its index, so a read of the
/// latest records there is the whole forward read.
#[derive(Debug)]
pub struct SessionStarts {
    fs: Arc<dyn Fs>,
    segments: Vec<SegmentEntry>,
    /// How many segments (from the first) are still to be looked at.
    left: usize,
    session: Uuid,
    /// Starts found in the segment looked at last, oldest first (popped).
    pending: Vec<Lsn>,
    encrypted: bool,
}

impl SessionStarts {
    /// Whether the iteration stopped at an encrypted segment (read the
    /// session forwards instead).
    #[must_use]
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Look at the next segment back: fill `pending`. `false` when none is left.
    fn step_back(&mut self) -> bool {
        if self.encrypted || self.left == 0 {
            return false;
        }
        self.left -= 1;
        let i = self.left;
        let Some(entry) = self.segments.get(i) else {
            return false;
        };
        let next_base = self.segments.get(i + 1).map(|s| s.base_lsn);
        let whole = vec![entry.base_lsn];
        let Ok(file) = self.fs.open(&entry.path, OpenMode::Read) else {
            self.pending = whole;
            return true;
        };
        let Ok(header) = segment::read_header(&*file, entry) else {
            self.pending = whole;
            return true;
        };
        if header.key_id.is_some() {
            self.encrypted = true;
            return false;
        }
        let Ok(len) = file.len() else {
            self.pending = whole;
            return true;
        };
        let Some((ih, places)) =
            crate::index::places(&*self.fs, &entry.path, &*file, &header, len, &self.session)
        else {
            self.pending = whole;
            return true;
        };
        self.pending = places.into_iter().map(|(_, lsn)| lsn).collect();
        // Records past what the index covers (a tail that grew since its
        // index was stored) are read from where it stops.
        if next_base.is_none_or(|next| ih.next_lsn < next) {
            self.pending.push(ih.next_lsn);
        }
        true
    }
}

impl Iterator for SessionStarts {
    type Item = Lsn;

    fn next(&mut self) -> Option<Lsn> {
        loop {
            if let Some(lsn) = self.pending.pop() {
                return Some(lsn);
            }
            if !self.step_back() {
                return None;
            }
        }
    }
}

impl Reader {
    /// Where reads of `session`'s latest records may start, newest first
    /// (see [`SessionStarts`]): from the session indexes, one segment at a
    /// time and only as far back as the iteration goes, so finding where
    /// the last `n` records begin costs O(n) index entries and the index
    /// files of the segments they are in. Read them with
    /// `Reader::open(dir)?.session(session).from_lsn(start)`; that read
    /// checks every record as always, and a deletion (a tombstone, which
    /// covers only LSNs below its own) of a record at or after `start` is
    /// itself at or after `start`.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    /// for s in [a, b, a, b, a] {
    ///     wal.append_raw(s, b"x")?;
    /// }
    /// wal.close()?; // stores the tail's session index
    /// let reader = Reader::open(dir.path())?;
    /// // Where the index stops (nothing past it yet), then a's records.
    /// let starts: Vec<u64> = reader.session_starts(a).collect();
    /// assert_eq!(starts, [6, 5, 3, 1]);
    /// let last_two: Vec<u64> = reader
    ///     .session(a)
    ///     .from_lsn(starts[2])
    ///     .map(|r| r.map(|r| r.lsn))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(last_two, [3, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session_starts(&self, session: Uuid) -> SessionStarts {
        let segments: Vec<SegmentEntry> = self
            .segments
            .iter()
            .filter(|s| self.one_segment.is_none_or(|base| base == s.base_lsn))
            .cloned()
            .collect();
        SessionStarts {
            fs: self.fs.clone(),
            left: segments.len(),
            segments,
            session,
            pending: Vec::new(),
            encrypted: false,
        }
    }
}
