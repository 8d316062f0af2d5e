//! Keys through the CLI: `logbook key new` and `logbook key id`, which key
//! of `--key-file` and `LOGBOOK_KEY` is current, colliding key ids, and a
//! writer given a key that matches none of the log's segments.

mod common;

use std::path::Path;

use common::*;

/// Two different keys whose 32-bit ids collide (both `749fe283`): the
/// little-endian numbers 5211 and 6094 in the first eight of 32 bytes,
/// found by a search over such keys. `logbook_wal`'s crypto tests check
/// that they still collide.
const COLLIDING: [&str; 2] = [
    "5b14000000000000000000000000000000000000000000000000000000000000",
    "ce17000000000000000000000000000000000000000000000000000000000000",
];

fn write_key(path: &Path, hex: &str) {
    std::fs::write(path, format!("{hex}\n")).unwrap();
}

/// Import the events of a clear log of 2 sessions into `enc`, encrypted
/// with the key in `key`.
fn encrypted_log(tmp: &Path, enc: &Path, key: &Path) {
    let clear = tmp.join("clear");
    write_log(&clear, 2, 5);
    let exported = logbook().arg("export").arg(&clear).output().unwrap();
    let file = tmp.join("all.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let out = logbook()
        .arg("import")
        .arg("--create")
        .arg(enc)
        .arg(&file)
        .arg("--key-file")
        .arg(key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
}

/// Every file of a directory and its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Two different keys with one id: refused, naming both sources, not one
/// of them dropped (which made the log unreadable with the dropped key,
/// or, worse, written with it unnoticed).
#[test]
fn key_files_whose_ids_collide_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.key"), tmp.path().join("b.key"));
    write_key(&a, COLLIDING[0]);
    write_key(&b, COLLIDING[1]);
    let enc = tmp.path().join("enc");
    encrypted_log(tmp.path(), &enc, &b);
    let out = logbook()
        .arg("sessions")
        .arg(&enc)
        .arg("--key-file")
        .arg(&a)
        .arg("--key-file")
        .arg(&b)
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("749fe283"), "{stderr}");
    assert!(stderr.contains(&*a.to_string_lossy()), "{stderr}");
    assert!(stderr.contains(&*b.to_string_lossy()), "{stderr}");
    // With LOGBOOK_KEY as the second source.
    let out = logbook()
        .arg("sessions")
        .arg(&enc)
        .arg("--key-file")
        .arg(&a)
        .env("LOGBOOK_KEY", COLLIDING[1])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LOGBOOK_KEY"), "{stderr}");
    assert!(!stderr.contains(COLLIDING[1]), "never the key: {stderr}");
    // One key given twice is one key.
    let out = logbook()
        .arg("sessions")
        .arg(&enc)
        .arg("--key-file")
        .arg(&b)
        .arg("--key-file")
        .arg(&b)
        .env("LOGBOOK_KEY", COLLIDING[1])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
}

/// A writer given a key that matches none of the log's encrypted segments
/// refuses, naming a segment and its key id, and changes nothing (it used
/// to start a new segment under the unrelated key).
#[test]
fn a_writer_with_an_unrelated_key_refuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, other) = (tmp.path().join("log.key"), tmp.path().join("other.key"));
    write_key(&key, &"42".repeat(32));
    write_key(&other, &"43".repeat(32));
    let enc = tmp.path().join("enc");
    encrypted_log(tmp.path(), &enc, &key);
    let file = tmp.path().join("all.jsonl");
    let before = snapshot(&enc);
    let out = logbook()
        .arg("import")
        .arg("--create")
        .arg(&enc)
        .arg(&file)
        .arg("--key-file")
        .arg(&other)
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("00000000000000000001.wal"), "{stderr}");
    let id = |path: &Path| {
        logbook_wal::Key::from_file(path)
            .map(|k| format!("{:08x}", k.id()))
            .unwrap()
    };
    // Named: the log's key (import reads the log first, for sessions it
    // already has, and the key given opens none of it).
    assert!(stderr.contains(&id(&key)), "{stderr}");
    assert_eq!(snapshot(&enc), before, "nothing changed");
    // Rotation: the new key first, the old one kept for reading.
    let out = logbook()
        .arg("import")
        .arg("--create")
        .arg("--new-ids")
        .arg(&enc)
        .arg(&file)
        .arg("--key-file")
        .arg(&other)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    assert_eq!(segments(&enc).len(), 2, "the new key starts a segment");
    // Now the new key is the tail's: a writer goes on with it (the old
    // one still given, to read the log's older segment: `import` reads the
    // log for the sessions it already has).
    let out = logbook()
        .arg("import")
        .arg("--create")
        .arg("--new-ids")
        .arg(&enc)
        .arg(&file)
        .arg("--key-file")
        .arg(&other)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
}

