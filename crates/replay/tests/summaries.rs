//! Session summaries (`<segment>.sum`): a listing that folds sealed
//! segments from their cached summaries gives exactly the listing of a full
//! scan, whatever the log holds and whatever became of the cache files.

use std::path::Path;

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_replay::{OnCorruption, list_sessions, list_sessions_with, session_state};
use logbook_wal::{Wal, WalOptions};
use proptest::prelude::*;
use uuid::Uuid;

fn event(kind: u8, i: u64) -> SessionEvent {
    match kind % 9 {
        0 => SessionEvent::SessionStarted {
            model: format!("model-{}", i % 3),
            cwd: format!("/srv/{}", i % 2),
            title: (i % 4 == 0).then(|| format!("title {i}")),
        },
        1 => SessionEvent::UserMessage(format!("question {i}\nmore")),
        2 => SessionEvent::TextComplete("answer".repeat(1 + (i % 5) as usize)),
        3 => SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::Root,
            model: "m".into(),
            prompt_tokens: i,
            completion_tokens: 2 * i,
            duration_ms: 1,
        }),
        4 => SessionEvent::Done,
        5 => SessionEvent::Error(format!("failure {i}")),
        6 => SessionEvent::SessionResumed { from_lsn: i },
        7 => SessionEvent::TextChunk("ephemeral".into()),
        _ => SessionEvent::UsageReport {
            prompt_tokens: i,
            completion_tokens: 1,
            model: "m".into(),
            duration_ms: 1,
        },
    }
}

fn summary_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sum" || x == "run"))
        .collect();
    v.sort();
    v
}

fn count_with(dir: &Path, extension: &str) -> usize {
    summary_files(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("LOGBOOK_SUMMARY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
    ))]

    #[test]
    fn listing_from_cached_summaries_equals_a_full_scan(
        records in prop::collection::vec((0u8..6, any::<u8>()), 1..400),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u16>(), 0u8..2), 0..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions { segment_size: 4096, ..WalOptions::default() }).unwrap();
        for (i, (s, kind)) in records.iter().enumerate() {
            wal.append(Uuid::from_u128(u128::from(*s) + 1), &event(*kind, i as u64)).unwrap();
        }
        wal.close().unwrap();
        let first = list_sessions(dir.path()).unwrap();
        let cached = summary_files(dir.path());
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
            .count();
        // Every sealed segment (all but the tail) read cleanly: summarised;
        // the tail too once it holds a quarter of its size.
        let sums = count_with(dir.path(), "sum");
        prop_assert!(sums == segments - 1 || sums == segments);
        // Two sealed segments or more: folded as one run too.
        prop_assert_eq!(count_with(dir.path(), "run"), usize::from(segments > 2));
        let second = list_sessions(dir.path()).unwrap();
        prop_assert_eq!(&first.sessions, &second.sessions);
        prop_assert_eq!(first.records, second.records);
        // Damaged or removed caches: the same answer again.
        for (which, at, how) in &damage {
            if cached.is_empty() {
                break;
            }
            let path = &cached[which.index(cached.len())];
            if *how == 0 {
                // (It may have been removed by an earlier step.)
                if let Ok(mut b) = std::fs::read(path) {
                    let i = usize::from(*at) % b.len();
                    b[i] ^= 0x40;
                    std::fs::write(path, b).unwrap();
                }
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
        let third = list_sessions(dir.path()).unwrap();
        prop_assert_eq!(&first.sessions, &third.sessions);
        prop_assert_eq!(first.records, third.records);
        // And the reference: no cache at all.
        for p in summary_files(dir.path()) {
            std::fs::remove_file(p).unwrap();
        }
        let bare = list_sessions(dir.path()).unwrap();
        prop_assert_eq!(&first.sessions, &bare.sessions);
        // A listing folds stretches of the log and merges them: each
        // session's line must be its record-by-record fold.
        for s in &second.sessions {
            let state = session_state(dir.path(), s.session).unwrap();
            prop_assert_eq!(&s.status, &state.status_given(second.writer_live));
            prop_assert_eq!(s.events, state.events());
            prop_assert_eq!(s.durable_events, state.durable_events());
            prop_assert_eq!(Some(s.first_lsn), state.first_lsn());
            prop_assert_eq!(Some(s.last_lsn), state.last_lsn());
            prop_assert_eq!(s.model.as_deref(), state.model());
            prop_assert_eq!(s.cwd.as_deref(), state.cwd());
            prop_assert_eq!(s.resumptions, state.resumptions().len() as u64);
        }
    }
}

fn tail_summary(dir: &Path) -> Option<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    let mut name = segments.last()?.as_os_str().to_owned();
    name.push(".sum");
    Some(std::path::PathBuf::from(name)).filter(|p| p.exists())
}

