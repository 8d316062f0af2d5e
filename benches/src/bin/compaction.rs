//! Prints what erasure by compaction costs, in one run:
//!
//! * **compaction throughput** against a sequential copy of the same bytes
//!   (each sealed segment read whole, written to a new file, fsynced: the
//!   I/O a compaction cannot avoid), in MiB/s of sealed segments;
//! * **appends during a compaction** against appends alone, durable
//!   (`SyncPolicy::Always`), two threads, records per second.
//!
//! Usage: `compaction [--dir DIR] [--mib N] [--rounds N]`
//!
//! Each round builds a fresh log of `--mib` (default 128) MiB of ~200-byte
//! events in 16 MiB segments, two sessions interleaved, and deletes one of
//! them (half the records: every sealed segment is rewritten). Figures are
//! the median of `--rounds` (default 3). Keep `DIR` on a real disk.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logbook_bus::SessionEvent;
use logbook_wal::{SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

const SEGMENT: u64 = 16 << 20;

fn options(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        sync,
        segment_size: SEGMENT,
        ..WalOptions::default()
    }
}

fn event(i: u64) -> SessionEvent {
    SessionEvent::TextComplete(format!("{i:08} {}", "x".repeat(180)))
}

fn fresh(base: &Path) -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("logbook-compact-")
        .tempdir_in(base)?
        .keep())
}

/// A log of about `mib` MiB, half of it one session, deleted.
fn build(base: &Path, mib: u64) -> io::Result<PathBuf> {
    let dir = fresh(base)?;
    let (gone, kept) = (Uuid::from_u128(1), Uuid::from_u128(2));
    {
        let wal = Wal::open(&dir, options(SyncPolicy::Never)).map_err(io::Error::from)?;
        let n = mib * (1 << 20) / 240;
        for i in 0..n {
            let id = if i % 2 == 0 { gone } else { kept };
            wal.append(id, &event(i)).map_err(io::Error::from)?;
        }
        wal.close().map_err(io::Error::from)?;
    }
    let wal = Wal::open(&dir, options(SyncPolicy::Always)).map_err(io::Error::from)?;
    logbook_replay::delete_session(&wal, gone).map_err(io::Error::other)?;
    wal.close().map_err(io::Error::from)?;
    Ok(dir)
}

/// The sealed segments of `dir` (all but the last) and their bytes.
fn sealed(dir: &Path) -> io::Result<(Vec<PathBuf>, u64)> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segs.retain(|p| p.extension().is_some_and(|x| x == "wal"));
    segs.sort();
    segs.pop();
    let bytes = segs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()))
        .sum::<io::Result<u64>>()?;
    Ok((segs, bytes))
}

/// Seconds to copy `segs` sequentially: read whole, write a new file,
/// fsync it, remove it.
fn copy(segs: &[PathBuf]) -> io::Result<f64> {
    let started = Instant::now();
    for s in segs {
        let bytes = std::fs::read(s)?;
        let to = s.with_extension("copy");
        let mut f = std::fs::File::create(&to)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::remove_file(&to)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Durable appends per second by two threads while `during` runs (or for
/// `secs` when it is `None`), and how long `during` took.
fn appends(wal: &Wal, secs: f64, during: Option<&dyn Fn()>) -> (f64, f64) {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let mut took = 0.0;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (wal, stop, count) = (wal, &stop, &count);
            s.spawn(move || {
                let id = Uuid::from_u64_pair(9, t);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    wal.append(id, &event(i)).expect("append");
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        match during {
            Some(f) => {
                let t = Instant::now();
                f();
                took = t.elapsed().as_secs_f64();
            }
            None => std::thread::sleep(Duration::from_secs_f64(secs)),
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    (count.load(Ordering::Relaxed) as f64 / elapsed, took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut base, mut mib, mut rounds) = (PathBuf::from("."), 128u64, 3usize);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--dir" => base = PathBuf::from(v),
            "--mib" => mib = v.parse().map_err(io::Error::other)?,
            "--rounds" => rounds = v.parse().map_err(io::Error::other)?,
            _ => return Err(io::Error::other(format!("unknown argument {a}"))),
        }
    }
    let (mut copy_rate, mut compact_rate, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut alone, mut during, mut append_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Compaction alone, against the copy of the same bytes.
        let dir = build(&base, mib)?;
        let (segs, bytes) = sealed(&dir)?;
        let mb = bytes as f64 / f64::from(1 << 20);
        let copy_secs = copy(&segs)?;
        let wal = Wal::open(&dir, options(SyncPolicy::Always)).map_err(io::Error::from)?;
        let t = Instant::now();
        let done = wal.compact().map_err(io::Error::from)?;
        let compact_secs = t.elapsed().as_secs_f64();
        assert!(
            done.erased > 0 && !done.segments.is_empty(),
            "{:?} {:?}",
            done.skipped,
            done.in_active_segment
        );
        wal.close().map_err(io::Error::from)?;
        std::fs::remove_dir_all(&dir)?;
        copy_rate.push(mb / copy_secs);
        compact_rate.push(mb / compact_secs);
        ratio.push(copy_secs / compact_secs);
        // Appends alone, then during a compaction, on one log.
        let dir = build(&base, mib)?;
        let wal = Arc::new(Wal::open(&dir, options(SyncPolicy::Always)).map_err(io::Error::from)?);
        let (a, _) = appends(&wal, 3.0, None);
        let w2 = Arc::clone(&wal);
        let (d, took) = appends(
            &wal,
            0.0,
            Some(&move || {
                w2.compact().expect("compact");
            }),
        );
        let _ = took;
        drop(wal);
        std::fs::remove_dir_all(&dir)?;
        alone.push(a);
        during.push(d);
        append_ratio.push(d / a);
    }
    println!("| figure | median of {rounds} | rounds |");
    println!("|---|--:|---|");
    let row = |name: &str, v: &[f64], digits: usize| {
        let all: Vec<String> = v.iter().map(|x| format!("{x:.digits$}")).collect();
        println!(
            "| {name} | {:.digits$} | {} |",
            median(v.to_vec()),
            all.join(", ")
        );
    };
    row("sequential copy, MiB/s", &copy_rate, 0);
    row("compaction, MiB/s", &compact_rate, 0);
    row("compaction / copy (target ≥ 0.5)", &ratio, 2);
    row("durable appends alone, records/s", &alone, 0);
    row("durable appends during compaction, records/s", &during, 0);
    row("during / alone (target ≥ 0.8)", &append_ratio, 2);
    Ok(())
}
