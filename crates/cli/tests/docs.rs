//! The documentation is checked, not reread: every `logbook …` command
//! line of README.md and docs/operations.md runs, in order, on a demo log
//! (and the copies and damage the docs make of it), and exits with the
//! status the docs give it (`(exit status N)` after its output; 0 when
//! none is given). Ids, segment names and times the docs took from their
//! own demo run are replaced by this run's. The man pages the docs list
//! are the ones `logbook man --dir` writes.
//!
//! A line that needs what a test cannot build here (a NATS server, when
//! none is installed; a read-only mount, when not root) is skipped with a
//! message, except under `CI=true`.

mod common;
#[path = "../../fleet/tests/common/mod.rs"]
mod nats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// One documented command line.
#[derive(Debug, Clone)]
struct DocLine {
    /// `README.md:24`.
    place: String,
    /// As written (after `$ `, without a trailing `# comment`).
    text: String,
    /// The exit status the docs give it.
    status: i32,
    /// The output the docs show for it.
    output: Vec<String>,
}

/// The command lines of a markdown file: in README.md, the `logbook` and
/// shell lines of ```sh blocks; in operations.md, the `$ ` lines of every
/// block, with the output and `(exit status N)` after them.
fn documented(file: &str, text: &str) -> Vec<DocLine> {
    let mut lines = Vec::new();
    let mut block: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(lang) = line.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(lang.trim().to_owned()),
            };
            continue;
        }
        let Some(lang) = &block else { continue };
        let command = if let Some(c) = line.strip_prefix("$ ") {
            Some(c)
        } else if lang == "sh" && line.starts_with("logbook ") {
            Some(line)
        } else {
            None
        };
        match command {
            Some(c) => lines.push(DocLine {
                place: format!("{file}:{}", i + 1),
                text: strip_comment(c),
                status: 0,
                output: Vec::new(),
            }),
            None => {
                if let Some(last) = lines.last_mut() {
                    if let Some(n) = line
                        .strip_prefix("(exit status ")
                        .and_then(|r| r.strip_suffix(')'))
                    {
                        last.status = n.parse().unwrap();
                    } else if !line.is_empty() {
                        last.output.push(line.to_owned());
                    }
                }
            }
        }
    }
    lines
}

/// A command without its trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let bytes: Vec<char> = line.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(*c),
            (Some(q), c) if q == *c => quote = None,
            (None, '#') if i > 0 && bytes[i - 1] == ' ' => {
                return bytes[..i].iter().collect::<String>().trim_end().to_owned();
            }
            _ => {}
        }
    }
    line.trim_end().to_owned()
}

/// What this run's demo log holds, for the substitutions.
struct Demo {
    /// The session the docs name by a short id: a completed one with tool
    /// calls that started early ("Refactor the config loader").
    session: String,
    /// The session still interrupted ("Migrate the billing tables").
    interrupted: String,
    /// The second segment's file name, and the tail's.
    second: String,
    tail: String,
    /// Every session id.
    all: Vec<String>,
    /// A prefix that two sessions share.
    shared_prefix: String,
    /// Two epoch times (seconds, as text) around the first `done` record.
    done_since: String,
    /// The heads the docs show of `./secret`, and that log's real ones.
    heads: Vec<(&'static str, String)>,
    done_until: String,
}

fn logbook_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("logbook")
}

