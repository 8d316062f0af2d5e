//! Reopening a 1 GiB log with a cold page cache, against reading all of it:
//! recovery reads the tail segment only.
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use logbook_benches::fixtures::{drop_caches, log_with, read_everything};
use logbook_wal::{Wal, WalOptions};

fn bench(c: &mut Criterion) {
    // 3.3 M records of ~300 bytes on disk: about 1 GiB in 64 MiB segments.
    let dir = log_with("open-1gib", 3_300_000, 256, 256).expect("fixture");
    let cold = drop_caches();
    if !cold {
        eprintln!("open: cannot drop the page cache here (needs root): measuring warm");
    }
    let mut group = c.benchmark_group("open_1GiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let open = || drop(Wal::open(&dir, WalOptions::default()).expect("open"));
    let read = || {
        std::hint::black_box(read_everything(&dir).expect("read"));
    };
    group.bench_function("wal_open", |b| {
        b.iter_custom(|iters| timed(cold, iters, open))
    });
    group.bench_function("read_all_segments", |b| {
        b.iter_custom(|iters| timed(cold, iters, read))
    });
    group.finish();
}

/// Time `iters` runs of `f`, each after dropping the page cache if `cold`.
fn timed(cold: bool, iters: u64, f: impl Fn()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if cold {
            let _ = drop_caches();
        }
        let start = Instant::now();
        f();
        total += start.elapsed();
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);
