//! Buffered appends (`SyncPolicy::Never`) of ~256-byte events through
//! `WalSink` on one thread: the cost of the log's own code path (encode,
//! frame, CRC, buffer, `write` to the page cache), without fsync.
//!
//! Each sample appends into a fresh log whose segment holds the whole
//! sample, and stops the clock before closing it: what is measured is the
//! append path while the page cache absorbs the writes, not the disk's
//! write bandwidth (at 3 M appends/s a disk would need ~900 MB/s).
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logbook_benches::fixtures::{bench_root, synthetic_event};
use logbook_bus::{DurableSink, SessionEvent};
use logbook_wal::{SyncPolicy, Wal, WalOptions};

/// Append `iters` events (cycling through `events`) into a fresh log.
fn run(iters: u64, events: &[SessionEvent]) -> Duration {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    let tmp = tempfile::tempdir_in(&root).expect("temp dir");
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        segment_size: 1 << 30,
        ..WalOptions::default()
    };
    let wal = Wal::open(tmp.path(), opts).expect("open");
    let sink = wal.sink(uuid::Uuid::new_v4());
    let start = Instant::now();
    for i in 0..iters {
        let event = &events[(i % events.len() as u64) as usize];
        sink.write(std::hint::black_box(event)).expect("append");
    }
    let elapsed = start.elapsed();
    drop(sink);
    wal.close().expect("close");
    elapsed
}

fn bench(c: &mut Criterion) {
    let text = [SessionEvent::TextComplete("x".repeat(250))];
    let mixed: Vec<_> = (0..1024).map(|i| synthetic_event(i, 256)).collect();
    let mut group = c.benchmark_group("buffered_append");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("wal_sink_256B_never", |b| {
        b.iter_custom(|iters| run(iters, &text))
    });
    group.bench_function("wal_sink_mixed_never", |b| {
        b.iter_custom(|iters| run(iters, &mixed))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
