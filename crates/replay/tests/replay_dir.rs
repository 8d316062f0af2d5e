//! Replaying real log directories: many sessions written concurrently,
//! records this build cannot decode, corruption, re-publishing and the
//! errors of `resume`.

use std::path::Path;
use std::sync::{Arc, Barrier};

use logbook_bus::{KINDS, SessionBus, SessionEvent, TokenDelta, TokenSource};
use logbook_replay::{
    OnCorruption, Pace, ReplayError, Role, SessionStatus, list_sessions, list_sessions_with,
    publish, resume, session_state, session_state_by_prefix,
};
use logbook_wal::{Reader, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

fn fast() -> WalOptions {
    WalOptions {
        sync: SyncPolicy::Never,
        preallocate: false,
        ..WalOptions::default()
    }
}

fn usage(prompt: u64, completion: u64) -> SessionEvent {
    SessionEvent::TokenUsage(TokenDelta {
        source: TokenSource::Root,
        model: "m".into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        duration_ms: 1,
    })
}

/// How session `k` of the concurrent test ends.
fn ending(k: usize) -> Option<SessionEvent> {
    match k % 3 {
        0 => Some(SessionEvent::Done),
        1 => Some(SessionEvent::Error(format!("session {k} failed"))),
        _ => None,
    }
}

const SESSIONS: usize = 8;
const TURNS: u64 = 60;

#[test]
fn concurrent_sessions_replay_each_in_its_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let ids: Vec<Uuid> = (0..SESSIONS)
        .map(|k| Uuid::from_u128(k as u128 + 1))
        .collect();
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let threads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            let bus = SessionBus::new(16).with_durable_sink(Arc::new(wal.sink(id)));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                bus.emit(SessionEvent::SessionStarted {
                    model: format!("model-{k}"),
                    cwd: "/w".into(),
                    title: None,
                });
                for i in 0..TURNS {
                    bus.emit(SessionEvent::UserMessage(format!("{k}:{i}?")));
                    bus.emit(SessionEvent::Thinking); // ephemeral: not in the log
                    bus.emit(usage(i, 1));
                    bus.emit(SessionEvent::TextComplete(format!("{k}:{i}!")));
                    if i % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
                if let Some(end) = ending(k) {
                    bus.emit(end);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // While the writer is live, the unfinished sessions are running.
    let live = list_sessions(dir.path()).unwrap();
    assert!(live.writer_live);
    assert!(
        live.sessions
            .iter()
            .all(|s| s.status != SessionStatus::Interrupted)
    );
    wal.close().unwrap();

    let log = list_sessions(dir.path()).unwrap();
    assert!(!log.writer_live);
    let per_session = 1 + 3 * TURNS; // started + (user, usage, text) per turn
    let endings = (0..SESSIONS).filter(|&k| ending(k).is_some()).count() as u64;
    assert_eq!(log.records, SESSIONS as u64 * per_session + endings);
    assert_eq!(log.unknown.count, 0);
    assert!(log.tail_damage.is_none());
    assert_eq!(log.sessions.len(), SESSIONS);
    let by_first_lsn: Vec<_> = log.sessions.iter().map(|s| s.first_lsn).collect();
    assert!(by_first_lsn.is_sorted(), "listed by first LSN");

    let mut interleaved = false;
    for (k, &id) in ids.iter().enumerate() {
        let summary = log.session(id).unwrap();
        let expected_status = match ending(k) {
            Some(SessionEvent::Done) => SessionStatus::Completed,
            Some(SessionEvent::Error(m)) => SessionStatus::Failed(m),
            _ => SessionStatus::Interrupted,
        };
        assert_eq!(summary.status, expected_status, "session {k}");
        let events = per_session + u64::from(ending(k).is_some());
        assert_eq!(summary.events, events);
        assert_eq!(summary.durable_events, events);
        assert_eq!(summary.tokens, (0..TURNS).map(|i| i + 1).sum::<u64>());
        assert_eq!(
            summary.model.as_deref(),
            Some(format!("model-{k}").as_str())
        );

        // The full state: the conversation exactly in the order written.
        let state = session_state(dir.path(), id).unwrap();
        let want: Vec<(Role, String)> = (0..TURNS)
            .flat_map(|i| {
                [
                    (Role::User, format!("{k}:{i}?")),
                    (Role::Assistant, format!("{k}:{i}!")),
                ]
            })
            .collect();
        let got: Vec<(Role, String)> = state
            .transcript()
            .iter()
            .map(|t| (t.role, t.text.clone()))
            .collect();
        assert_eq!(got, want, "session {k}");
        assert!(state.transcript().windows(2).all(|w| w[0].lsn < w[1].lsn));
        assert_eq!(state.status_given(false), summary.status);
        assert_eq!(state.first_lsn(), Some(summary.first_lsn));
        assert_eq!(state.last_lsn(), Some(summary.last_lsn));
        assert_eq!(state.events(), summary.events);
        assert_eq!(state.tokens().total().total, summary.tokens);
        // Did another session write between this one's first and last
        // records? (Only to show the test exercises interleaving.)
        interleaved |= summary.last_lsn - summary.first_lsn + 1 > events;
    }
    // With 8 threads released together this is all but certain; if a
    // scheduler ever runs them one by one, the assertions above still hold.
    if !interleaved {
        eprintln!("note: the sessions happened not to interleave");
    }
}

#[test]
fn unknown_event_kinds_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    wal.append(a, &SessionEvent::UserMessage("one".into()))
        .unwrap();
    // An event kind from a newer build: the first tag this one lacks.
    let newer = u8::try_from(KINDS.len()).unwrap();
    let unknown_a = wal.append_raw(a, &[newer, 1, 2, 3]).unwrap();
    wal.append(b, &SessionEvent::Done).unwrap();
    let unknown_b = wal.append_raw(b, &[newer + 7]).unwrap();
    wal.append(a, &SessionEvent::TextComplete("two".into()))
        .unwrap();
    wal.close().unwrap();

    let log = list_sessions(dir.path()).unwrap();
    assert_eq!(log.records, 5);
    assert_eq!(log.unknown.count, 2);
    assert_eq!(log.unknown.lsns, [unknown_a, unknown_b]);
    assert_eq!(log.undecodable.count, 0);
    let sa = log.session(a).unwrap();
    assert_eq!((sa.events, sa.skipped_records), (2, 1));
    assert_eq!(sa.status, SessionStatus::Interrupted);
    let sb = log.session(b).unwrap();
    assert_eq!((sb.events, sb.skipped_records), (1, 1));
    assert_eq!(
        sb.last_lsn, unknown_b,
        "a skipped record is still the session's"
    );
    assert_eq!(sb.status, SessionStatus::Completed);

    let state = session_state(dir.path(), a).unwrap();
    assert_eq!(state.skipped_records(), 1);
    let texts: Vec<_> = state.transcript().iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
}

#[test]
fn undecodable_payloads_fail_strict_listings_and_are_counted_by_lenient_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let id = Uuid::from_u128(1);
    wal.append(id, &SessionEvent::UserMessage("x".into()))
        .unwrap();
    // `Done` followed by a stray byte: a known kind, but not an event.
    let bad = wal.append_raw(id, &[15, 0]).unwrap();
    wal.append(id, &SessionEvent::Done).unwrap();
    wal.close().unwrap();

    let err = list_sessions(dir.path()).unwrap_err();
    assert!(
        matches!(err, ReplayError::Undecodable { lsn, .. } if lsn == bad),
        "{err:?}"
    );
    assert!(matches!(
        session_state(dir.path(), id),
        Err(ReplayError::Undecodable { .. })
    ));

    let log = list_sessions_with(dir.path(), OnCorruption::Skip).unwrap();
    assert_eq!(log.undecodable.lsns, [bad]);
    let s = log.session(id).unwrap();
    assert_eq!((s.events, s.skipped_records), (2, 1));
    assert_eq!(s.status, SessionStatus::Completed);
}

