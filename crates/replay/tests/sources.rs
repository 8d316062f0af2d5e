//! Every reader of this crate reads a log directory, one segment file and
//! records read elsewhere (shipped, still sealed) through one `Source`, and
//! decodes every record the same way: an encrypted log's records, shipped
//! sealed, read back with the process's keys exactly as the directory
//! reads (the keys are installed once for this test binary, as `logbook
//! --key-file` does).

use std::path::Path;
use std::sync::Arc;

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_replay::{
    OnCorruption, Shipped, ShippedRecord, Source, list_sessions_in, log_stats_in, session_state_in,
};
use logbook_wal::{Key, KeyRing, Reader, Wal, WalOptions};
use uuid::Uuid;

/// An encrypted log of three sessions (the last one unfinished), and its
/// records as shipped: sealed, with their log id.
fn encrypted_log(dir: &Path) -> (Vec<Uuid>, Vec<ShippedRecord>) {
    let ring = Arc::new(KeyRing::new(Key::new([7; 32])));
    let _ = logbook_wal::install_default_keys(ring.clone());
    let wal = Wal::open(
        dir,
        WalOptions {
            encryption: Some(ring),
            segment_size: 4096,
            preallocate: false,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let ids: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
    for i in 0..30u64 {
        for (n, id) in ids.iter().enumerate() {
            let event = match i {
                0 => SessionEvent::SessionStarted {
                    model: "m".into(),
                    cwd: "/w".into(),
                    title: Some(format!("session {n}")),
                },
                29 if n < 2 => SessionEvent::Done,
                i if i % 3 == 0 => SessionEvent::TokenUsage(TokenDelta {
                    source: TokenSource::Root,
                    model: "m".into(),
                    prompt_tokens: i,
                    completion_tokens: 1,
                    duration_ms: 1,
                }),
                i => SessionEvent::UserMessage(format!("private {i}")),
            };
            wal.append(*id, &event).unwrap();
        }
    }
    wal.close().unwrap();
    let log = logbook_wal::log_id(dir).unwrap();
    let place: Arc<Path> = Arc::from(Path::new("elsewhere"));
    let mut shipped = Vec::new();
    let mut reader = Reader::open(dir).unwrap().without_keys();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        assert!(r.key_id.is_some(), "LSN {} not sealed", r.lsn);
        shipped.push(ShippedRecord {
            log,
            lsn: r.lsn,
            timestamp_us: r.timestamp_us,
            session: r.session,
            codec_id: r.codec_id,
            payload: r.payload.to_vec(),
            key_id: r.key_id,
            sync_mark: r.sync_mark,
            prev: logbook_wal::chain_before(&r).unwrap(),
            place: place.clone(),
            offset: r.lsn,
        });
    }
    (ids, shipped)
}

#[test]
fn shipped_sealed_records_read_as_the_directory_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (ids, records) = encrypted_log(tmp.path());
    let dir = Source::of(tmp.path());
    let shipped = Source::Shipped(Shipped {
        name: "the stream S".into(),
        records,
    });
    let (a, b) = (
        list_sessions_in(&dir, OnCorruption::Fail).unwrap(),
        list_sessions_in(&shipped, OnCorruption::Fail).unwrap(),
    );
    assert_eq!(a.sessions.len(), 3);
    assert_eq!(b.undecodable.count, 0);
    for (x, y) in a.sessions.iter().zip(&b.sessions) {
        assert_eq!(
            (&x.session, x.events, x.tokens, &x.title),
            (&y.session, y.events, y.tokens, &y.title)
        );
    }
    // A stream cannot tell a live host: unfinished is running there.
    assert!(!b.writer_known);
    assert_eq!(b.sessions[2].status.as_str(), "running");
    assert_eq!(a.sessions[2].status.as_str(), "interrupted");
    let (a, b) = (log_stats_in(&dir).unwrap(), log_stats_in(&shipped).unwrap());
    assert_eq!(
        (a.records, a.sessions, a.durable, &a.by_kind),
        (b.records, b.sessions, b.durable, &b.by_kind)
    );
    assert!(b.by_kind.iter().all(|k| k.kind != "unknown"), "{b:?}");
    assert_eq!(b.logs.len(), 1);
    for id in ids {
        let (x, _) = session_state_in(&dir, id, OnCorruption::Fail, None).unwrap();
        let (y, _) = session_state_in(&shipped, id, OnCorruption::Fail, None).unwrap();
        assert_eq!(x, y);
    }
}

