//! Logical deletion: once a tombstone is durable, every reader that
//! answers with session content leaves the deleted records out (replay,
//! `session_state`, listings from records and from summaries, export,
//! follow, fork, resume), and a dry run writes nothing.

use logbook_bus::SessionEvent;
use logbook_replay::{
    ExportFilter, ReplayError, Selection, delete, delete_after, delete_runs, delete_session,
    export, follow, fork, import, interrupted, list_sessions, plan_delete, prune, resume,
    session_state,
};
use logbook_wal::{Lsn, Reader, Wal, WalOptions};
use uuid::Uuid;

fn small() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
}

fn user(text: &str) -> SessionEvent {
    SessionEvent::UserMessage(text.into())
}

fn answer(text: &str) -> SessionEvent {
    SessionEvent::TextComplete(text.into())
}

/// Every event of `session` a reader returns, tombstones included.
fn raw_texts(dir: &std::path::Path, session: Uuid) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader::open(dir).unwrap().session(session);
    while let Some(rec) = r.next_ref() {
        let e = logbook_wal::EventRecord::decode(&rec.unwrap()).unwrap();
        out.push(format!("{:?}", e.event));
    }
    out
}

fn transcript(dir: &std::path::Path, session: Uuid) -> Vec<String> {
    session_state(dir, session)
        .unwrap()
        .transcript()
        .iter()
        .map(|t| t.text.clone())
        .collect()
}

/// Two sessions over many segments; `secret` holds a phrase in each turn.
fn two_sessions(wal: &Wal) -> (Uuid, Uuid, Vec<Lsn>) {
    let (secret, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut lsns = Vec::new();
    for i in 0..30 {
        lsns.push(
            wal.append(secret, &user(&format!("secret question {i}")))
                .unwrap(),
        );
        lsns.push(
            wal.append(secret, &answer(&format!("secret answer {i}")))
                .unwrap(),
        );
        wal.append(other, &user(&format!("other {i}"))).unwrap();
    }
    (secret, other, lsns)
}

#[test]
fn a_deleted_session_is_gone_from_every_reader_and_others_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let (secret, other, _) = two_sessions(&wal);
    // A listing before the delete stores summaries of the sealed segments.
    let before = list_sessions(dir.path()).unwrap();
    assert_eq!(before.sessions.len(), 2);
    let other_before = transcript(dir.path(), other);

    let plan = plan_delete(dir.path(), secret, &Selection::Session).unwrap();
    assert_eq!(plan.lsns.len(), 60);
    assert!(plan.bytes > 0);
    // The dry run wrote nothing.
    assert_eq!(raw_texts(dir.path(), secret).len(), 60);

    let done = delete_session(&wal, secret).unwrap();
    assert_eq!(done.lsns, plan.lsns);
    let tombstone = done.tombstone_lsn.unwrap();

    assert!(matches!(
        session_state(dir.path(), secret),
        Err(ReplayError::DeletedSession { session, tombstone_lsn }) if session == secret && tombstone_lsn == tombstone
    ));
    // Listings (twice: the second takes the sealed segments from summaries).
    for _ in 0..2 {
        let log = list_sessions(dir.path()).unwrap();
        assert_eq!(log.sessions.len(), 1);
        assert_eq!(log.sessions[0].session, other);
        assert_eq!(log.deleted.len(), 1);
        assert_eq!(log.deleted[0].session, secret);
        assert_eq!(log.deleted[0].title, None);
    }
    assert_eq!(transcript(dir.path(), other), other_before);
    // Export: nothing of it, and no tombstone.
    let mut out = Vec::new();
    let t = export(dir.path(), ExportFilter::all(), &mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("session_deleted"));
    assert_eq!(t.records, 30);
    // Nor an interrupted session to resume.
    drop(wal);
    assert!(
        interrupted(dir.path())
            .unwrap()
            .iter()
            .all(|s| s.session != secret)
    );
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert!(matches!(
        resume(&wal, secret),
        Err(ReplayError::DeletedSession { .. })
    ));
    // Deleting again deletes nothing more.
    assert!(matches!(
        delete_session(&wal, secret),
        Err(ReplayError::DeletedSession { .. })
    ));
    // The session can go on: what comes after the tombstone is kept.
    wal.append(secret, &user("a new start")).unwrap();
    assert_eq!(transcript(dir.path(), secret), ["a new start"]);
    // An import of the export holds the other session only.
    let other_dir = tempfile::tempdir().unwrap();
    let other_wal = Wal::open(other_dir.path(), WalOptions::default()).unwrap();
    import(&other_wal, &out[..]).unwrap();
    assert_eq!(transcript(other_dir.path(), other), other_before);
}

