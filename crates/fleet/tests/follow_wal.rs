//! `Shipper::for_wal`: shipping from the writer's own process, woken by
//! its durable watermark, against a real `nats-server`.

mod common;
mod logs;

use std::collections::HashMap;
use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{Select, ShipOptions, Shipper, Target, read};
use logbook_wal::{Wal, WalOptions};
use logs::{assert_exactly_once, local_records};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use uuid::Uuid;

/// Records written before and while the shipper follows all reach the
/// stream once; following ends by itself once the writer closes; the
/// shipper's figures say so.
#[test]
fn following_a_wal_ships_what_becomes_durable_and_ends_when_it_closes() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let report = common::run(Duration::from_secs(60), async {
        let wal = Wal::open(
            &dir,
            WalOptions {
                segment_size: 64 << 10,
                ..WalOptions::default()
            },
        )
        .unwrap();
        let session = Uuid::new_v4();
        let event = |i: usize| SessionEvent::UserMessage(format!("message {i}"));
        for i in 0..100 {
            wal.append(session, &event(i)).unwrap();
        }
        let target = Target::parse(&server.url()).unwrap();
        let shipper = metrics::with_local_recorder(&recorder, || {
            Shipper::for_wal(&wal, target, ShipOptions::default())
        });
        let following = tokio::spawn(async move { shipper.follow(|_| {}).await });
        // Appended while it follows, in group commits and one by one, from
        // a plain thread as an agent would.
        let writer = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let batch: Vec<_> = (0..10)
                        .map(|k| (session, event(1000 + round * 10 + k)))
                        .collect();
                    wal.append_many(&batch).unwrap();
                    wal.append(session, &event(5000 + round)).unwrap();
                }
            })
        };
        tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(wal.durable_lsn(), 320);
        wal.close().unwrap();
        following.await.unwrap().unwrap()
    });
    assert_eq!((report.shipped, report.duplicates), (320, 0), "{report:?}");
    assert_eq!(report.shipped_through, 320);
    assert_eq!(report.read_through, 320);
    assert_eq!(report.lag, Duration::ZERO);
    let local = local_records(&dir);
    assert_eq!(local.len(), 320);
    let records = common::run(Duration::from_secs(60), async {
        read(&Target::parse(&server.url()).unwrap(), Select::All)
            .await
            .unwrap()
    });
    assert_exactly_once(&records, logbook_wal::log_id(&dir).unwrap(), &local);

    let figures: HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            assert_eq!(labels, [("dir".to_owned(), dir.display().to_string())]);
            (key.key().name().to_owned(), value)
        })
        .collect();
    let count = |name: &str| match figures.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let gauge = |name: &str| match figures.get(name) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(count("logbook_ship_records_total"), 320);
    assert_eq!(count("logbook_ship_duplicates_total"), 0);
    assert_eq!(count("logbook_ship_publish_errors_total"), 0);
    assert_eq!(count("logbook_ship_reconnects_total"), 0);
    assert_eq!(gauge("logbook_ship_shipped_lsn"), 320.0);
    assert_eq!(gauge("logbook_ship_read_lsn"), 320.0);
    assert_eq!(gauge("logbook_ship_lag_records"), 0.0);
    assert_eq!(gauge("logbook_ship_lag_seconds"), 0.0);
    match figures.get("logbook_ship_ack_delay_seconds") {
        Some(DebugValue::Histogram(h)) => assert_eq!(h.len(), 320),
        other => panic!("ack delay: {other:?}"),
    }
}
