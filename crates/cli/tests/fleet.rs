//! `logbook ship`, `logbook resume` and the read commands given a
//! `nats://` URL, against a real `nats-server` on a loopback port.

mod common;
#[path = "../../fleet/tests/common/mod.rs"]
mod nats;

use common::{logbook, texts, write_log};

#[test]
fn ship_twice_then_the_read_commands_answer_from_the_stream() {
    let Some(bin) = nats::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = nats::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let written = write_log(&dir, 3, 40);
    let url = server.url();

    let first = logbook()
        .args(["ship"])
        .arg(&dir)
        .args(["--to", &url])
        .output()
        .unwrap();
    let (out, err) = texts(&first);
    assert_eq!(first.status.code(), Some(0), "{out}{err}");
    assert!(
        out.starts_with("shipped 120 record(s) (LSN 1..=120)"),
        "{out}"
    );
    let second = logbook()
        .args(["ship"])
        .arg(&dir)
        .args(["--to", &url])
        .output()
        .unwrap();
    let (out, err) = texts(&second);
    assert_eq!(second.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("shipped 0 record(s) of log"), "{out}");
    assert!(out.contains("through LSN 120"), "{out}");

    // dump: record for record, the same lines as the directory's.
    for extra in [&[][..], &["--json"][..], &["--full"][..]] {
        let local = logbook()
            .arg("dump")
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap();
        let remote = logbook()
            .arg("dump")
            .arg(&url)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(remote.status.code(), Some(0), "{}", texts(&remote).1);
        assert_eq!(texts(&remote).0, texts(&local).0, "dump {extra:?}");
        assert_eq!(texts(&local).0.lines().count(), 120);
    }
    let session = written.sessions[1].to_string();
    let one = logbook()
        .arg("dump")
        .arg(&url)
        .args(["--session", &session[..8]])
        .output()
        .unwrap();
    assert_eq!(texts(&one).0.lines().count(), 40);

    // sessions: the same sessions, statuses and counts.
    let local = common::json_lines(
        &texts(
            &logbook()
                .arg("sessions")
                .arg(&dir)
                .arg("--json")
                .output()
                .unwrap(),
        )
        .0,
    );
    let remote = common::json_lines(
        &texts(
            &logbook()
                .arg("sessions")
                .arg(&url)
                .arg("--json")
                .output()
                .unwrap(),
        )
        .0,
    );
    assert_eq!(remote.len(), 3);
    for (l, r) in local.iter().zip(&remote) {
        for field in [
            "session",
            "events",
            "tokens",
            "title",
            "first_lsn",
            "last_lsn",
        ] {
            assert_eq!(l[field], r[field], "{field}");
        }
    }
    // Whether a host is alive is not known from the stream: a session
    // without a terminal event is interrupted here, running there.
    let statuses = |v: &[serde_json::Value]| {
        v.iter()
            .map(|s| s["status"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&local), ["completed", "completed", "interrupted"]);
    assert_eq!(statuses(&remote), ["completed", "completed", "running"]);
    let table = logbook().arg("sessions").arg(&url).output().unwrap();
    assert!(
        texts(&table).0.contains("3 session(s)"),
        "{}",
        texts(&table).0
    );

    // replay: the same state.
    let local = logbook()
        .args(["replay"])
        .arg(&dir)
        .args([&session, "--json"])
        .output()
        .unwrap();
    let remote = logbook()
        .args(["replay"])
        .arg(&url)
        .args([&session[..8], "--json"])
        .output()
        .unwrap();
    assert_eq!(remote.status.code(), Some(0), "{}", texts(&remote).1);
    let (l, r) = (
        &common::json_lines(&texts(&local).0)[0],
        &common::json_lines(&texts(&remote).0)[0],
    );
    for field in ["session", "events", "transcript", "tool_calls", "tokens"] {
        assert_eq!(l[field], r[field], "{field}");
    }

    // stats: one log, every record, every session.
    let stats = logbook()
        .arg("stats")
        .arg(&url)
        .arg("--json")
        .output()
        .unwrap();
    let s = &common::json_lines(&texts(&stats).0)[0];
    assert_eq!(
        (s["records"].as_u64(), s["sessions"].as_u64()),
        (Some(120), Some(3)),
        "{s}"
    );
    assert_eq!(s["logs"][0]["last_lsn"].as_u64(), Some(120));
}

#[test]
fn bad_urls_and_streams_exit_2_naming_them() {
    let Some(bin) = nats::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = nats::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 1, 5);
    let nobody = format!("nats://127.0.0.1:{}", nats::free_port());
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["dump".into(), nobody.clone()], nobody.clone()),
        (vec!["sessions".into(), "nats://".into()], "nats://".into()),
        (
            vec![
                "ship".into(),
                dir.display().to_string(),
                "--to".into(),
                "http://x:1".into(),
            ],
            "http://x:1".into(),
        ),
        (
            vec![
                "ship".into(),
                dir.display().to_string(),
                "--to".into(),
                nobody.clone(),
                "--give-up".into(),
                "1".into(),
            ],
            nobody.clone(),
        ),
        (
            vec![
                "replay".into(),
                server.url(),
                "0123".into(),
                "--stream".into(),
                "MISSING".into(),
            ],
            "MISSING".into(),
        ),
        (
            vec![
                "stats".into(),
                server.url(),
                "--stream".into(),
                "MISSING".into(),
            ],
            "MISSING".into(),
        ),
    ];
    for (args, named) in cases {
        let started = std::time::Instant::now();
        let output = logbook()
            .args(&args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let (out, err) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(
            err.contains(&named) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