/// What `log_stats` answers, comparable.
type StatsKey = (
    u64,
    u64,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u64,
    u64,
    Vec<(&'static str, u64, u64)>,
    Vec<(u64, Option<u64>, Option<u64>, u64)>,
);

fn stats_of(dir: &Path) -> StatsKey {
    let s = logbook_replay::log_stats(dir).unwrap();
    assert_eq!(s.problem_count, 0);
    (
        s.records,
        s.bytes,
        s.first_lsn,
        s.last_lsn,
        s.first_timestamp_us,
        s.last_timestamp_us,
        s.sessions,
        s.durable,
        s.by_kind
            .iter()
            .map(|k| (k.kind, k.records, k.bytes))
            .collect(),
        s.segments
            .iter()
            .map(|x| (x.records, x.first_lsn, x.last_lsn, x.used_bytes))
            .collect(),
    )
}

/// The same figures, record by record, from a plain reader.
fn stats_by_hand(dir: &Path) -> StatsKey {
    use std::collections::{BTreeMap, HashSet};
    let mut reader = logbook_wal::Reader::open(dir).unwrap();
    let mut kinds: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let mut sessions = HashSet::new();
    type Row = (std::path::PathBuf, u64, Option<u64>, Option<u64>, u64);
    let mut segments: Vec<Row> = Vec::new();
    let (mut first, mut last, mut min_ts, mut max_ts) = (None, None, None::<u64>, None::<u64>);
    let (mut durable, mut records, mut bytes) = (0, 0, 0);
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        let size = r.end_offset() - r.offset;
        let (name, is_durable) = logbook_wal::EventRecord::peek_kind(&r).unwrap().unwrap();
        let i = logbook_bus::KINDS.iter().position(|k| *k == name).unwrap();
        let e = kinds.entry(i).or_default();
        e.0 += 1;
        e.1 += size;
        durable += u64::from(is_durable);
        records += 1;
        bytes += size;
        sessions.insert(r.session);
        first.get_or_insert(r.lsn);
        last = Some(r.lsn);
        min_ts = Some(min_ts.map_or(r.timestamp_us, |t| t.min(r.timestamp_us)));
        max_ts = Some(max_ts.map_or(r.timestamp_us, |t| t.max(r.timestamp_us)));
        if segments.last().is_none_or(|s| s.0 != r.segment) {
            segments.push((r.segment.to_path_buf(), 0, None, None, 0));
        }
        let s = segments.last_mut().unwrap();
        s.1 += 1;
        s.2.get_or_insert(r.lsn);
        s.3 = Some(r.lsn);
        s.4 = r.end_offset();
    }
    let all = reader.segments();
    (
        records,
        bytes,
        first,
        last,
        min_ts,
        max_ts,
        sessions.len() as u64,
        durable,
        kinds
            .iter()
            .map(|(&i, &(n, b))| (logbook_bus::KINDS[i], n, b))
            .collect(),
        all.iter()
            .map(|p| match segments.iter().find(|s| &s.0 == p) {
                Some(s) => (s.1, s.2, s.3, s.4),
                None => (0, None, None, 40),
            })
            .collect(),
    )
}

/// Every listing and the listing from no cache at all.
fn assert_same_as_bare(dir: &Path) -> Result<(), TestCaseError> {
    let stats = stats_of(dir);
    let listed = list_sessions(dir).unwrap();
    let again = list_sessions(dir).unwrap();
    prop_assert_eq!(&stats, &stats_of(dir));
    let saved: Vec<_> = summary_files(dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            (p, b)
        })
        .collect();
    let bare = list_sessions(dir).unwrap();
    prop_assert_eq!(&stats, &stats_by_hand(dir));
    prop_assert_eq!(&listed.sessions, &bare.sessions);
    prop_assert_eq!(listed.records, bare.records);
    prop_assert_eq!(&again.sessions, &bare.sessions);
    prop_assert_eq!(again.records, bare.records);
    for (p, b) in saved {
        std::fs::write(p, b).unwrap();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("LOGBOOK_SUMMARY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
    ))]

    /// The tail's summaries (of its front) are used by the next listing,
    /// which scans only what the log gained since: the answer is the full
    /// scan's whether the log then grew, rolled, lost segments to
    /// retention, crashed or was closed.
    #[test]
    fn listing_a_grown_tail_from_its_summaries_equals_a_full_scan(
        before in prop::collection::vec((0u8..6, any::<u8>()), 30..200),
        after in prop::collection::vec((0u8..6, any::<u8>()), 0..200),
        close in any::<bool>(),
        retain_from in prop::option::of(1u64..400),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_size: 4096, ..WalOptions::default() };
        let append = |wal: &Wal, records: &[(u8, u8)], from: usize| {
            for (i, (s, kind)) in records.iter().enumerate() {
                wal.append(Uuid::from_u128(u128::from(*s) + 1), &event(*kind, (from + i) as u64)).unwrap();
            }
        };
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        append(&wal, &before, 0);
        // While the writer is live, and after it closed.
        assert_same_as_bare(dir.path())?;
        wal.close().unwrap();
        assert_same_as_bare(dir.path())?;
        let wal = Wal::open(dir.path(), options).unwrap();
        append(&wal, &after, before.len());
        assert_same_as_bare(dir.path())?;
        if let Some(lsn) = retain_from {
            // Retention removes whole segments from the front, and their
            // summaries and run with them.
            wal.truncate_before(lsn).unwrap();
            assert_same_as_bare(dir.path())?;
        }
        if close {
            wal.close().unwrap();
        } else {
            drop(wal); // as a crash: no close
        }
        assert_same_as_bare(dir.path())?;
    }
}

