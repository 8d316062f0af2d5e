//! Prints one Markdown table: what reading one session costs through the
//! segments' session indexes, against a full scan of the same log, on a
//! log of many interleaved sessions, and on one `--scale` times larger, in
//! one run (the ratios are the figures; the machine is shared and noisy).
//!
//! Usage: `session_index [--dir DIR] [--sessions N] [--events N] [--scale K] [--rounds N]`
//!
//! Writes a log of `--sessions` (default 10 000) sessions × `--events`
//! (default 300) events of ~200 bytes, interleaved (every session appends
//! in turn), with `SyncPolicy::Never` and a final sync, under `DIR`
//! (default: the current directory; keep it on a real disk), then the
//! same × `--scale` (default 4) sessions. For each log, with the page cache
//! warm (each figure is the median of `--rounds`, default 5, after one
//! warm-up): a full `Reader` scan (CRC-checked, every record),
//! `logbook_replay::session_state` of one session (through the indexes),
//! the same with the indexes removed (a filtered full scan),
//! `list_sessions` (through the segments' session summaries, which the
//! warm-up run stores, the tail's included), and `list_sessions` with the
//! summaries removed before each run (a full scan and a fold).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use logbook_bus::SessionEvent;
use logbook_wal::{Reader, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

fn session(i: u64) -> Uuid {
    Uuid::from_u64_pair(0x5e55_10de, i)
}

fn write_log(dir: &Path, sessions: u64, events: u64) -> io::Result<()> {
    let wal = Wal::open(
        dir,
        WalOptions {
            sync: SyncPolicy::Never,
            ..WalOptions::default()
        },
    )
    .map_err(io::Error::from)?;
    let text = SessionEvent::TextComplete("x".repeat(190));
    for e in 0..events {
        for s in 0..sessions {
            let event = if e + 1 == events {
                SessionEvent::Done
            } else {
                text.clone()
            };
            wal.append(session(s), &event).map_err(io::Error::from)?;
        }
    }
    wal.sync().map_err(io::Error::from)?;
    wal.close().map_err(io::Error::from)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut() -> io::Result<()>) -> io::Result<Duration> {
    f()?; // warm-up: the page cache, and an index a reader may store
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

fn full_scan(dir: &Path) -> io::Result<()> {
    let mut n = 0u64;
    let mut reader = Reader::open(dir).map_err(io::Error::from)?;
    while let Some(r) = reader.next_ref() {
        r.map_err(io::Error::from)?;
        n += 1;
    }
    std::hint::black_box(n);
    Ok(())
}

fn one_session(dir: &Path, id: Uuid) -> io::Result<()> {
    let state = logbook_replay::session_state(dir, id).map_err(io::Error::other)?;
    std::hint::black_box(state.last_lsn());
    Ok(())
}

fn remove_derived(dir: &Path, extension: &str) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == extension) {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

struct Row {
    records: u64,
    bytes: u64,
    full: Duration,
    indexed: Duration,
    scanned: Duration,
    list: Duration,
    list_bare: Duration,
}

fn measure(base: &Path, sessions: u64, events: u64, rounds: usize) -> io::Result<Row> {
    let dir: PathBuf = tempfile::Builder::new()
        .prefix("logbook-index-")
        .tempdir_in(base)?
        .keep();
    eprintln!(
        "writing {sessions} sessions × {events} events in {}",
        dir.display()
    );
    write_log(&dir, sessions, events)?;
    // The bytes of the records (segments are preallocated).
    let mut reader = Reader::open(&dir).map_err(io::Error::from)?;
    let mut table = logbook_wal::SegmentTable::default();
    let _: std::ops::ControlFlow<()> = reader
        .walk(|item| {
            if let logbook_wal::Item::Record(r) = item {
                table.add(&r);
            }
            std::ops::ControlFlow::Continue(())
        })
        .map_err(io::Error::from)?;
    let bytes = table.finish(&reader).iter().map(|s| s.used_bytes).sum();
    let id = session(sessions / 2);
    let full = time(rounds, || full_scan(&dir))?;
    let indexed = time(rounds, || one_session(&dir, id))?;
    let list_sessions = || {
        logbook_replay::list_sessions(&dir)
            .map(|l| std::hint::black_box(l.sessions.len()))
            .map(drop)
            .map_err(io::Error::other)
    };
    let list = time(rounds, list_sessions)?;
    let list_bare = time(rounds.min(3), || {
        remove_derived(&dir, "sum")?;
        remove_derived(&dir, "run")?;
        list_sessions()
    })?;
    // Without indexes: a reader that finds none builds them again on the
    // way, so remove them before every run.
    let scanned = time(rounds, || {
        remove_derived(&dir, "idx")?;
        one_session(&dir, id)
    })?;
    std::fs::remove_dir_all(&dir)?;
    Ok(Row {
        records: sessions * events,
        bytes,
        full,
        indexed,
        scanned,
        list,
        list_bare,
    })
}

fn main() -> io::Result<()> {
    let mut dir = PathBuf::from(".");
    let (mut sessions, mut events, mut scale, mut rounds) = (10_000u64, 300u64, 4u64, 5usize);
    let mut args = std::env::args().skip(1);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    while let Some(a) = args.next() {
        let v = args
            .next()
            .ok_or_else(|| bad(&format!("{a} needs a value")))?;
        let n = || v.parse::<u64>().map_err(|_| bad(&format!("{a}: a number")));
        match a.as_str() {
            "--dir" => dir = PathBuf::from(&v),
            "--sessions" => sessions = n()?,
            "--events" => events = n()?,
            "--scale" => scale = n()?,
            "--rounds" => rounds = usize::try_from(n()?).unwrap_or(1).max(1),
            other => return Err(bad(&format!("unknown argument {other}"))),
        }
    }
    println!(
        "## Reading one session through the session indexes (median of {rounds}, page cache warm)\n"
    );
    println!(
        "| log | full scan | `session_state`, indexed | ratio | `session_state`, no index | ratio | `list_sessions` | ratio | `list_sessions`, no summaries | ratio |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for k in [1, scale.max(1)] {
        let r = measure(&dir, sessions * k, events, rounds)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |d: Duration| ms(d) / ms(r.full).max(1e-9);
        println!(
            "| {} sessions × {events} ({:.1} M records, {} MB) | {:.1} ms | {:.2} ms | {:.4} | {:.1} ms | {:.2} | {:.1} ms | {:.3} | {:.1} ms | {:.2} |",
            sessions * k,
            r.records as f64 / 1e6,
            r.bytes >> 20,
            ms(r.full),
            ms(r.indexed),
            ratio(r.indexed),
            ms(r.scanned),
            ratio(r.scanned),
            ms(r.list),
            ratio(r.list),
            ms(r.list_bare),
            ratio(r.list_bare),
        );
    }
    Ok(())
}
