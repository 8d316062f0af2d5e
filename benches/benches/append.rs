//! Durable appends from 1–64 threads: Logbook's WAL against three baselines
//! (one fsync per record, the ideal group commit, okaywal), plus Logbook under
//! `SyncPolicy::Batch` (1 ms) and `Never`, whose appends return before any fsync.
//!
//! Each criterion iteration is one record: `iter_custom` spreads the `iters`
//! records of a sample over the threads, times the whole multi-threaded run
//! and scales it back to `iters` records, so criterion reports time and
//! throughput per record.
//!
//! The logs live in a temporary directory under `$LOGBOOK_BENCH_DIR`, or the
//! current directory (the package root under `cargo bench`): keep it on a real
//! disk, not tmpfs, or fsync costs nothing.
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use logbook_benches::baselines::{
    DurableLog, IdealGroupCommit, OkayWal, PerRecordFsync, run_threads,
};
use logbook_benches::logbook::LogbookSink;
use logbook_wal::SyncPolicy;

const THREADS: [usize; 4] = [1, 4, 16, 64];
const PAYLOADS: [usize; 2] = [256, 4096];
/// Size of the zero-filled file of the ideal group commit (it wraps around).
const GROUP_COMMIT_FILE: u64 = 64 << 20;

fn bench_dir() -> PathBuf {
    std::env::var_os("LOGBOOK_BENCH_DIR").map_or_else(
        || std::env::current_dir().expect("current directory"),
        PathBuf::from,
    )
}

/// The logs compared, each opened in its own subdirectory of `dir`.
fn logs(dir: &Path) -> Vec<(&'static str, Box<dyn DurableLog>)> {
    let sub = |name: &str| {
        let path = dir.join(name);
        std::fs::create_dir(&path).expect("create a log directory");
        path
    };
    vec![
        (
            "per_record_fsync",
            Box::new(PerRecordFsync::create(&sub("fsync").join("log")).expect("per-record log")),
        ),
        (
            "ideal_group_commit",
            Box::new(
                IdealGroupCommit::create(&sub("group").join("log"), GROUP_COMMIT_FILE)
                    .expect("group-commit log"),
            ),
        ),
        (
            "okaywal",
            Box::new(OkayWal::open(&sub("okaywal")).expect("okaywal log")),
        ),
        (
            "logbook_sink",
            Box::new(LogbookSink::open(&sub("logbook"), SyncPolicy::Always).expect("logbook log")),
        ),
        (
            "logbook_sink_batch_1ms",
            Box::new(
                LogbookSink::open(
                    &sub("logbook-batch"),
                    SyncPolicy::Batch {
                        max_delay: Duration::from_millis(1),
                        max_bytes: 256 << 10,
                    },
                )
                .expect("logbook log"),
            ),
        ),
        (
            "logbook_sink_never",
            Box::new(
                LogbookSink::open(&sub("logbook-never"), SyncPolicy::Never).expect("logbook log"),
            ),
        ),
    ]
}

fn append(c: &mut Criterion) {
    let tmp = tempfile::Builder::new()
        .prefix("logbook-bench-")
        .tempdir_in(bench_dir())
        .expect("temporary directory");
    for payload in PAYLOADS {
        let dir = tmp.path().join(format!("{payload}"));
        std::fs::create_dir(&dir).expect("create the payload directory");
        let logs = logs(&dir);

        let mut group = c.benchmark_group(format!("append_{payload}B"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(1));
        for (name, log) in &logs {
            for threads in THREADS {
                group.bench_with_input(BenchmarkId::new(*name, threads), &threads, |b, &t| {
                    b.iter_custom(|iters| {
                        let iters = usize::try_from(iters).expect("iteration count");
                        let per_thread = iters.div_ceil(t).max(1);
                        let stats =
                            run_threads(log.as_ref(), t, per_thread, payload).expect("appends");
                        // Scale the run of `stats.records` records to `iters`.
                        stats.elapsed.mul_f64(iters as f64 / stats.records as f64)
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
