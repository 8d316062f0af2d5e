//! Buffered appends (`SyncPolicy::Never`) of ~256-byte events through
//! `WalSink` on one thread: the cost of the log itself, without fsync.
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logbook_benches::fixtures::{bench_root, synthetic_event};
use logbook_bus::DurableSink;
use logbook_wal::{SyncPolicy, Wal, WalOptions};

fn bench(c: &mut Criterion) {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    let tmp = tempfile::tempdir_in(&root).expect("temp dir");
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        segment_size: 256 << 20,
        ..WalOptions::default()
    };
    let wal = Wal::open(tmp.path(), opts).expect("open");
    let sink = wal.sink(uuid::Uuid::new_v4());
    let event = logbook_bus::SessionEvent::TextComplete("x".repeat(250));
    let mut group = c.benchmark_group("buffered_append");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("wal_sink_256B_never", |b| {
        b.iter(|| sink.write(std::hint::black_box(&event)).expect("append"))
    });
    let mixed: Vec<_> = (0..1024).map(|i| synthetic_event(i, 256)).collect();
    let mut i = 0;
    group.bench_function("wal_sink_mixed_never", |b| {
        b.iter(|| {
            i = (i + 1) % mixed.len();
            sink.write(&mixed[i]).expect("append");
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