#[test]
fn pop_runs_and_prune_delete_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let s = Uuid::new_v4();
    let u1 = wal.append(s, &user("u1")).unwrap();
    let a1 = wal.append(s, &answer("a1")).unwrap();
    let u2 = wal.append(s, &user("u2")).unwrap();
    wal.append(s, &answer("a2")).unwrap();
    let u3 = wal.append(s, &user("u3")).unwrap();
    wal.append(s, &answer("a3")).unwrap();
    wal.append(s, &user("u4")).unwrap();
    wal.append(s, &answer("a4")).unwrap();

    // Runs: the second turn.
    let d = delete_runs(&wal, s, &[u2]).unwrap();
    assert_eq!(d.lsns, [u2, u2 + 1]);
    assert_eq!(
        transcript(dir.path(), s),
        ["u1", "a1", "u3", "a3", "u4", "a4"]
    );
    assert!(matches!(
        delete_runs(&wal, s, &[a1]),
        Err(ReplayError::NotARun { lsn, .. }) if lsn == a1
    ));
    // Prune: keep the latest answer only.
    let d = prune(&wal, s, "text_complete", 1).unwrap();
    assert_eq!(d.lsns.len(), 2, "a1 and a3 (a2 was already deleted)");
    assert_eq!(transcript(dir.path(), s), ["u1", "u3", "u4", "a4"]);
    assert!(matches!(
        prune(&wal, s, "nope", 1),
        Err(ReplayError::UnknownKind(_))
    ));
    // Pop: everything after u3.
    let d = delete_after(&wal, s, u3).unwrap();
    assert_eq!(d.lsns.len(), 2);
    assert_eq!(transcript(dir.path(), s), ["u1", "u3"]);
    let state = session_state(dir.path(), s).unwrap();
    assert_eq!(state.deleted_records(), 6);
    // Nothing left to delete after u3: nothing appended.
    let again = delete(&wal, s, &Selection::After(u3), "pop").unwrap();
    assert!(again.tombstones.is_empty() && again.tombstone_lsn.is_none());
    // The listing agrees with the state.
    let log = list_sessions(dir.path()).unwrap();
    let summary = log.session(s).unwrap();
    assert_eq!(summary.events, state.events());
    assert_eq!(summary.title.as_deref(), Some("u1"));
    let _ = u1;
}

#[test]
fn a_fork_copies_no_deleted_record_and_no_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let s = Uuid::new_v4();
    wal.append(s, &user("keep")).unwrap();
    let gone = wal.append(s, &user("drop me")).unwrap();
    wal.append(s, &answer("kept")).unwrap();
    delete_runs(&wal, s, &[gone]).unwrap();
    let last = logbook_replay::last_lsn(dir.path()).unwrap();
    let f = fork(&wal, s, last).unwrap();
    let texts = transcript(dir.path(), f.session);
    assert_eq!(texts, ["keep"]);
    assert!(
        raw_texts(dir.path(), f.session)
            .iter()
            .all(|e| !e.contains("drop me") && !e.contains("SessionDeleted"))
    );
}

