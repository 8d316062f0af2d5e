//! `logbook ship --follow --metrics IP:PORT`: a real shipper process
//! against a real `nats-server` on a loopback port, its endpoint scraped
//! over HTTP as Prometheus would, while records are appended.

mod common;
#[path = "../../fleet/tests/common/mod.rs"]
mod nats;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::texts;

/// The `logbook` binary, killed if it runs for more than a minute.
fn logbook() -> assert_cmd::Command {
    let mut command = common::logbook();
    command.timeout(Duration::from_secs(60));
    command
}

/// A child process killed (and waited for) on drop, so that the test stops
/// it whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of `GET /metrics` on `127.0.0.1:port`, or `None` while nothing
/// answers there yet.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Some(body.to_owned())
}

/// The value of the sample `name{dir="<dir>"}` in a scrape.
fn sample(body: &str, name: &str, dir: &Path) -> Option<f64> {
    let prefix = format!("{name}{{dir=\"{}\"}} ", dir.display());
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Scrape until `done` holds for a scrape (the shipper works at its own
/// pace), failing after a minute; returns that scrape.
fn scrape_until(port: u16, child: &mut Running, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the shipper exited ({status}); last scrape:\n{last:?}");
        }
        if let Some(body) = scrape(port) {
            if done(&body) {
                return body;
            }
            last = Some(body);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the figures did not get there; last scrape:\n{}",
            last.unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ship_follow_serves_figures_that_move_as_records_are_shipped() {
    let Some(bin) = nats::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = nats::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let wal = logbook_wal::Wal::open(&dir, common::small_options()).unwrap();
    let session = uuid::Uuid::new_v4();
    let append = |from: usize, n: usize| {
        let batch: Vec<_> = (from..from + n)
            .map(|i| (session, common::event(i, usize::MAX, false)))
            .collect();
        wal.append_many(&batch).unwrap();
    };
    append(0, 30);
    let port = nats::free_port();
    let stderr = std::fs::File::create(root.path().join("stderr")).unwrap();
    let mut child = Running(
        Command::new(assert_cmd::cargo::cargo_bin("logbook"))
            .arg("ship")
            .arg(&dir)
            .args(["--to", &server.url(), "--follow"])
            .args(["--metrics", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let shipped = |n: f64| {
        let dir = dir.clone();
        move |body: &str| {
            sample(body, "logbook_ship_records_total", &dir) == Some(n)
                && sample(body, "logbook_ship_shipped_lsn", &dir) == Some(n)
        }
    };
    let first = scrape_until(port, &mut child, shipped(30.0));
    // What an operator reads: help and type lines, positions, no errors.
    for line in [
        "# TYPE logbook_ship_records_total counter",
        "# HELP logbook_ship_lag_seconds ",
        "# TYPE logbook_ship_lag_records gauge",
        "# TYPE logbook_ship_ack_delay_seconds histogram",
    ] {
        assert!(
            first.lines().any(|l| l.starts_with(line)),
            "{line}:\n{first}"
        );
    }
    assert_eq!(
        sample(&first, "logbook_ship_publish_errors_total", &dir),
        Some(0.0)
    );
    assert_eq!(
        sample(&first, "logbook_ship_reconnects_total", &dir),
        Some(0.0)
    );
    assert_eq!(sample(&first, "logbook_ship_read_lsn", &dir), Some(30.0));
    assert_eq!(sample(&first, "logbook_ship_lag_records", &dir), Some(0.0));
    assert_eq!(
        sample(&first, "logbook_ship_ack_delay_seconds_count", &dir),
        Some(30.0)
    );

    // More records: the figures follow.
    append(30, 20);
    let second = scrape_until(port, &mut child, shipped(50.0));
    assert_eq!(sample(&second, "logbook_ship_read_lsn", &dir), Some(50.0));
    assert_eq!(
        sample(&second, "logbook_ship_ack_delay_seconds_count", &dir),
        Some(50.0)
    );
    assert_eq!(
        sample(&second, "logbook_ship_publish_errors_total", &dir),
        Some(0.0)
    );
    drop(child);
    // Not a terminal: no progress bar, the notes as before.
    let err = std::fs::read_to_string(root.path().join("stderr")).unwrap();
    assert!(
        !err.contains('\u{1b}'),
        "escape sequences on a pipe: {err:?}"
    );
    wal.close().unwrap();
}

/// A port in use is an error at once (before any connection to NATS),
/// naming the address; a malformed address and `--metrics` without
/// `--follow` are usage errors. Exit 2 each.
#[test]
fn a_metrics_address_that_cannot_be_served_exits_2_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    common::write_log(&dir, 1, 5);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // Nothing listens on port 1: only the metrics address is tried.
    let nobody = "nats://127.0.0.1:1";
    let output = logbook()
        .arg("ship")
        .arg(&dir)
        .args(["--to", nobody, "--follow", "--metrics", &addr])
        .output()
        .unwrap();
    let (out, err) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(&format!("http://{addr}/metrics")) && err.contains("in use"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    for (args, says) in [
        // Port 0 would serve on a port nobody is told of (review 25).
        (vec!["--follow", "--metrics", "127.0.0.1:0"], "port 0"),
        (vec!["--follow", "--metrics", "localhost:9464"], "--metrics"),
        (vec!["--follow", "--metrics", "127.0.0.1"], "--metrics"),
        (vec!["--metrics", "127.0.0.1:9464"], "--follow"),
    ] {
        let output = logbook()
            .arg("ship")
            .arg(&dir)
            .args(["--to", nobody])
            .args(&args)
            .output()
            .unwrap();
        let (out, err) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
