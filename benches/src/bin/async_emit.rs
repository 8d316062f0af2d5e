//! Prints one Markdown table: durable events/s through `SessionBus::emit_async`
//! from N tasks on a 2-worker tokio runtime, against the threaded path
//! (`emit` from T std threads) on the same kind of log, with records per
//! fdatasync and how late a 1 ms timer on the same runtime wakes.
//!
//! Usage: `async_emit [--dir DIR] [--secs SECONDS] [--rounds N] [--only a1,t1,...]`
//!
//! Every cell emits 200-byte `TextComplete` events, each task or thread with
//! its own session and bus over one `Wal` (`SyncPolicy::Always`), for
//! `--secs` seconds (default 3) in a fresh log under `DIR` (default: the
//! current directory; keep it on a real disk). With `--rounds N` (default 1)
//! every cell runs N times, in rotated order, and the median is printed.
//! `--only` keeps some cells: `aN` (`emit_async`, N tasks), `bN` (blocking
//! `emit` in N tasks), `tN` (N threads).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logbook_bus::{SessionBus, SessionEvent};
use logbook_wal::{Wal, WalOptions};

const TASKS: [usize; 3] = [1, 64, 1000];
const THREADS: [usize; 3] = [1, 16, 64];
const PAYLOAD: usize = 200;

#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    events_per_sec: f64,
    records_per_fsync: f64,
    late_p50_ms: Option<f64>,
    late_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `emit_async` from N tasks on a 2-worker runtime.
    Async(usize),
    /// The blocking `emit` from N tasks on the same runtime (the path a
    /// tokio user had before `emit_async`).
    BlockingInTasks(usize),
    /// The blocking `emit` from T std threads.
    Threads(usize),
}

fn event() -> SessionEvent {
    SessionEvent::TextComplete("x".repeat(PAYLOAD))
}

fn session(i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0xa5e, i as u64)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(at).copied()
}

fn run(kind: Kind, dir: &Path, secs: f64) -> io::Result<Cell> {
    let tmp = tempfile::Builder::new()
        .prefix("logbook-async-")
        .tempdir_in(dir)?;
    let wal = Wal::open(tmp.path(), WalOptions::default()).map_err(io::Error::from)?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let duration = Duration::from_secs_f64(secs);
    let mut lateness = Vec::new();
    match kind {
        Kind::Async(n) | Kind::BlockingInTasks(n) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            lateness = rt.block_on(async {
                let mut tasks = Vec::new();
                for i in 0..n {
                    let bus = SessionBus::new(16).with_durable_sink(Arc::new(wal.sink(session(i))));
                    let (count, stop) = (count.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let ok = if kind == Kind::Async(n) {
                                bus.emit_async(event()).await.is_ok()
                            } else {
                                let ok = bus.try_emit(event()).is_ok();
                                tokio::task::yield_now().await;
                                ok
                            };
                            if ok {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                let timer = {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let mut late = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let t0 = Instant::now();
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            let over = t0.elapsed().saturating_sub(Duration::from_millis(1));
                            late.push(over.as_secs_f64() * 1e3);
                        }
                        late
                    })
                };
                tokio::time::sleep(duration).await;
                stop.store(true, Ordering::Relaxed);
                for t in tasks {
                    let _ = t.await;
                }
                timer.await.unwrap_or_default()
            });
        }
        Kind::Threads(t) => {
            std::thread::scope(|s| {
                for i in 0..t {
                    let bus = SessionBus::new(16).with_durable_sink(Arc::new(wal.sink(session(i))));
                    let (count, stop) = (count.clone(), stop.clone());
                    s.spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            if bus.try_emit(event()).is_ok() {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
                std::thread::sleep(duration);
                stop.store(true, Ordering::Relaxed);
            });
        }
    }
    let stats = wal.stats();
    lateness.sort_by(f64::total_cmp);
    Ok(Cell {
        events_per_sec: count.load(Ordering::Relaxed) as f64 / secs,
        records_per_fsync: stats.records_synced as f64 / stats.fsyncs.max(1) as f64,
        late_p50_ms: percentile(&lateness, 0.5),
        late_p99_ms: percentile(&lateness, 0.99),
    })
}

/// The command line: directory, seconds a cell, rounds, `--only` cells.
type Args = (PathBuf, f64, usize, Option<Vec<String>>);

fn parse_args() -> io::Result<Args> {
    let mut dir = PathBuf::from(".");
    let mut only = None;
    let mut secs = 3.0;
    let mut rounds = 1;
    let mut args = std::env::args().skip(1);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| bad(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--dir" => dir = PathBuf::from(value()?),
            "--secs" => secs = value()?.parse().map_err(|_| bad("--secs: a number"))?,
            "--rounds" => rounds = value()?.parse().map_err(|_| bad("--rounds: a count"))?,
            "--only" => only = Some(value()?.split(',').map(str::to_owned).collect()),
            other => return Err(bad(&format!("unknown argument {other}"))),
        }
    }
    if secs <= 0.0 || rounds == 0 {
        return Err(bad("--secs and --rounds must be positive"));
    }
    Ok((dir, secs, rounds, only))
}

