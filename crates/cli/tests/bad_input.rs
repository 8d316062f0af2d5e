//! Every subcommand on every kind of bad input: a one-line message on
//! stderr naming the path (and the offset where there is one), the
//! documented exit code, and never a panic.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use logbook_wal::Wal;

/// The subcommands, as arguments after the directory is known.
const COMMANDS: [&str; 8] = [
    "dump",
    "verify",
    "stats",
    "sessions",
    "replay",
    "repair",
    "repair --apply",
    "demo",
];

/// What a case expects of each command: its exit code (`None`: not run),
/// and whether stderr must be exactly one line.
struct Expect {
    codes: [Option<i32>; 8],
    /// stderr holds exactly this many lines for a non-zero exit (`None`:
    /// at least one).
    lines: Option<usize>,
    /// Text every non-empty stderr must contain (the path, an offset).
    needles: Vec<String>,
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    session: String,
    _writer: Option<Wal>,
}

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    (tmp, dir)
}

fn log_fixture() -> (tempfile::TempDir, PathBuf, String) {
    let (tmp, dir) = fixture();
    std::fs::create_dir(&dir).unwrap();
    let w = write_log(&dir, 2, 30);
    assert!(segments(&dir).len() >= 2);
    (tmp, dir, w.sessions[0].to_string())
}

fn run(fx: &Fixture, command: &str, as_nobody: bool) -> Output {
    let mut args: Vec<String> = command.split(' ').map(str::to_owned).collect();
    args.insert(1, fx.dir.display().to_string());
    if args[0] == "replay" {
        args.push(fx.session.clone());
    }
    if as_nobody {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("logbook"))
            .args(&args)
            .output()
            .unwrap()
    } else {
        logbook().args(&args).output().unwrap()
    }
}

