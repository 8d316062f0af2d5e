//! Regression tests for the second review's durability findings (issue 21,
//! "The review's findings", items 2 to 5), one or more per finding. Each
//! states the defect and the contract the fixed code keeps; each failed on
//! the code it was written against.
//!
//! The errno cases run on the simulated file system; the real read-only
//! bind mount needs root (CI runs as root with `CI=true`: there a refused
//! mount fails the test, elsewhere it is skipped with the reason printed).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Acked, event, read_all, read_all_fs, session};
use logbook_wal::fs::Fs;
use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{
    Lsn, Reader, SyncPolicy, Wal, WalError, WalOptions, is_locked, is_locked_with_fs,
};

const DIR: &str = "/log";
const LOCK: &str = "/log/LOCK";

fn sim(fs: &SimFs) -> Arc<dyn Fs> {
    Arc::new(fs.clone())
}

/// Options under which every append is written to the file, never fsynced
/// (until `sync()`).
fn unsynced() -> WalOptions {
    WalOptions {
        segment_size: 16 * 1024,
        sync: SyncPolicy::Never,
        buffer_bytes: 1,
        ..WalOptions::default()
    }
}

fn open(fs: &SimFs, opts: WalOptions) -> Result<Wal, WalError> {
    Wal::open_with_fs(sim(fs), DIR, opts)
}

/// The default options, with segments small enough for the simulation.
fn always() -> WalOptions {
    WalOptions {
        segment_size: 16 * 1024,
        ..WalOptions::default()
    }
}

/// The LSNs a reader of the simulated log returns now (any error fails).
fn reader_lsns(fs: &SimFs, context: &str) -> Vec<Lsn> {
    let mut reader = Reader::open_with_fs(sim(fs), DIR)
        .unwrap_or_else(|e| panic!("{context}: opening a reader: {e}"));
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        out.push(
            r.unwrap_or_else(|e| panic!("{context}: the reader reported {e}"))
                .lsn,
        );
    }
    out
}

/// A writer appended LSNs 1..=3 and fsynced them (acknowledged), then
/// wrote `unsynced` more records without fsyncing them; it is still live.
fn live_writer_past_its_durable_point(fs: &SimFs, unsynced_records: u64) -> (Wal, Acked) {
    let wal = open(fs, unsynced()).unwrap_or_else(|e| panic!("opening the log: {e}"));
    let mut acked = Acked::new();
    for i in 1..=3 {
        let lsn = wal.append(session(1), &event(i)).unwrap();
        acked.insert(lsn, (session(1), event(i)));
    }
    assert_eq!(wal.sync().unwrap(), 3);
    for i in 0..unsynced_records {
        wal.append(session(2), &event(100 + i)).unwrap();
    }
    (wal, acked)
}

/// After a power cut, `open` succeeds and the log holds every `acked`
/// record at its LSN.
fn power_cut_keeps(
    fs: &SimFs,
    acked: &Acked,
    context: &str,
) -> Vec<(Lsn, uuid::Uuid, logbook_bus::SessionEvent)> {
    fs.power_cut();
    let wal =
        open(fs, always()).unwrap_or_else(|e| panic!("{context}: open after the power cut: {e}"));
    drop(wal);
    let records = read_all_fs(sim(fs), Path::new(DIR));
    for (lsn, want) in acked {
        let got = records
            .iter()
            .find(|r| r.0 == *lsn)
            .map(|r| (r.1, r.2.clone()));
        assert_eq!(
            got.as_ref(),
            Some(want),
            "{context}: acknowledged LSN {lsn} lost"
        );
    }
    records
}

/// Open after a crash, where the first attempt may fail because the fsync
/// fault armed for the next fsync lands on recovery's own fsync.
fn reopen_after_fault(fs: &SimFs, context: &str) -> Wal {
    match open(fs, always()) {
        Ok(wal) => wal,
        Err(e) => {
            assert!(e.to_string().contains("fsync"), "{context}: {e}");
            open(fs, always()).unwrap_or_else(|e| panic!("{context}: the second open: {e}"))
        }
    }
}

