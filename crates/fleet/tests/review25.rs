//! Review 25: `Shipper::for_wal` against a writer that rolls segments, a
//! log reopened, a server restart, a compaction and retention while
//! shipping. Each checks every LSN is in the stream once, in order.

mod common;
mod logs;

use std::time::{Duration, Instant};

use logbook_bus::SessionEvent;
use logbook_fleet::{
    FleetError, FleetRecord, Select, ShipOptions, ShipReport, Shipper, Target, read,
};
use logbook_wal::{Wal, WalOptions};
use logs::{assert_exactly_once, local_records, stream_counts};
use uuid::Uuid;

fn small() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
}

fn event(i: usize) -> SessionEvent {
    SessionEvent::UserMessage(format!("r25 message {i} {}", "z".repeat(150)))
}

/// Within the log, records appear in the stream in LSN order (no failure
/// happened, so no gap was filled out of order).
fn assert_stream_order(records: &[FleetRecord], log: Uuid) {
    let mut mine: Vec<_> = records.iter().filter(|r| r.log == log).collect();
    mine.sort_by_key(|r| r.stream_seq);
    let lsns: Vec<u64> = mine.iter().map(|r| r.lsn).collect();
    let mut sorted = lsns.clone();
    sorted.sort_unstable();
    assert_eq!(lsns, sorted, "the stream's order is not the log's");
}

async fn stream(url: &str) -> Vec<FleetRecord> {
    read(&Target::parse(url).unwrap(), Select::All)
        .await
        .unwrap()
}

/// A runtime of its own for a test that drives the log from its thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A watch-woken shipper of `wal` to `url`, following on `rt`.
fn follow(
    rt: &tokio::runtime::Runtime,
    wal: &Wal,
    url: &str,
) -> tokio::task::JoinHandle<Result<ShipReport, FleetError>> {
    let shipper = Shipper::for_wal(wal, Target::parse(url).unwrap(), ShipOptions::default());
    rt.spawn(async move { shipper.follow(|_| {}).await })
}

/// How `follow` ended, within two minutes of the writer's close (the
/// library's own result type, passed on as it is).
#[allow(clippy::result_large_err)]
fn outcome(
    rt: &tokio::runtime::Runtime,
    following: tokio::task::JoinHandle<Result<ShipReport, FleetError>>,
) -> Result<ShipReport, FleetError> {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), following).await })
        .expect("follow did not end")
        .unwrap()
}

/// Many segment rolls (4 KiB segments, ~200 B records) while the
/// watch-woken shipper follows; two writer threads.
#[test]
fn r25_for_wal_across_many_segment_rolls() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let report = common::run(Duration::from_secs(120), async {
        let wal = Wal::open(&dir, small()).unwrap();
        let shipper = Shipper::for_wal(&wal, Target::parse(&url).unwrap(), ShipOptions::default());
        let following = tokio::spawn(async move { shipper.follow(|_| {}).await });
        let mut threads = Vec::new();
        for t in 0..2 {
            let wal = wal.clone();
            threads.push(std::thread::spawn(move || {
                let session = Uuid::new_v4();
                for i in 0..300 {
                    if i % 3 == 0 {
                        let batch: Vec<_> = (0..10)
                            .map(|k| (session, event(t * 100_000 + i * 10 + k)))
                            .collect();
                        wal.append_many(&batch).unwrap();
                    } else {
                        wal.append(session, &event(t * 100_000 + i)).unwrap();
                    }
                }
            }));
        }
        tokio::task::spawn_blocking(move || {
            for t in threads {
                t.join().unwrap();
            }
        })
        .await
        .unwrap();
        eprintln!("segments created: {}", wal.stats().segments_created);
        wal.close().unwrap();
        following.await.unwrap().unwrap()
    });
    let local = local_records(&dir);
    eprintln!("{report:?}; local {}", local.len());
    assert_eq!(report.shipped as usize, local.len());
    let records = common::run(Duration::from_secs(60), stream(&url));
    let log = logbook_wal::log_id(&dir).unwrap();
    assert_exactly_once(&records, log, &local);
    assert_stream_order(&records, log);
}

/// The log closed and reopened twice, a watch-woken shipper each time.
#[test]
fn r25_for_wal_across_reopens() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let session = Uuid::new_v4();
    let mut reports = Vec::new();
    for round in 0..3 {
        let report = common::run(Duration::from_secs(60), async {
            let wal = Wal::open(&dir, small()).unwrap();
            // Records written before the shipper is made, and after.
            for i in 0..50 {
                wal.append(session, &event(round * 1000 + i)).unwrap();
            }
            let shipper =
                Shipper::for_wal(&wal, Target::parse(&url).unwrap(), ShipOptions::default());
            let following = tokio::spawn(async move { shipper.follow(|_| {}).await });
            for i in 50..150 {
                wal.append(session, &event(round * 1000 + i)).unwrap();
            }
            wal.close().unwrap();
            following.await.unwrap().unwrap()
        });
        reports.push(report);
    }
    eprintln!("{reports:?}");
    let local = local_records(&dir);
    assert_eq!(local.len(), 450);
    let records = common::run(Duration::from_secs(60), stream(&url));
    let log = logbook_wal::log_id(&dir).unwrap();
    assert_exactly_once(&records, log, &local);
    assert_stream_order(&records, log);
    assert_eq!(reports.iter().map(|r| r.shipped).sum::<u64>(), 450);
}