fn check(case: &str, make: &dyn Fn() -> Fixture, expect: &Expect, as_nobody: bool) {
    for (command, code) in COMMANDS.iter().zip(expect.codes) {
        let Some(code) = code else { continue };
        let fx = make();
        let out = run(&fx, command, as_nobody);
        let (stdout, stderr) = texts(&out);
        let what = format!("{case}: logbook {command}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert_eq!(out.status.code(), Some(code), "{what}");
        assert!(!stderr.contains("panicked"), "{what}");
        assert!(!stderr.contains("RUST_BACKTRACE"), "{what}");
        for line in stderr.lines() {
            assert!(line.starts_with("logbook: "), "{what}");
        }
        if code != 0 {
            match expect.lines {
                Some(n) => assert_eq!(stderr.lines().count(), n, "{what}"),
                None => assert!(!stderr.is_empty(), "{what}"),
            }
        }
        if !stderr.is_empty() {
            for needle in &expect.needles {
                assert!(
                    stderr.contains(needle.as_str()),
                    "{what}\n(expected {needle:?})"
                );
            }
        }
    }
}

fn plain(tmp: tempfile::TempDir, dir: PathBuf) -> Fixture {
    Fixture {
        _tmp: tmp,
        dir,
        session: uuid::Uuid::nil().to_string(),
        _writer: None,
    }
}

fn codes(c: [i32; 8]) -> [Option<i32>; 8] {
    c.map(Some)
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_missing_directory() {
    let make = || {
        let (tmp, dir) = fixture();
        plain(tmp, dir)
    };
    let mut c = codes([2; 8]);
    c[7] = None; // demo creates it: see tests/demo.rs
    check(
        "missing",
        &make,
        &Expect {
            codes: c,
            lines: Some(1),
            needles: vec!["does not exist".into()],
        },
        false,
    );
}

#[test]
fn an_empty_directory_and_one_of_unrelated_files() {
    let empty = || {
        let (tmp, dir) = fixture();
        std::fs::create_dir(&dir).unwrap();
        plain(tmp, dir)
    };
    let mut c = codes([2; 8]);
    c[7] = None; // demo uses it: see tests/demo.rs
    check(
        "empty",
        &empty,
        &Expect {
            codes: c,
            lines: Some(1),
            needles: vec!["/log".into()],
        },
        false,
    );
    let unrelated = || {
        let (tmp, dir) = fixture();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a log\n").unwrap();
        std::fs::write(dir.join("00000000000000000001.log"), [0u8; 100]).unwrap();
        plain(tmp, dir)
    };
    check(
        "unrelated files",
        &unrelated,
        &Expect {
            codes: codes([2; 8]),
            lines: Some(1),
            needles: vec!["/log".into()],
        },
        false,
    );
    let a_file = || {
        let (tmp, dir) = fixture();
        std::fs::write(&dir, "a file").unwrap();
        plain(tmp, dir)
    };
    check(
        "a file",
        &a_file,
        &Expect {
            codes: codes([2; 8]),
            lines: Some(1),
            needles: vec!["is not a directory".into()],
        },
        false,
    );
}

#[test]
fn a_segment_cut_short() {
    // The tail segment, cut in the middle of its last record: a torn tail.
    let torn = || {
        let (tmp, dir, session) = log_fixture();
        cut_tail(&dir);
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: None,
        }
    };
    let fx = torn();
    let last = placement(&fx.dir).pop().unwrap();
    let (seg, off) = (file_name(&last.segment), last.offset + last.len);
    drop(fx);
    check(
        "torn tail",
        &torn,
        &Expect {
            //      dump verify stats sessions replay repair apply demo
            codes: codes([1, 1, 1, 0, 0, 1, 0, 2]),
            lines: Some(1),
            needles: vec!["/log".into()],
        },
        false,
    );
    // The problem lines name the segment and the offset of the cut.
    let fx = torn();
    for command in ["dump", "verify", "stats", "sessions", "replay", "repair"] {
        let (_, stderr) = texts(&run(&fx, command, false));
        assert!(
            stderr.contains(&format!("{seg} at offset {off}")),
            "{command}: {stderr}"
        );
    }

    // A sealed segment cut short: its last records are gone, and the next
    // segment does not continue its LSNs.
    let sealed = || {
        let (tmp, dir, session) = log_fixture();
        let first = &segments(&dir)[0];
        let len = std::fs::metadata(first).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(first).unwrap();
        f.set_len(len - 30).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: None,
        }
    };
    check(
        "sealed segment cut short",
        &sealed,
        &Expect {
            codes: codes([1, 1, 1, 1, 1, 1, 1, 2]),
            lines: None,
            needles: vec!["/log".into()],
        },
        false,
    );
    let fx = sealed();
    let first = file_name(&segments(&fx.dir)[0]);
    for command in ["dump", "verify", "stats", "sessions", "replay", "repair"] {
        let (_, stderr) = texts(&run(&fx, command, false));
        assert!(
            stderr.contains(&format!("{first} at offset ")),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_segment_with_garbage_in_the_middle() {
    for in_tail in [false, true] {
        let make = move || {
            let (tmp, dir, session) = log_fixture();
            let (sealed, tail) = middle_lsns(&dir);
            smash(&dir, if in_tail { tail } else { sealed });
            Fixture {
                _tmp: tmp,
                dir,
                session,
                _writer: None,
            }
        };
        let fx = make();
        let (sealed, tail) = middle_lsns_of_damaged(&fx.dir, in_tail);
        let lsn = if in_tail { tail } else { sealed };
        drop(fx);
        let fx = make();
        let placed = placement_lenient(&fx.dir);
        let off = placed.iter().find(|p| p.0 == lsn - 1).map(|p| p.2).unwrap();
        let seg = file_name(&placed.iter().find(|p| p.0 == lsn - 1).unwrap().1);
        check(
            if in_tail {
                "garbage in the tail segment"
            } else {
                "garbage in a sealed segment"
            },
            &make,
            &Expect {
                codes: codes([1, 1, 1, 1, 1, 1, 1, 2]),
                lines: Some(1),
                needles: vec![],
            },
            false,
        );
        for command in [
            "dump",
            "verify",
            "stats",
            "sessions",
            "replay",
            "repair --apply",
        ] {
            let fx = make();
            let (_, stderr) = texts(&run(&fx, command, false));
            assert!(
                stderr.contains(&format!("{seg} at offset {off}")),
                "{command}: {stderr}"
            );
        }
    }
}

/// Where each readable record is, on a damaged log: (LSN, segment, end
/// offset of the frame).
fn placement_lenient(dir: &Path) -> Vec<(u64, PathBuf, u64)> {
    let mut reader = logbook_wal::Reader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        if let Ok(r) = r {
            out.push((
                r.lsn,
                r.segment.to_path_buf(),
                r.offset + 48 + r.payload.len() as u64,
            ));
        }
    }
    out
}

/// The damaged LSN: the one missing from a lenient read.
fn middle_lsns_of_damaged(dir: &Path, _in_tail: bool) -> (u64, u64) {
    let lsns: Vec<u64> = placement_lenient(dir).iter().map(|p| p.0).collect();
    let missing = lsns.windows(2).find(|w| w[1] != w[0] + 1).unwrap()[0] + 1;
    (missing, missing)
}

#[test]
fn a_file_without_read_permission() {
    if std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        println!("skipped: cannot run a command as an unprivileged user with setpriv");
        return;
    }
    let unreadable_segment = || {
        let (tmp, dir, session) = log_fixture();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let first = segments(&dir)[0].clone();
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o000)).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: None,
        }
    };
    let first = segments(&unreadable_segment().dir)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    check(
        "unreadable segment",
        &unreadable_segment,
        &Expect {
            codes: codes([2; 8]),
            lines: Some(1),
            needles: vec![first, "Permission denied".into()],
        },
        true,
    );
    let unreadable_dir = || {
        let (tmp, dir, session) = log_fixture();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: None,
        }
    };
    let needle = "/log".to_owned();
    check(
        "unreadable directory",
        &unreadable_dir,
        &Expect {
            codes: codes([2; 8]),
            lines: Some(1),
            needles: vec![needle, "Permission denied".into()],
        },
        true,
    );
}