/// Finding 2: a reader fsynced the tail of a log no writer held and, when
/// that fsync failed (EIO), logged it and went on. The pages were then
/// clean in the cache though never written, so a second reader's fsync
/// "succeeded", it returned LSNs 1..5, `open` adopted them and acknowledged
/// 6, and after a power cut `open` refused: "LSN 4 is corrupt …
/// acknowledged data is damaged". Readers never fsync now: they return
/// only what the watermark or a sync mark vouches for (a lower bound of
/// what recovery keeps), and the next `open` meets the failed writeback
/// itself, cuts the unvouched tail and poisons the watermark.
#[test]
fn r2_a_reader_s_failed_fsync_never_leads_open_past_the_unvouched_tail() {
    let fs = SimFs::new(2);
    let (wal, mut acked) = live_writer_past_its_durable_point(&fs, 2);
    std::mem::forget(wal); // the writer dies: nothing closed, 4 and 5 never fsynced
    fs.crash();
    let syncs = fs.op_count(Op::Sync);
    // The next fsync of the segment, by any process, fails.
    fs.fail_after(Op::Sync, 0, libc::EIO);
    let first = reader_lsns(&fs, "first reader");
    let second = reader_lsns(&fs, "second reader");
    let readers_synced = fs.op_count(Op::Sync) - syncs;

    let wal = reopen_after_fault(&fs, "open after the readers");
    let lsn = wal.append(session(3), &event(9)).unwrap();
    acked.insert(lsn, (session(3), event(9)));
    drop(wal);
    let records = power_cut_keeps(&fs, &acked, "finding 2");
    for (who, seen) in [("first", &first), ("second", &second)] {
        for lsn in seen.iter() {
            assert!(
                records.iter().any(|r| r.0 == *lsn),
                "the {who} reader returned LSN {lsn}, which recovery did not keep"
            );
        }
        assert_eq!(
            seen,
            &[1, 2, 3],
            "the {who} reader: only the vouched records"
        );
    }
    assert_eq!(
        readers_synced, 0,
        "readers fsynced the log {readers_synced} times"
    );
}

/// Finding 3: with the boot id unreadable (zeros), `open` took a failed
/// recovery fsync for one in another boot and cut nothing; the next `open`
/// adopted the never-written pages, acknowledged a record past them, and a
/// power cut then made it refuse ("acknowledged data is damaged"). An
/// unknown boot id (the current one, or the one in the watermark) now
/// counts as "possibly this boot": the unvouched tail is cut and the
/// watermark poisoned.
#[test]
fn r3_an_unknown_boot_id_counts_as_possibly_this_boot() {
    for (writer_unknown, recovery_unknown) in [(true, true), (true, false), (false, true)] {
        let what = format!(
            "boot id of the writer {}, of recovery {}",
            if writer_unknown { "unknown" } else { "known" },
            if recovery_unknown { "unknown" } else { "known" }
        );
        let fs = SimFs::new(3);
        fs.set_boot_id_unknown(writer_unknown);
        let (wal, mut acked) = live_writer_past_its_durable_point(&fs, 2);
        std::mem::forget(wal);
        fs.crash();
        fs.set_boot_id_unknown(recovery_unknown);
        fs.fail_after(Op::Sync, 0, libc::EIO);
        let e = open(&fs, always()).unwrap_err();
        assert!(e.to_string().contains("fsync"), "{what}: {e}");
        let wal = open(&fs, always())
            .unwrap_or_else(|e| panic!("{what}: open after the failed recovery: {e}"));
        let continues = wal.last_lsn();
        let lsn = wal.append(session(3), &event(9)).unwrap();
        acked.insert(lsn, (session(3), event(9)));
        drop(wal);
        power_cut_keeps(&fs, &acked, &what);
        assert_eq!(continues, 3, "{what}: the unvouched tail is cut");
    }
}