/// A deleted session is refused by `fork` as by `replay`, at any LSN
/// (it used to make an empty "running" fork of it).
#[test]
fn a_deleted_session_cannot_be_forked() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let s = Uuid::new_v4();
    let first = wal.append(s, &user("x")).unwrap();
    let plan = delete_session(&wal, s).unwrap();
    let tombstone = plan.tombstone_lsn.unwrap();
    for at in [first, tombstone] {
        match fork(&wal, s, at) {
            Err(ReplayError::DeletedSession {
                session,
                tombstone_lsn,
            }) => assert_eq!((session, tombstone_lsn), (s, tombstone)),
            other => panic!("fork at LSN {at} of a deleted session: {other:?}"),
        }
    }
    // Nothing was appended, and a session appended to again forks.
    assert_eq!(logbook_replay::last_lsn(dir.path()).unwrap(), tombstone);
    let again = wal.append(s, &user("again")).unwrap();
    let f = fork(&wal, s, again).unwrap();
    assert_eq!(transcript(dir.path(), f.session), ["again"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_begun_after_the_tombstone_returns_no_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let (secret, other, _) = two_sessions(&wal);
    delete_session(&wal, secret).unwrap();
    let mut f = follow(&wal, 0, None).unwrap();
    wal.append(other, &SessionEvent::Done).unwrap();
    wal.close().unwrap();
    let mut seen = 0;
    while let Some(r) = f.next().await {
        let r = r.unwrap();
        assert!(r.session != secret || r.event.is_tombstone(), "{r:?}");
        seen += 1;
    }
    assert_eq!(seen, 30 + 1 + 1);
    assert_eq!(f.deleted(), 60);
}

#[test]
fn a_tombstone_line_cannot_be_imported() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let line = r#"{"v":1,"lsn":2,"session":"00000000-0000-4000-8000-000000000001","ts":"x","ts_us":1,"kind":"session_deleted","event":{"kind":"SessionDeleted","after_lsn":0,"ranges":[],"reason":""}}"#;
    let e = import(&wal, format!("{line}\n").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("session_deleted"), "{e}");
}

/// A deletion that lists more LSN ranges than one tombstone holds (or than
/// fit in one record of a log of small segments) appends several, and
/// every reader honours them all.
#[test]
fn a_deletion_of_many_ranges_is_split_over_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..600 {
        wal.append(gone, &user(&format!("g{i}"))).unwrap();
        wal.append(kept, &user(&format!("k{i}"))).unwrap();
    }
    let done = delete_session(&wal, gone).unwrap();
    assert_eq!(done.lsns.len(), 600);
    assert!(done.tombstones.len() > 1, "{}", done.tombstones.len());
    assert!(matches!(
        session_state(dir.path(), gone),
        Err(ReplayError::DeletedSession { .. })
    ));
    assert_eq!(transcript(dir.path(), kept).len(), 600);
    let erased = wal.compact().unwrap();
    assert_eq!(erased.erased, 600);
}

/// A session's events are what a read of it returns: its tombstones are
/// not among them, in `session_state` (`replay`), in a listing from the
/// records and in one from sealed segments' summaries (which count the
/// tombstones apart), and a session deleted then written again counts
/// only what was written since.
#[test]
fn tombstones_are_not_counted_among_a_sessions_events() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    let (s, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut lsns = Vec::new();
    for i in 0..40 {
        lsns.push(wal.append(s, &user(&format!("turn {i}"))).unwrap());
        wal.append(other, &answer(&format!("other {i}"))).unwrap();
    }
    logbook_replay::delete_records(&wal, s, &lsns[..5]).unwrap();
    delete_after(&wal, s, lsns[30]).unwrap();
    prune(&wal, s, "user_message", 20).unwrap();
    let counts = |wal: &Wal| {
        wal.sync().unwrap();
        let read = logbook_replay::session_events(dir.path(), s).unwrap().len() as u64;
        let state = session_state(dir.path(), s).unwrap();
        let listed = list_sessions(dir.path()).unwrap();
        let summary = listed.sessions.iter().find(|x| x.session == s).unwrap();
        assert!(state.events_of_kind("session_deleted") > 0);
        (
            read,
            state.events(),
            state.durable_events(),
            summary.events,
            summary.durable_events,
        )
    };
    assert_eq!(counts(&wal), (20, 20, 20, 20, 20));
    // Reopened: the tombstones' segment is sealed, listed from summaries.
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(counts(&wal), (20, 20, 20, 20, 20));
    delete_session(&wal, s).unwrap();
    wal.append(s, &user("again")).unwrap();
    assert_eq!(counts(&wal), (1, 1, 1, 1, 1));
    wal.close().unwrap();
}