#[test]
fn a_log_locked_by_a_live_writer() {
    let locked = || {
        let (tmp, dir, session) = log_fixture();
        let wal = Wal::open(&dir, small_options()).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: Some(wal),
        }
    };
    let needle = "/log/LOCK".to_owned();
    check(
        "locked",
        &locked,
        &Expect {
            //      dump verify stats sessions replay repair apply demo
            codes: codes([0, 0, 0, 0, 0, 0, 2, 2]),
            lines: Some(1),
            needles: vec![needle],
        },
        false,
    );
    // Read-only commands see everything, and the sessions as running.
    let fx = locked();
    let out = run(&fx, "sessions", false);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("a live writer holds the log"), "{stdout}");
    assert!(stdout.contains("running"), "{stdout}");
    let out = run(&fx, "verify", false);
    assert!(texts(&out).0.contains("OK: "), "{:?}", texts(&out));
    let out = run(&fx, "repair", false);
    assert!(
        texts(&out).0.contains("--apply refuses"),
        "{:?}",
        texts(&out)
    );
}

/// A big log with every 10th record smashed: more than a pipe holds of
/// `verify --hex` output. Returns how many records were smashed.
fn big_damaged_log(dir: &Path) -> usize {
    write_big_log(dir, 3000);
    let placed = placement(dir);
    let mut smashed = 0;
    for p in placed.iter().filter(|p| p.lsn % 10 == 5) {
        smash_placed(&placed, p.lsn);
        smashed += 1;
    }
    smashed
}

#[test]
fn verify_into_a_closed_pipe_still_checks_everything_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let smashed = big_damaged_log(tmp.path());
    let run = head_one(&["verify".as_ref(), tmp.path().as_os_str(), "--hex".as_ref()]);
    assert!(run.first.starts_with("problem: "), "{}", run.first);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // The check went on to the end after stdout closed: every problem is
    // counted in the final line.
    assert!(
        run.stderr
            .contains(&format!("{smashed} problem(s) found; the first: ")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn dump_into_a_closed_pipe_fails_after_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    write_big_log(tmp.path(), 3000);
    smash(tmp.path(), 1);
    let run = head_one(&["dump".as_ref(), tmp.path().as_os_str()]);
    assert!(run.first.starts_with("       2  "), "{}", run.first);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("logbook: problem: "),
        "{}",
        run.stderr
    );
    // Other read-only commands into a closed pipe: they go on to their end
    // and their exit status is the same as with an open stdout.
    for command in ["stats", "sessions"] {
        let run = head_one(&[command.as_ref(), tmp.path().as_os_str()]);
        assert_eq!(run.code, Some(1), "{command}: {}", run.stderr);
    }
}