/// The other side of finding 3's trade-off: in another boot, with both boot
/// ids known, a failed recovery fsync still cuts nothing, not even an
/// acknowledged record that the surviving watermark and no sync mark vouch
/// for (the watermark is not fsynced at every batch).
#[test]
fn r3_in_another_known_boot_a_failed_recovery_fsync_cuts_nothing() {
    let mut unvouched = 0;
    for seed in 0..8 {
        let fs = SimFs::new(seed);
        let wal = open(&fs, always()).unwrap();
        let mut acked = Acked::new();
        for i in 1..=3 {
            let lsn = wal.append(session(1), &event(i)).unwrap();
            acked.insert(lsn, (session(1), event(i)));
        }
        std::mem::forget(wal);
        fs.power_cut();
        let lock = fs.file_bytes(LOCK).unwrap_or_default();
        if !matches!(logbook_wal::format::Watermark::decode(&lock),
            logbook_wal::format::WatermarkState::Valid(w) if w.durable_end > 3)
        {
            unvouched += 1;
        }
        fs.fail_after(Op::Sync, 0, libc::EIO);
        let e = open(&fs, always()).unwrap_err();
        assert!(e.to_string().contains("fsync"), "seed {seed}: {e}");
        let wal = open(&fs, always()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(
            wal.last_lsn(),
            3,
            "seed {seed}: nothing acknowledged is cut"
        );
        drop(wal);
        power_cut_keeps(&fs, &acked, &format!("seed {seed}"));
    }
    assert!(
        unvouched > 0,
        "no power cut left LSN 3 unvouched: the case was never met"
    );
}

/// Finding 4, on the simulated file system: through a read-only mount
/// (opening `LOCK` for writing fails with `EROFS`) a reader took a live
/// writer for absent, fsynced the tail and returned records past the
/// writer's durable point (which the writer may still cut and reuse the
/// LSNs of). A reader on any mount is bounded by what the writer made
/// durable, and the liveness probe sees the writer. The same when the
/// caller may read `LOCK` but not write it (`EACCES`), and when it may not
/// even read it (liveness unknown: a writer may be live).
#[test]
fn r4_through_a_read_only_mount_a_live_writer_bounds_the_reader() {
    let cases = [
        ("read-only mount (EROFS)", Some(libc::EROFS), None),
        ("LOCK not writable (EACCES)", Some(libc::EACCES), None),
        (
            "LOCK not readable (EACCES)",
            Some(libc::EACCES),
            Some(libc::EACCES),
        ),
    ];
    for (what, write, read) in cases {
        let fs = SimFs::new(4);
        let (wal, _) = live_writer_past_its_durable_point(&fs, 3);
        fs.refuse_open(LOCK, write, read);
        let syncs = fs.op_count(Op::Sync);
        let locked = is_locked_with_fs(&fs, DIR);
        let seen = reader_lsns(&fs, what);
        assert_eq!(
            seen,
            [1, 2, 3],
            "{what}: a reader beside a live writer durable at 3"
        );
        assert_eq!(fs.op_count(Op::Sync), syncs, "{what}: the reader fsynced");
        assert!(
            locked.unwrap_or_else(|e| panic!("{what}: {e}")),
            "{what}: the writer is live"
        );
        // Durable now: returned, if the watermark can be read (else only
        // the sync marks vouch, and none is past 6 yet).
        assert_eq!(wal.sync().unwrap(), 6);
        let unknown = read.is_some();
        let durable: &[Lsn] = if unknown {
            &[1, 2, 3]
        } else {
            &[1, 2, 3, 4, 5, 6]
        };
        assert_eq!(reader_lsns(&fs, what), durable, "{what}");
        drop(wal);
        assert_eq!(
            is_locked_with_fs(&fs, DIR).unwrap(),
            unknown,
            "{what}: after the writer is gone (unknown when LOCK cannot be read)"
        );
    }
}

/// Finding 5: `is_locked` said "no writer" when the caller could not open
/// `LOCK` for writing (another user), so `logbook sessions` called a
/// running session interrupted. Liveness needs no write access, and an
/// `EACCES` never reads as "no writer".
#[test]
fn r5_is_locked_needs_no_write_access_and_eacces_is_never_no_writer() {
    let fs = SimFs::new(5);
    let wal = open(&fs, always()).unwrap();
    wal.append(session(1), &event(1)).unwrap();
    let cases = [
        ("may read LOCK, not write it", Some(libc::EACCES), None),
        ("may not read LOCK", Some(libc::EACCES), Some(libc::EACCES)),
        ("read-only mount", Some(libc::EROFS), None),
    ];
    for (what, write, read) in cases {
        fs.refuse_open(LOCK, write, read);
        let got = is_locked_with_fs(&fs, DIR).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            got,
            "{what}: a live writer holds the lock, is_locked says no"
        );
    }
    fs.refuse_open(LOCK, None, None);
    drop(wal);
    for (what, write, read) in cases {
        fs.refuse_open(LOCK, write, read);
        let got = is_locked_with_fs(&fs, DIR).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            got,
            read.is_some(),
            "{what}: no writer holds the lock (unknown, so maybe, if LOCK cannot be read)"
        );
    }
}