/// The key id in a segment's header (bytes 32..36), if it is encrypted.
fn segment_key_id(segment: &Path) -> Option<String> {
    let bytes = std::fs::read(segment).unwrap();
    let flags = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    (flags & 1 == 1).then(|| {
        format!(
            "{:08x}",
            u32::from_le_bytes(bytes[32..36].try_into().unwrap())
        )
    })
}

fn key_id(file: &Path) -> String {
    let out = logbook().args(["key", "id"]).arg(file).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.len(), 9, "8 hex digits and a newline: {stdout}");
    stdout.trim_end().to_owned()
}

/// `key new` writes 64 hex digits and a newline with mode 0600, prints
/// the id `key id` prints, refuses an existing file unless `--force`, and
/// the key encrypts a log.
#[test]
fn key_new_writes_a_private_key_file_and_key_id_names_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("log.key");
    let out = logbook().args(["key", "new"]).arg(&file).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let id = stdout.trim_end().to_owned();
    assert_eq!(id.len(), 8, "{stdout}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n'));
    assert!(!stdout.contains(text.trim_end()), "never prints the key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert_eq!(key_id(&file), id);
    // Refused without --force: the old key is kept.
    let out = logbook().args(["key", "new"]).arg(&file).output().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let out = logbook()
        .args(["key", "new", "--force"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let new_id = texts(&out).0.trim_end().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(key_id(&file), new_id);
    // The key file encrypts a log; its segment names the key.
    let enc = tmp.path().join("enc");
    encrypted_log(tmp.path(), &enc, &file);
    assert_eq!(segment_key_id(&segments(&enc)[0]), Some(new_id));
    // Errors name the file, exit 2.
    for args in [&["key", "id"][..], &["key", "new"]] {
        let missing = tmp.path().join("no-such-dir").join("x.key");
        let out = logbook().args(args).arg(&missing).output().unwrap();
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("logbook: error: "), "{stderr}");
        assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");
    }
    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "c3".repeat(31)).unwrap();
    let out = logbook().args(["key", "id"]).arg(&bad).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("bad.key"), "{stderr}");
    assert!(!stderr.contains("c3c3"), "never the key: {stderr}");
    // A raw 32-byte key file names the same key as its hex form.
    let raw = tmp.path().join("raw.key");
    let hex = tmp.path().join("hex.key");
    std::fs::write(&raw, [0xa5u8; 32]).unwrap();
    std::fs::write(&hex, "A5".repeat(32)).unwrap();
    assert_eq!(key_id(&raw), key_id(&hex));
}

