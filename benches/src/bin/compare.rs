//! Prints one Markdown table comparing the `append` baselines.
//!
//! Usage: `compare [--dir DIR] [--secs SECONDS] [--rounds N] [--payload BYTES] [--threads N]...`
//!
//! Each cell (threads × implementation, 256-byte payloads unless `--payload`
//! says otherwise) appends for
//! `--secs` seconds (default 3) in a fresh log under a temporary directory in
//! `DIR` (default: the current directory; keep it on a real disk, not tmpfs).
//! Before the table it prints the machine and the raw fsync latency of the
//! disk, for context.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use logbook_benches::baselines::{
    DurableLog, IdealGroupCommit, OkayWal, PerRecordFsync, Stats, run_threads_for,
};
use logbook_benches::logbook::LogbookSink;
use logbook_wal::SyncPolicy;

/// Thread counts run unless `--threads` says otherwise.
const THREADS: [usize; 3] = [1, 16, 64];
const IMPLS: [&str; 4] = [
    "okaywal",
    "ideal_group_commit",
    "per_record_fsync",
    "logbook_sink",
];
/// Size of the zero-filled file of the ideal group commit (it wraps around).
const GROUP_COMMIT_FILE: u64 = 64 << 20;
/// Number of timed `write 4 KiB + fdatasync` rounds of the fsync probe.
const PROBE_ROUNDS: usize = 200;

fn main() -> io::Result<()> {
    let (dir, secs, rounds, payload, threads_list) = parse_args()?;
    let tmp = tempfile::Builder::new()
        .prefix("logbook-compare-")
        .tempdir_in(&dir)?;
    let duration = Duration::from_secs_f64(secs);

    println!("## Durable append baselines\n");
    println!(
        "- machine: {} cores (nproc), kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_output("uname", &["-r"]),
    );
    println!(
        "- log directory: {} (file system: {})",
        tmp.path().display(),
        command_output("stat", &["-f", "-c", "%T", &tmp.path().to_string_lossy()]),
    );
    let (overwrite, appending) = fsync_probe(tmp.path())?;
    println!(
        "- fsync probe, median of {PROBE_ROUNDS} `write 4 KiB + fdatasync`: \
         overwriting a preallocated file {overwrite:.0} µs, appending {appending:.0} µs"
    );
    println!(
        "- {payload}-byte payloads, {secs} s per cell, fresh log per cell; {rounds} round(s), \
         the order of the implementations rotated each round; each row is the round with \
         the median records/s\n"
    );

    // (threads, impl) -> one Stats per round, and mean records per fdatasync.
    let mut cells: BTreeMap<(usize, &str), Vec<Stats>> = BTreeMap::new();
    let mut per_fsync: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    // Logbook's mean fdatasync time per batch, by thread count.
    let mut fsync_us: BTreeMap<usize, f64> = BTreeMap::new();
    for round in 0..rounds {
        for &threads in &threads_list {
            for k in 0..IMPLS.len() {
                let name = IMPLS[(k + round) % IMPLS.len()];
                let cell = tmp.path().join(format!("{name}-{threads}-{round}"));
                std::fs::create_dir(&cell)?;
                let stats = if name == "ideal_group_commit" {
                    let log = IdealGroupCommit::create(&cell.join("log"), GROUP_COMMIT_FILE)?;
                    let stats = run_threads_for(&log, threads, duration, payload)?;
                    per_fsync.insert(
                        (threads, name),
                        stats.records as f64 / log.batches().max(1) as f64,
                    );
                    stats
                } else if name == "logbook_sink" {
                    let log = LogbookSink::open(&cell, SyncPolicy::Always)?;
                    let stats = run_threads_for(&log, threads, duration, payload)?;
                    let w = log.wal().stats();
                    per_fsync.insert(
                        (threads, name),
                        w.records_synced as f64 / w.fsyncs.max(1) as f64,
                    );
                    fsync_us.insert(threads, w.fsync_micros as f64 / w.fsyncs.max(1) as f64);
                    stats
                } else {
                    let log = open(name, &cell)?;
                    run_threads_for(log.as_ref(), threads, duration, payload)?
                };
                std::fs::remove_dir_all(&cell)?;
                eprintln!(
                    "round {round}: {threads} threads, {name}: {:.0} records/s",
                    stats.records_per_sec
                );
                cells.entry((threads, name)).or_default().push(stats);
            }
        }
    }
    let median = |threads: usize, name: &str| -> Option<Stats> {
        let mut runs = cells.get(&(threads, name))?.clone();
        runs.sort_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec));
        runs.get(runs.len() / 2).cloned()
    };

    println!(
        "| threads | impl | records/s | MB/s | p50 µs | p99 µs | vs okaywal | vs ideal group commit | vs okaywal, median of rounds | rounds' records/s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for &threads in &threads_list {
        let okaywal = median(threads, "okaywal").map(|s| s.records_per_sec);
        let ideal = median(threads, "ideal_group_commit").map(|s| s.records_per_sec);
        for name in IMPLS {
            let Some(Stats {
                records_per_sec,
                mb_per_sec,
                p50_us,
                p99_us,
                ..
            }) = median(threads, name)
            else {
                continue;
            };
            let ratio = |base: Option<f64>| {
                base.map_or_else(
                    || "n/a".to_owned(),
                    |b| format!("{:.2}×", records_per_sec / b),
                )
            };
            let all: Vec<String> = cells[&(threads, name)]
                .iter()
                .map(|s| format!("{:.0}", s.records_per_sec))
                .collect();
            // Each round's ratio to that round's okaywal, then their median:
            // steadier than a ratio of medians on a disk whose speed drifts.
            let mut paired: Vec<f64> = cells[&(threads, name)]
                .iter()
                .zip(cells.get(&(threads, "okaywal")).into_iter().flatten())
                .map(|(a, b)| a.records_per_sec / b.records_per_sec)
                .collect();
            paired.sort_by(f64::total_cmp);
            let paired = paired
                .get(paired.len() / 2)
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}×"));
            println!(
                "| {threads} | {name} | {records_per_sec:.0} | {mb_per_sec:.2} | {p50_us:.0} | {p99_us:.0} | {} | {} | {paired} | {} |",
                ratio(okaywal),
                ratio(ideal),
                all.join(", ")
            );
        }
    }
    for name in ["ideal_group_commit", "logbook_sink"] {
        let notes: Vec<String> = threads_list
            .iter()
            .filter_map(|&t| {
                per_fsync
                    .get(&(t, name))
                    .map(|r| format!("{t} threads: {r:.1}"))
            })
            .collect();
        println!(
            "\n{name}, mean records per fdatasync (last round): {}",
            notes.join(", ")
        );
    }
    let notes: Vec<String> = fsync_us
        .iter()
        .map(|(t, us)| format!("{t} threads: {us:.0} µs"))
        .collect();
    println!(
        "\nlogbook_sink, mean time of one fdatasync (last round): {}",
        notes.join(", ")
    );
    io::stdout().flush()
}