fn sh(cwd: &Path, line: &str, timeout: Option<Duration>) -> (Option<i32>, String, String) {
    let bin_dir = logbook_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = assert_cmd::Command::new("bash");
    cmd.args(["-o", "pipefail", "-c", line])
        .current_dir(cwd)
        .env("PATH", path)
        .env("HOME", cwd.join("home"))
        .env_remove("LOGBOOK_KEY")
        .env_remove("LOGBOOK_NO_DERIVED_WRITES");
    cmd.timeout(timeout.unwrap_or(Duration::from_secs(60)));
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(cwd: &Path, line: &str) -> Vec<Value> {
    let (code, out, err) = sh(cwd, line, None);
    assert_eq!(code, Some(0), "{line}: {err}");
    common::json_lines(&out)
}

fn demo(cwd: &Path) -> Demo {
    let sessions = |cwd: &Path| json(cwd, "logbook sessions ./logbook-demo --json");
    let mut listed = sessions(cwd);
    // Forks until two sessions share a first character: the docs' `--session 0`
    // names two sessions.
    let by_title = |listed: &[Value], title: &str| -> String {
        listed
            .iter()
            .find(|s| s["title"] == title)
            .unwrap_or_else(|| panic!("no session {title:?}"))["session"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let session = by_title(&listed, "Refactor the config loader");
    let interrupted = by_title(&listed, "Migrate the billing tables");
    let shared = |listed: &[Value]| -> Option<String> {
        let ids: Vec<&str> = listed
            .iter()
            .map(|s| s["session"].as_str().unwrap())
            .collect();
        ids.iter().enumerate().find_map(|(i, a)| {
            ids[i + 1..]
                .iter()
                .any(|b| b[..1] == a[..1])
                .then(|| a[..1].to_owned())
        })
    };
    // And at least three segments: the docs name a third one. The demo's
    // sessions have random ids and its records vary in size, so neither is
    // given; each fork adds a session and its copied records.
    let segment_count = |cwd: &Path| {
        json(cwd, "logbook stats ./logbook-demo --json")[0]["segments"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let mut tries = 0;
    while shared(&listed).is_none() || segment_count(cwd) < 3 {
        tries += 1;
        assert!(
            tries < 40,
            "no shared prefix or fewer than three segments after {tries} forks"
        );
        let (code, _, err) = sh(
            cwd,
            &format!("logbook fork ./logbook-demo {session} --at 20"),
            None,
        );
        assert_eq!(code, Some(0), "{err}");
        listed = sessions(cwd);
    }
    let stats = &json(cwd, "logbook stats ./logbook-demo --json")[0];
    let segments: Vec<String> = stats["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_owned())
        .collect();
    assert!(segments.len() >= 3, "{stats}");
    let done = json(cwd, "logbook dump ./logbook-demo --kind done --json");
    let ts = |v: &Value| -> f64 {
        let t = v["ts"].as_str().unwrap();
        humantime::parse_rfc3339(t)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let first = ts(&done[0]);
    Demo {
        session,
        interrupted,
        second: segments[1].clone(),
        tail: segments.last().unwrap().clone(),
        all: listed
            .iter()
            .map(|s| s["session"].as_str().unwrap().to_owned())
            .collect(),
        shared_prefix: shared(&listed).unwrap(),
        heads: Vec::new(),
        done_since: format!("@{:.6}", first - 0.000_001),
        done_until: format!("@{:.6}", first + 0.000_001),
    }
}

/// A documented line with this run's ids, names and places.
fn substitute(line: &str, d: &Demo, nats: Option<&str>, snapshot: Option<&Path>) -> String {
    let mut s = line.to_owned();
    s = s.replace("/var/lib/agent/log", "./logbook-demo");
    s = s.replace("~/", "./home/");
    if let Some(url) = nats {
        s = s.replace("nats://10.0.0.5:4222", url);
    }
    if let Some(mnt) = snapshot {
        s = s.replace("/mnt/snapshot/log", &mnt.display().to_string());
    }
    for name in ["00000000000000000037.wal", "00000000000000000038.wal"] {
        s = s.replace(name, &d.second);
    }
    s = s.replace("00000000000000000075.wal", &d.tail);
    s = s.replace("--session 0 ", &format!("--session {} ", d.shared_prefix));
    if s.ends_with("--session 0") {
        s = format!("{}{}", s.strip_suffix('0').unwrap(), d.shared_prefix);
    }
    for (documented, real) in &d.heads {
        s = s.replace(documented, real);
    }
    s = s.replace(
        "--since @1795977099.79 --until @1795977099.81",
        &format!("--since {} --until {}", d.done_since, d.done_until),
    );
    // `ID`, a session: for `resume`, the one a crash cut off.
    let resume = s.starts_with("logbook resume");
    let words: Vec<String> = s
        .split(' ')
        .map(|w| {
            let hex8 = w.len() == 8 && w.chars().all(|c| c.is_ascii_hexdigit());
            let known = d.all.iter().any(|id| id.starts_with(w));
            if w == "ID" && resume {
                d.interrupted.clone()
            } else if w == "ID" {
                d.session.clone()
            } else if hex8 && !known && w != "ffffffff" && !w.chars().all(|c| c == 'f') {
                d.session[..8].to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// `./X` copied afresh from the demo log when a line copies it (`cp -r
/// ./logbook-demo ./X`): the docs mean a fresh copy each time.
fn fresh_copies(cwd: &Path, line: &str) {
    if let Some(rest) = line.strip_prefix("cp -r ./logbook-demo ./") {
        let name: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        let _ = std::fs::remove_dir_all(cwd.join(&name));
    }
}

#[test]
fn every_documented_command_line_runs_with_its_documented_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let mut lines = documented("README.md", &readme);
    lines.extend(documented("docs/operations.md", &operations));
    assert!(lines.len() > 80, "{} lines", lines.len());

    // The demo log, and what the docs assume beside it.
    let (code, _, err) = sh(cwd, "logbook demo", Some(Duration::from_secs(120)));
    assert_eq!(code, Some(0), "{err}");
    let mut d = demo(cwd);
    for dir in [
        "empty",
        "photos",
        "home/.local/share/bash-completion/completions",
        "home/.zfunc",
        "home/.config/fish/completions",
        "home/.local/share/man/man1",
    ] {
        std::fs::create_dir_all(cwd.join(dir)).unwrap();
    }
    std::fs::write(cwd.join("photos/cat.jpg"), b"\xff\xd8\xff").unwrap();
    std::fs::write(cwd.join("log.key"), "42".repeat(32)).unwrap();
    // `./secret`: an encrypted log of 90 records under ./log.key, for the
    // chain and head examples; the heads they show become its own.
    d.heads = secret_logs(cwd);
    rotated_log(cwd);
    // `./bad` and `./mid`: copies the docs damage (`./bad` is damaged
    // before its first use, as "Damage in a sealed segment" does).
    for copy in ["bad", "mid", "live"] {
        let (code, _, err) = sh(cwd, &format!("cp -r ./logbook-demo ./{copy}"), None);
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, _, err) = sh(
        cwd,
        r#"printf "\xde\xad\xbe\xef" | dd of=./bad/00000000000000000001.wal bs=1 seek=1000 conv=notrunc status=none"#,
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    // `./live`: a live writer holds it for the whole test.
    let _writer = logbook_wal::Wal::open(cwd.join("live"), logbook_wal::WalOptions::default())
        .expect("a writer on ./live");
    // A NATS server for the fleet lines, if there is one.
    let server = nats::nats_server().map(|bin| nats::Server::single(&bin, cwd));
    let url = server.as_ref().map(nats::Server::url);
    if let Some(url) = &url {
        let (code, _, err) = sh(
            cwd,
            &format!("logbook ship ./logbook-demo --to {url}"),
            None,
        );
        assert_eq!(code, Some(0), "{err}");
    }
    // `/mnt/snapshot/log`: a read-only bind mount of a copy, if we may.
    let snapshot = read_only_copy(cwd);
    let ci = std::env::var("CI").as_deref() == Ok("true");

    let mut failures = Vec::new();
    let mut ran = 0;
    for line in &lines {
        let text = &line.text;
        let skip = if text.starts_with("cargo ") {
            Some("cargo itself (the tests run it)")
        } else if text == "logbook demo" {
            Some("run first, to make ./logbook-demo")
        } else if text.contains("nats://") && url.is_none() {
            Some("no nats-server installed")
        } else if text.contains("/mnt/snapshot/") && snapshot.is_none() {
            Some("no read-only bind mount (not root)")
        } else {
            None
        };
        if let Some(why) = skip {
            assert!(
                !ci || why.starts_with("cargo") || why.starts_with("run first"),
                "{}: {text}: skipped under CI=true: {why}",
                line.place
            );
            eprintln!("skipped {}: {text} ({why})", line.place);
            continue;
        }
        let run = substitute(
            text,
            &d,
            url.as_deref(),
            snapshot.as_ref().map(|s| s.0.as_path()),
        );
        fresh_copies(cwd, &run);
        let follows = run.contains("--follow");
        let (code, out, err) = sh(cwd, &run, follows.then_some(Duration::from_secs(3)));
        ran += 1;
        if follows && code.is_none() {
            // Still following when stopped: it ran.
            continue;
        }
        if code != Some(line.status) {
            failures.push(format!(
                "{}: `{text}` (run as `{run}`) exited {code:?}, the docs say {}\n{out}{err}",
                line.place, line.status
            ));
        }
        if run.starts_with("logbook man --dir ./man1") && code == Some(0) {
            // The pages the docs list are the pages it writes.
            let written: Vec<&str> = out.lines().collect();
            if written != line.output {
                failures.push(format!(
                    "{}: `logbook man --dir ./man1` writes {written:?}, the docs list {:?}",
                    line.place, line.output
                ));
            }
        }
    }
    assert!(ran > 60, "only {ran} lines ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The encrypted logs of the chain examples, under the key of
/// `./log.key`: `./secret` (90 records), `./backup` (a copy of it taken at
/// LSN 76) and `./tampered` (a copy at LSN 76 with one ciphertext bit of
/// LSN 28 flipped, its CRC fixed). Returns the docs' example heads at LSN
/// 76 and 90, with this log's own.
fn secret_logs(cwd: &Path) -> Vec<(&'static str, String)> {
    let ring = std::sync::Arc::new(logbook_wal::KeyRing::new(
        logbook_wal::Key::from_hex(&"42".repeat(32)).unwrap(),
    ));
    let dir = cwd.join("secret");
    let append = |from: u64, to: u64| {
        let wal = logbook_wal::Wal::open(
            &dir,
            logbook_wal::WalOptions {
                segment_size: 4096,
                encryption: Some(ring.clone()),
                ..logbook_wal::WalOptions::default()
            },
        )
        .unwrap();
        for i in from..to {
            let event = logbook_bus::SessionEvent::UserMessage(format!("secret {i}"));
            wal.append(uuid::Uuid::from_u128(u128::from(i % 3) + 1), &event)
                .unwrap();
        }
        wal.close().unwrap();
    };
    append(0, 76);
    for copy in ["backup", "tampered"] {
        let (code, _, err) = sh(cwd, &format!("cp -r ./secret ./{copy}"), None);
        assert_eq!(code, Some(0), "{err}");
    }
    append(76, 90);
    let mut reader = logbook_wal::Reader::open(&dir)
        .unwrap()
        .with_keys(ring.clone());
    let mut heads = Vec::new();
    while let Some(r) = reader.next_ref() {
        let lsn = r.unwrap().lsn;
        if lsn == 76 || lsn == 90 {
            let (l, tag) = reader.chain_head().unwrap();
            let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
            heads.push(format!("{l}:{hex}"));
        }
    }
    // One bit of LSN 28's ciphertext, the frame's CRC fixed.
    let record = logbook_wal::Reader::open(cwd.join("tampered"))
        .unwrap()
        .with_keys(ring)
        .find(|r| r.as_ref().is_ok_and(|r| r.lsn == 28))
        .unwrap()
        .unwrap();
    let mut bytes = std::fs::read(&record.segment).unwrap();
    let at = usize::try_from(record.offset).unwrap();
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 48 + 30] ^= 1;
    let crc = crc32fast::hash(&bytes[at + 8..at + 48 + len]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&record.segment, bytes).unwrap();
    vec![
        ("76:f1447eda1afda1b83c9f91667145f4c2", heads[0].clone()),
        ("90:72e1d2df1059977587217535d5c1ee1b", heads[1].clone()),
    ]
}

/// `./rotated`: written under `./key1.key`, then rotated to `./key2.key`
/// (the key section's examples).
fn rotated_log(cwd: &Path) {
    let (one, two) = ("0a".repeat(32), "0b".repeat(32));
    std::fs::write(cwd.join("key1.key"), &one).unwrap();
    std::fs::write(cwd.join("key2.key"), &two).unwrap();
    let key = |hex: &str| logbook_wal::Key::from_hex(hex).unwrap();
    for keys in [vec![key(&one)], vec![key(&two), key(&one)]] {
        let ring = logbook_wal::KeyRing::from_keys(keys).unwrap();
        let wal = logbook_wal::Wal::open(
            cwd.join("rotated"),
            logbook_wal::WalOptions {
                encryption: Some(std::sync::Arc::new(ring)),
                ..logbook_wal::WalOptions::default()
            },
        )
        .unwrap();
        for i in 0..10u64 {
            let event = logbook_bus::SessionEvent::UserMessage(format!("rotated {i}"));
            wal.append(uuid::Uuid::from_u128(7), &event).unwrap();
        }
        wal.close().unwrap();
    }
}

/// A read-only bind mount of a copy of the demo log, unmounted on drop.
struct Snapshot(PathBuf);

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn read_only_copy(cwd: &Path) -> Option<Snapshot> {
    // With a torn tail, for `repair --apply` to have something to refuse.
    let (code, _, err) = sh(
        cwd,
        "cp -r ./logbook-demo ./snapshot-src && rm ./snapshot-src/LOCK && mkdir ./snapshot",
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let last = &json(
        cwd,
        "logbook dump ./snapshot-src --physical --json --last 1",
    )[0];
    let tail = cwd
        .join("snapshot-src")
        .join(last["segment"].as_str().unwrap());
    let end = last["offset"].as_u64().unwrap() + last["frame_len"].as_u64().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&tail).unwrap();
    f.set_len(end - 10).unwrap();
    let mnt = cwd.join("snapshot");
    let bound = Command::new("mount")
        .arg("--bind")
        .arg(cwd.join("snapshot-src"))
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !bound {
        return None;
    }
    let snapshot = Snapshot(mnt.clone());
    let ro = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    ro.then_some(snapshot)
}

#[test]
fn the_documented_lines_are_found() {
    // The parser itself: a `$ ` line, its output, its exit status.
    let text = "```text\n$ logbook verify ./x # note\nsome output\n(exit status 1)\n$ ls\n```\n";
    let lines = documented("t.md", text);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].text, "logbook verify ./x");
    assert_eq!((lines[0].status, lines[0].output.len()), (1, 1));
    assert_eq!(lines[1].status, 0);
    assert_eq!(
        strip_comment("logbook x | jq -c '{a # b}'   # c"),
        "logbook x | jq -c '{a # b}'"
    );
}
