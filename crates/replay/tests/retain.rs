//! A session whose beginning was retained away is marked truncated in
//! listings and in its rebuilt state, never passed off as complete; the
//! preview names the sessions a policy cuts short or removes.

use logbook_bus::SessionEvent;
use logbook_replay::{list_sessions, retention_preview, session_state};
use logbook_wal::{Retention, Wal, WalOptions};
use uuid::Uuid;

fn started() -> SessionEvent {
    SessionEvent::SessionStarted {
        model: "m".into(),
        cwd: "/w".into(),
        title: None,
    }
}

#[test]
fn sessions_cut_by_retention_are_marked_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 4096,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let (gone, long, late) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    wal.append(gone, &started()).unwrap();
    wal.append(gone, &SessionEvent::Done).unwrap();
    wal.append(long, &started()).unwrap();
    for i in 0..300 {
        wal.append(long, &SessionEvent::UserMessage(format!("message {i}")))
            .unwrap();
    }
    wal.append(late, &started()).unwrap();
    wal.append(late, &SessionEvent::UserMessage("late".into()))
        .unwrap();
    let policy = Retention {
        before_lsn: Some(150),
        ..Retention::default()
    };
    let preview = retention_preview(dir.path(), &policy).unwrap();
    assert_eq!(preview.cut_short, [long]);
    assert_eq!(preview.removed, [gone]);
    // Nothing is truncated before the pass.
    assert!(
        list_sessions(dir.path())
            .unwrap()
            .sessions
            .iter()
            .all(|s| !s.truncated)
    );
    let done = wal.retain(&policy).unwrap();
    assert_eq!(done.keep_from, preview.plan.keep_from);

    let log = list_sessions(dir.path()).unwrap();
    assert!(log.session(gone).is_none());
    assert!(log.session(long).unwrap().truncated);
    assert!(!log.session(late).unwrap().truncated);
    assert!(session_state(dir.path(), long).unwrap().truncated());
    assert!(!session_state(dir.path(), late).unwrap().truncated());
}

/// The base LSNs of the log's segments (from their file names).
fn segment_bases(dir: &std::path::Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// A fork's records are one batch, and a batch can straddle segments: a
/// retention pass can cut between two of them. Cut right before a
/// beginning inside a truncated fork (its own `SessionForked` after its
/// truncation mark, or the `SessionForked` its copy of a fork holds), the
/// fork's first record left is a beginning, and the fork, whose history
/// lacks the original's beginning, was passed off as whole.
#[test]
fn a_retention_cut_right_before_a_beginning_inside_a_truncated_fork_leaves_it_truncated() {
    // `copied_fork`: the cut lands on the `SessionForked` a fork of a fork
    // copied (its third record), else on the fork's own (its second).
    for copied_fork in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            dir.path(),
            WalOptions {
                segment_size: 4096,
                preallocate: false,
                ..WalOptions::default()
            },
        )
        .unwrap();
        let s = Uuid::new_v4();
        wal.append(s, &started()).unwrap();
        let mut last = 0;
        for i in 0..90 {
            last = wal
                .append(
                    s,
                    &SessionEvent::UserMessage(format!("message {i} {}", "x".repeat(40))),
                )
                .unwrap();
        }
        wal.retain(&Retention {
            before_lsn: Some(50),
            ..Retention::default()
        })
        .unwrap();
        assert!(session_state(dir.path(), s).unwrap().truncated());
        // Fork (and fork the fork) with fillers of growing sizes before
        // it, until the cut point is a segment's first record.
        let mut target = None;
        for pad in 0..400 {
            wal.append(
                Uuid::new_v4(),
                &SessionEvent::UserMessage("f".repeat(pad * 37 % 3000)),
            )
            .unwrap();
            let first = logbook_replay::fork(&wal, s, last).unwrap();
            assert!(first.truncated);
            let (fork, at) = if copied_fork {
                let second = logbook_replay::fork(&wal, first.session, wal.last_lsn()).unwrap();
                assert!(second.truncated);
                (second.session, second.forked_lsn + 1)
            } else {
                (first.session, first.forked_lsn)
            };
            if segment_bases(dir.path()).contains(&at) {
                target = Some((fork, at));
                break;
            }
        }
        let (fork, base) = target.expect("no fork's cut point began a segment");
        wal.retain(&Retention {
            before_lsn: Some(base),
            ..Retention::default()
        })
        .unwrap();
        let events = logbook_replay::session_events(dir.path(), fork).unwrap();
        assert!(events[0].event.is_beginning(), "{:?}", events[0]);
        let state = session_state(dir.path(), fork).unwrap();
        let listed = list_sessions(dir.path()).unwrap();
        assert!(
            state.truncated() && listed.session(fork).unwrap().truncated,
            "cut at LSN {base}, a beginning inside fork {fork} (copied fork: {copied_fork}): \
             passed off as whole (replay: {}, listing: {})",
            state.truncated(),
            listed.session(fork).unwrap().truncated
        );
    }
}