/// Opens the baseline called `name` in the directory `dir` (the ideal group
/// commit is opened in `main`, which also reads its batch count).
fn open(name: &str, dir: &Path) -> io::Result<Box<dyn DurableLog>> {
    Ok(match name {
        "per_record_fsync" => Box::new(PerRecordFsync::create(&dir.join("log"))?),
        "okaywal" => Box::new(OkayWal::open(dir)?),
        other => return Err(io::Error::other(format!("unknown log {other}"))),
    })
}

fn parse_args() -> io::Result<(PathBuf, f64, usize, usize, Vec<usize>)> {
    let mut dir = std::env::current_dir()?;
    let mut secs = 3.0;
    let mut rounds = 3;
    let mut payload = 256;
    let mut threads = Vec::new();
    let mut args = std::env::args().skip(1);
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: compare [--dir DIR] [--secs SECONDS] [--rounds N] [--payload BYTES] [--threads N]...",
        )
    };
    // The next argument as a number above zero.
    let positive = |arg: Option<String>| {
        arg.and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(usage)
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().ok_or_else(usage)?.into(),
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| *s > 0.0)
                    .ok_or_else(usage)?;
            }
            "--rounds" => rounds = positive(args.next())?,
            "--payload" => payload = positive(args.next())?,
            "--threads" => threads.push(positive(args.next())?),
            _ => return Err(usage()),
        }
    }
    if threads.is_empty() {
        threads = THREADS.to_vec();
    }
    Ok((dir, secs, rounds, payload, threads))
}

/// The trimmed standard output of a command, or `?` if it fails.
fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "?".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Median latency in µs of `write 4 KiB + fdatasync`: first overwriting a
/// preallocated (zero-filled, synced) file, then appending to an empty one.
fn fsync_probe(dir: &Path) -> io::Result<(f64, f64)> {
    let block = [0xA5u8; 4096];
    let preallocated = File::create(dir.join("probe-overwrite"))?;
    preallocated.write_all_at(&vec![0u8; PROBE_ROUNDS * block.len()], 0)?;
    preallocated.sync_all()?;
    let overwrite = median_us(PROBE_ROUNDS, |i| {
        preallocated.write_all_at(&block, (i * block.len()) as u64)?;
        preallocated.sync_data()
    })?;

    let mut appended = File::create(dir.join("probe-append"))?;
    appended.sync_all()?;
    let appending = median_us(PROBE_ROUNDS, |_| {
        appended.write_all(&block)?;
        appended.sync_data()
    })?;
    Ok((overwrite, appending))
}

/// Runs `op(i)` for `i` in `0..rounds` and returns the median time in µs.
fn median_us(rounds: usize, mut op: impl FnMut(usize) -> io::Result<()>) -> io::Result<f64> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        op(i)?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(times[rounds / 2].as_secs_f64() * 1e6)
}