/// The `--only` name of a cell.
fn short(kind: Kind) -> String {
    match kind {
        Kind::Async(n) => format!("a{n}"),
        Kind::BlockingInTasks(n) => format!("b{n}"),
        Kind::Threads(t) => format!("t{t}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> io::Result<()> {
    let (dir, secs, rounds, only) = parse_args()?;
    let mut kinds: Vec<Kind> = TASKS.iter().map(|&n| Kind::Async(n)).collect();
    kinds.push(Kind::BlockingInTasks(64));
    kinds.extend(THREADS.iter().map(|&t| Kind::Threads(t)));
    if let Some(only) = &only {
        kinds.retain(|&k| only.contains(&short(k)));
    }
    let mut results: Vec<Vec<Cell>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        for k in 0..kinds.len() {
            let i = (k + round) % kinds.len();
            results[i].push(run(kinds[i], &dir, secs)?);
        }
    }
    println!("## Async durable emit ({secs} s a cell, {rounds} round(s), median)\n");
    println!(
        "- machine: {} cores (nproc); log directory under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.display()
    );
    println!(
        "\n| path | durable events/s | records per fdatasync | 1 ms timer lateness p50 / p99 |"
    );
    println!("|---|--:|--:|--:|");
    let mut rate = std::collections::BTreeMap::new();
    for (kind, cells) in kinds.iter().zip(&results) {
        let eps = median(cells.iter().map(|c| c.events_per_sec).collect());
        let rpf = median(cells.iter().map(|c| c.records_per_fsync).collect());
        let late = |f: fn(&Cell) -> Option<f64>| {
            let v: Vec<f64> = cells.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let lateness = match (late(|c| c.late_p50_ms), late(|c| c.late_p99_ms)) {
            (Some(a), Some(b)) => format!("{a:.2} ms / {b:.2} ms"),
            _ => "—".to_owned(),
        };
        let name = match kind {
            Kind::Async(n) => format!("`emit_async`, {n} tasks, 2 workers"),
            Kind::BlockingInTasks(n) => format!("blocking `emit`, {n} tasks, 2 workers"),
            Kind::Threads(t) => format!("blocking `emit`, {t} threads"),
        };
        rate.insert(format!("{kind:?}"), eps);
        println!("| {name} | {eps:.0} | {rpf:.1} | {lateness} |");
    }
    let r = |a: &str, b: &str| {
        rate.get(a)
            .zip(rate.get(b))
            .map_or(0.0, |(a, b)| a / b.max(1.0))
    };
    println!(
        "\nratios: async N=1000 / threads T=64 = {:.2}; async N=1 / threads T=1 = {:.2}",
        r("Async(1000)", "Threads(64)"),
        r("Async(1)", "Threads(1)")
    );
    Ok(())
}
