//! A CRC-verified scan of 1 M records: page cache warm, and cold where the
//! machine lets us drop caches (root).
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logbook_benches::fixtures::{drop_caches, log_with};
use logbook_wal::Reader;

const RECORDS: u64 = 1_000_000;

/// Scan every record; returns (records, payload + frame bytes).
fn scan(dir: &std::path::Path) -> (u64, u64) {
    let mut reader = Reader::open(dir).expect("open reader");
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(r) = reader.next_ref() {
        let r = r.expect("valid record");
        n += 1;
        bytes += 48 + r.payload.len() as u64;
    }
    (n, bytes)
}

fn bench(c: &mut Criterion) {
    let dir = log_with("scan-1m-256", RECORDS, 256, 64).expect("fixture");
    let (n, bytes) = scan(&dir);
    assert_eq!(n, RECORDS);
    let mut group = c.benchmark_group("scan_1M_records");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes));
    group.bench_function("warm", |b| b.iter(|| scan(&dir)));
    if drop_caches() {
        group.bench_function("cold", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let _ = drop_caches();
                    let start = Instant::now();
                    std::hint::black_box(scan(&dir));
                    total += start.elapsed();
                }
                total
            });
        });
    } else {
        eprintln!("scan: cannot drop the page cache here (needs root): cold scan skipped");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
