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
