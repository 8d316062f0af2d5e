//! The rest of the public contract: the writer lock, policies, limits,
//! live readers, retention, recovery modes and bad input.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{event, read_all, session, small};
use logbook_wal::{
    EventRecord, Reader, RecoveryMode, SyncPolicy, Wal, WalError, WalOptions, inspect, is_locked,
};
use uuid::Uuid;

#[test]
fn a_second_writer_is_refused_in_process_and_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, WalError::Locked { dir: d, .. } if d == dir.path()),
        "{err}"
    );
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(is_locked(dir.path()).unwrap());

    // Another process: `flock` conflicts across processes too.
    let status = Command::new("flock")
        .args(["--nonblock", "--exclusive"])
        .arg(dir.path().join("LOCK"))
        .arg("true")
        .status();
    if let Ok(status) = status {
        assert!(!status.success(), "another process got the writer lock");
    } else {
        println!("flock(1) not installed: cross-process check skipped");
    }

    drop(wal);
    assert!(
        !is_locked(dir.path()).unwrap(),
        "dropping the Wal releases the lock"
    );
    Wal::open(dir.path(), WalOptions::default()).unwrap();
}

#[test]
fn records_over_the_limit_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(64 * 1024);
    let max = opts.max_payload_len();
    assert_eq!(max, 64 * 1024 - 40 - 48);
    let wal = Wal::open(dir.path(), opts).unwrap();
    let err = wal.append_raw(Uuid::nil(), &vec![7; max + 1]).unwrap_err();
    assert!(
        matches!(err, WalError::RecordTooLarge { size, max: m } if size == max + 1 && m == max),
        "{err}"
    );
    assert!(matches!(
        wal.append_raw(Uuid::nil(), &[]).unwrap_err(),
        WalError::EmptyRecord
    ));
    // The largest record fits, alone in a segment.
    assert_eq!(wal.append_raw(Uuid::nil(), &vec![7; max]).unwrap(), 1);
    assert_eq!(wal.append_raw(Uuid::nil(), &vec![8; max]).unwrap(), 2);
    drop(wal);
    let lens: Vec<_> = Reader::open(dir.path())
        .unwrap()
        .map(|r| r.unwrap().payload.len())
        .collect();
    assert_eq!(lens, [max, max]);
}

#[test]
fn batch_policy_makes_records_durable_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Batch {
            max_delay: Duration::from_millis(5),
            max_bytes: 1 << 20,
        },
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut last = 0;
    for i in 1..=50 {
        last = wal.append(session(1), &event(i)).unwrap();
    }
    // Returned before the fsync; the flusher makes it durable without a
    // sync() call. (The timeout only turns a lost wake-up into a failure.)
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), wal.wait_durable(last)).await
    })
    .expect("the flusher never made the records durable")
    .unwrap();
    // A single record on an idle log must start the flusher's clock too.
    let one = wal.append(session(2), &event(1)).unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), wal.wait_durable(one)).await
    })
    .expect("the flusher never woke for a lone record")
    .unwrap();
    assert!(wal.durable_lsn() >= last);
    drop(wal);
    assert_eq!(read_all(dir.path()).len(), 51);
}

#[test]
fn never_policy_buffers_until_sync() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    for i in 1..=100 {
        wal.append(session(1), &event(i)).unwrap();
    }
    assert_eq!(
        wal.durable_lsn(),
        0,
        "nothing is fsynced by an append under Never"
    );
    assert_eq!(wal.sync().unwrap(), 100);
    assert_eq!(wal.durable_lsn(), 100);
    wal.close().unwrap();
    assert_eq!(read_all(dir.path()).len(), 100);
}

#[test]
fn wait_durable_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let lsn = wal.append(session(1), &event(1)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let waiter = tokio::spawn({
            let wal = wal.clone();
            async move { wal.wait_durable(lsn).await }
        });
        // The single runtime thread is free while the waiter waits.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let syncer = wal.clone();
        tokio::task::spawn_blocking(move || syncer.sync())
            .await
            .unwrap()
            .unwrap();
        waiter.await.unwrap().unwrap();
    });
}