/// A tail summary whose last record recovery cut and the writer wrote
/// again (same offset, same LSN, other bytes) is not used.
#[test]
fn a_tail_summary_of_records_cut_and_written_again_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 1 << 16,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for i in 0..400u64 {
        wal.append(a, &event(1, i)).unwrap();
    }
    wal.close().unwrap();
    let first = list_sessions(dir.path()).unwrap();
    assert_eq!(first.records, 400);
    let sum = tail_summary(dir.path()).expect("the tail was summarised");
    // Damage a record well before the summary's last one, cut there, and
    // write other records (same size: the same offsets and LSNs) again.
    let segment = dir.path().join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[40 + 48 + 2] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            recovery: logbook_wal::RecoveryMode::PointInTime,
            ..options
        },
    )
    .unwrap();
    assert_eq!(wal.last_lsn(), 0, "cut at the first record");
    for i in 0..400u64 {
        wal.append(b, &event(1, i)).unwrap();
    }
    wal.close().unwrap();
    assert!(sum.exists(), "the old summaries are still there");
    let listed = list_sessions(dir.path()).unwrap();
    let ids: Vec<Uuid> = listed.sessions.iter().map(|s| s.session).collect();
    assert_eq!(ids, [b], "session {a} was cut: {listed:?}");
    assert_eq!(listed.records, 400);
}

/// A sealed segment with damage gets no summaries: a lenient listing
/// reports the damage every time, never only the first.
#[test]
fn a_damaged_segment_is_never_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 4096,
            ..WalOptions::default()
        },
    )
    .unwrap();
    for i in 0..200u64 {
        wal.append(Uuid::from_u128(u128::from(i % 3) + 1), &event(1, i))
            .unwrap();
    }
    wal.close().unwrap();
    let first_segment = dir.path().join("00000000000000000001.wal");
    let mut b = std::fs::read(&first_segment).unwrap();
    b[40 + 48 + 3] ^= 0xff; // the first record's payload
    std::fs::write(&first_segment, b).unwrap();
    let a = list_sessions_with(dir.path(), OnCorruption::Skip).unwrap();
    let b = list_sessions_with(dir.path(), OnCorruption::Skip).unwrap();
    assert_eq!(a.corruption_count, 1);
    assert_eq!(
        b.corruption_count, 1,
        "reported again, not hidden by a cache"
    );
    assert_eq!(a.sessions, b.sessions);
    assert!(!summary_files(dir.path()).contains(&dir.path().join("00000000000000000001.wal.sum")));
    assert!(
        !summary_files(dir.path()).is_empty(),
        "the clean sealed segments are summarised"
    );
}

/// Summaries left behind by another log in the same directory (its
/// segments deleted, a new log written with the same segment names) are
/// not used: each names its segments' creation times.
#[test]
fn summaries_of_another_log_with_the_same_segment_names_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    let write = |session: u128, kind: u8| {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        for i in 0..400u64 {
            wal.append(
                Uuid::from_u128(session + u128::from(i % 3)),
                &event(kind, i),
            )
            .unwrap();
        }
        wal.close().unwrap();
    };
    write(1, 1);
    let first = list_sessions(dir.path()).unwrap();
    assert!(
        count_with(dir.path(), "run") == 1,
        "a run was stored: {:?}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    // Another log, with the same segment names and sizes.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "wal" || x == "idx") || path.ends_with("LOCK") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    write(100, 1);
    let second = list_sessions(dir.path()).unwrap();
    assert_ne!(first.sessions, second.sessions);
    assert!(second.sessions.iter().all(|s| s.session.as_u128() >= 100));
    assert_same_as_bare(dir.path()).unwrap();
}