#[test]
fn corruption_fails_by_default_and_is_skipped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 4096,
        ..fast()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
    for i in 0..200u64 {
        let id = ids[(i % 2) as usize];
        wal.append(id, &SessionEvent::UserMessage(format!("message {i}")))
            .unwrap();
    }
    wal.close().unwrap();

    // Flip one payload byte of LSN 20, in the first (sealed) segment.
    let (path, offset) = {
        let mut reader = Reader::open(dir.path()).unwrap().from_lsn(20);
        let r = reader.next_ref().unwrap().unwrap();
        assert_eq!(r.lsn, 20);
        (r.segment.to_path_buf(), r.offset)
    };
    assert!(Reader::open(dir.path()).unwrap().segments().len() > 2);
    flip_byte(&path, offset + 48 + 2);

    let err = list_sessions(dir.path()).unwrap_err();
    assert!(err.is_corruption(), "{err:?}");
    assert!(err.to_string().contains("reading the log in"), "{err}");
    // LSN 20 is session 2's. Through the sealed segments' session indexes
    // (written when the writer sealed them), session 1's replay reads every
    // record of session 1 (each checked) and none of session 2's: the
    // damage is not in its history. Session 2's replay reads LSN 20 and
    // fails.
    assert_eq!(
        session_state(dir.path(), ids[0]).unwrap().last_lsn(),
        Some(199)
    );
    assert!(
        session_state(dir.path(), ids[1])
            .unwrap_err()
            .is_corruption()
    );
    // Without the indexes the damaged record's session cannot be told: a
    // strict replay of either session refuses.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert!(
        session_state(dir.path(), ids[0])
            .unwrap_err()
            .is_corruption()
    );

    let log = list_sessions_with(dir.path(), OnCorruption::Skip).unwrap();
    assert_eq!(log.corruption_count, 1);
    assert!(log.corruption[0].is_corruption());
    assert_eq!(log.records, 199);
    let events: u64 = log.sessions.iter().map(|s| s.events).sum();
    assert_eq!(events, 199);
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).unwrap();
    file.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

