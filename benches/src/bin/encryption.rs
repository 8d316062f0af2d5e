//! Prints one Markdown table: what encryption at rest costs, in one run,
//! against the same work in the clear: durable appends (`SyncPolicy::Always`,
//! one thread and 16 threads), buffered appends (`SyncPolicy::Never`), and a
//! CRC-checked scan that decodes every record (decrypting it when sealed).
//!
//! Usage: `encryption [--dir DIR] [--records N] [--rounds N] [--only TEXT]
//! [--each]` (`--only`: the rows whose name holds TEXT, such as `scan`;
//! `--each`: every round's figures on stderr)
//!
//! Each figure is the median of `--rounds` (default 3) runs of `--records`
//! (default 200 000) events of ~200 bytes, under `DIR` (default: the
//! current directory; keep it on a real disk).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_bus::SessionEvent;
use logbook_wal::{EventRecord, Key, KeyRing, Reader, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

fn options(sync: SyncPolicy, ring: Option<&Arc<KeyRing>>) -> WalOptions {
    WalOptions {
        sync,
        encryption: ring.cloned(),
        ..WalOptions::default()
    }
}

fn event(i: u64) -> SessionEvent {
    SessionEvent::TextComplete(format!("{i:08} {}", "x".repeat(180)))
}

fn fresh(base: &Path) -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("logbook-enc-")
        .tempdir_in(base)?
        .keep())
}

/// Appends per second: `threads` threads appending `n` records in all.
fn appends(
    base: &Path,
    n: u64,
    threads: u64,
    sync: SyncPolicy,
    ring: Option<&Arc<KeyRing>>,
) -> io::Result<f64> {
    let dir = fresh(base)?;
    let wal = Wal::open(&dir, options(sync, ring)).map_err(io::Error::from)?;
    quiesce();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let wal = &wal;
            s.spawn(move || {
                let id = Uuid::from_u64_pair(1, t);
                for i in 0..n / threads {
                    wal.append(id, &event(i)).expect("append");
                }
            });
        }
    });
    wal.sync().map_err(io::Error::from)?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    wal.close().map_err(io::Error::from)?;
    std::fs::remove_dir_all(dir)?;
    Ok(rate)
}

/// Records per second of a decoding scan of a log of `n` records.
fn scan(base: &Path, n: u64, ring: Option<&Arc<KeyRing>>) -> io::Result<f64> {
    let dir = fresh(base)?;
    let wal = Wal::open(&dir, options(SyncPolicy::Never, ring)).map_err(io::Error::from)?;
    for i in 0..n {
        wal.append(Uuid::nil(), &event(i))
            .map_err(io::Error::from)?;
    }
    wal.close().map_err(io::Error::from)?;
    let read = || -> io::Result<u64> {
        let mut reader = Reader::open(&dir).map_err(io::Error::from)?;
        if let Some(ring) = ring {
            reader = reader.with_keys(ring.clone());
        }
        let mut count = 0;
        while let Some(r) = reader.next_ref() {
            let r = r.map_err(io::Error::from)?;
            std::hint::black_box(EventRecord::decode(&r).map_err(io::Error::from)?);
            count += 1;
        }
        Ok(count)
    };
    read()?; // warm the page cache
    quiesce();
    let started = Instant::now();
    let count = read()?;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir)?;
    Ok(rate)
}

/// Write out the dirty pages of the cells before (`sync(2)`), so that the
/// kernel's writeback does not share the CPUs with the cell measured next.
fn quiesce() {
    rustix::fs::sync();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> io::Result<()> {
    let mut dir = PathBuf::from(".");
    let (mut records, mut rounds) = (200_000u64, 3usize);
    let mut only = String::new();
    let verbose = std::env::args().any(|a| a == "--each");
    let mut args = std::env::args().skip(1);
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    while let Some(a) = args.next() {
        if a == "--each" {
            continue;
        }
        let v = args
            .next()
            .ok_or_else(|| bad(format!("{a} needs a value")))?;
        let n = || v.parse::<u64>().map_err(|_| bad(format!("{a}: a number")));
        match a.as_str() {
            "--dir" => dir = PathBuf::from(&v),
            "--only" => only.clone_from(&v),
            "--records" => records = n()?,
            "--rounds" => rounds = usize::try_from(n()?).unwrap_or(1).max(1),
            other => return Err(bad(format!("unknown argument {other}"))),
        }
    }
    let ring = Arc::new(KeyRing::new(Key::new([7; 32])));
    let durable = (records / 20).max(1000);
    let batch = SyncPolicy::Never;
    type Cell<'a> = (
        &'a str,
        Box<dyn Fn(Option<&Arc<KeyRing>>) -> io::Result<f64> + 'a>,
    );
    let cells: Vec<Cell<'_>> = vec![
        (
            "durable appends, 1 thread (`Always`)",
            Box::new(|r| appends(&dir, durable / 10, 1, SyncPolicy::Always, r)),
        ),
        (
            "durable appends, 16 threads (`Always`)",
            Box::new(|r| appends(&dir, durable, 16, SyncPolicy::Always, r)),
        ),
        (
            "buffered appends, 1 thread (`Never`)",
            Box::new(|r| appends(&dir, records, 1, batch, r)),
        ),
        (
            "decoding scan, page cache warm",
            Box::new(|r| scan(&dir, records, r)),
        ),
    ];
    println!("## Encryption at rest against the clear (median of {rounds}, records/s)\n");
    println!("| work | clear | encrypted | ratio |");
    println!("|---|--:|--:|--:|");
    for (name, cell) in cells
        .iter()
        .filter(|(name, _)| name.contains(only.as_str()))
    {
        let mut clear = Vec::new();
        let mut sealed = Vec::new();
        for _ in 0..rounds {
            clear.push(cell(None)?);
            sealed.push(cell(Some(&ring))?);
            if verbose {
                let (c, e) = (clear[clear.len() - 1], sealed[sealed.len() - 1]);
                eprintln!("  {name}: {c:.0} {e:.0} {:.2}", e / c);
            }
        }
        let (c, e) = (median(clear), median(sealed));
        println!("| {name} | {c:.0} | {e:.0} | {:.2} |", e / c);
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
