//! `IMPORTS`: which records of a local log were copied from the stream
//! (another log's records, pulled to resume a session here), so that the
//! shipper never ships them again under this log's id (`docs/fleet.md`,
//! "Resume anywhere").
//!
//! A file in the log directory of fixed 64-byte entries, appended and
//! fsynced **before** the records it describes are appended to the log.
//! Each entry binds a local LSN to the record expected there (its session
//! and the CRC-32 of its payload) and to where it came from (the origin
//! log and LSN). The shipper skips a local record only if an entry names
//! its LSN *and* its session and payload match: an entry whose records
//! never reached the log (a crash between the two writes) matches nothing
//! that lands at its LSNs later, except the very same record imported
//! again, which must be skipped anyway. All integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LBIM` |
//! | 4 | 2 | version, 1 |
//! | 6 | 2 | flags, 0 |
//! | 8 | 8 | local LSN |
//! | 16 | 16 | session |
//! | 32 | 16 | origin log id |
//! | 48 | 8 | origin LSN |
//! | 56 | 4 | CRC-32 of the payload |
//! | 60 | 4 | CRC-32 of bytes 0..60 |

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use logbook_wal::Lsn;
use uuid::Uuid;

use crate::error::FleetError;

/// The file's name in the log directory.
pub(crate) const IMPORTS_FILE: &str = "IMPORTS";
const MAGIC: [u8; 4] = *b"LBIM";
const VERSION: u16 = 1;
const ENTRY_LEN: usize = 64;

/// One imported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) local_lsn: Lsn,
    pub(crate) session: Uuid,
    pub(crate) origin_log: Uuid,
    pub(crate) origin_lsn: Lsn,
    pub(crate) payload_crc: u32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.local_lsn.to_le_bytes());
        b[16..32].copy_from_slice(self.session.as_bytes());
        b[32..48].copy_from_slice(self.origin_log.as_bytes());
        b[48..56].copy_from_slice(&self.origin_lsn.to_le_bytes());
        b[56..60].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let uuid_at = |at: usize| -> Option<Uuid> {
            Some(Uuid::from_bytes(b.get(at..at + 16)?.try_into().ok()?))
        };
        if b.get(0..4)? != MAGIC
            || b.get(4..6)? != VERSION.to_le_bytes()
            || b.get(6..8)? != [0, 0]
            || crc32fast::hash(b.get(..60)?) != u32_at(60)?
        {
            return None;
        }
        Some(Entry {
            local_lsn: u64_at(8)?,
            session: uuid_at(16)?,
            origin_log: uuid_at(32)?,
            origin_lsn: u64_at(48)?,
            payload_crc: u32_at(56)?,
        })
    }
}

/// The import list of one log, as read so far.
#[derive(Debug)]
pub(crate) struct Imports {
    path: PathBuf,
    /// The last entry for each local LSN (a later pull's entry for an LSN
    /// replaces that of an earlier pull whose record never landed).
    by_lsn: HashMap<Lsn, Entry>,
    /// Bytes read so far (whole entries).
    read: u64,
}

impl Imports {
    /// Read the list of the log in `dir` (empty if there is none).
    pub(crate) fn load(dir: &Path) -> Result<Imports, FleetError> {
        let mut imports = Imports {
            path: dir.join(IMPORTS_FILE),
            by_lsn: HashMap::new(),
            read: 0,
        };
        imports.refresh()?;
        Ok(imports)
    }

