//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_wal::{EventRecord, Lsn, Reader, SyncPolicy, Wal, WalError, WalOptions, fs::Fs};
use uuid::Uuid;

/// A deterministic event of varying kind and size.
pub(crate) fn event(i: u64) -> SessionEvent {
    match i % 4 {
        0 => SessionEvent::UserMessage(format!("message {i} {}", "x".repeat((i % 97) as usize))),
        1 => SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::Root,
            model: "model".into(),
            prompt_tokens: i,
            completion_tokens: i * 2,
            duration_ms: 1,
        }),
        2 => SessionEvent::ToolCallStart {
            tool_call_id: format!("call-{i}"),
            name: "bash".into(),
            arguments: format!("{{\"i\":{i}}}"),
        },
        _ => SessionEvent::TextComplete(format!("answer {i}")),
    }
}

pub(crate) fn session(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x1060_b00c, n)
}

/// Options for tests: small segments so that rolls happen.
pub(crate) fn small(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

/// Every record of the log, decoded; panics on any error.
pub(crate) fn read_all(dir: &Path) -> Vec<(Lsn, Uuid, SessionEvent)> {
    read_all_with(Reader::open(dir).unwrap())
}

pub(crate) fn read_all_fs(fs: Arc<dyn Fs>, dir: &Path) -> Vec<(Lsn, Uuid, SessionEvent)> {
    read_all_with(Reader::open_with_fs(fs, dir).unwrap())
}

fn read_all_with(mut reader: Reader) -> Vec<(Lsn, Uuid, SessionEvent)> {
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("reading the log: {e}"));
        let e = EventRecord::decode(&r).unwrap();
        out.push((e.lsn, e.session, e.event));
    }
    assert!(
        reader.tail_damage().is_none(),
        "tail damage: {:?}",
        reader.tail_damage()
    );
    out
}

/// LSNs must run 1, 2, 3, … with no gap.
pub(crate) fn assert_gapless(records: &[(Lsn, Uuid, SessionEvent)]) {
    for (i, (lsn, _, _)) in records.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "LSNs must be gapless");
    }
}

pub(crate) fn is_poisoned(e: &WalError) -> bool {
    matches!(e, WalError::Poisoned { .. })
}

/// Records by LSN: what was acknowledged, or returned `Ok`.
pub(crate) type Acked = BTreeMap<Lsn, (Uuid, SessionEvent)>;

/// The policies of the full-disk tests: name, policy, `buffer_bytes`.
pub(crate) fn policies() -> [(&'static str, SyncPolicy, usize); 3] {
    [
        ("Always", SyncPolicy::Always, 1 << 20),
        (
            "Batch",
            SyncPolicy::Batch {
                max_delay: Duration::from_millis(1),
                max_bytes: 1 << 20,
            },
            1 << 20,
        ),
        ("Never", SyncPolicy::Never, 1),
    ]
}

/// Append from `threads` threads until each sees an error; every error must
/// be `DiskFull`; every `Ok(lsn)` goes into `acked`, and no LSN may be
/// returned twice. Fails if the disk does not fill within a minute.
pub(crate) fn fill_until_full(wal: &Wal, acked: &Mutex<Acked>, threads: u64) -> WalError {
    let errors = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (acked, errors) = (&acked, &errors);
            s.spawn(move || {
                for n in 0.. {
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "the disk never filled up"
                    );
                    let i = t * 10_000_000 + n;
                    match wal.append(session(t), &event(i)) {
                        Ok(lsn) => {
                            let old = acked.lock().unwrap().insert(lsn, (session(t), event(i)));
                            assert!(old.is_none(), "LSN {lsn} returned twice");
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    assert_eq!(errors.len() as u64, threads);
    for e in &errors {
        assert!(e.is_disk_full(), "{e}");
        assert!(e.to_string().starts_with("disk full: "), "{e}");
    }
    errors.into_iter().next().unwrap()
}

/// The log holds exactly `acked`, gapless.
pub(crate) fn holds_exactly(records: Vec<(Lsn, Uuid, SessionEvent)>, acked: &Acked, what: &str) {
    assert_gapless(&records);
    let found: Acked = records.into_iter().map(|(l, s, e)| (l, (s, e))).collect();
    assert_eq!(&found, acked, "{what}: the log holds exactly these records");
}

/// The log is a gapless prefix of `acked` (records not yet durable are not
/// visible to a reader).
pub(crate) fn holds_a_prefix(records: Vec<(Lsn, Uuid, SessionEvent)>, acked: &Acked, what: &str) {
    assert_gapless(&records);
    for (lsn, s, e) in records {
        assert_eq!(
            acked.get(&lsn),
            Some(&(s, e)),
            "{what}: LSN {lsn} is not the record acknowledged with it"
        );
    }
}

/// The seeds of a seeded test: `default` of them, or `$<prefix>_SEEDS` of
/// them, or only `$<prefix>_SEED` (to replay one).
pub(crate) fn seeds(default: u64, prefix: &str) -> Vec<u64> {
    let var = |suffix: &str| -> Option<u64> {
        std::env::var(format!("{prefix}_{suffix}"))
            .ok()
            .and_then(|v| v.parse().ok())
    };
    if let Some(one) = var("SEED") {
        return vec![one];
    }
    (1..=var("SEEDS").unwrap_or(default))
        .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect()
}

/// Run `f` on a fresh runtime (`workers` 0: current-thread) in another
/// thread; fail (not hang) if it has not finished within `limit`: a
/// blocking call that holds the runtime deadlocks a test instead of
/// failing it.
pub(crate) fn on_runtime<F>(
    what: &str,
    workers: usize,
    limit: Duration,
    f: impl FnOnce() -> F + Send + 'static,
) where
    F: Future<Output = ()>,
{
    bounded(&format!("{what} ({workers} workers)"), limit, move || {
        let mut builder = if workers == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        };
        builder.enable_all().build().unwrap().block_on(f());
    });
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(non-string panic)".to_owned())
}

/// Run `f` on its own thread; fail if it panics or runs longer than
/// `limit` (a hang must fail the test, not block CI; the stuck thread is
/// left behind).
pub(crate) fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let handle: std::thread::JoinHandle<T> = std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawning a thread for {what}: {e}"));
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not return within {limit:?}: it hangs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    match handle.join() {
        Ok(v) => v,
        Err(payload) => panic!("{what} panicked: {}", panic_message(&*payload)),
    }
}
