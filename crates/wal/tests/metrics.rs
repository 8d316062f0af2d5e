//! What the writer records through the `metrics` facade, read back with a
//! debugging recorder of the test's own (no global state): the figures
//! follow `WalStats`, and a stall and a poisoning show.

use std::collections::HashMap;
use std::sync::Arc;

use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{SyncPolicy, Wal, WalOptions};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use uuid::Uuid;

/// Every metric of the snapshot by name, each with its `dir` label checked.
/// A snapshot takes what was recorded since the last one: counters count
/// from 0 again, gauges read 0 until set again.
fn figures(snapshotter: &Snapshotter, dir: &str) -> HashMap<String, DebugValue> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels, [("dir", dir)], "{}", key.name());
        out.insert(key.name().to_owned(), value);
    }
    out
}

fn counter(f: &HashMap<String, DebugValue>, name: &str) -> u64 {
    match f.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    }
}

fn gauge(f: &HashMap<String, DebugValue>, name: &str) -> f64 {
    match f.get(name) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("{name}: {other:?}"),
    }
}

fn samples(f: &HashMap<String, DebugValue>, name: &str) -> Vec<f64> {
    match f.get(name) {
        Some(DebugValue::Histogram(h)) => h.iter().map(|v| v.into_inner()).collect(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn the_figures_follow_the_writer_s_stats() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let opts = WalOptions {
        segment_size: 64 << 10,
        ..WalOptions::default()
    };
    // The handles are registered at open: with this recorder, for good.
    let wal = metrics::with_local_recorder(&recorder, || Wal::open(&dir, opts)).unwrap();
    let session = Uuid::new_v4();
    for i in 0..300u32 {
        wal.append_raw(session, &[i as u8; 500]).unwrap();
    }
    let batch: Vec<_> = (0..50).map(|_| (session, vec![7u8; 100])).collect();
    wal.append_many_raw(&batch).unwrap();
    let stats = wal.stats();
    let f = figures(&snapshotter, &dir.display().to_string());
    assert_eq!(counter(&f, "logbook_wal_appends_total"), 350);
    assert_eq!(counter(&f, "logbook_wal_appends_total"), stats.appends);
    assert_eq!(counter(&f, "logbook_wal_batches_total"), stats.writes);
    assert_eq!(counter(&f, "logbook_wal_fsyncs_total"), stats.fsyncs);
    assert_eq!(
        counter(&f, "logbook_wal_synced_records_total"),
        stats.records_synced
    );
    assert_eq!(counter(&f, "logbook_wal_synced_records_total"), 350);
    assert!(stats.segments_created > 0, "{stats:?}");
    assert_eq!(
        counter(&f, "logbook_wal_segments_created_total"),
        stats.segments_created
    );
    assert!(counter(&f, "logbook_wal_written_bytes_total") > 300 * 500 + 50 * 100);
    let latencies = samples(&f, "logbook_wal_fsync_seconds");
    assert_eq!(latencies.len() as u64, stats.fsyncs);
    assert!(latencies.iter().all(|s| *s >= 0.0));
    // One sample per batch that moved the durable watermark, adding up to
    // every record: the 50 of `append_many_raw` in one.
    let per_fsync = samples(&f, "logbook_wal_records_per_fsync");
    assert_eq!(per_fsync.iter().sum::<f64>(), 350.0);
    assert!(per_fsync.contains(&50.0), "{per_fsync:?}");
    assert_eq!(gauge(&f, "logbook_wal_durable_lsn"), 350.0);
    assert_eq!(gauge(&f, "logbook_wal_queued_records"), 0.0);
    assert_eq!(gauge(&f, "logbook_wal_poisoned"), 0.0);
    assert_eq!(gauge(&f, "logbook_wal_stalled"), 0.0);
    assert!(
        !f.contains_key("logbook_wal_disk_full_total")
            || counter(&f, "logbook_wal_disk_full_total") == 0
    );
    wal.close().unwrap();
}

#[test]
fn a_failed_fsync_shows_as_poisoned() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let fs = SimFs::new(1);
    let wal = metrics::with_local_recorder(&recorder, || {
        Wal::open_with_fs(Arc::new(fs.clone()), "/log", WalOptions::default())
    })
    .unwrap();
    wal.append_raw(Uuid::nil(), b"ok").unwrap();
    fs.fail_after(Op::Sync, 0, libc::EIO);
    assert!(wal.append_raw(Uuid::nil(), b"lost").is_err());
    let f = figures(&snapshotter, "/log");
    assert_eq!(gauge(&f, "logbook_wal_poisoned"), 1.0);
    assert_eq!(gauge(&f, "logbook_wal_durable_lsn"), 1.0);
    assert_eq!(counter(&f, "logbook_wal_appends_total"), 2);
    assert_eq!(counter(&f, "logbook_wal_synced_records_total"), 1);
    // The failed call is counted as it is timed (review 25: the counter
    // said 1 where the histogram had 2 samples).
    let samples = match f.get("logbook_wal_fsync_seconds") {
        Some(DebugValue::Histogram(h)) => h.len() as u64,
        other => panic!("logbook_wal_fsync_seconds: {other:?}"),
    };
    assert_eq!(counter(&f, "logbook_wal_fsyncs_total"), samples);
    assert_eq!(samples, 2);
}

#[test]
fn a_full_disk_under_never_counts_one_stall_until_space_is_free() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let fs = SimFs::new(2);
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = metrics::with_local_recorder(&recorder, || {
        Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts)
    })
    .unwrap();
    fs.set_capacity(Some(fs.used() + 1000));
    for _ in 0..5 {
        wal.append_raw(Uuid::nil(), &[1u8; 400]).unwrap();
    }
    // The sync hits the full disk: stalled, the records kept.
    assert!(wal.sync().unwrap_err().is_disk_full());
    assert!(wal.sync().unwrap_err().is_disk_full());
    let f = figures(&snapshotter, "/log");
    assert_eq!(gauge(&f, "logbook_wal_stalled"), 1.0);
    assert_eq!(counter(&f, "logbook_wal_stalls_total"), 1);
    assert!(counter(&f, "logbook_wal_disk_full_total") >= 2);
    assert!(gauge(&f, "logbook_wal_queued_records") > 0.0);
    fs.set_capacity(None);
    assert_eq!(wal.sync().unwrap(), 5);
    // Since the last snapshot: no new stall, and the stall is over.
    let f = figures(&snapshotter, "/log");
    assert_eq!(gauge(&f, "logbook_wal_stalled"), 0.0);
    assert_eq!(counter(&f, "logbook_wal_stalls_total"), 0);
    assert_eq!(gauge(&f, "logbook_wal_queued_records"), 0.0);
    assert_eq!(gauge(&f, "logbook_wal_durable_lsn"), 5.0);
    assert_eq!(gauge(&f, "logbook_wal_poisoned"), 0.0);
}
