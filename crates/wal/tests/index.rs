//! Session indexes (`<segment>.idx`): whatever happened to the log —
//! rolls, clean closes, crashes, power cuts that tear its tail, retention,
//! indexes damaged, truncated or removed — reading one session through the
//! indexes (`Reader::session`) gives exactly what filtering a full scan
//! gives.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{session, small};
use logbook_wal::fs::{Fs, OpenMode};
use logbook_wal::sim::SimFs;
use logbook_wal::{Lsn, Reader, Wal, WalError};
use proptest::prelude::*;
use uuid::Uuid;

const DIR: &str = "/log";
const SESSIONS: u64 = 5;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` records, sessions chosen from `pick`.
    Append { n: u8, pick: u64 },
    /// Close cleanly and reopen (the tail gets its index).
    Reopen,
    /// The process dies: no close, no tail index.
    Crash,
    /// Power is cut: unsynced bytes torn, the tail cut at reopen.
    PowerCut,
    /// Retention: drop the segments before about this fraction of the log.
    Truncate { permille: u16 },
    /// Damage an index file: flip a byte, cut it short, or remove it.
    BreakIndex { which: usize, how: u8, at: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..60, any::<u64>()).prop_map(|(n, pick)| Op::Append { n, pick }),
        2 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerCut),
        1 => (0u16..1000).prop_map(|permille| Op::Truncate { permille }),
        2 => (any::<usize>(), 0u8..3, any::<u16>()).prop_map(|(which, how, at)| Op::BreakIndex { which, how, at }),
    ]
}

fn open(fs: &SimFs) -> Wal {
    Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap()
}

/// A session's records: (LSN, payload).
type Records = Vec<(Lsn, Vec<u8>)>;

/// Every (LSN, payload) of `id`, by a full scan and through the indexes.
fn both_ways(fs: &SimFs, id: Uuid) -> (Records, Records) {
    let collect = |reader: Reader, filter: bool| -> Result<Records, WalError> {
        reader
            .filter(|r| !filter || r.as_ref().is_ok_and(|r| r.session == id))
            .map(|r| r.map(|r| (r.lsn, r.payload)))
            .collect()
    };
    let fs_arc: Arc<dyn Fs> = Arc::new(fs.clone());
    let full = collect(Reader::open_with_fs(fs_arc.clone(), DIR).unwrap(), true).unwrap();
    let indexed = collect(
        Reader::open_with_fs(fs_arc, DIR).unwrap().session(id),
        false,
    )
    .unwrap();
    (full, indexed)
}

fn index_files(fs: &SimFs) -> Vec<PathBuf> {
    let mut names = fs.read_dir(Path::new(DIR)).unwrap();
    names.sort();
    names
        .into_iter()
        .filter(|n| n.ends_with(".idx"))
        .map(|n| Path::new(DIR).join(n))
        .collect()
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let fs = SimFs::new(seed);
    let mut wal = Some(open(&fs));
    let mut counter = 0u64;
    for op in ops {
        match op {
            Op::Append { n, pick } => {
                let w = wal.get_or_insert_with(|| open(&fs));
                let mut p = *pick;
                for _ in 0..*n {
                    counter += 1;
                    let s = session(p % SESSIONS);
                    p = p.rotate_left(7) ^ counter;
                    let payload = vec![b'a' + (counter % 26) as u8; 20 + (counter % 70) as usize];
                    w.append_raw(s, &payload).unwrap();
                }
            }
            Op::Reopen => {
                if let Some(w) = wal.take() {
                    w.close().unwrap();
                }
                wal = Some(open(&fs));
            }
            Op::Crash => {
                if let Some(w) = wal.take() {
                    fs.crash();
                    drop(w);
                }
                wal = Some(open(&fs));
            }
            Op::PowerCut => {
                if let Some(w) = wal.take() {
                    fs.power_cut();
                    drop(w);
                }
                wal = Some(open(&fs));
            }
            Op::Truncate { permille } => {
                let w = wal.get_or_insert_with(|| open(&fs));
                let next = w.last_lsn() + 1;
                w.truncate_before(next * u64::from(*permille) / 1000)
                    .unwrap();
            }
            Op::BreakIndex { which, how, at } => {
                let files = index_files(&fs);
                if files.is_empty() {
                    continue;
                }
                let path = &files[which % files.len()];
                match how {
                    0 => {
                        let f = fs.open(path, OpenMode::ReadWrite).unwrap();
                        let len = f.len().unwrap();
                        let at = u64::from(*at) % len.max(1);
                        let mut b = [0u8; 1];
                        f.read_at(&mut b, at).unwrap();
                        f.write_all_at(&[!b[0]], at).unwrap();
                    }
                    1 => {
                        let f = fs.open(path, OpenMode::ReadWrite).unwrap();
                        let len = f.len().unwrap();
                        f.set_len(u64::from(*at) % len.max(1)).unwrap();
                    }
                    _ => fs.remove_file(path).unwrap(),
                }
            }
        }
        for s in 0..SESSIONS {
            let (full, indexed) = both_ways(&fs, session(s));
            prop_assert_eq!(&full, &indexed, "session {} after {:?}", s, op);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("LOGBOOK_INDEX_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn reading_a_session_through_its_indexes_equals_filtering_a_full_scan(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(seed, &ops)?;
    }
}

/// The writer stores an index when it seals a segment and, for the tail,
/// when it closes (how much less a reader of one session then reads is
/// measured by the `index` bench, not here).
#[test]
fn sealed_segments_and_a_closed_tail_are_indexed() {
    let fs = SimFs::new(7);
    let wal = open(&fs);
    for i in 0..400u64 {
        wal.append_raw(session(i % 20), &[b'x'; 200]).unwrap();
    }
    wal.close().unwrap();
    let segments: Vec<String> = {
        let mut n = fs.read_dir(Path::new(DIR)).unwrap();
        n.sort();
        n.into_iter().filter(|n| n.ends_with(".wal")).collect()
    };
    let indexes = index_files(&fs);
    assert!(segments.len() > 5);
    assert_eq!(indexes.len(), segments.len(), "every segment, the tail too");
    let (full, indexed) = both_ways(&fs, session(3));
    assert_eq!(full.len(), 20);
    assert_eq!(full, indexed);
}

/// A tail indexed at close, then cut by a point-in-time recovery below what
/// its index covers (damage to an acknowledged record), then written anew
/// past where the index ended: the index no longer describes the segment
/// (its last record is another now), so it is not used, and reading one
/// session still equals filtering a full scan.
#[test]
fn a_tail_index_of_records_recovery_cut_and_rewrote_is_not_used() {
    let fs = SimFs::new(11);
    let opts = || logbook_wal::WalOptions {
        recovery: logbook_wal::RecoveryMode::PointInTime,
        ..small(1 << 20)
    };
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts()).unwrap();
    for i in 0..40u64 {
        wal.append_raw(session(i % 4), &[b'a' + (i % 26) as u8; 50])
            .unwrap();
    }
    wal.close().unwrap();
    let tail = Path::new(DIR).join("00000000000000000001.wal");
    assert!(index_files(&fs).len() == 1, "the tail was indexed at close");
    // Damage record 10: recovery (point in time) cuts from there.
    let mut bytes = fs.file_bytes(&tail).unwrap();
    let at = 40 + 9 * (48 + 50) + 60;
    bytes[at] ^= 0xff;
    fs.set_file_bytes(&tail, bytes);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts()).unwrap();
    assert!(wal.recovery().cut.is_some(), "{:?}", wal.recovery());
    // New records, other sessions and sizes, past where the index ended.
    for i in 0..60u64 {
        wal.append_raw(session(i % 3), &[b'z'; 70]).unwrap();
    }
    fs.crash();
    drop(wal);
    for s in 0..4 {
        let (full, indexed) = both_ways(&fs, session(s));
        assert_eq!(full, indexed, "session {s}");
    }
}

/// Retention removes segments, then their indexes. With a power cut at each
/// of its operations in turn (the simulated process going on after the cut
/// as a real one could not), the log that survives has no gap between its
/// segments: nothing durable follows a failure the log chose to ignore.
#[test]
fn a_power_cut_anywhere_in_retention_leaves_no_gap_between_segments() {
    for n in 1..40u64 {
        let fs = SimFs::new(n);
        let wal = open(&fs);
        for i in 0..300u64 {
            wal.append_raw(session(i % 5), &[b'r'; 120]).unwrap();
        }
        fs.cut_power_after(n);
        let _ = wal.truncate_before(250);
        let cut = fs.power_was_cut();
        fs.cut_power_after(u64::MAX / 2);
        if !cut {
            fs.power_cut();
        }
        drop(wal);
        drop(open(&fs));
        let mut last = None;
        for r in Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap() {
            let r = r.unwrap_or_else(|e| panic!("cut at operation {n}: {e}"));
            if let Some(l) = last {
                assert_eq!(r.lsn, l + 1, "cut at operation {n}: a gap");
            }
            last = Some(r.lsn);
        }
        assert_eq!(last, Some(300), "cut at operation {n}");
    }
}

/// Retention removes a segment's derived files with it: its session index
/// and the session summaries `logbook-replay` keeps beside it.
#[test]
fn retention_removes_the_derived_files_of_the_segments_it_removes() {
    let fs = SimFs::new(3);
    let wal = open(&fs);
    for i in 0..300u64 {
        wal.append_raw(session(i % 5), &[b'd'; 120]).unwrap();
    }
    let names = |fs: &SimFs| {
        let mut n = fs.read_dir(Path::new(DIR)).unwrap();
        n.sort();
        n
    };
    let segments: Vec<String> = names(&fs)
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    for s in &segments {
        for suffix in ["sum", "run"] {
            let sum = Path::new(DIR).join(format!("{s}.{suffix}"));
            let f = fs.open(&sum, OpenMode::CreateNew).unwrap();
            f.write_all_at(b"summaries", 0).unwrap();
        }
    }
    let removed = wal.truncate_before(250).unwrap();
    assert!(removed > 0);
    let left = names(&fs);
    for s in segments.iter().take(removed) {
        assert!(!left.contains(s), "{s} removed");
        assert!(
            !left.contains(&format!("{s}.idx")),
            "{s}.idx removed: {left:?}"
        );
        assert!(
            !left.contains(&format!("{s}.sum")),
            "{s}.sum removed: {left:?}"
        );
        assert!(
            !left.contains(&format!("{s}.run")),
            "{s}.run removed: {left:?}"
        );
    }
    for s in segments.iter().skip(removed) {
        assert!(left.contains(&format!("{s}.sum")), "{s}.sum kept");
        assert!(left.contains(&format!("{s}.run")), "{s}.run kept");
    }
}

/// A live tail (no close, so no index from the writer) gets an index from
/// the readers of one session once it holds a quarter of its size, and a
/// new one each time it gained as much again, built on top of the last:
/// reading through it always equals filtering a full scan.
#[test]
fn a_live_tail_is_indexed_by_its_readers_as_it_grows() {
    let fs = SimFs::new(5);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(1 << 20)).unwrap();
    let tail_index = Path::new(DIR).join("00000000000000000001.wal.idx");
    let mut sizes = Vec::new();
    for round in 0..3u64 {
        // 1100 records of 248 bytes: a quarter of the 1 MiB segment.
        for i in 0..1100u64 {
            wal.append_raw(session(i % 20), &[b'a' + (round as u8); 200])
                .unwrap();
        }
        for s in [3, 17] {
            let (full, indexed) = both_ways(&fs, session(s));
            assert_eq!(full.len() as u64, 55 * (round + 1));
            assert_eq!(full, indexed, "round {round}, session {s}");
        }
        let index = fs.file_bytes(&tail_index).expect("the tail was indexed");
        sizes.push(index.len());
        // Its index is usable: a reader of one session jumps through it.
        let table = {
            let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap();
            let mut t = logbook_wal::SegmentTable::default();
            let _ = reader.walk(|item| {
                if let logbook_wal::Item::Record(r) = item {
                    t.add(&r);
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            t.finish(&reader)
        };
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].index_problem, None, "round {round}");
    }
    assert!(
        sizes.windows(2).all(|w| w[1] > w[0]),
        "a new index each round: {sizes:?}"
    );
    drop(wal);
}