#[test]
fn a_live_reader_follows_the_writer_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(16 * 1024)).unwrap();
    wal.append(session(1), &event(1)).unwrap();
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut seen = Vec::new();
    let total = 600;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 2..=total {
                wal.append(session(1), &event(i)).unwrap();
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (seen.len() as u64) < total {
            match reader.next_ref() {
                Some(r) => seen.push(r.unwrap().lsn),
                None => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "reader stalled at {}",
                        seen.len()
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert!(
        reader.segments().len() > 2,
        "the writer rolled while the reader followed"
    );
}

/// A follower at the end of the tail, then many rolls, then retention
/// removes the segment it was in and those after: its next read is an
/// error naming the records it will never see, not the end of the log (it
/// was the end: the reader took the segment after the one removed for the
/// one it was in, and found nothing more; review 25).
#[test]
fn a_follower_whose_segment_retention_removed_gets_an_error_not_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(4096)).unwrap();
    for i in 1..=10 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut last = 0;
    while let Some(r) = reader.next_ref() {
        last = r.unwrap().lsn;
    }
    assert_eq!(last, 10);
    for i in 11..=2000 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let removed = wal.truncate_before(wal.durable_lsn() - 5).unwrap();
    assert!(removed > 10);
    // What the open segment still holds may come first; then the gap.
    loop {
        match reader.next_ref() {
            Some(Ok(r)) => {
                assert_eq!(r.lsn, last + 1);
                last = r.lsn;
            }
            Some(Err(WalError::BadSegment { reason, .. })) => {
                assert!(
                    reason.contains(&format!("ended before LSN {}", last + 1)),
                    "{reason}"
                );
                break;
            }
            other => panic!("expected the gap after LSN {last} as an error, got {other:?}"),
        }
    }
    assert!(last < 1995, "read to {last}");
}

#[test]
fn a_reader_works_on_a_read_only_copy_without_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(8 * 1024)).unwrap();
    for i in 1..=300 {
        wal.append(session(i % 4), &event(i)).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    // The writer still holds the original; the copy reads the same.
    assert_eq!(read_all(copy.path()), read_all(dir.path()));
    assert_eq!(
        Reader::open(copy.path())
            .unwrap()
            .from_lsn(250)
            .next()
            .unwrap()
            .unwrap()
            .lsn,
        250
    );
}

#[test]
fn retention_removes_whole_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(8 * 1024)).unwrap();
    for i in 1..=400 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let before = Reader::open(dir.path()).unwrap().segments();
    assert!(before.len() > 3);
    let removed = wal.truncate_before(250).unwrap();
    let after = Reader::open(dir.path()).unwrap().segments();
    assert_eq!(after.len(), before.len() - removed);
    let first = Reader::open(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .lsn;
    assert!(first <= 250, "records at and after the cut point remain");
    assert!(first > 1);
    // Never the active segment, whatever the LSN.
    wal.truncate_before(u64::MAX).unwrap();
    let last = Reader::open(dir.path()).unwrap().segments();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0], *before.last().unwrap());
    wal.append(session(1), &event(1)).unwrap();
}

#[test]
fn records_of_another_codec_are_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            codec_id: 7,
            ..WalOptions::default()
        },
    )
    .unwrap();
    // Bytes that codec 1 would decode as a valid event.
    let bytes = logbook_bus::codec::encode(&event(1)).unwrap();
    let lsn = wal.append_raw(session(1), &bytes).unwrap();
    wal.close().unwrap();

    let mut reader = Reader::open(dir.path()).unwrap();
    let record = reader.next_ref().unwrap().unwrap();
    assert_eq!(record.codec_id, 7);
    assert_eq!(record.to_owned_record().codec_id, 7);
    let err = EventRecord::decode(&record).unwrap_err();
    assert!(
        matches!(err, WalError::ForeignCodec { codec_id: 7, lsn: l, .. } if l == lsn),
        "{err}"
    );
    let file = record.segment.file_name().unwrap().to_string_lossy();
    assert!(err.to_string().contains(&*file), "{err}");
}