/// Unmounts on drop, even when the test fails.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `mount ARGS`, or why it was refused.
fn mount(args: &[&str], at: &Path) -> Result<(), String> {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .map_err(|e| format!("cannot run `mount`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`mount {}` refused ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Every read-only command works on a log on a read-only file system (a
/// snapshot, a backup, a mounted image): probing the writer lock needs no
/// write access. `repair --apply` fails with the path, exit 2, and changes
/// nothing. Mounting needs root (CI runs as root and sets `CI=true`: there
/// a refused mount fails the test); elsewhere it is skipped.
#[test]
fn a_log_on_a_read_only_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if let Err(reason) = mount(&["-t", "tmpfs", "-o", "size=8m", "tmpfs"], &mnt) {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true: a_log_on_a_read_only_file_system must run (CI runs as root), but {reason}"
        );
        println!("SKIPPED a_log_on_a_read_only_file_system: {reason} (needs root)");
        return;
    }
    let _guard = Mount(mnt.clone());
    let dir = mnt.join("log");
    std::fs::create_dir(&dir).unwrap();
    let w = write_log(&dir, 2, 30);
    let (tail, offset, _) = cut_tail(&dir);
    mount(&["-o", "remount,ro"], &mnt).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let session = w.sessions[0].to_string();
    //            command            exit  stdout must contain
    let cases: [(&[&str], i32, &str); 7] = [
        (&["dump"], 1, "session_started"),
        (&["verify"], 1, "FAILED"),
        (&["stats"], 1, "records: "),
        (&["sessions"], 0, "2 session(s)"),
        (&["replay", &session], 0, "transcript:"),
        (&["repair"], 1, "would cut"),
        (&["repair", "--apply"], 2, ""),
    ];
    for (args, code, needle) in cases {
        let out = logbook()
            .arg(args[0])
            .arg(&dir)
            .args(&args[1..])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        let what = format!("logbook {args:?}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert_eq!(out.status.code(), Some(code), "{what}");
        assert!(stdout.contains(needle), "{what}");
        if code == 2 {
            assert_eq!(stderr.lines().count(), 1, "{what}");
            assert!(stderr.contains("Read-only file system"), "{what}");
            assert!(stderr.contains("nothing changed"), "{what}");
            assert!(stderr.contains(&dir.display().to_string()), "{what}");
        } else if code == 1 {
            assert!(!stderr.contains("LOCK"), "{what}");
            // The torn tail is what they report, with its place.
            let place = format!("{} at offset {offset}", tail.display());
            assert!(stderr.contains(&place), "{what}");
        }
    }
    for (path, bytes) in before {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

/// The same without root: a log its user may read but not write (the
/// directory, its files and LOCK read-only), with a torn tail.
#[test]
fn a_log_without_write_permission() {
    if std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        println!("skipped: cannot run a command as an unprivileged user with setpriv");
        return;
    }
    let read_only = || {
        let (tmp, dir, session) = log_fixture();
        cut_tail(&dir);
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            session,
            _writer: None,
        }
    };
    let fx = read_only();
    let before: Vec<Vec<u8>> = segments(&fx.dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    check(
        "read-only log",
        &read_only,
        &Expect {
            //           dump verify stats sessions replay repair apply demo
            codes: [1, 1, 1, 0, 0, 1, 2, -1].map(|c| (c >= 0).then_some(c)),
            lines: None,
            needles: vec!["/log/".to_owned()],
        },
        true,
    );
    let out = run(&fx, "repair --apply", true);
    let stderr = texts(&out).1;
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");
    let after: Vec<Vec<u8>> = segments(&fx.dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before == after, "repair --apply changed a read-only log");
}

/// Damage that belongs to another session does not stop a replay: the
/// session is replayed, the damage is named with the sessions it may
/// touch, and the exit status is 1; `--strict` refuses as before.
#[test]
fn replay_goes_on_past_damage_that_belongs_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wal = Wal::open(dir, small_options()).unwrap();
    let (done, open) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for i in 0..20 {
        wal.append(done, &event(i, 20, true)).unwrap();
    }
    let mut lsns = Vec::new();
    for i in 0..20 {
        lsns.push(wal.append(open, &event(i, 20, false)).unwrap());
    }
    wal.close().unwrap();
    let (seg, off) = smash(dir, lsns[10]);
    let place = format!("{} at offset {off}", seg.display());

    // With the session indexes the writer stored, a replay reads only its
    // own session's records: the damage is not in `done`'s history, and
    // `open`'s replay finds it in its own.
    let out = logbook()
        .args(["replay", "--strict"])
        .arg(dir)
        .arg(done.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("status:  completed"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    let out = logbook()
        .arg("replay")
        .arg(dir)
        .arg(open.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&place), "{stderr}");

    // Without them (a log written before indexes, or with its indexes
    // lost), the damaged record's session cannot be told.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = logbook()
        .arg("replay")
        .arg(dir)
        .arg(done.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("status:  completed"), "{stdout}");
    assert!(!stdout.contains("damage:"), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("logbook: problem: "), "{stderr}");
    assert!(stderr.contains(&place), "{stderr}");
    assert!(stderr.contains(&format!("LSN {}", lsns[10])), "{stderr}");
    assert!(stderr.contains(&open.to_string()[..8]), "{stderr}");
    assert!(
        stderr.contains(&format!("session {done} is not one of them")),
        "{stderr}"
    );

    let out = logbook()
        .args(["replay", "--json"])
        .arg(dir)
        .arg(open.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let state: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(state["events"], 19, "every readable record is replayed");
    assert_eq!(state["damage"][0]["may_touch"], true, "{state}");
    assert_eq!(state["damage"][0]["offset"], off, "{state}");
    assert!(
        stderr.contains(&format!("session {open} is one of them")),
        "{stderr}"
    );

    let out = logbook()
        .args(["replay", "--strict"])
        .arg(dir)
        .arg(done.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with("logbook: error: "), "{stderr}");
    assert!(stderr.contains(&place), "{stderr}");
}

/// `verify` never says the tail ends cleanly above FAILED for damage in
/// the tail segment; `repair --mode absolute` says which mode it ran.
#[test]
fn verify_and_repair_name_damage_in_the_tail_segment_and_the_mode() {
    let (_tmp, dir, _) = log_fixture();
    let (_, tail_lsn) = middle_lsns(&dir);
    let (seg, off) = smash(&dir, tail_lsn);
    let out = logbook().arg("verify").arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(!stdout.contains("ends cleanly"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "tail: damaged: 1 problem(s) in the tail segment {}",
            file_name(&seg)
        )),
        "{stdout}"
    );
    for apply in [false, true] {
        let out = logbook()
            .args(["repair", "--mode", "absolute"])
            .args(apply.then_some("--apply"))
            .arg(&dir)
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        let text = if apply { &stderr } else { &stdout };
        assert!(text.contains("mode absolute cuts nothing"), "{text}");
        assert!(text.contains(&format!("at offset {off}")), "{text}");
        if !apply {
            assert!(
                stdout.starts_with(&format!(
                    "repair {} (dry run, mode absolute: nothing is changed)",
                    dir.display()
                )),
                "{stdout}"
            );
        }
    }
    // A torn tail under mode absolute: the same header, nothing cut.
    let (_tmp, dir, _) = log_fixture();
    cut_tail(&dir);
    let out = logbook()
        .args(["repair", "--mode", "absolute"])
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("mode absolute"), "{stdout}");
    assert!(stdout.contains("  refused: "), "{stdout}");
}

/// The smaller truths: usage errors on one line; `--kind a,b`; an
/// ephemeral kind that is never stored is said to be; a missing directory
/// is named plainly by `sessions` too.
#[test]
fn usage_errors_and_small_answers_are_one_plain_line() {
    let (_tmp, dir, _) = log_fixture();
    for args in [
        &["dump"][..],
        &["dump", "--bogus"],
        &["dump", "--kind", "nope"],
        &["verify", "a", "b"],
        &["replay"],
    ] {
        let out = logbook().args(args).output().unwrap();
        let stderr = texts(&out).1;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("logbook: error: "), "{args:?}: {stderr}");
    }
    let kinds = |args: &[&str]| {
        let out = logbook().arg("dump").arg(&dir).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
        texts(&out).0
    };
    assert_eq!(
        kinds(&["--kind", "token_usage,done"]),
        kinds(&["--kind", "token_usage", "--kind", "done"])
    );
    let out = logbook()
        .arg("dump")
        .arg(&dir)
        .args(["--kind", "thinking"])
        .output()
        .unwrap();
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("thinking is ephemeral"), "{stderr}");
    let nowhere = dir.join("nowhere");
    let out = logbook().arg("sessions").arg(&nowhere).output().unwrap();
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("logbook: error: {} does not exist", nowhere.display())
    );
}

