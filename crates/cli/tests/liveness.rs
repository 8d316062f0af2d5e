//! Whether a writer is live, asked by another user (issue 21, the review's
//! finding 5): `logbook sessions` of a live log, run as `nobody`, called a
//! running session "interrupted (… no live writer holds the log)", because
//! the lock probe needed write access to `LOCK`. Liveness needs no write
//! access, and a `LOCK` that cannot even be read never reads as "no
//! writer".
//!
//! Running a command as `nobody` needs root (`setpriv`): CI runs as root
//! with `CI=true`, and there a refusal fails the test; elsewhere it is
//! skipped with the reason printed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{event, small_options, texts};
use logbook_wal::Wal;

/// Why a command cannot be run as `nobody` here, if it cannot.
fn cannot_run_as_nobody() -> Option<String> {
    match Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`setpriv --reuid=65534` refused ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `setpriv`: {e}")),
    }
}

/// `logbook sessions DIR`, as `nobody`.
fn sessions_as_nobody(dir: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("logbook"))
        .arg("sessions")
        .arg(dir)
        .output()
        .unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A session without a terminal event, in a log a live writer holds, is
/// "running" for a user who may read `LOCK` but not write it, and for one
/// who may not even read it (a writer may be live); once the writer is
/// gone, it is interrupted for the first user.
#[test]
fn r5_sessions_run_as_another_user_sees_the_live_writer() {
    if let Some(reason) = cannot_run_as_nobody() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true: r5_sessions_run_as_another_user_sees_the_live_writer must run (CI runs as root), but {reason}"
        );
        println!("SKIPPED r5_sessions_run_as_another_user_sees_the_live_writer: {reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let dir = tmp.path().join("log");
    let wal = Wal::open(&dir, small_options()).unwrap();
    let session = uuid::Uuid::new_v4();
    for i in 0..4 {
        wal.append(session, &event(i, 10, false)).unwrap();
    }
    chmod(&dir, 0o755);
    let lock = dir.join("LOCK");
    let status_line = |out: &Output| -> String {
        let (stdout, stderr) = texts(out);
        assert!(
            !stderr.contains("panicked"),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
            .lines()
            .find(|l| l.contains(&session.to_string()[..8]))
            .unwrap_or_else(|| panic!("no line for the session:\n{stdout}\nstderr:\n{stderr}"))
            .to_owned()
    };
    for (what, mode) in [
        ("LOCK readable, not writable", 0o644),
        ("LOCK unreadable", 0o600),
    ] {
        chmod(&lock, mode);
        let line = status_line(&sessions_as_nobody(&dir));
        assert!(
            line.contains("running") && !line.contains("interrupted"),
            "{what}: as nobody, beside a live writer: {line}"
        );
    }
    wal.close().unwrap();
    chmod(&lock, 0o644);
    let line = status_line(&sessions_as_nobody(&dir));
    assert!(line.contains("interrupted"), "no writer any more: {line}");
}