    /// Read entries appended since the last read.
    pub(crate) fn refresh(&mut self) -> Result<(), FleetError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.error("open", e)),
        };
        let len = file.metadata().map_err(|e| self.error("stat", e))?.len();
        let whole = len - len % ENTRY_LEN as u64;
        if whole <= self.read {
            return Ok(());
        }
        let mut buf = vec![0u8; usize::try_from(whole - self.read).unwrap_or(0)];
        file.read_exact_at(&mut buf, self.read)
            .map_err(|e| self.error("read", e))?;
        for chunk in buf.chunks_exact(ENTRY_LEN) {
            match Entry::decode(chunk) {
                Some(entry) => {
                    self.by_lsn.insert(entry.local_lsn, entry);
                }
                None => {
                    tracing::warn!(path = %self.path.display(), "skipping a damaged import entry (its record, if any, will be shipped as this log's)")
                }
            }
        }
        self.read = whole;
        Ok(())
    }

    /// Whether the local record at `lsn` was imported.
    pub(crate) fn is_imported(&self, lsn: Lsn, session: Uuid, payload: &[u8]) -> bool {
        self.by_lsn
            .get(&lsn)
            .is_some_and(|e| e.session == session && e.payload_crc == crc32fast::hash(payload))
    }

    /// Where the local record at `lsn` came from (origin log and LSN), if
    /// it was imported ([`Imports::is_imported`]). An entry alone says
    /// only that a pull meant to append that record there: it is durable
    /// before the record is appended, which may then fail.
    pub(crate) fn landed_origin(
        &self,
        lsn: Lsn,
        session: Uuid,
        payload: &[u8],
    ) -> Option<(Uuid, Lsn)> {
        self.is_imported(lsn, session, payload)
            .then(|| self.by_lsn.get(&lsn).map(|e| (e.origin_log, e.origin_lsn)))
            .flatten()
    }

    /// Where the record compaction erased at `lsn` (a redacted placeholder
    /// naming `session`) came from, if an entry names that LSN and
    /// session: it landed, and was deleted and erased here since.
    pub(crate) fn erased_origin(&self, lsn: Lsn, session: Uuid) -> Option<(Uuid, Lsn)> {
        self.by_lsn
            .get(&lsn)
            .filter(|e| e.session == session)
            .map(|e| (e.origin_log, e.origin_lsn))
    }

    /// The lowest local LSN an entry of `session` names.
    pub(crate) fn first_lsn_of(&self, session: Uuid) -> Option<Lsn> {
        self.by_lsn
            .values()
            .filter(|e| e.session == session)
            .map(|e| e.local_lsn)
            .min()
    }

    /// Append `entries` and make them durable (the file fsynced, and its
    /// directory when the file is new).
    pub(crate) fn append(dir: &Path, entries: &[Entry]) -> Result<(), FleetError> {
        let path = dir.join(IMPORTS_FILE);
        let error = |op, source| FleetError::Imports {
            path: path.clone(),
            op,
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| error("open", e))?;
        let len = file.metadata().map_err(|e| error("stat", e))?.len();
        // A torn last entry (a crash mid-append) is cut: entries stay aligned.
        let at = len - len % ENTRY_LEN as u64;
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(&e.encode());
        }
        file.set_len(at).map_err(|e| error("truncate", e))?;
        file.write_all_at(&bytes, at)
            .map_err(|e| error("write", e))?;
        file.sync_data().map_err(|e| error("fsync", e))?;
        if !existed {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| error("fsync directory", e))?;
        }
        Ok(())
    }

    fn error(&self, op: &'static str, source: io::Error) -> FleetError {
        FleetError::Imports {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_refused() {
        let e = Entry {
            local_lsn: 7,
            session: Uuid::from_u128(1),
            origin_log: Uuid::from_u128(2),
            origin_lsn: 3,
            payload_crc: crc32fast::hash(b"x"),
        };
        let b = e.encode();
        assert_eq!(Entry::decode(&b), Some(e));
        for i in 0..ENTRY_LEN {
            let mut bad = b;
            bad[i] ^= 1;
            assert_eq!(Entry::decode(&bad), None, "byte {i}");
        }
    }

    #[test]
    fn skips_only_the_record_it_names_and_survives_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = Uuid::from_u128(9);
        let entry = |lsn| Entry {
            local_lsn: lsn,
            session: s,
            origin_log: Uuid::from_u128(2),
            origin_lsn: lsn + 100,
            payload_crc: crc32fast::hash(b"payload"),
        };
        Imports::append(dir.path(), &[entry(1), entry(2)]).unwrap();
        // A torn third entry.
        let path = dir.path().join(IMPORTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&entry(3).encode()[..30]);
        std::fs::write(&path, &bytes).unwrap();
        let mut imports = Imports::load(dir.path()).unwrap();
        assert!(imports.is_imported(1, s, b"payload"));
        assert!(!imports.is_imported(1, s, b"other"), "another payload");
        assert!(
            !imports.is_imported(1, Uuid::from_u128(8), b"payload"),
            "another session"
        );
        assert!(!imports.is_imported(3, s, b"payload"), "the torn entry");
        assert_eq!(
            imports.landed_origin(2, s, b"payload"),
            Some((Uuid::from_u128(2), 102))
        );
        assert_eq!(imports.landed_origin(2, s, b"other"), None);
        assert_eq!(imports.first_lsn_of(s), Some(1));
        assert_eq!(imports.first_lsn_of(Uuid::from_u128(8)), None);
        Imports::append(dir.path(), &[entry(4)]).unwrap();
        imports.refresh().unwrap();
        assert!(imports.is_imported(4, s, b"payload"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            3 * ENTRY_LEN as u64
        );
    }
}