#[test]
fn foreign_files_are_ignored_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    fs::write(dir.path().join("12.wal"), "not a segment name").unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.recovery().foreign.len(), 2);
    wal.append(session(1), &event(1)).unwrap();
    drop(wal);
    assert_eq!(
        fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(read_all(dir.path()).len(), 1);
}

#[test]
fn bad_paths_and_garbage_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let no_create = WalOptions {
        create_if_missing: false,
        ..WalOptions::default()
    };
    assert!(
        matches!(Wal::open(&missing, no_create).unwrap_err(), WalError::NotFound { path } if path == missing)
    );
    assert!(matches!(
        Reader::open(&missing).unwrap_err(),
        WalError::NotFound { .. }
    ));
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert!(matches!(
        Wal::open(&file, WalOptions::default()).unwrap_err(),
        WalError::NotADirectory { .. }
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Reader::open(empty.path()).unwrap_err(),
        WalError::NoLog { .. }
    ));

    // A segment full of garbage: named, never a panic.
    let garbage = tempfile::tempdir().unwrap();
    let seg = garbage.path().join("00000000000000000001.wal");
    fs::write(
        &seg,
        b"this is not a logbook segment at all, not even close",
    )
    .unwrap();
    let err = Wal::open(garbage.path(), WalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, WalError::BadHeader { path, .. } if *path == seg),
        "{err}"
    );
    let err = Reader::open(garbage.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("00000000000000000001.wal"),
        "{err}"
    );
    // A segment cut inside its header.
    fs::write(&seg, [0x89, b'L']).unwrap();
    let err = Wal::open(garbage.path(), WalOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("shorter than the 40-byte segment header"),
        "{err}"
    );
    // A header whose base LSN disagrees with the file name.
    let other = tempfile::tempdir().unwrap();
    drop(Wal::open(other.path(), WalOptions::default()).unwrap());
    fs::rename(
        other.path().join("00000000000000000001.wal"),
        other.path().join("00000000000000000009.wal"),
    )
    .unwrap();
    let err = Wal::open(other.path(), WalOptions::default()).unwrap_err();
    assert!(matches!(err, WalError::BadSegment { .. }), "{err}");
}

#[test]
fn recovery_modes_and_inspect_agree() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            preallocate: false,
            ..WalOptions::default()
        },
    )
    .unwrap();
    for i in 1..=5 {
        wal.append(session(1), &event(i)).unwrap();
    }
    drop(wal);
    let seg = dir.path().join("00000000000000000001.wal");
    let starts: Vec<u64> = Reader::open(dir.path())
        .unwrap()
        .map(|r| r.unwrap().offset)
        .collect();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[starts[2] as usize + 30] ^= 0x40; // damage LSN 3, which 4 and 5 vouch for
    fs::write(&seg, &bytes).unwrap();

    // Default and absolute: refuse, naming segment, offset and LSN.
    for mode in [
        RecoveryMode::TolerateCorruptedTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let err = inspect(dir.path(), mode).unwrap_err();
        assert!(
            matches!(&err, WalError::MidLogCorruption { lsn: 3, offset, .. } if *offset == starts[2]),
            "{err}"
        );
        let opts = WalOptions {
            recovery: mode,
            ..WalOptions::default()
        };
        assert!(matches!(
            Wal::open(dir.path(), opts),
            Err(WalError::MidLogCorruption { .. })
        ));
        assert!(err.to_string().contains("00000000000000000001.wal"));
    }
    // Skip: LSN 3 is skipped, the log continues at 6.
    let report = inspect(dir.path(), RecoveryMode::SkipCorrupted).unwrap();
    assert_eq!((report.next_lsn, report.skipped.len()), (6, 1));
    // Point in time: keep 1 and 2, saving what is cut.
    let plan = inspect(dir.path(), RecoveryMode::PointInTime).unwrap();
    let cut = plan.cut.clone().unwrap();
    assert_eq!((cut.lsn, cut.offset, cut.frames_dropped), (3, starts[2], 2));
    let opts = WalOptions {
        recovery: RecoveryMode::PointInTime,
        keep_cut_bytes: true,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(
        wal.recovery().cut,
        plan.cut,
        "open did what inspect planned"
    );
    drop(wal);
    let broken = dir
        .path()
        .join(format!("00000000000000000001.wal.{}.broken", starts[2]));
    assert_eq!(fs::read(&broken).unwrap(), bytes[starts[2] as usize..]);
    assert_eq!(read_all(dir.path()).len(), 2);
}