/// With both, the first `--key-file` is current and `LOGBOOK_KEY` only
/// reads; `LOGBOOK_KEY` alone is current.
#[test]
fn the_first_key_file_is_current_and_logbook_key_comes_after_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, env) = (tmp.path().join("file.key"), "5e".repeat(32));
    write_key(&file, &"f1".repeat(32));
    let env_file = tmp.path().join("env.key");
    write_key(&env_file, &env);
    let clear = tmp.path().join("clear");
    write_log(&clear, 1, 3);
    let exported = tmp.path().join("all.jsonl");
    let out = logbook().arg("export").arg(&clear).output().unwrap();
    std::fs::write(&exported, &out.stdout).unwrap();
    let import = |dir: &Path, with_file: bool| {
        let mut cmd = logbook();
        cmd.arg("import").arg("--create").arg(dir).arg(&exported);
        if with_file {
            cmd.arg("--key-file").arg(&file);
        }
        let out = cmd.env("LOGBOOK_KEY", &env).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    };
    let both = tmp.path().join("both");
    import(&both, true);
    assert_eq!(segment_key_id(&segments(&both)[0]), Some(key_id(&file)));
    let env_only = tmp.path().join("env-only");
    import(&env_only, false);
    assert_eq!(
        segment_key_id(&segments(&env_only)[0]),
        Some(key_id(&env_file))
    );
    // A reader given both reads either log.
    for dir in [&both, &env_only] {
        let out = logbook()
            .arg("sessions")
            .arg(dir)
            .arg("--key-file")
            .arg(&file)
            .env("LOGBOOK_KEY", &env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    }
}

/// `key new` and `key id` are in the completions and the man pages (which
/// clap generates from the command line).
#[test]
fn key_commands_are_in_completions_and_man_pages() {
    let out = logbook().args(["completions", "bash"]).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for word in [
        "logbook__subcmd__key__subcmd__new",
        "logbook__subcmd__key__subcmd__id",
        "--force",
    ] {
        assert!(stdout.contains(word), "{word}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = logbook()
        .args(["man", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let page = std::fs::read_to_string(tmp.path().join("logbook-key.1")).unwrap();
    assert!(page.contains(".TH logbook-key 1"), "{page}");
    for word in ["logbook\\-key\\-new(1)", "logbook\\-key\\-id(1)", "0600"] {
        assert!(page.contains(word), "{word}: {page}");
    }
    // The pages it refers to are there.
    let new = std::fs::read_to_string(tmp.path().join("logbook-key-new.1")).unwrap();
    assert!(new.contains(".TH logbook-key-new 1"), "{new}");
    assert!(new.contains("\\-\\-force"), "{new}");
    assert!(new.contains("logbook key new"), "{new}");
    assert!(tmp.path().join("logbook-key-id.1").exists());
}

/// `stats` names each segment's key (or `clear`), in the table and in
/// JSON: how an operator checks that no segment needs a key before
/// retiring it.
#[test]
fn stats_names_each_segments_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.key"), tmp.path().join("new.key"));
    write_key(&old, &"0a".repeat(32));
    write_key(&new, &"0b".repeat(32));
    let log = tmp.path().join("log");
    write_log(&log, 1, 3);
    let exported = tmp.path().join("all.jsonl");
    let out = logbook().arg("export").arg(&log).output().unwrap();
    std::fs::write(&exported, &out.stdout).unwrap();
    for keys in [&[&old][..], &[&new, &old]] {
        let mut cmd = logbook();
        cmd.arg("import")
            .arg("--create")
            .arg("--new-ids")
            .arg(&log)
            .arg(&exported);
        for key in keys {
            cmd.arg("--key-file").arg(key);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    }
    let (old_id, new_id) = (key_id(&old), key_id(&new));
    let stats = |json: bool| {
        let mut cmd = logbook();
        cmd.arg("stats").arg(&log);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .arg("--key-file")
            .arg(&new)
            .arg("--key-file")
            .arg(&old)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
        texts(&out).0
    };
    let v: serde_json::Value = serde_json::from_str(&stats(true)).unwrap();
    let ids: Vec<_> = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, [None, Some(old_id.clone()), Some(new_id.clone())]);
    let text = stats(false);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(".wal")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].contains(" clear "), "{text}");
    assert!(rows[1].contains(&old_id), "{text}");
    assert!(rows[2].contains(&new_id), "{text}");
}