#[test]
fn a_shipped_record_that_does_not_open_is_a_located_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut records) = encrypted_log(tmp.path());
    // One byte of one sealed payload changed.
    records[4].payload[3] ^= 1;
    let lsn = records[4].lsn;
    let shipped = Source::Shipped(Shipped {
        name: "the stream S".into(),
        records,
    });
    let stats = log_stats_in(&shipped).unwrap();
    assert_eq!(stats.problem_count, 1);
    assert!(
        matches!(stats.problems[0], logbook_wal::WalError::Decrypt { lsn: l, .. } if l == lsn),
        "{:?}",
        stats.problems
    );
    assert!(list_sessions_in(&shipped, OnCorruption::Fail).is_err());
    let skipped = list_sessions_in(&shipped, OnCorruption::Skip).unwrap();
    assert_eq!(skipped.corruption_count, 1);
}

/// The records of the log in `dir`, shipped as stored (sealed).
fn ship(dir: &Path) -> Vec<ShippedRecord> {
    let log = logbook_wal::log_id(dir).unwrap();
    let place: Arc<Path> = Arc::from(Path::new("elsewhere"));
    let mut out = Vec::new();
    let mut reader = Reader::open(dir).unwrap().without_keys();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        out.push(ShippedRecord {
            log,
            lsn: r.lsn,
            timestamp_us: r.timestamp_us,
            session: r.session,
            codec_id: r.codec_id,
            payload: r.payload.to_vec(),
            key_id: r.key_id,
            sync_mark: r.sync_mark,
            prev: logbook_wal::chain_before(&r).unwrap(),
            place: place.clone(),
            offset: r.lsn,
        });
    }
    out
}

/// Two copies of one encrypted log that went on apart (same `LOG_ID`):
/// the other copy's record put in the stream in place of this one's would
/// open (the key holder wrote it, at that LSN, in that log), but it does
/// not continue the chain of the record before it in the stream, and the
/// record after it commits to the original's tag: located problems, never
/// a silent mix of the two histories.
#[test]
fn a_record_of_a_diverged_copy_replayed_into_the_stream_is_caught_by_the_next() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _ = encrypted_log(a.path());
    for entry in std::fs::read_dir(a.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, b.path().join(path.file_name().unwrap())).unwrap();
    }
    let ring = Arc::new(KeyRing::new(Key::new([7; 32])));
    for (dir, word) in [(a.path(), "here"), (b.path(), "there")] {
        let wal = Wal::open(
            dir,
            WalOptions {
                encryption: Some(ring.clone()),
                segment_size: 4096,
                preallocate: false,
                ..WalOptions::default()
            },
        )
        .unwrap();
        for i in 0..3 {
            wal.append(
                Uuid::from_u128(9),
                &SessionEvent::UserMessage(format!("{word} {i}")),
            )
            .unwrap();
        }
        wal.close().unwrap();
    }
    let mut records = ship(a.path());
    let theirs = ship(b.path());
    let n = records.len();
    let at = n - 2; // the second-to-last record
    assert_eq!(records[at].lsn, theirs[at].lsn);
    assert_ne!(records[at].payload, theirs[at].payload);
    records[at] = theirs[at].clone();
    let next = records[at + 1].lsn;
    let stats = log_stats_in(&Source::Shipped(Shipped {
        name: "the stream S".into(),
        records,
    }))
    .unwrap();
    // The replaced record does not continue the stream's chain (the copies
    // diverged before it), nor does the next one.
    let forged: Vec<u64> = stats
        .problems
        .iter()
        .map(|e| match e {
            logbook_wal::WalError::Forged { lsn, .. } => *lsn,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(forged, [next - 1, next], "{:?}", stats.problems);
}

/// A record in the clear put into the stream for an encrypted log (its
/// log id, the next LSN, no key header): a reader with the key refuses it
/// where it stands instead of showing a forged event.
#[test]
fn a_clear_record_in_the_stream_of_an_encrypted_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut records) = encrypted_log(tmp.path());
    let last = records.last().unwrap().clone();
    let forged = logbook_bus::codec::encode(&SessionEvent::TextComplete(
        "Migration done; dropped table billing_old (approved).".into(),
    ))
    .unwrap();
    records.push(ShippedRecord {
        lsn: last.lsn + 1,
        payload: forged,
        key_id: None,
        prev: None,
        offset: last.offset + 1,
        ..last
    });
    let stats = log_stats_in(&Source::Shipped(Shipped {
        name: "the stream S".into(),
        records,
    }))
    .unwrap();
    assert_eq!(stats.problem_count, 1, "{:?}", stats.problems);
    assert!(
        matches!(&stats.problems[0], logbook_wal::WalError::Forged { lsn, .. } if *lsn == last.lsn + 1),
        "{:?}",
        stats.problems
    );
}