#[test]
fn wal_is_send_sync_and_cheap_to_share() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Wal>();
    shareable::<logbook_wal::WalSink>();
}

#[test]
fn dropping_the_last_clone_flushes_buffered_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let other = wal.clone();
    for i in 1..=10 {
        other.append(session(1), &event(i)).unwrap();
    }
    drop(other);
    assert!(is_locked(dir.path()).unwrap(), "a clone is still alive");
    drop(wal);
    assert_eq!(read_all(dir.path()).len(), 10);
    assert!(!is_locked(dir.path()).unwrap());
}

#[test]
fn a_reader_skips_a_segment_it_cannot_read_and_terminates() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(8 * 1024)).unwrap();
    for i in 1..=300 {
        wal.append(session(1), &event(i)).unwrap();
    }
    drop(wal);
    let segments = Reader::open(dir.path()).unwrap().segments();
    assert!(segments.len() >= 3);
    // Replace the second segment by a directory: opening it as a file fails.
    fs::remove_file(&segments[1]).unwrap();
    fs::create_dir(&segments[1]).unwrap();
    let mut reader = Reader::open(dir.path()).unwrap();
    let (mut ok, mut errors) = (0, Vec::new());
    for (steps, r) in reader.by_ref().enumerate() {
        assert!(
            steps < 10_000,
            "the reader must not loop on an unreadable segment"
        );
        match r {
            Ok(_) => ok += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(ok > 0);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&*segments[1].to_string_lossy())),
        "{errors:?}"
    );
}

/// A tail segment whose length was blown up (a sparse 64 GiB file: a
/// damaged size, a stray `truncate -s`) costs readers, `inspect` and `open`
/// no more than the largest segment a writer makes: nothing past
/// `MAX_SEGMENT_SIZE` is ever allocated or read.
#[test]
fn a_huge_sparse_tail_costs_no_more_than_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    for i in 1..=3 {
        wal.append(session(1), &event(i)).unwrap();
    }
    wal.close().unwrap();
    let tail = dir.path().join("00000000000000000001.wal");
    let f = fs::OpenOptions::new().write(true).open(&tail).unwrap();
    if let Err(e) = f.set_len(64 << 30) {
        println!("SKIPPED: this file system cannot hold a sparse 64 GiB file: {e}");
        return;
    }
    drop(f);
    assert_eq!(read_all(dir.path()).len(), 3);
    let report = inspect(dir.path(), RecoveryMode::default()).unwrap();
    assert_eq!(report.next_lsn, 4);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.last_lsn(), 3);
    assert_eq!(wal.append(session(1), &event(4)).unwrap(), 4);
    drop(wal);
    assert_eq!(read_all(dir.path()).len(), 4);
}

/// A leftover `*.wal.tmp` of an interrupted segment creation holds only its
/// header and zeros, and `open` removes it; one holding data past its
/// header may not be the log's: `open` moves it aside, unchanged, to
/// `<name>.0.broken` (and opens the log).
#[test]
fn open_removes_an_empty_temporary_but_not_one_holding_data() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append_raw(Uuid::nil(), b"x").unwrap();
    drop(wal);
    let tmp = dir.path().join("00000000000000000099.wal.tmp");
    let mut bytes = vec![0u8; 4096];
    bytes[..8].copy_from_slice(b"\x89LOGBK\r\n");
    fs::write(&tmp, &bytes).unwrap();
    drop(Wal::open(dir.path(), WalOptions::default()).unwrap());
    assert!(!tmp.exists(), "an empty temporary is removed");

    bytes[1000] = 7;
    fs::write(&tmp, &bytes).unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.append_raw(Uuid::nil(), b"y").unwrap(), 2);
    drop(wal);
    assert!(!tmp.exists(), "out of the way of a segment of that name");
    let aside = dir.path().join("00000000000000000099.wal.tmp.0.broken");
    assert_eq!(fs::read(&aside).unwrap(), bytes, "kept as it was");
}

