//! Review 23: an outside attack on deletion and erasure in the stream
//! (issue 23), against a real `nats-server`. Each test is one
//! reproduction of a defect: it fails on the code it was written against.

mod common;

use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{Select, ShipOptions, Shipper, Target, read, resume_from_stream, to_source};
use logbook_replay::{OnCorruption, session_state, session_state_in};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

fn phrase(i: usize) -> String {
    format!("pangolin-{i:03}")
}

/// `docs/fleet.md`: "Every reader of the stream honours [a tombstone] ...
/// the records it deletes are left out from the moment it is in the
/// stream", and "a pull ... brings the session back only as it is in the
/// stream (without the deleted records)"; `docs/format.md`: "an import
/// refuses [tombstones]". `resume nats://` (`resume_from_stream`) is such
/// a reader: popped on host A (`delete_after`), shipped with its tombstone,
/// not yet erased in the stream, the session resumed on host B comes back
/// with the deleted records as live ones (`pull.rs` `plan` keeps every
/// record of the session, the tombstone included, whose ranges then name
/// host A's LSNs in host B's log).
#[test]
fn resume_from_the_stream_brings_back_records_a_shipped_tombstone_deletes() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let (host_a, host_b) = (root.path().join("a"), root.path().join("b"));
    let (s, other) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let wal = Wal::open(&host_a, WalOptions::default()).unwrap();
        wal.append(
            s,
            &SessionEvent::SessionStarted {
                model: "m".into(),
                cwd: "/a".into(),
                title: None,
            },
        )
        .unwrap();
        let mut after = 0;
        for i in 0..30 {
            let lsn = wal.append(s, &SessionEvent::UserMessage(phrase(i))).unwrap();
            wal.append(other, &SessionEvent::UserMessage(format!("other {i}")))
                .unwrap();
            if i == 14 {
                after = lsn;
            }
        }
        // Undo the last 15 messages.
        logbook_replay::delete_after(&wal, s, after).unwrap();
        wal.close().unwrap();
    }
    let on_a: Vec<String> = session_state(&host_a, s)
        .unwrap()
        .transcript()
        .iter()
        .map(|t| t.text.clone())
        .collect();
    assert_eq!(on_a.len(), 15);
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        Shipper::new(&host_a, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap();
        // The stream's readers honour the tombstone.
        let source = to_source(&target, read(&target, Select::All).await.unwrap());
        let (in_stream, _) = session_state_in(&source, s, OnCorruption::Fail, None).unwrap();
        assert_eq!(in_stream.transcript().len(), 15);
        // Host B resumes the session from the stream.
        let wal = Wal::open(&host_b, WalOptions::default()).unwrap();
        let pulled = resume_from_stream(&target, &wal, s).await.unwrap();
        drop(pulled);
        wal.close().unwrap();
    });
    let on_b: Vec<String> = session_state(&host_b, s)
        .unwrap()
        .transcript()
        .iter()
        .map(|t| t.text.clone())
        .collect();
    let back: Vec<&String> = on_b.iter().filter(|t| !on_a.contains(t)).collect();
    assert!(
        back.is_empty(),
        "host B replays {} message(s), {} of them deleted on host A: {:?}",
        on_b.len(),
        back.len(),
        back
    );
}
