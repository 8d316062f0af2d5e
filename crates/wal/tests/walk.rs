//! `Reader::walk`, the lenient walk every tool shares, and `SegmentTable`:
//! on a log damaged anywhere, the walk reaches the end, reports each
//! problem once with its place, in log order, and returns every record that
//! is still valid; the table agrees with the records.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use common::{session, small};
use logbook_wal::{Item, Reader, SegmentTable, Wal};
use proptest::prelude::*;

/// A closed log of `n` records in segments of 4 KiB; its segment files.
fn log(dir: &Path, n: u64) -> Vec<PathBuf> {
    let wal = Wal::open(dir, small(4096)).unwrap();
    for i in 0..n {
        let payload = vec![b'a' + (i % 26) as u8; 40 + (i as usize * 7) % 90];
        wal.append_raw(session(i % 3), &payload).unwrap();
    }
    wal.close().unwrap();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    segments
}

/// Walk the whole log: (LSNs of the records, locations of the problems).
fn walk(dir: &Path) -> (Vec<u64>, Vec<(PathBuf, u64)>, Reader, SegmentTable) {
    let mut reader = Reader::open(dir).unwrap();
    let mut table = SegmentTable::default();
    let (mut lsns, mut problems) = (Vec::new(), Vec::new());
    let mut steps = 0u64;
    let end = reader
        .walk(|item| {
            steps += 1;
            assert!(steps < 1_000_000, "the walk makes no progress");
            match item {
                Item::Record(r) => {
                    table.add(&r);
                    lsns.push(r.lsn);
                }
                Item::Problem(e) => {
                    let (path, offset) = e.location().expect("a problem names its place");
                    problems.push((path.to_path_buf(), offset));
                }
            }
            ControlFlow::<()>::Continue(())
        })
        .unwrap();
    assert_eq!(end, ControlFlow::Continue(()));
    (lsns, problems, reader, table)
}

#[test]
fn a_clean_log_walks_with_no_problem_and_the_table_counts_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let segments = log(dir.path(), 300);
    assert!(segments.len() > 3, "several segments");
    let (lsns, problems, reader, table) = walk(dir.path());
    assert_eq!(lsns, (1..=300).collect::<Vec<_>>());
    assert!(problems.is_empty(), "{problems:?}");
    let summaries = table.finish(&reader);
    assert_eq!(
        summaries.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
        segments
    );
    assert_eq!(summaries.iter().map(|s| s.records).sum::<u64>(), 300);
    for s in &summaries {
        let header = s.header.as_ref().unwrap();
        assert_eq!(Some(header.base_lsn), s.first_lsn, "{}", s.file_name());
        assert!(s.used_bytes <= s.file_size);
    }
    // Consecutive segments: each starts where the previous one ended.
    for w in summaries.windows(2) {
        assert_eq!(w[0].last_lsn.map(|l| l + 1), w[1].first_lsn);
    }
}

