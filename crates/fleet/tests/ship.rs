//! Shipping a log to a real `nats-server` and reading it back.

mod common;
mod logs;

use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{FleetError, Select, ShipOptions, Shipper, Target, read};
use logbook_wal::{Wal, WalOptions};
use logs::{assert_exactly_once, local_records, write_log};
use uuid::Uuid;

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

/// Ship 300 records to a server whose user is denied `deny`, append one,
/// ship again: the second ship finds where to resume in the stream and
/// sends exactly the new record.
fn ship_then_resume_denied(deny: &[&str]) {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::denying(&bin, root.path(), deny);
    let dir = root.path().join("log");
    write_log(&dir, 300);
    common::run(Duration::from_secs(60), async {
        let target = Target::parse(&server.url())
            .unwrap()
            .with_timeout(Duration::from_secs(1));
        let options = ShipOptions {
            give_up_after: Duration::from_secs(10),
            ..ShipOptions::default()
        };
        let shipper = Shipper::new(&dir, target, options).unwrap();
        assert_eq!(shipper.ship().await.unwrap().shipped, 300);
        {
            let wal = Wal::open(&dir, WalOptions::default()).unwrap();
            wal.append(Uuid::new_v4(), &SessionEvent::Done).unwrap();
        }
        let again = shipper.ship().await.unwrap();
        assert_eq!(
            (again.shipped, again.duplicates, again.lsns),
            (1, 0, Some((301, 301))),
            "{again:?}"
        );
        let client = async_nats::connect(server.url()).await.unwrap();
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("LOGBOOK")
            .await
            .unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 301);
    });
}

/// Where a consumer cannot be made (here a user denied it; in a 3-node
/// nats-server 2.9 cluster that just lost a node, for up to a minute), the
/// shipper finds where to resume by asking the stream's leader for the
/// messages instead, and ships.
#[test]
fn a_ship_resumes_where_no_consumer_can_be_made() {
    ship_then_resume_denied(&[
        "$JS.API.CONSUMER.CREATE.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.>",
    ]);
}

/// A user denied the stream leader's message gets still ships: the
/// resume point is found through consumers first.
#[test]
fn a_ship_resumes_where_the_leader_gives_no_messages() {
    ship_then_resume_denied(&["$JS.API.STREAM.MSG.GET.>"]);
}