/// Unmounts on drop, even when the test fails.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Run `mount` with `args`; why not, if it refused.
fn mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
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

/// Bind-mount `src` read-only on `dst` (needs root, or `CAP_SYS_ADMIN`).
fn bind_read_only(src: &Path, dst: &Path) -> Result<Mount, String> {
    let (src, dst) = (src.display().to_string(), dst.display().to_string());
    mount(&["--bind", &src, &dst])?;
    let guard = Mount(PathBuf::from(&dst));
    mount(&["-o", "remount,bind,ro", &dst])?;
    Ok(guard)
}

/// Finding 4 on a real `mount --bind -o ro`, as the review saw it: writer
/// durable at 3 with 4..6 written, a reader through the read-write path
/// returned 1..3 and one through the read-only mount 1..6. Both now return
/// 1..3, and `is_locked` through the mount sees the writer; once the
/// writer syncs, both return 1..6; once it closes, no writer is live.
#[test]
fn r4_a_reader_through_a_real_read_only_bind_mount_is_bounded_by_the_live_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let opts = WalOptions {
        preallocate: false,
        ..unsynced()
    };
    let wal = Wal::open(&log, opts).unwrap();
    let _guard = match bind_read_only(&log, &ro) {
        Ok(guard) => guard,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true: r4_a_reader_through_a_real_read_only_bind_mount_is_bounded_by_the_live_writer must run (CI runs as root), but {reason}"
        ),
        Err(reason) => {
            println!(
                "SKIPPED r4_a_reader_through_a_real_read_only_bind_mount_is_bounded_by_the_live_writer: {reason} (needs root; with CI=true this fails); the simulated test still runs"
            );
            return;
        }
    };
    assert!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(ro.join("LOCK"))
            .is_err(),
        "the bind mount is read-only"
    );
    for i in 1..=3 {
        wal.append(session(1), &event(i)).unwrap();
    }
    assert_eq!(wal.sync().unwrap(), 3);
    for i in 4..=6 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let lsns = |dir: &Path| -> Vec<Lsn> { read_all(dir).into_iter().map(|r| r.0).collect() };
    assert_eq!(lsns(&log), [1, 2, 3], "through the read-write path");
    assert_eq!(lsns(&ro), [1, 2, 3], "through the read-only bind mount");
    assert!(
        is_locked(&ro).unwrap(),
        "the writer is live, seen through the read-only mount"
    );
    assert!(is_locked(&log).unwrap());
    assert_eq!(wal.sync().unwrap(), 6);
    assert_eq!(
        lsns(&ro),
        [1, 2, 3, 4, 5, 6],
        "through the mount, once durable"
    );
    wal.close().unwrap();
    assert!(!is_locked(&ro).unwrap(), "no writer once it closed");
}
