//! Replay from page cache: summarising every session of a 1 M-event log
//! (one pass), and rebuilding one session's full state.
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logbook_benches::fixtures::log_with;
use uuid::Uuid;

const EVENTS: u64 = 1_000_000;

fn bench(c: &mut Criterion) {
    // 100 sessions interleaved; ~128-byte events.
    let many = log_with("replay-1m-100", EVENTS, 128, 100).expect("fixture");
    // One session holding every event (the rebuild's worst case).
    let one = log_with("replay-1m-1", EVENTS, 128, 1).expect("fixture");
    let summary = logbook_replay::list_sessions(&many).expect("list");
    assert_eq!(summary.sessions.len(), 100);

    let mut group = c.benchmark_group("replay_1M_events");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(EVENTS));
    group.bench_function("list_sessions_100", |b| {
        b.iter(|| logbook_replay::list_sessions(&many).expect("list"))
    });
    group.bench_function("session_state_of_1_of_1", |b| {
        b.iter(|| {
            logbook_replay::session_state(&one, Uuid::from_u64_pair(0xbe4c, 0)).expect("state")
        });
    });
    group.bench_function("session_state_of_1_of_100", |b| {
        b.iter(|| {
            logbook_replay::session_state(&many, Uuid::from_u64_pair(0xbe4c, 7)).expect("state")
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