/// The tail segment cut in the middle of its last record while the lock
/// file's watermark vouches for that record (a closed log, then damaged):
/// acknowledged data is damaged, not a torn tail. `repair` refuses as a
/// dry run says a refusal (`refused:`, a problem, exit 1) and names what
/// `--mode point-in-time` would cut; `--apply` changes nothing; the
/// point-in-time repair then makes the log whole again.
#[test]
fn repair_refuses_to_cut_an_acknowledged_record_and_says_how() {
    let (_tmp, dir, _) = log_fixture();
    let last = placement(&dir).pop().unwrap();
    let keep = last.offset + last.len / 2;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&last.segment)
        .unwrap();
    f.set_len(keep).unwrap();
    drop(f);
    let before = std::fs::read(&last.segment).unwrap();

    let out = logbook().arg("repair").arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("  refused: "), "{stdout}");
    assert!(stdout.contains("acknowledged data is damaged"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "--mode point-in-time would cut {} from offset {}",
            file_name(&last.segment),
            last.offset
        )),
        "{stdout}"
    );
    assert!(stderr.starts_with("logbook: problem: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = logbook()
        .args(["repair", "--apply"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", texts(&out));
    assert_eq!(
        std::fs::read(&last.segment).unwrap(),
        before,
        "nothing changed"
    );

    let out = logbook()
        .args(["repair", "--mode", "point-in-time", "--apply"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let out = logbook().arg("verify").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
}

/// Read-only commands store derived files (session indexes, `.sum`/`.run`
/// session summaries) in the log directory. `--no-derived-writes`, or
/// `LOGBOOK_NO_DERIVED_WRITES=1`, turns that off: the directory is left
/// exactly as it was, and every command prints what it prints otherwise.
/// Through a read-only bind mount (root only: root ignores permissions)
/// they are skipped without a word.
#[test]
fn derived_writes_can_be_turned_off_and_are_skipped_silently_where_the_log_is_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("log");
    std::fs::create_dir(&original).unwrap();
    let w = write_log(&original, 3, 40);
    assert!(segments(&original).len() >= 3);
    let session = w.sessions[0].to_string();
    let files = |dir: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    };
    let copy = |name: &str| -> PathBuf {
        let to = tmp.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for (file, bytes) in files(&original) {
            std::fs::write(to.join(file), bytes).unwrap();
        }
        to
    };
    let commands: [Vec<&str>; 4] = [
        vec!["sessions"],
        vec!["stats"],
        vec!["dump", "--session", &session],
        vec!["replay", &session],
    ];
    let run = |dir: &Path, command: &[&str], flag: bool, env: bool| {
        let mut cmd = logbook();
        if flag {
            cmd.arg("--no-derived-writes");
        }
        if env {
            cmd.env("LOGBOOK_NO_DERIVED_WRITES", "1");
        }
        let out = cmd
            .arg(command[0])
            .arg(dir)
            .args(&command[1..])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {stderr}");
        // The directory's name is in `stats`' output: the same for all.
        (stdout.replace(&dir.display().to_string(), "DIR"), stderr)
    };
    // Each command on a fresh copy, as it is: it stores derived files.
    let mut expected = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let dir = copy(&format!("writable{i}"));
        let before = files(&dir);
        expected.push(run(&dir, command, false, false));
        if command[0] == "sessions" {
            assert!(
                files(&dir).keys().any(|f| f.ends_with(".sum")),
                "{command:?} stored no summaries"
            );
        }
        if command[0] == "stats" {
            assert_ne!(files(&dir), before, "{command:?} stored nothing");
        }
    }
    // With the flag, or the variable: nothing written, the same output.
    for (flag, env) in [(true, false), (false, true)] {
        let dir = copy(if flag { "flag" } else { "env" });
        let before = files(&dir);
        for (command, want) in commands.iter().zip(&expected) {
            assert_eq!(&run(&dir, command, flag, env), want, "{command:?}");
        }
        assert_eq!(
            files(&dir),
            before,
            "flag {flag}, env {env}: files were written"
        );
    }
    // Through a read-only bind mount: nothing written, not a word more.
    let mnt = tmp.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let dir = copy("bound");
    // `mount --bind SRC DST`: the source goes before the target.
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&dir)
        .arg(&mnt)
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
            }
        });
    if let Err(reason) = bound {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true: the read-only case must run (CI runs as root), but {reason}"
        );
        println!("SKIPPED the read-only bind mount case: {reason} (needs root)");
        return;
    }
    let _guard = Mount(mnt.clone());
    mount(&["-o", "remount,bind,ro"], &mnt).unwrap();
    assert!(
        std::fs::write(mnt.join("probe"), b"x").is_err(),
        "not read-only"
    );
    let before = files(&dir);
    for (command, want) in commands.iter().zip(&expected) {
        assert_eq!(&run(&mnt, command, false, false), want, "{command:?}");
    }
    assert_eq!(files(&dir), before);
}