/// The server SIGKILLed mid-ship and restarted on its store 3 s later,
/// while the writer keeps appending (and rolling).
#[test]
fn r25_for_wal_across_a_server_restart() {
    restart_case(2, 5, 8);
}

/// The same with an outage longer than the request timeout.
#[test]
fn r25_for_wal_across_a_long_server_outage() {
    restart_case(2, 12, 15);
}

fn restart_case(kill_at: u64, start_at: u64, end_at: u64) {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let rt = runtime();
    let wal = Wal::open(&dir, small()).unwrap();
    let following = follow(&rt, &wal, &url);
    let session = Uuid::new_v4();
    let start = Instant::now();
    let mut i = 0;
    let mut killed = false;
    let mut restarted = false;
    while start.elapsed() < Duration::from_secs(end_at) {
        let batch: Vec<_> = (0..10).map(|k| (session, event(i * 10 + k))).collect();
        wal.append_many(&batch).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
        if !killed && start.elapsed() > Duration::from_secs(kill_at) {
            server.kill();
            killed = true;
        }
        if killed && !restarted && start.elapsed() > Duration::from_secs(start_at) {
            server.start();
            restarted = true;
        }
    }
    wal.close().unwrap();
    let report = outcome(&rt, following).unwrap();
    eprintln!("{report:?}");
    let local = local_records(&dir);
    let records = rt.block_on(stream(&url));
    let log = logbook_wal::log_id(&dir).unwrap();
    assert_exactly_once(&records, log, &local);
    assert_eq!(report.shipped_through as usize, local.len());
}

/// A session deleted and the log compacted while the watch-woken shipper
/// follows (and, in the middle, while the server is down so that the
/// shipper is behind): nothing lost, nothing twice, follow ends `Ok`.
#[test]
fn r25_for_wal_with_compaction_while_shipping() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let rt = runtime();
    let wal = Wal::open(&dir, small()).unwrap();
    let following = follow(&rt, &wal, &url);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for i in 0..200 {
        wal.append(a, &event(i)).unwrap();
        wal.append(b, &event(10_000 + i)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    // Shipped so far: delete a, compact, while following.
    logbook_replay::delete_session(&wal, a).unwrap();
    let done = wal.compact().unwrap();
    eprintln!("compaction 1: {done:?}");
    for i in 0..100 {
        wal.append(b, &event(20_000 + i)).unwrap();
    }
    // The server down; records of c appended and deleted and compacted
    // before the shipper can send them.
    server.kill();
    for i in 0..100 {
        wal.append(c, &event(30_000 + i)).unwrap();
        wal.append(b, &event(40_000 + i)).unwrap();
    }
    logbook_replay::delete_session(&wal, c).unwrap();
    let done = wal.compact().unwrap();
    eprintln!("compaction 2: {done:?}");
    for i in 0..50 {
        wal.append(b, &event(50_000 + i)).unwrap();
    }
    server.start();
    for i in 0..50 {
        wal.append(b, &event(60_000 + i)).unwrap();
    }
    wal.close().unwrap();
    let report = outcome(&rt, following).unwrap();
    eprintln!("{report:?}");
    let records = rt.block_on(stream(&url));
    let log = logbook_wal::log_id(&dir).unwrap();
    let count = stream_counts(&records, log);
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "twice: {twice:?}");
    // Every record still in the log (not erased) is in the stream.
    let local = local_records(&dir);
    let missing: Vec<u64> = local
        .iter()
        .map(|r| r.0)
        .filter(|l| !count.contains_key(l))
        .collect();
    assert!(
        missing.is_empty(),
        "missing: {} first {:?}",
        missing.len(),
        missing.first()
    );
    let last = local.last().unwrap().0;
    assert_eq!(report.shipped_through, last, "{report:?}");
}

