//! Many threads × many sessions: every record readable, in LSN order, each
//! session's records in the order it wrote them; and group commit: with 16
//! concurrent appenders, fsyncs carry many records.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{assert_gapless, read_all, small};
use logbook_bus::{SessionBus, SessionEvent};
use logbook_wal::Wal;
use uuid::Uuid;

#[test]
fn many_threads_many_sessions_keep_per_session_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(64 * 1024)).unwrap();
    const THREADS: u64 = 16;
    const SESSIONS_PER_THREAD: u64 = 3;
    const EVENTS: u64 = 60;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let wal = wal.clone();
            s.spawn(move || {
                let buses: Vec<(Uuid, SessionBus)> = (0..SESSIONS_PER_THREAD)
                    .map(|k| {
                        let id = Uuid::from_u64_pair(t, k);
                        (
                            id,
                            SessionBus::new(8).with_durable_sink(Arc::new(wal.sink(id))),
                        )
                    })
                    .collect();
                for n in 0..EVENTS {
                    for (id, bus) in &buses {
                        bus.try_emit(SessionEvent::TextComplete(format!("{id}:{n}")))
                            .unwrap();
                        bus.emit(SessionEvent::Thinking); // ephemeral: not logged
                    }
                }
            });
        }
    });
    let stats = wal.stats();
    drop(wal);
    let records = read_all(dir.path());
    assert_eq!(records.len() as u64, THREADS * SESSIONS_PER_THREAD * EVENTS);
    assert_gapless(&records);
    let mut next: BTreeMap<Uuid, u64> = BTreeMap::new();
    for (_, session, event) in &records {
        let n = next.entry(*session).or_default();
        assert_eq!(
            event,
            &SessionEvent::TextComplete(format!("{session}:{n}")),
            "per-session order"
        );
        *n += 1;
    }
    assert_eq!(next.len() as u64, THREADS * SESSIONS_PER_THREAD);
    assert!(
        stats.segments_created > 1,
        "the test must cross segment rolls"
    );
}

#[test]
fn group_commit_batches_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(8 << 20)).unwrap();
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..16u64 {
            let wal = wal.clone();
            s.spawn(move || {
                for n in 0..200u64 {
                    wal.append_raw(Uuid::from_u64_pair(t, 0), &n.to_le_bytes())
                        .unwrap();
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let stats = wal.stats();
    println!("{stats:?}");
    assert_eq!(stats.records_synced, 16 * 200);
    // One leader at a time fsyncs, so their time adds up to at most the
    // time the appends took.
    assert!(
        u128::from(stats.fsync_micros) <= elapsed.as_micros(),
        "{} µs of fsync in {elapsed:?}",
        stats.fsync_micros
    );
    // One fsync per record would be 3200 fsyncs. While one fsync is in
    // flight the 15 other appenders queue up, so each fsync carries many.
    let per_fsync = stats.records_synced as f64 / stats.fsyncs as f64;
    assert!(
        per_fsync >= 4.0,
        "only {per_fsync:.1} records per fsync: {stats:?}"
    );
}
