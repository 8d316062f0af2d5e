//! Deletion and erasure reach the stream (a real `nats-server`): a
//! tombstone is shipped like any record, a stream reader honours it, and
//! `erase_in_stream` removes the deleted records' messages (purge with a
//! subject filter for a session deleted whole, one by one for a pop),
//! idempotently; the raw messages then hold no deleted phrase.

mod common;

use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{Select, ShipOptions, Shipper, Target, erase_in_stream, read, to_source};
use logbook_replay::{OnCorruption, ReplayError, list_sessions_in, session_state_in};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

fn phrase(s: usize, i: usize) -> String {
    format!("narwhal-{s}-quince-{i:03}")
}

#[test]
fn erasure_reaches_the_stream_and_is_idempotent() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let sessions: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let popped_after;
    {
        let wal = Wal::open(
            &dir,
            WalOptions {
                segment_size: 8192,
                ..WalOptions::default()
            },
        )
        .unwrap();
        let mut at = 0;
        for i in 0..30 {
            for (s, id) in sessions.iter().enumerate() {
                let lsn = wal
                    .append(*id, &SessionEvent::UserMessage(phrase(s, i)))
                    .unwrap();
                if s == 2 && i == 14 {
                    at = lsn;
                }
            }
        }
        popped_after = at;
        wal.close().unwrap();
    }
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        let shipper = Shipper::new(&dir, target.clone(), ShipOptions::default()).unwrap();
        shipper.ship().await.unwrap();
        let log = shipper.log_id();
        // Delete session 1 whole and pop session 2 after its 15th message;
        // the tombstones are shipped like any record.
        {
            let wal = Wal::open(&dir, WalOptions::default()).unwrap();
            logbook_replay::delete_session(&wal, sessions[1]).unwrap();
            logbook_replay::delete_after(&wal, sessions[2], popped_after).unwrap();
            wal.close().unwrap();
        }
        let report = shipper.ship().await.unwrap();
        assert_eq!(report.shipped, 2);
        // A stream reader honours them before any erasure.
        let source = to_source(&target, read(&target, Select::All).await.unwrap());
        let listed = list_sessions_in(&source, OnCorruption::Fail).unwrap();
        assert_eq!(listed.sessions.len(), 2);
        assert_eq!(listed.deleted.len(), 1);
        assert!(matches!(
            session_state_in(&source, sessions[1], OnCorruption::Fail, None),
            Err(ReplayError::DeletedSession { .. })
        ));
        let (popped, _) = session_state_in(&source, sessions[2], OnCorruption::Fail, None).unwrap();
        assert_eq!(popped.transcript().len(), 15);

        // Erase in the stream.
        let done = erase_in_stream(&target, log).await.unwrap();
        assert_eq!(done.tombstones, 2);
        assert_eq!(done.purged, 30, "{done:?}");
        assert_eq!(done.deleted, 15, "{done:?}");
        let raw = read(&target, Select::All).await.unwrap();
        assert_eq!(raw.len(), 90 + 2 - 45);
        for r in &raw {
            let text = String::from_utf8_lossy(&r.payload);
            assert!(!text.contains("narwhal-1-"), "{text}");
            for i in 15..30 {
                assert!(!text.contains(&phrase(2, i)), "{text}");
            }
        }
        // Everything else is unchanged, and readers still agree.
        let source = to_source(&target, raw);
        let (kept, _) = session_state_in(&source, sessions[0], OnCorruption::Fail, None).unwrap();
        assert_eq!(kept.transcript().len(), 30);
        let (popped, _) = session_state_in(&source, sessions[2], OnCorruption::Fail, None).unwrap();
        assert_eq!(popped.transcript().len(), 15);
        // Again: nothing left to remove (idempotent, resumable).
        let again = erase_in_stream(&target, log).await.unwrap();
        assert_eq!((again.purged, again.deleted), (0, 0), "{again:?}");
    });
}

/// A log compacted before it was shipped: the erased records are never
/// sent (readers pass placeholders over), the rest is, and shipping again
/// finds nothing missing.
#[test]
fn a_log_compacted_before_shipping_ships_the_rest_and_again_nothing() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let wal = Wal::open(&dir, WalOptions::default()).unwrap();
        for i in 0..20 {
            wal.append(a, &SessionEvent::UserMessage(phrase(0, i)))
                .unwrap();
            wal.append(b, &SessionEvent::UserMessage(phrase(1, i)))
                .unwrap();
        }
        logbook_replay::delete_session(&wal, a).unwrap();
        assert_eq!(wal.compact().unwrap().erased, 20);
        wal.append(b, &SessionEvent::Done).unwrap();
        wal.close().unwrap();
    }
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        let shipper = Shipper::new(&dir, target.clone(), ShipOptions::default()).unwrap();
        let first = shipper.ship().await.unwrap();
        assert_eq!(first.shipped, 22, "{first:?}");
        let again = Shipper::new(&dir, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap();
        assert_eq!(again.shipped, 0, "{again:?}");
        let raw = read(&target, Select::All).await.unwrap();
        assert_eq!(raw.len(), 22);
    });
}
