//! The log's stable id (`LOG_ID`, docs/format.md "The log id"): created
//! with the log, kept by every later writer, durable before `open` returns
//! (power cuts on the simulated file system), and a clear error where
//! there is none.

use std::sync::Arc;

use logbook_wal::sim::SimFs;
use logbook_wal::{Wal, WalError, WalOptions, log_id};

#[test]
fn created_with_the_log_and_stable_across_writers() {
    let dir = tempfile::tempdir().unwrap();
    let first = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let id = first.log_id();
    assert!(!id.is_nil());
    first.append_raw(uuid::Uuid::nil(), b"x").unwrap();
    drop(first);
    assert_eq!(log_id(dir.path()).unwrap(), id);
    let second = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(second.log_id(), id);
    // Another log gets another id.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        Wal::open(other.path(), WalOptions::default())
            .unwrap()
            .log_id(),
        id
    );
}

#[test]
fn a_log_without_one_is_a_clear_error_and_no_writer_gives_it_another() {
    let dir = tempfile::tempdir().unwrap();
    let first = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let id = first.log_id();
    first.append_raw(uuid::Uuid::nil(), b"x").unwrap();
    drop(first);
    let path = dir.path().join("LOG_ID");
    std::fs::remove_file(&path).unwrap();
    let err = log_id(dir.path()).unwrap_err();
    assert!(
        matches!(&err, WalError::NoLogId { path: p } if *p == path),
        "{err}"
    );
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
    // A writer does not mint a new id for a log with segments: that would
    // make it another log (issue: it used to, silently).
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, WalError::LogIdLost { path: p } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("restore LOG_ID"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    // Restored from a copy, the log is itself again.
    let copy = tempfile::tempdir().unwrap();
    drop(Wal::open(copy.path(), WalOptions::default()).unwrap());
    // On purpose, a new one.
    let new = logbook_wal::assign_log_id(dir.path()).unwrap();
    assert_ne!(new, id);
    assert!(logbook_wal::assign_log_id(dir.path()).is_err(), "only once");
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.log_id(), new);
}

#[test]
fn a_damaged_one_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::open(dir.path(), WalOptions::default()).unwrap());
    let path = dir.path().join("LOG_ID");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(log_id(dir.path()), Err(WalError::BadLogId { .. })));
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::BadLogId { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "never overwritten");
}

/// A power cut at every mutating operation of the first `open`: afterwards
/// either the open failed and the next one creates an id, or it succeeded
/// and the id it returned survives the cut.
#[test]
fn the_id_open_returned_survives_a_power_cut() {
    for n in 1..12 {
        let fs = SimFs::new(n);
        fs.cut_power_after(n);
        let returned = Wal::open_with_fs(Arc::new(fs.clone()), "/log", WalOptions::default())
            .ok()
            .map(|w| w.log_id());
        fs.power_cut();
        fs.clear_faults();
        let after = Wal::open_with_fs(Arc::new(fs.clone()), "/log", WalOptions::default())
            .unwrap()
            .log_id();
        if let Some(id) = returned {
            assert_eq!(after, id, "cut after {n} operations");
        }
        let bytes = fs.file_bytes("/log/LOG_ID").unwrap();
        assert_eq!(
            logbook_wal::format::LogIdFile::decode(&bytes).unwrap().id,
            after
        );
    }
}