/// Bug: `close` marks the writer closed before it makes what is queued
/// durable, and a batch already in flight (here the `Batch` flusher's)
/// then published "closed" with its own, older, durable end. A follower
/// woken by that took it for the end of the log and missed every record
/// the close then made durable (`logbook_replay::follow` ended after LSN
/// 251 of 400). The interleaving, pinned with the simulated file system:
/// the flusher's fsync of LSN 1 is held; LSNs 2.. are queued; `close`
/// starts (appends are refused); the fsync goes on, and the write of the
/// rest is held. At that point the log is not done: the watch must not say
/// closed, and `wait_durable` of a queued record must still wait.
#[test]
fn a_close_during_a_batch_in_flight_is_not_announced_before_its_records_are_durable() {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use logbook_wal::sim::{Op, SimFs};

    /// Poll `future` once, without a runtime.
    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }
    fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let fs = SimFs::new(11);
    let opts = WalOptions {
        sync: SyncPolicy::Batch {
            max_delay: Duration::from_millis(1),
            max_bytes: 1 << 20,
        },
        ..WalOptions::default()
    };
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts).unwrap();
    let mut watch = wal.watch_durable();
    let fsync = fs.hold(Op::Sync);
    wal.append(session(1), &event(1)).unwrap();
    until("the flusher fsyncs LSN 1", || fsync.waiting() == 1);
    let mut last = wal.append(session(1), &event(2)).unwrap();
    let closer = std::thread::spawn({
        let wal = wal.clone();
        move || wal.close()
    });
    // Appends are refused once `close` has begun (those accepted before
    // are queued, and the close makes them durable).
    until("close begins", || {
        match wal.append(session(1), &event(last + 1)) {
            Ok(lsn) => {
                last = lsn;
                false
            }
            Err(WalError::Closed) => true,
            Err(e) => panic!("{e}"),
        }
    });
    let write = fs.hold(Op::Write);
    fsync.release();
    until("LSNs 2.. are being written", || write.waiting() == 1);

    assert_eq!(watch.durable_lsn(), 1, "the flusher's batch is durable");
    assert_eq!(poll_once(watch.changed()), Poll::Ready(Some(1)));
    assert_eq!(
        poll_once(watch.changed()),
        Poll::Pending,
        "LSNs 2..={last} are still to be made durable by the close: not the end yet"
    );
    assert!(
        poll_once(wal.wait_durable(last)).is_pending(),
        "LSN {last} is queued and the close makes it durable"
    );

    write.release();
    closer.join().unwrap().unwrap();
    assert_eq!(poll_once(watch.changed()), Poll::Ready(Some(last)));
    assert_eq!(poll_once(watch.changed()), Poll::Ready(None), "now closed");
    let lsns: Vec<u64> = common::read_all_fs(Arc::new(fs.clone()), std::path::Path::new("/log"))
        .into_iter()
        .map(|(lsn, ..)| lsn)
        .collect();
    assert_eq!(lsns, (1..=last).collect::<Vec<u64>>());
}

#[test]
fn a_reader_told_by_the_durable_watch_reads_up_to_what_it_reported() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Always,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let mut watch = wal.watch_durable();
    for i in 1..=3 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let mut reader = Reader::open(dir.path()).unwrap();
    // A follower reads exactly what is durable and stops there, without
    // looking past it.
    for lsn in 1..=3 {
        assert_eq!(reader.next_ref().unwrap().unwrap().lsn, lsn);
    }
    for i in 4..=5 {
        wal.append(session(1), &event(i)).unwrap();
    }
    assert_eq!(watch.durable_lsn(), 5);
    reader.note_durable(&watch);
    assert_eq!(reader.durable_bound(), 6);
    let mut rest = Vec::new();
    while let Some(record) = reader.next_ref() {
        rest.push(record.unwrap().lsn);
    }
    assert_eq!(rest, [4, 5], "the records the watch reported, read at once");
    wal.close().unwrap();
    // Closed: the last report; the reader still ends at the durable end.
    assert_eq!(
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(watch.changed()),
        Some(5)
    );
    reader.note_durable(&watch);
    assert!(reader.next_ref().is_none());
}