/// Retention removes segments already shipped while the watch-woken
/// shipper follows, then the server restarts (the resume point is found
/// again, below the first segment left): nothing lost or doubled, no
/// `Lost`.
#[test]
fn r25_for_wal_with_retention_while_shipping() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let rt = runtime();
    let wal = Wal::open(&dir, small()).unwrap();
    let following = follow(&rt, &wal, &url);
    let session = Uuid::new_v4();
    let mut i = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let batch: Vec<_> = (0..10).map(|k| (session, event(i * 10 + k))).collect();
        wal.append_many(&batch).unwrap();
        i += 1;
    }
    // No pause: the shipper is usually still reading when retention
    // removes what it has not read yet.
    let removed = wal.truncate_before(wal.durable_lsn() - 5).unwrap();
    eprintln!("removed {removed} segments, durable {}", wal.durable_lsn());
    server.kill();
    for _ in 0..20 {
        let batch: Vec<_> = (0..10).map(|k| (session, event(i * 10 + k))).collect();
        wal.append_many(&batch).unwrap();
        i += 1;
    }
    // Longer than the request timeout: the shipper reconnects.
    std::thread::sleep(Duration::from_secs(8));
    server.start();
    for _ in 0..20 {
        let batch: Vec<_> = (0..10).map(|k| (session, event(i * 10 + k))).collect();
        wal.append_many(&batch).unwrap();
        i += 1;
    }
    let last = wal.durable_lsn();
    wal.close().unwrap();
    let outcome = outcome(&rt, following);
    let records = rt.block_on(stream(&url));
    let log = logbook_wal::log_id(&dir).unwrap();
    let count = stream_counts(&records, log);
    assert!(count.values().all(|n| *n == 1), "doubled LSNs");
    match outcome {
        // The shipper kept up: everything is in the stream.
        Ok(report) => {
            eprintln!("{report:?}");
            assert_eq!(report.shipped_through, last);
            assert_eq!(count.len() as u64, last, "missing LSNs");
        }
        // Retention removed records before they were read: docs/fleet.md
        // promises `Lost`, naming the first LSN neither the log nor the
        // stream has (it was a "bad segment" error when retention removed
        // them while the shipper was reading: review 25), and everything
        // before it in the stream.
        Err(FleetError::Lost { lsn, .. }) => {
            eprintln!("lost from LSN {lsn}");
            assert!(!count.contains_key(&lsn));
            assert!(
                (1..lsn).all(|l| count.contains_key(&l)),
                "a gap before LSN {lsn}"
            );
        }
        Err(other) => panic!("neither shipped nor Lost: {other}"),
    }
}

/// Every clone of the `Wal` dropped without `close`: following still ends.
#[test]
fn r25_for_wal_ends_when_the_wal_is_dropped_unclosed() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let report = common::run(Duration::from_secs(60), async {
        let wal = Wal::open(&dir, small()).unwrap();
        let shipper = Shipper::for_wal(&wal, Target::parse(&url).unwrap(), ShipOptions::default());
        let following = tokio::spawn(async move { shipper.follow(|_| {}).await });
        for i in 0..100 {
            wal.append(Uuid::nil(), &event(i)).unwrap();
        }
        drop(wal);
        following.await.unwrap().unwrap()
    });
    eprintln!("{report:?}");
    assert_eq!(report.shipped_through, 100);
}

/// Retention removes segments ahead of a reader that is part way through
/// the log: the shipper stops with `Lost`, naming the first LSN removed,
/// as docs/fleet.md says of records removed before they were shipped (it
/// was a "bad segment" error: review 25). The server is frozen for a
/// moment, shorter than the ack timeout, so that the shipper's reader
/// blocks with the channel full, in the middle of the log.
#[test]
fn r25_retention_ahead_of_a_reading_shipper_is_lost_not_damage() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let url = server.url();
    let rt = runtime();
    let wal = Wal::open(&dir, small()).unwrap();
    let session = Uuid::new_v4();
    // A first record in the stream, so that the shipper is connected and
    // reading when the server freezes.
    wal.append(session, &event(0)).unwrap();
    let following = follow(&rt, &wal, &url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let shipped = |url: &str| {
        rt.block_on(read(&Target::parse(url).unwrap(), Select::All))
            .is_ok_and(|records| !records.is_empty())
    };
    while !shipped(&url) {
        assert!(Instant::now() < deadline, "the first record never shipped");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.freeze(true);
    // Far more than the un-acked window and the reader's channel hold.
    for i in 0..3000 {
        let batch: Vec<_> = (0..10).map(|k| (session, event(1 + i * 10 + k))).collect();
        wal.append_many(&batch).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let removed = wal.truncate_before(wal.durable_lsn() - 5).unwrap();
    assert!(removed > 0);
    server.freeze(false);
    wal.close().unwrap();
    let outcome = outcome(&rt, following);
    match outcome {
        Err(FleetError::Lost { lsn, .. }) => {
            let records = rt.block_on(stream(&url));
            let log = logbook_wal::log_id(&dir).unwrap();
            let lsns: std::collections::HashSet<u64> = records
                .iter()
                .filter(|r| r.log == log)
                .map(|r| r.lsn)
                .collect();
            // An LSN neither the stream nor the log (which now starts
            // later) has.
            assert!(!lsns.contains(&lsn));
            let first = logbook_wal::Reader::open(&dir)
                .unwrap()
                .next_ref()
                .unwrap()
                .unwrap()
                .lsn;
            assert!(
                lsn > 1 && lsn < first,
                "Lost names LSN {lsn}, the log starts at {first}"
            );
        }
        other => panic!("expected Lost, got {other:?}"),
    }
}
