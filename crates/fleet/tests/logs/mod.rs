//! Logs for the fleet tests, and the check that a stream holds a log's
//! records exactly once.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use logbook_bus::SessionEvent;
use logbook_fleet::in_log_order;
use logbook_wal::{Reader, Wal, WalOptions};
use uuid::Uuid;

/// A log of `n` records over a few sessions, in small segments.
pub fn write_log(dir: &std::path::Path, n: u64) -> Vec<Uuid> {
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 64 << 10,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let sessions: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut batch = Vec::new();
    for i in 0..n {
        let s = sessions[(i % 4) as usize];
        batch.push((
            s,
            SessionEvent::UserMessage(format!("message {i} {}", "x".repeat((i % 50) as usize))),
        ));
        if batch.len() == 100 {
            wal.append_many(&batch).unwrap();
            batch.clear();
        }
    }
    wal.append_many(&batch).unwrap();
    sessions
}

/// Every (LSN, session, payload) of the local log.
pub fn local_records(dir: &std::path::Path) -> Vec<(u64, Uuid, Vec<u8>)> {
    let mut reader = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        out.push((r.lsn, r.session, r.payload.to_vec()));
    }
    out
}

/// How many times the stream holds each LSN of `log`.
pub fn stream_counts(records: &[logbook_fleet::FleetRecord], log: Uuid) -> HashMap<u64, usize> {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in records.iter().filter(|r| r.log == log) {
        *seen.entry(r.lsn).or_default() += 1;
    }
    seen
}

/// The stream holds every record of the log exactly once, with its
/// payload, session and subject.
pub fn assert_exactly_once(
    records: &[logbook_fleet::FleetRecord],
    log: Uuid,
    local: &[(u64, Uuid, Vec<u8>)],
) {
    let seen = stream_counts(records, log);
    let doubled: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| *l)
        .collect();
    assert!(
        doubled.is_empty(),
        "LSNs in the stream more than once: {doubled:?}"
    );
    let missing: Vec<u64> = local
        .iter()
        .map(|r| r.0)
        .filter(|l| !seen.contains_key(l))
        .collect();
    assert!(
        missing.is_empty(),
        "LSNs missing from the stream: {} (first {:?})",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        seen.len(),
        local.len(),
        "the stream holds LSNs the log does not"
    );
    let ordered = in_log_order(records.iter().filter(|r| r.log == log).cloned().collect());
    for (r, (lsn, session, payload)) in ordered.iter().zip(local) {
        assert_eq!(
            (r.lsn, r.session, &r.payload[..]),
            (*lsn, *session, &payload[..])
        );
    }
}