/// A gap left by a publish that failed while later ones were stored (the
/// shipper died before resending it): the next shipper finds it from the
/// stream's headers and sends exactly the missing record and the rest.
#[test]
fn a_gap_left_by_a_failed_publish_is_filled_without_resending_the_rest() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 20);
    let local = local_records(&dir);
    let log = logbook_wal::log_id(&dir).unwrap();
    let stamps: std::collections::HashMap<u64, u64> = logbook_wal::Reader::open(&dir)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn, r.timestamp_us)))
        .collect::<Result<_, _>>()
        .unwrap();
    common::run(Duration::from_secs(60), async {
        let target = Target::parse(&server.url()).unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "LOGBOOK".into(),
            subjects: vec!["logbook.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        // What a shipper with a window of 4 leaves when the publish of LSN
        // 7 fails and 8, 9, 10 are stored: they were sent while 7 was
        // unacknowledged, so they say "committed 7".
        for (lsn, session, payload) in &local[..10] {
            if *lsn == 7 {
                continue;
            }
            let committed = if *lsn < 7 { *lsn } else { 7 };
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("{log}:{lsn}").as_str());
            h.insert("Logbook-Log", log.to_string().as_str());
            h.insert("Logbook-Lsn", lsn.to_string().as_str());
            h.insert("Logbook-Session", session.to_string().as_str());
            h.insert("Logbook-Kind", "user_message");
            h.insert("Logbook-Ts", stamps[lsn].to_string().as_str());
            h.insert("Logbook-Codec", "1");
            h.insert("Logbook-Committed", committed.to_string().as_str());
            h.insert("Logbook-Scan-From", "0");
            js.publish_with_headers(
                format!("logbook.{log}.{session}"),
                h,
                payload.clone().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let shipper = Shipper::new(&dir, target.clone(), ShipOptions::default()).unwrap();
        let report = shipper.ship().await.unwrap();
        assert_eq!(report.shipped, 11, "LSN 7 and 11..=20: {report:?}");
        assert_eq!(
            report.already_there, 3,
            "8, 9 and 10 were not sent again: {report:?}"
        );
        assert_eq!(report.duplicates, 0);
        assert_eq!(report.shipped_through, 20);
        let records = read(&target, Select::Log(log)).await.unwrap();
        // The filled gap lands after 8..10 in the stream; read in log
        // order it is in its place.
        let order: Vec<u64> = records.iter().map(|r| r.lsn).collect();
        assert_eq!(&order[..10], &[1, 2, 3, 4, 5, 6, 8, 9, 10, 7]);
        assert_exactly_once(&records, log, &local);
    });
}

#[test]
fn bad_targets_are_typed_errors_naming_the_url_and_stream_and_leave_the_log_alone() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 50);
    let snapshot = |dir: &std::path::Path| {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "LOCK")
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&dir);
    common::run(Duration::from_secs(90), async {
        // Not a NATS URL.
        let e = Target::parse("http://127.0.0.1:4222").unwrap_err();
        assert!(
            matches!(e, FleetError::BadUrl { .. })
                && e.to_string().contains("http://127.0.0.1:4222"),
            "{e}"
        );
        // Nobody listening: a quick, typed error, without retrying for
        // `give_up_after` (a server never reached is not retried).
        let nobody = format!("nats://127.0.0.1:{}", common::free_port());
        let target = Target::parse(&nobody)
            .unwrap()
            .with_timeout(Duration::from_secs(1));
        let options = ShipOptions {
            give_up_after: Duration::from_secs(30),
            ..ShipOptions::default()
        };
        let started = std::time::Instant::now();
        let e = Shipper::new(&dir, target.clone(), options)
            .unwrap()
            .ship()
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&nobody), "{e}");
        // Generous: the documented bound is 5 s (one attempt).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let e = read(&target, Select::All).await.unwrap_err();
        assert!(e.to_string().contains(&nobody), "{e}");
        // A stream that does not exist: readers never create it.
        let target = Target::parse(&server.url()).unwrap().with_stream("NOPE");
        let e = read(&target, Select::All).await.unwrap_err();
        assert!(
            matches!(&e, FleetError::NoStream { stream, .. } if stream == "NOPE"),
            "{e}"
        );
        // A stream holding messages that are not Logbook's.
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "FOREIGN".into(),
            subjects: vec!["logbook.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("logbook.a.b", "hello".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let target = Target::parse(&server.url()).unwrap().with_stream("FOREIGN");
        let e = read(&target, Select::All).await.unwrap_err();
        assert!(matches!(&e, FleetError::Foreign { seq: 1, .. }), "{e}");
        assert!(
            e.to_string().contains("FOREIGN") && e.to_string().contains(&server.url()),
            "{e}"
        );
        // A stream that exists for other subjects is not taken over.
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let target = Target::parse(&server.url()).unwrap().with_stream("ORDERS");
        let e = Shipper::new(&dir, target, ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("ORDERS") && e.to_string().contains("logbook.>"),
            "{e}"
        );
    });
    assert_eq!(snapshot(&dir), before, "shipping changed the local log");
    // A log without an id.
    std::fs::remove_file(dir.join("LOG_ID")).unwrap();
    let e = Shipper::new(
        &dir,
        Target::parse(&server.url()).unwrap(),
        ShipOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("LOG_ID"), "{e}");
}