#[test]
fn missing_logs_and_sessions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // No log yet: a plain answer, naming the directory.
    let err = list_sessions(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, ReplayError::NoLog { .. }), "{err:?}");
    assert!(err.to_string().starts_with("there is no log in "), "{err}");
    let err = list_sessions(dir.path()).unwrap_err();
    assert!(
        matches!(err.wal_error(), Some(logbook_wal::WalError::NoLog { .. })),
        "{err:?}"
    );

    let wal = Wal::open(dir.path(), fast()).unwrap();
    wal.append(Uuid::from_u128(1), &SessionEvent::Done).unwrap();
    wal.sync().unwrap();
    let stranger = Uuid::from_u128(42);
    assert!(matches!(
        session_state(dir.path(), stranger),
        Err(ReplayError::UnknownSession(id)) if id == stranger
    ));
    assert!(matches!(
        resume(&wal, stranger),
        Err(ReplayError::UnknownSession(_))
    ));
    let bus = SessionBus::new(4);
    assert!(matches!(
        publish(dir.path(), stranger, &bus, Pace::AsFastAsPossible),
        Err(ReplayError::UnknownSession(_))
    ));
}

#[test]
fn completed_sessions_cannot_be_resumed_failed_ones_can() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let (done, failed) = (Uuid::from_u128(1), Uuid::from_u128(2));
    wal.append(done, &SessionEvent::UserMessage("hi".into()))
        .unwrap();
    let done_lsn = wal.append(done, &SessionEvent::Done).unwrap();
    wal.append(failed, &SessionEvent::Error("quota".into()))
        .unwrap();
    let before = wal.last_lsn();

    let err = resume(&wal, done).unwrap_err();
    assert!(
        matches!(err, ReplayError::AlreadyCompleted { session, done_lsn: at } if session == done && at == done_lsn),
        "{err:?}"
    );
    assert_eq!(wal.last_lsn(), before, "a refused resume appends nothing");

    let resumed = resume(&wal, failed).unwrap();
    assert_eq!(resumed.last_lsn, before);
    assert_eq!(resumed.resumed_lsn, before + 1);
    assert_eq!(resumed.state.status(), &SessionStatus::Running);
    assert_eq!(resumed.sink.session(), failed);
    // The returned state is exactly what a replay now rebuilds.
    assert_eq!(resumed.state, session_state(dir.path(), failed).unwrap());
}