#[test]
fn a_walk_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 50);
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut seen = 0;
    let end = reader
        .walk(|item| {
            let Item::Record(r) = item else {
                return ControlFlow::Break(0);
            };
            seen += 1;
            if r.lsn == 10 {
                ControlFlow::Break(r.lsn)
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((end, seen), (ControlFlow::Break(10), 10));
    // And goes on from there when called again.
    let next = reader.next_ref().unwrap().unwrap().lsn;
    assert_eq!(next, 11);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Damage anywhere (flipped bytes, zeroed runs) in a sealed segment:
    /// the walk still reaches the end, every record it returns is one of
    /// the log's, in increasing LSN order, each problem is reported at a
    /// place after the previous one, and the records of undamaged segments
    /// are all there.
    #[test]
    fn a_damaged_log_is_walked_to_its_end(
        hits in prop::collection::vec((0usize..3, any::<prop::sample::Index>(), 1usize..64, any::<bool>()), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let segments = log(dir.path(), 200);
        prop_assume!(segments.len() >= 4);
        let (clean, _, _, clean_table) = {
            let (l, p, r, t) = walk(dir.path());
            (l, p, r, t.finish(&Reader::open(dir.path()).unwrap()))
        };
        let mut damaged = std::collections::BTreeSet::new();
        for (seg, at, len, flip) in &hits {
            // Sealed segments only: damage in the tail is a torn tail.
            let path = &segments[*seg];
            let mut bytes = std::fs::read(path).unwrap();
            let start = 64 + at.index(bytes.len() - 64);
            let end = (start + len).min(bytes.len());
            for b in &mut bytes[start..end] {
                *b = if *flip { !*b } else { 0 };
            }
            std::fs::write(path, &bytes).unwrap();
            damaged.insert(path.clone());
        }
        let (lsns, problems, _, _) = walk(dir.path());
        prop_assert!(lsns.windows(2).all(|w| w[0] < w[1]), "records in LSN order");
        prop_assert!(lsns.iter().all(|l| clean.contains(l)));
        let order: Vec<usize> = problems
            .iter()
            .map(|(p, _)| segments.iter().position(|s| s == p).unwrap())
            .collect();
        prop_assert!(
            problems.windows(2).zip(order.windows(2)).all(|(p, o)| (o[0], p[0].1) < (o[1], p[1].1)),
            "each problem once, in log order: {problems:?}"
        );
        for s in &clean_table {
            if !damaged.contains(&s.path) {
                for lsn in s.first_lsn.unwrap()..=s.last_lsn.unwrap() {
                    prop_assert!(lsns.contains(&lsn), "LSN {lsn} of an undamaged segment");
                }
            }
        }
    }
}

/// `resume_after` goes straight past a record the log still holds, across
/// a segment's end too, and refuses (leaving the reader at the start) a
/// place whose record is not the one there.
#[test]
fn resume_after_goes_past_the_very_record_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(4096)).unwrap();
    for i in 0..200u32 {
        wal.append_raw(uuid::Uuid::from_u128(u128::from(i % 3)), &i.to_le_bytes())
            .unwrap();
    }
    wal.close().unwrap();
    let all: Vec<logbook_wal::Place> = Reader::open(dir.path())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            let segment = r.segment.clone();
            let base: u64 = segment
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            logbook_wal::Place {
                segment_base: base,
                offset: r.offset,
                lsn: r.lsn,
                crc: logbook_wal::FrameFields::parse(
                    &std::fs::read(&segment).unwrap()[r.offset as usize..],
                )
                .unwrap()
                .crc,
            }
        })
        .collect();
    assert!(Reader::open(dir.path()).unwrap().segments().len() > 2);
    // The place of each record, as RecordRef::place gives it.
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut i = 0;
    while let Some(r) = reader.next_ref() {
        assert_eq!(r.unwrap().place(), all[i]);
        i += 1;
    }
    for (i, place) in all.iter().enumerate() {
        let mut reader = Reader::open(dir.path()).unwrap();
        assert!(reader.resume_after(*place).unwrap(), "at {place:?}");
        let rest: Vec<u64> = reader.map(|r| r.unwrap().lsn).collect();
        assert_eq!(rest, (i as u64 + 2..=200).collect::<Vec<_>>());
    }
    for wrong in [
        logbook_wal::Place {
            crc: all[5].crc ^ 1,
            ..all[5]
        },
        logbook_wal::Place {
            lsn: all[5].lsn + 1,
            ..all[5]
        },
        logbook_wal::Place {
            offset: all[5].offset + 1,
            ..all[5]
        },
        logbook_wal::Place {
            segment_base: 999_999,
            ..all[5]
        },
    ] {
        let mut reader = Reader::open(dir.path()).unwrap();
        assert!(!reader.resume_after(wrong).unwrap(), "{wrong:?}");
        assert_eq!(reader.next().unwrap().unwrap().lsn, 1, "left at the start");
    }
}
