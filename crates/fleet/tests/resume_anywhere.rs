//! Resume anywhere: a session cut off on host A, resumed on host B from
//! the stream; what B writes ships back, the pulled history is not shipped
//! again, and the stream replays one session across both hosts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use logbook_bus::{SessionBus, SessionEvent};
use logbook_fleet::{
    FleetError, Select, ShipOptions, Shipper, Target, in_log_order, read, resume_from_stream,
};
use logbook_replay::{Role, SessionState, SessionStatus};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

#[test]
fn a_session_cut_off_on_host_a_resumes_on_host_b_and_replays_as_one() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let (host_a, host_b) = (root.path().join("a"), root.path().join("b"));
    let session = Uuid::new_v4();
    let other_a = Uuid::new_v4();
    {
        // Host A: the session runs, a tool call starts, the host dies.
        let wal = Wal::open(&host_a, WalOptions::default()).unwrap();
        let bus = SessionBus::new(64).with_durable_sink(Arc::new(wal.sink(session)));
        bus.emit(SessionEvent::SessionStarted {
            model: "m".into(),
            cwd: "/a".into(),
            title: None,
        });
        bus.emit(SessionEvent::UserMessage("first, on A".into()));
        wal.append(
            other_a,
            &SessionEvent::UserMessage("another session of A".into()),
        )
        .unwrap();
        bus.emit(SessionEvent::TextComplete("working on A".into()));
        bus.emit(SessionEvent::ToolCallStart {
            tool_call_id: "t1".into(),
            name: "ls".into(),
            arguments: "{}".into(),
        });
    }
    let target = Target::parse(&server.url()).unwrap();
    common::run(Duration::from_secs(60), async {
        let a = Shipper::new(&host_a, target.clone(), ShipOptions::default()).unwrap();
        assert_eq!(a.ship().await.unwrap().shipped, 5);

        // Host B has a life of its own.
        let wal = Wal::open(&host_b, WalOptions::default()).unwrap();
        let own = Uuid::new_v4();
        wal.append(own, &SessionEvent::UserMessage("B's own session".into()))
            .unwrap();
        let pulled = resume_from_stream(&target, &wal, session).await.unwrap();
        assert_eq!((pulled.imported, pulled.already_here), (4, 0));
        // Imported at B's LSNs 2..=5, resumed at 6.
        assert_eq!(
            (pulled.resumed.last_lsn, pulled.resumed.resumed_lsn),
            (5, 6)
        );
        assert_eq!(pulled.resumed.pending_tool_calls[0].id, "t1");
        assert_eq!(pulled.resumed.transcript[0].text, "first, on A");
        let bus = SessionBus::new(64).with_durable_sink(Arc::new(pulled.resumed.sink));
        bus.emit(SessionEvent::ToolCallComplete {
            tool_call_id: "t1".into(),
            name: "ls".into(),
            output: "done".into(),
            success: true,
            duration_ms: 1,
        });
        bus.emit(SessionEvent::UserMessage("then, on B".into()));
        bus.emit(SessionEvent::Done);
        wal.sync().unwrap();

        // B ships its own records, not the pulled ones.
        let b = Shipper::new(&host_b, target.clone(), ShipOptions::default()).unwrap();
        let report = b.ship().await.unwrap();
        assert_eq!((report.shipped, report.imported), (5, 4), "{report:?}");
        let again = b.ship().await.unwrap();
        assert_eq!((again.shipped, again.duplicates), (0, 0), "{again:?}");
        let all = read(&target, Select::All).await.unwrap();
        assert_eq!(all.len(), 10, "5 of A, 5 of B, none twice");
        let b_lsns: Vec<u64> = all
            .iter()
            .filter(|r| r.log == b.log_id())
            .map(|r| r.lsn)
            .collect();
        assert_eq!(b_lsns, [1, 6, 7, 8, 9]);

        // The stream replays one session, in order, across both hosts.
        let records = in_log_order(read(&target, Select::Session(session)).await.unwrap());
        assert_eq!(records.len(), 4 + 4);
        assert_eq!(records[0].log, a.log_id());
        assert_eq!(records[7].log, b.log_id());
        let mut state = SessionState::new(session);
        for r in &records {
            state.apply(&r.decode().unwrap());
        }
        assert_eq!(state.status(), &SessionStatus::Completed);
        assert_eq!(state.resumptions().len(), 1);
        let said: Vec<(Role, &str)> = state
            .transcript()
            .iter()
            .map(|t| (t.role, t.text.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                (Role::User, "first, on A"),
                (Role::Assistant, "working on A"),
                (Role::User, "then, on B")
            ]
        );
        assert!(state.pending_tool_calls().is_empty());
        // B's own log replays the same session.
        let local = logbook_replay::session_state(&host_b, session).unwrap();
        assert_eq!(local.transcript().len(), 3);
        assert_eq!(local.status(), &SessionStatus::Completed);

        // A completed session is not resumed again; an unknown one is a
        // typed error.
        let e = resume_from_stream(&target, &wal, session)
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::Completed { .. }), "{e}");
        let e = resume_from_stream(&target, &wal, Uuid::new_v4())
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::UnknownSession { .. }), "{e}");
        wal.close().unwrap();
    });
}
