//! How much one `write` + `fdatasync` costs, by how the file's blocks were
//! prepared: the measurement behind Logbook's preallocation choices
//! (`docs/performance.md`).
//!
//! Usage: `fsync_patterns [--dir DIR] [--secs SECONDS] [--rounds N] [--size BYTES]...`
//!
//! One thread appends records of `--size` bytes (repeatable; default 300 and
//! 4150, a 256-byte and a 4 KiB event in Logbook's frame) sequentially, one
//! `write` + `fdatasync` each, for `--secs` seconds (default 2), to a fresh
//! file prepared in one of these ways:
//!
//! - `overwrite`: zeros written and synced beforehand (blocks allocated and
//!   written: the cheapest `fdatasync`);
//! - `extend`: an empty file that grows (every `fdatasync` persists a size);
//! - `fallocated`: `fallocate` beforehand (unwritten extents, which each
//!   `fdatasync` must convert);
//! - `zero_ahead_<chunk>`: fallocated, and zeros written `<chunk>` at a time
//!   ahead of the records, riding on the records' `fdatasync` (Logbook's
//!   write path);
//! - `zero_ahead_bg`: fallocated, and a second thread keeps zeros written
//!   and synced 4 MiB ahead of the records.
//!
//! Rounds rotate the order of the patterns; the table shows the median round.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const FILE_LEN: u64 = 256 << 20;
const PATTERNS: [&str; 6] = [
    "overwrite",
    "extend",
    "fallocated",
    "zero_ahead_1m",
    "zero_ahead_64k",
    "zero_ahead_bg",
];

struct Args {
    dir: PathBuf,
    secs: f64,
    rounds: usize,
    sizes: Vec<usize>,
}

fn main() -> io::Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::Builder::new()
        .prefix("logbook-fsync-patterns-")
        .tempdir_in(&args.dir)?;
    let duration = Duration::from_secs_f64(args.secs);
    let mut cells: BTreeMap<(usize, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..args.rounds {
        for &size in &args.sizes {
            for k in 0..PATTERNS.len() {
                let name = PATTERNS[(k + round) % PATTERNS.len()];
                let path = tmp.path().join(format!("{name}-{size}-{round}"));
                let rate = run(name, &path, size, duration)?;
                std::fs::remove_file(&path)?;
                eprintln!("round {round}: {size} B, {name}: {rate:.0} records/s");
                cells.entry((size, name)).or_default().push(rate);
            }
        }
    }
    println!("| record bytes | pattern | records/s | µs per record | rounds' records/s |");
    println!("|---:|---|---:|---:|---|");
    for &size in &args.sizes {
        for name in PATTERNS {
            let mut runs = cells[&(size, name)].clone();
            let all: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
            runs.sort_by(f64::total_cmp);
            let median = runs[runs.len() / 2];
            println!(
                "| {size} | {name} | {median:.0} | {:.0} | {} |",
                1e6 / median,
                all.join(", ")
            );
        }
    }
    Ok(())
}

/// Appends `size`-byte records to a fresh file at `path` prepared as
/// `pattern`, for `duration`; returns records per second.
fn run(pattern: &str, path: &Path, size: usize, duration: Duration) -> io::Result<f64> {
    let file = Arc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?,
    );
    match pattern {
        "overwrite" => {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..FILE_LEN >> 20 {
                file.write_all_at(&zeros, i << 20)?;
            }
        }
        "extend" => {}
        _ => rustix::fs::fallocate(&*file, rustix::fs::FallocateFlags::empty(), 0, FILE_LEN)?,
    }
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    let chunk = match pattern {
        "zero_ahead_1m" => Some(1u64 << 20),
        "zero_ahead_64k" => Some(64 << 10),
        _ => None,
    };
    // The background zeroer of `zero_ahead_bg`.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let zeroer = (pattern == "zero_ahead_bg").then(|| {
        let (file, written, stop) = (file.clone(), written.clone(), stop.clone());
        std::thread::spawn(move || -> io::Result<()> {
            const AHEAD: u64 = 4 << 20;
            const CHUNK: u64 = 1 << 20;
            let zeros = vec![0u8; CHUNK as usize];
            let mut zeroed = 0;
            while !stop.load(Ordering::Relaxed) {
                if zeroed < written.load(Ordering::Relaxed) + AHEAD && zeroed < FILE_LEN {
                    file.write_all_at(&zeros, zeroed)?;
                    file.sync_data()?;
                    zeroed += CHUNK;
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Ok(())
        })
    });
    // Let the zeroer get ahead before the clock starts.
    if zeroer.is_some() {
        std::thread::sleep(Duration::from_millis(200));
    }

    let record = vec![0xA5u8; size];
    let mut pos = 0u64;
    let mut zeroed_to = 0u64;
    let mut records = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration && pos + size as u64 <= FILE_LEN {
        if let Some(chunk) = chunk {
            let want = (pos + size as u64 + chunk / 2).min(FILE_LEN);
            while zeroed_to < want {
                let from = zeroed_to.max(pos);
                let to = (from + chunk).min(FILE_LEN);
                file.write_all_at(&vec![0u8; (to - from) as usize], from)?;
                zeroed_to = to;
            }
        }
        file.write_all_at(&record, pos)?;
        file.sync_data()?;
        pos += size as u64;
        written.store(pos, Ordering::Relaxed);
        records += 1;
    }
    let rate = records as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(zeroer) = zeroer {
        zeroer
            .join()
            .map_err(|_| io::Error::other("zeroer panicked"))??;
    }
    Ok(rate)
}

fn parse_args() -> io::Result<Args> {
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: fsync_patterns [--dir DIR] [--secs SECONDS] [--rounds N] [--size BYTES]...",
        )
    };
    let mut args = Args {
        dir: std::env::current_dir()?,
        secs: 2.0,
        rounds: 3,
        sizes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(usage)?;
        match arg.as_str() {
            "--dir" => args.dir = value.into(),
            "--secs" => args.secs = value.parse().map_err(|_| usage())?,
            "--rounds" => args.rounds = value.parse().map_err(|_| usage())?,
            "--size" => args.sizes.push(value.parse().map_err(|_| usage())?),
            _ => return Err(usage()),
        }
    }
    if args.sizes.is_empty() {
        args.sizes = vec![300, 4150];
    }
    if args.rounds == 0 || args.secs <= 0.0 || args.sizes.contains(&0) {
        return Err(usage());
    }
    Ok(args)
}
