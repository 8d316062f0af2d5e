//! Shipping a log to a real `nats-server` and reading it back.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{FleetError, Select, ShipOptions, Shipper, Target, in_log_order, read};
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

/// The stream holds every record of the log exactly once, with its
/// payload, session and subject.
pub fn assert_exactly_once(
    records: &[logbook_fleet::FleetRecord],
    log: Uuid,
    local: &[(u64, Uuid, Vec<u8>)],
) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in records.iter().filter(|r| r.log == log) {
        *seen.entry(r.lsn).or_default() += 1;
    }
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

#[test]
fn one_shot_ship_twice_leaves_each_record_once() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 1500);
    let local = local_records(&dir);
    common::run(Duration::from_secs(60), async {
        let target = Target::parse(&server.url()).unwrap();
        let shipper = Shipper::new(&dir, target.clone(), ShipOptions::default()).unwrap();
        let first = shipper.ship().await.unwrap();
        assert_eq!(first.shipped, 1500);
        assert_eq!(first.lsns, Some((1, 1500)));
        assert_eq!(first.shipped_through, 1500);
        let second = shipper.ship().await.unwrap();
        assert_eq!((second.shipped, second.duplicates), (0, 0), "{second:?}");
        assert_eq!(second.shipped_through, 1500);
        let records = read(&target, Select::All).await.unwrap();
        assert_eq!(records.len(), 1500);
        assert_exactly_once(&records, shipper.log_id(), &local);
        // Appended since: the next ship sends exactly those.
        {
            let wal = Wal::open(&dir, WalOptions::default()).unwrap();
            for _ in 0..7 {
                wal.append(Uuid::new_v4(), &SessionEvent::Done).unwrap();
            }
        }
        let third = shipper.ship().await.unwrap();
        assert_eq!((third.shipped, third.lsns), (7, Some((1501, 1507))));
        let records = read(&target, Select::All).await.unwrap();
        assert_exactly_once(&records, shipper.log_id(), &local_records(&dir));
    });
}