#[test]
fn publish_replays_a_session_into_a_bus_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let (id, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut written = Vec::new();
    for i in 0..20u64 {
        let e = if i % 3 == 0 {
            // Ephemeral events appended straight to the log replay too.
            SessionEvent::TextChunk(format!("chunk {i}"))
        } else {
            usage(i, i)
        };
        wal.append(id, &e).unwrap();
        wal.append(other, &SessionEvent::UserMessage("noise".into()))
            .unwrap();
        written.push(e);
    }
    wal.append(id, &SessionEvent::SessionResumed { from_lsn: 3 })
        .unwrap();
    written.push(SessionEvent::SessionResumed { from_lsn: 3 });
    wal.close().unwrap();

    for pace in [Pace::AsFastAsPossible, Pace::Recorded { speed: 1e3 }] {
        let bus = SessionBus::new(64);
        let mut ui = bus.subscribe();
        let n = publish(dir.path(), id, &bus, pace).unwrap();
        assert_eq!(n, written.len() as u64);
        let mut got = Vec::new();
        while let Ok(e) = ui.try_recv() {
            got.push(e);
        }
        assert_eq!(got, written, "{pace:?}");
    }
    let bus = SessionBus::new(4);
    for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            publish(dir.path(), id, &bus, Pace::Recorded { speed }),
            Err(ReplayError::InvalidSpeed(_))
        ));
    }
}

/// A session named by a prefix of its id is found and rebuilt in one pass;
/// a prefix naming several sessions is refused with all of them; one naming
/// none says so. Equal to the rebuild by the whole id.
#[test]
fn a_session_named_by_a_prefix_is_found_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let id = |s: &str| Uuid::parse_str(s).unwrap();
    let (a, b, c) = (
        id("0050aaaa-0000-4000-8000-000000000001"),
        id("0050bbbb-0000-4000-8000-000000000002"),
        id("7777cccc-0000-4000-8000-000000000003"),
    );
    for round in 0..3 {
        for s in [a, b, c] {
            wal.append(s, &SessionEvent::UserMessage(format!("{s} {round}")))
                .unwrap();
        }
    }
    wal.append(c, &SessionEvent::Done).unwrap();
    drop(wal);

    let (state, damage) = session_state_by_prefix(dir.path(), "7777C", OnCorruption::Fail).unwrap();
    assert_eq!(state.session_id(), c);
    assert!(damage.is_empty());
    let whole = session_state(dir.path(), c).unwrap();
    assert_eq!(state.transcript(), whole.transcript());
    assert_eq!(state.last_lsn(), whole.last_lsn());

    assert_eq!(
        session_state_by_prefix(dir.path(), "0050a", OnCorruption::Fail)
            .unwrap()
            .0
            .session_id(),
        a
    );
    match session_state_by_prefix(dir.path(), "0050", OnCorruption::Fail) {
        Err(ReplayError::AmbiguousPrefix { prefix, sessions }) => {
            assert_eq!(prefix, "0050");
            assert_eq!(sessions, [a, b]);
        }
        other => panic!("expected an ambiguous prefix, got {other:?}"),
    }
    assert!(matches!(
        session_state_by_prefix(dir.path(), "9", OnCorruption::Fail),
        Err(ReplayError::NoSessionWithPrefix(p)) if p == "9"
    ));
}