/// A stderr that cannot be written (`2>/dev/full`, `2>&1 | head -1`)
/// loses diagnostics, never the exit status: no panic (exit 101).
#[test]
fn an_unwritable_stderr_keeps_the_documented_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, 2, 4);
    let run = |args: &[&str]| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("logbook"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .status()
            .unwrap()
            .code()
    };
    let d = dir.to_str().unwrap();
    assert_eq!(run(&["sessions", d]), Some(0));
    assert_eq!(run(&["replay", d, "ffffffff"]), Some(1));
    assert_eq!(run(&["dump", "/nonexistent/logbook"]), Some(2));
    let seg = dir.join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    assert_eq!(run(&["verify", d]), Some(1));
}

/// A log whose `LOG_ID` is gone: `verify` says a writer will refuse it,
/// a writer does refuse it, `repair --new-log-id` is a dry run without
/// `--apply` and gives it a new id with it (once).
#[test]
fn a_lost_log_id_is_said_refused_and_given_on_purpose() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, 1, 3);
    let exported = tmp.path().join("all.jsonl");
    let out = logbook().arg("export").arg(&dir).output().unwrap();
    std::fs::write(&exported, &out.stdout).unwrap();
    std::fs::remove_file(dir.join("LOG_ID")).unwrap();
    let out = logbook().arg("verify").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LOG_ID is missing") && err.contains("--new-log-id"),
        "{err}"
    );
    let out = logbook()
        .args(["import", "--new-ids"])
        .arg(&dir)
        .arg(&exported)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--new-log-id"));
    let out = logbook()
        .arg("repair")
        .arg(&dir)
        .arg("--new-log-id")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!dir.join("LOG_ID").exists(), "a dry run");
    let out = logbook()
        .arg("repair")
        .arg(&dir)
        .args(["--new-log-id", "--apply"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logbook_wal::log_id(&dir).is_ok());
    let again = logbook()
        .arg("repair")
        .arg(&dir)
        .args(["--new-log-id", "--apply"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}
