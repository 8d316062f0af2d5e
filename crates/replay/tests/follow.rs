//! Lossless live follow: a follower of the log and a bus subscriber that
//! takes durable events from it get every durable event exactly once, in
//! order, however slow they are, and end when the writer closes.

use std::sync::Arc;
use std::time::Duration;

use logbook_bus::{SessionBus, SessionEvent};
use logbook_replay::{Delivery, LosslessSubscriber, follow};
use logbook_wal::{SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

fn options() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        sync: SyncPolicy::Batch {
            max_delay: Duration::from_millis(1),
            max_bytes: 64 * 1024,
        },
        ..WalOptions::default()
    }
}

/// Event `i`: every third one ephemeral (a text chunk), the others durable.
fn event(i: u64) -> SessionEvent {
    if i % 3 == 0 {
        SessionEvent::TextChunk(format!("chunk {i}"))
    } else {
        SessionEvent::UserMessage(format!("message {i}"))
    }
}

/// A subscriber far slower than the bus (capacity 4) gets every durable
/// event exactly once and in order, loses only ephemeral ones (and says
/// how many), and ends when the writer closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_with_a_tiny_channel_misses_no_durable_event() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options()).unwrap();
    let id = Uuid::new_v4();
    let bus = SessionBus::new(4).with_durable_sink(Arc::new(wal.sink(id)));
    let mut sub = LosslessSubscriber::new(&wal, &bus, id).unwrap();
    const N: u64 = 3000;
    let producer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                bus.emit(event(i));
            }
            drop(bus);
            wal.close().unwrap();
        })
    };
    let mut durable = Vec::new();
    let mut ephemeral = 0u64;
    let mut n = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Some(delivery) = tokio::time::timeout_at(deadline, sub.next())
        .await
        .expect("the subscriber ends once the writer closes")
    {
        match delivery.unwrap() {
            Delivery::Durable(record) => durable.push(record),
            Delivery::Ephemeral(_) => ephemeral += 1,
            other => panic!("{other:?}"),
        }
        n += 1;
        if n % 8 == 0 {
            // Slow: the producer runs far ahead of the 4-message channel.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    producer.join().unwrap();
    let expected: Vec<SessionEvent> = (0..N).map(event).filter(|e| e.is_durable()).collect();
    let got: Vec<SessionEvent> = durable.iter().map(|r| r.event.clone()).collect();
    assert_eq!(got.len(), expected.len(), "every durable event, once");
    assert_eq!(got, expected, "in order");
    assert!(durable.windows(2).all(|w| w[0].lsn < w[1].lsn));
    assert!(
        sub.lost_ephemeral() > 0,
        "the subscriber did lag (else this test proves nothing)"
    );
    assert_eq!(
        ephemeral + sub.lost_ephemeral(),
        N / 3,
        "every ephemeral event received or counted lost, exactly"
    );
}

/// A follower of all sessions from an LSN: what the log holds, then each
/// record as it becomes durable (across segment rolls), then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_the_log_then_follows_it_live_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options()).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for i in 0..100u64 {
        wal.append(if i % 2 == 0 { a } else { b }, &event(i + 1))
            .unwrap();
    }
    wal.sync().unwrap();
    let mut all = follow(&wal, 51, None).unwrap();
    let mut only_b = follow(&wal, 0, Some(b)).unwrap();
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 100..400u64 {
                wal.append(if i % 2 == 0 { a } else { b }, &event(i + 1))
                    .unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            wal.close().unwrap();
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut lsns = Vec::new();
    while let Some(r) = tokio::time::timeout_at(deadline, all.next()).await.unwrap() {
        lsns.push(r.unwrap().lsn);
    }
    assert_eq!(lsns, (51..=400).collect::<Vec<u64>>());
    let mut bs = Vec::new();
    while let Some(r) = tokio::time::timeout_at(deadline, only_b.next())
        .await
        .unwrap()
    {
        let r = r.unwrap();
        assert_eq!(r.session, b);
        bs.push(r.lsn);
    }
    assert_eq!(bs, (1..=200).map(|k| 2 * k).collect::<Vec<u64>>());
    writer.join().unwrap();
    assert!(
        logbook_wal::Reader::open(dir.path())
            .unwrap()
            .segments()
            .len()
            > 2,
        "the log rolled while followed"
    );
}

