//! `SessionBus::emit` against a bare `tokio::sync::broadcast::Sender::send`.
#![allow(missing_docs, reason = "criterion generates undocumented items")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logbook_bus::{NoopSink, SessionBus, SessionEvent, TokenDelta, TokenSource};

fn usage() -> SessionEvent {
    SessionEvent::TokenUsage(TokenDelta {
        source: TokenSource::Root,
        model: "model".into(),
        prompt_tokens: 100,
        completion_tokens: 20,
        duration_ms: 5,
    })
}

fn emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("bus_emit");
    group.throughput(Throughput::Elements(1));
    for subscribers in [0usize, 1, 4] {
        group.bench_with_input(
            BenchmarkId::new("session_bus_noop_sink", subscribers),
            &subscribers,
            |b, &n| {
                let bus = SessionBus::new(1024).with_durable_sink(Arc::new(NoopSink));
                let mut rxs: Vec<_> = (0..n).map(|_| bus.subscribe()).collect();
                let event = usage();
                let mut i = 0u32;
                b.iter(|| {
                    bus.emit(black_box(event.clone()));
                    i += 1;
                    if i % 512 == 0 {
                        for rx in &mut rxs {
                            while rx.try_recv().is_ok() {}
                        }
                    }
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("bare_broadcast_send", subscribers),
            &subscribers,
            |b, &n| {
                let (tx, _) = tokio::sync::broadcast::channel::<SessionEvent>(1024);
                let mut rxs: Vec<_> = (0..n).map(|_| tx.subscribe()).collect();
                let event = usage();
                let mut i = 0u32;
                b.iter(|| {
                    let _ = tx.send(black_box(event.clone()));
                    i += 1;
                    if i % 512 == 0 {
                        for rx in &mut rxs {
                            while rx.try_recv().is_ok() {}
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