/// The stream holds more of the log than the log (a directory restored
/// from an older copy after shipping): the shipper refuses to ship another
/// history under the same LSNs.
#[test]
fn a_log_older_than_what_the_stream_holds_is_refused() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let copy = root.path().join("copy");
    write_log(&dir, 30);
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    {
        let wal = Wal::open(&dir, WalOptions::default()).unwrap();
        for _ in 0..5 {
            wal.append(Uuid::new_v4(), &SessionEvent::Done).unwrap();
        }
    }
    common::run(Duration::from_secs(60), async {
        let target = Target::parse(&server.url()).unwrap();
        assert_eq!(
            Shipper::new(&dir, target.clone(), ShipOptions::default())
                .unwrap()
                .ship()
                .await
                .unwrap()
                .shipped,
            35
        );
        // The older copy, as it was.
        let e = Shipper::new(&copy, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::Diverged { lsn: 31, .. }), "{e}");
        // Written anew: other records at LSNs the stream has.
        {
            let wal = Wal::open(&copy, WalOptions::default()).unwrap();
            for _ in 0..5 {
                wal.append(Uuid::new_v4(), &SessionEvent::Done).unwrap();
            }
        }
        let e = Shipper::new(&copy, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::Diverged { .. }), "{e}");
        assert_eq!(
            read(&target, Select::All).await.unwrap().len(),
            35,
            "nothing more was shipped"
        );
    });
}

/// Two streams on one server: the default one, and one with a subject
/// prefix of its own. Without a prefix, the second stream cannot be
/// created beside the first (their subjects overlap): a typed error at
/// once, naming the stream that takes the subjects, not 30 s of retries.
/// Readers given only the second stream's name read it with its prefix.
#[test]
fn a_second_stream_with_its_own_subject_prefix_coexists_with_the_default_one() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    write_log(&one, 30);
    let sessions_two = write_log(&two, 20);
    let default = Target::parse(&server.url()).unwrap();
    common::run(Duration::from_secs(90), async {
        let first = Shipper::new(&one, default.clone(), ShipOptions::default()).unwrap();
        assert_eq!(first.ship().await.unwrap().shipped, 30);

        let other = Target::parse(&server.url()).unwrap().with_stream("OTHER");
        let started = std::time::Instant::now();
        let e = Shipper::new(&two, other.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, FleetError::SubjectsTaken { other: Some(o), .. } if o == "LOGBOOK"),
            "{e}"
        );
        assert!(e.to_string().contains("--subject-prefix"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );

        let prefixed = other.clone().with_prefix("other").unwrap();
        let second = Shipper::new(&two, prefixed.clone(), ShipOptions::default()).unwrap();
        assert_eq!(second.ship().await.unwrap().shipped, 20);
        assert_eq!(
            second.ship().await.unwrap().shipped,
            0,
            "resumed from OTHER"
        );

        // Each stream holds its own log, read with its own prefix: given,
        // or found from the stream (a reader needs only its name).
        for target in [&prefixed, &other] {
            let records = read(target, Select::All).await.unwrap();
            assert_eq!(records.len(), 20, "{target:?}");
            assert!(records.iter().all(|r| r.log == second.log_id()));
        }
        let records = read(&default, Select::All).await.unwrap();
        assert_eq!(records.len(), 30);
        assert!(records.iter().all(|r| r.log == first.log_id()));
        let pull = logbook_fleet::fetch_session(&other, sessions_two[0])
            .await
            .unwrap();
        assert_eq!(pull.records().len(), 5);
        // The default stream has none of them.
        let e = logbook_fleet::fetch_session(&default, sessions_two[0])
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::UnknownSession { .. }), "{e}");
        // A prefix given that the stream does not take is refused.
        let wrong = other.clone().with_prefix("logbook").unwrap();
        let e = read(&wrong, Select::All).await.unwrap_err();
        assert!(matches!(e, FleetError::WrongStream { .. }), "{e}");
    });
    let e = default.with_prefix("a.b").unwrap_err();
    assert!(matches!(e, FleetError::BadPrefix { .. }), "{e}");
}