/// `fork` and `import` return once what they appended is durable, whatever
/// the log's sync policy (here `Never`, which by itself fsyncs nothing).
#[test]
fn fork_and_import_return_once_their_records_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let never = WalOptions {
        sync: SyncPolicy::Never,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), never.clone()).unwrap();
    let id = Uuid::new_v4();
    let mut last = 0;
    for i in 0..10 {
        last = wal.append(id, &event(i)).unwrap();
    }
    assert_eq!(wal.durable_lsn(), 0, "Never: nothing fsynced yet");
    let forked = logbook_replay::fork(&wal, id, last).unwrap();
    assert_eq!(
        wal.durable_lsn(),
        forked.forked_lsn + forked.copied,
        "the fork's records are durable when it returns"
    );
    let mut lines = Vec::new();
    logbook_replay::export(
        dir.path(),
        logbook_replay::ExportFilter::all().session(id),
        &mut lines,
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let target = Wal::open(other.path(), never).unwrap();
    let done = logbook_replay::import(&target, &lines[..]).unwrap();
    let (_, end) = done.lsns.unwrap();
    assert_eq!(target.durable_lsn(), end, "imported records are durable");
}

/// Bug: `lost_ephemeral` counted every message the bus dropped, durable
/// ones too (600 ephemeral emitted, 1193 reported). With 600 ephemeral and
/// 600 durable events emitted through a 4-message bus before the
/// subscriber reads anything, the ephemeral events it got plus those it
/// says it lost are exactly the 600 emitted, and it gets every durable one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ephemeral_counts_exactly_the_ephemeral_events_lost() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options()).unwrap();
    let id = Uuid::new_v4();
    let bus = SessionBus::new(4).with_durable_sink(Arc::new(wal.sink(id)));
    let mut sub = LosslessSubscriber::new(&wal, &bus, id).unwrap();
    const EACH: u64 = 600;
    for i in 0..EACH {
        bus.emit(SessionEvent::TextChunk(format!("chunk {i}")));
        bus.emit(SessionEvent::UserMessage(format!("message {i}")));
    }
    drop(bus);
    wal.close().unwrap();
    let (mut durable, mut ephemeral) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(delivery) = tokio::time::timeout_at(deadline, sub.next())
        .await
        .expect("the subscriber ends once the writer closes")
    {
        match delivery.unwrap() {
            Delivery::Durable(_) => durable += 1,
            Delivery::Ephemeral(_) => ephemeral += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(durable, EACH, "every durable event");
    assert!(ephemeral <= 4, "the bus kept at most 4: {ephemeral}");
    assert_eq!(
        ephemeral + sub.lost_ephemeral(),
        EACH,
        "{ephemeral} ephemeral events received, {} reported lost",
        sub.lost_ephemeral()
    );
}

/// A follower read ahead in batches of 1024 and returned each batch as
/// soon as it was read: a follower begun before a tombstone returned
/// records read after the tombstone that deletes them was durable (the
/// review: 3000 records appended in one batch, then deleted, before the
/// follower read anything; it returned 2048 of them). Now it reads on to
/// the durable end, noting tombstones, before it returns a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_begun_before_a_tombstone_returns_no_record_read_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let (s, keep) = (Uuid::new_v4(), Uuid::new_v4());
    wal.append(keep, &SessionEvent::UserMessage("other".into()))
        .unwrap();
    // Begun before anything of `s` is there.
    let mut one = follow(&wal, 0, Some(s)).unwrap();
    let mut all = follow(&wal, 0, None).unwrap();
    let batch: Vec<(Uuid, SessionEvent)> = (0..3000)
        .map(|i| (s, SessionEvent::UserMessage(format!("SECRET {i}"))))
        .collect();
    wal.append_many(&batch).unwrap();
    logbook_replay::delete_session(&wal, s).unwrap();
    wal.append(keep, &SessionEvent::UserMessage("after".into()))
        .unwrap();
    wal.close().unwrap();
    // Only now does either follower read anything.
    for (name, f) in [("one session", &mut one), ("every session", &mut all)] {
        let mut leaked = 0;
        let mut tombstones = 0;
        while let Some(record) = f.next().await {
            match record.unwrap().event {
                SessionEvent::UserMessage(t) if t.starts_with("SECRET") => leaked += 1,
                SessionEvent::SessionDeleted { .. } => tombstones += 1,
                _ => {}
            }
        }
        assert_eq!(leaked, 0, "{name}: deleted records returned");
        assert!(tombstones >= 1, "{name}");
        assert_eq!(f.deleted(), 3000, "{name}");
    }
}
