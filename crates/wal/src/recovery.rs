//! Recovery: validate the tail segment, cut a torn tail, and report what
//! was done. Only the tail segment is read, so `open` costs time in
//! proportion to it, not to the log.

use std::path::PathBuf;

use crate::error::WalError;
use crate::format::{Lsn, SEGMENT_HEADER_LEN, WatermarkState};
use crate::options::RecoveryMode;
use crate::scan::{AfterDamage, Problem, Step, last_nonzero, step, survey_after_damage};
use crate::segment::{SegmentEntry, check_header};

/// What recovery cut off the tail segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The segment.
    pub path: PathBuf,
    /// Where the cut starts: the end of the last valid record.
    pub offset: u64,
    /// How many bytes (up to the last non-zero byte) were cut.
    pub bytes: u64,
    /// The LSN that was due at the cut; the log continues from it.
    pub lsn: Lsn,
    /// CRC-valid frames found past the cut (written after the last fsync,
    /// so never acknowledged under `SyncPolicy::Always`), dropped with it.
    pub frames_dropped: u64,
    /// What was found at the cut.
    pub reason: String,
}

/// A damaged stretch that [`RecoveryMode::SkipCorrupted`] stepped over.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The segment.
    pub path: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// The LSN that was due there.
    pub lsn: Lsn,
    /// The LSN of the next valid record.
    pub resumed_at: Lsn,
}

/// What `open` found and did. Returned by [`Wal::recovery`](crate::Wal::recovery)
/// and by [`inspect`](crate::inspect) (which changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments in the directory.
    pub segments: usize,
    /// The tail (active) segment.
    pub tail: Option<PathBuf>,
    /// Valid records in the tail segment.
    pub tail_records: u64,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// The torn tail that was cut, if any.
    pub cut: Option<Cut>,
    /// Damage skipped under [`RecoveryMode::SkipCorrupted`].
    pub skipped: Vec<Skipped>,
    /// Temporaries of interrupted segment creations (removed by `open`).
    pub temporaries: Vec<PathBuf>,
    /// Files that are not part of the log (left alone).
    pub foreign: Vec<PathBuf>,
    /// Whether `open` created a new, empty log.
    pub created: bool,
}

/// The verdict on a tail segment's bytes.
#[derive(Debug)]
pub(crate) struct TailAnalysis {
    /// Where the next record goes.
    pub(crate) end: usize,
    pub(crate) next_lsn: Lsn,
    pub(crate) records: u64,
    pub(crate) cut: Option<Cut>,
    pub(crate) skipped: Vec<Skipped>,
}

fn describe(problem: Option<Problem>) -> String {
    match problem {
        None => "zeros followed by non-zero bytes".to_owned(),
        Some(Problem::Frame(e)) => e.to_string(),
        Some(Problem::Sequence { found }) => format!("valid frame with LSN {found}"),
    }
}

/// Decide what to keep of a tail segment (see `docs/format.md`, "Torn tails
/// and the sync mark", "The durable watermark" and "Recovery modes").
/// `prior` is the watermark the previous writer left in `LOCK`.
pub(crate) fn analyze(
    bytes: &[u8],
    entry: &SegmentEntry,
    mode: RecoveryMode,
    prior: WatermarkState,
) -> Result<TailAnalysis, WalError> {
    let header = check_header(bytes, entry)?;
    let path = &entry.path;
    let (durable_end, poisoned) = match prior {
        WatermarkState::Valid(w) => (w.durable_end, w.poisoned),
        WatermarkState::Absent | WatermarkState::Invalid => (0, false),
    };
    let mut at = header.records_start();
    let mut expected = entry.base_lsn;
    let mut records = 0;
    let mut skipped = Vec::new();
    loop {
        let problem = match step(bytes, at, expected) {
            Step::Record { .. } if poisoned && expected >= durable_end => {
                // Written after the last fsync that succeeded, by a writer
                // whose next fsync (or write) failed: what reads back may be
                // only the page cache's copy. Never durable, never kept.
                return cut_after_failure(bytes, entry, mode, at, expected, records, skipped);
            }
            Step::Record { len, .. } => {
                at += len;
                expected += 1;
                records += 1;
                continue;
            }
            Step::End => None,
            Step::Bad(p) => Some(p),
        };
        // Survey what follows: frames with an LSN at or above the one due.
        let AfterDamage {
            valid_frames: valid_after,
            first,
            vouching,
        } = survey_after_damage(bytes, at, expected);
        let garbage_end = last_nonzero(bytes).map_or(at, |p| (p + 1).max(at));
        let vouched = expected < durable_end;
        if problem.is_none() && garbage_end == at {
            if vouched && refuses(mode) {
                return Err(WalError::DurableDamaged {
                    path: path.clone(),
                    offset: at as u64,
                    lsn: expected,
                    durable_end,
                    what: "missing (the segment ends there)".into(),
                });
            }
            break; // the clean end
        }
        match mode {
            RecoveryMode::SkipCorrupted => {
                if let Some(found) = first {
                    skipped.push(Skipped {
                        path: path.clone(),
                        offset: at as u64,
                        lsn: expected,
                        resumed_at: found.header.lsn,
                    });
                    at = found.offset;
                    expected = found.header.lsn;
                    continue;
                }
            }
            RecoveryMode::TolerateCorruptedTail | RecoveryMode::AbsoluteConsistency => {
                if let Some(next) = vouching {
                    return Err(WalError::MidLogCorruption {
                        path: path.clone(),
                        offset: at as u64,
                        lsn: expected,
                        next_offset: next as u64,
                        valid_after,
                    });
                }
                if vouched {
                    return Err(WalError::DurableDamaged {
                        path: path.clone(),
                        offset: at as u64,
                        lsn: expected,
                        durable_end,
                        what: format!("damaged ({})", describe(problem)),
                    });
                }
            }
            RecoveryMode::PointInTime => {}
        }
        if mode == RecoveryMode::AbsoluteConsistency {
            return Err(match problem {
                Some(Problem::Frame(reason)) => WalError::Corrupt {
                    path: path.clone(),
                    offset: at as u64,
                    lsn: expected,
                    reason,
                },
                Some(Problem::Sequence { found }) => WalError::Sequence {
                    path: path.clone(),
                    offset: at as u64,
                    expected,
                    found,
                },
                None => WalError::BadSegment {
                    path: path.clone(),
                    reason: format!(
                        "offset {at}: zeros followed by non-zero bytes where LSN {expected} was due"
                    ),
                },
            });
        }
        let cut = Cut {
            path: path.clone(),
            offset: at as u64,
            bytes: (garbage_end - at) as u64,
            lsn: expected,
            frames_dropped: valid_after,
            reason: describe(problem),
        };
        return Ok(TailAnalysis {
            end: at,
            next_lsn: expected,
            records,
            cut: Some(cut),
            skipped,
        });
    }
    Ok(TailAnalysis {
        end: at,
        next_lsn: expected,
        records,
        cut: None,
        skipped,
    })
}

/// Where the records known durable end in the kept part (`..end`) of a
/// tail segment: the first LSN not vouched for (by the previous writer's
/// watermark or by a later record's sync mark) and its offset. Recovery
/// falls back to it when its own fsync of the tail fails.
pub(crate) fn vouched_prefix(
    bytes: &[u8],
    entry: &SegmentEntry,
    end: usize,
    prior: WatermarkState,
) -> (Lsn, usize) {
    let kept = bytes.get(..end).unwrap_or(bytes);
    let mut bound = match prior {
        WatermarkState::Valid(w) => w.durable_end,
        WatermarkState::Absent | WatermarkState::Invalid => 0,
    };
    let mut frames = Vec::new();
    let start = check_header(bytes, entry).map_or(SEGMENT_HEADER_LEN, |h| h.records_start());
    let (mut at, mut lsn) = (start, entry.base_lsn);
    while let Step::Record { header, len, .. } = step(kept, at, lsn) {
        bound = bound.max(header.sync_mark);
        frames.push((lsn, at));
        at += len;
        lsn += 1;
    }
    let first_unvouched = frames.iter().find(|(l, _)| *l >= bound);
    first_unvouched.map_or((lsn, at), |&(l, o)| (l, o))
}

/// Whether `mode` refuses to cut a record known durable.
fn refuses(mode: RecoveryMode) -> bool {
    matches!(
        mode,
        RecoveryMode::TolerateCorruptedTail | RecoveryMode::AbsoluteConsistency
    )
}

/// Cut every frame from `at` on: they were written after the last
/// successful fsync of a writer that then failed.
fn cut_after_failure(
    bytes: &[u8],
    entry: &SegmentEntry,
    mode: RecoveryMode,
    at: usize,
    expected: Lsn,
    records: u64,
    skipped: Vec<Skipped>,
) -> Result<TailAnalysis, WalError> {
    let reason = format!(
        "records from LSN {expected} on were written after the last successful fsync of a writer that then failed"
    );
    if mode == RecoveryMode::AbsoluteConsistency {
        return Err(WalError::BadSegment {
            path: entry.path.clone(),
            reason: format!("offset {at}: {reason}; AbsoluteConsistency cuts nothing"),
        });
    }
    let end = last_nonzero(bytes).map_or(at, |p| (p + 1).max(at));
    Ok(TailAnalysis {
        end: at,
        next_lsn: expected,
        records,
        cut: Some(Cut {
            path: entry.path.clone(),
            offset: at as u64,
            bytes: (end - at) as u64,
            lsn: expected,
            frames_dropped: survey_after_damage(bytes, at, expected).valid_frames,
            reason,
        }),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameHeader, SegmentHeader, encode_frame};
    use uuid::Uuid;

    fn segment(frames: &[(Lsn, Lsn)]) -> (Vec<u8>, Vec<usize>, SegmentEntry) {
        let base = frames.first().map_or(1, |f| f.0);
        let mut buf = SegmentHeader {
            codec_id: 1,
            base_lsn: base,
            created_us: 0,
            key_id: None,
        }
        .encode()
        .to_vec();
        let mut offs = Vec::new();
        for &(lsn, sync_mark) in frames {
            offs.push(buf.len());
            let h = FrameHeader {
                lsn,
                sync_mark,
                timestamp_us: 0,
                session: Uuid::nil(),
            };
            encode_frame(&mut buf, &h, b"0123456789");
        }
        buf.extend_from_slice(&[0; 256]);
        (
            buf,
            offs,
            SegmentEntry {
                base_lsn: base,
                path: PathBuf::from("seg.wal"),
            },
        )
    }

    #[test]
    fn clean_log_needs_no_cut() {
        let (buf, offs, e) = segment(&[(1, 1), (2, 2)]);
        let a = analyze(&buf, &e, RecoveryMode::default(), WatermarkState::Absent).unwrap();
        assert_eq!((a.end, a.next_lsn, a.records), (offs[1] + 58, 3, 2));
        assert!(a.cut.is_none());
    }

    #[test]
    fn torn_last_batch_is_cut_in_every_cutting_mode() {
        // 2 and 3 were one batch (sync mark 2): damage to 2 is a torn tail.
        let (mut buf, offs, e) = segment(&[(1, 1), (2, 2), (3, 2)]);
        buf[offs[1] + 20] ^= 1;
        for mode in [
            RecoveryMode::TolerateCorruptedTail,
            RecoveryMode::PointInTime,
        ] {
            let a = analyze(&buf, &e, mode, WatermarkState::Absent).unwrap();
            let cut = a.cut.unwrap();
            assert_eq!(
                (a.end, a.next_lsn, cut.offset, cut.lsn, cut.frames_dropped),
                (offs[1], 2, offs[1] as u64, 2, 1)
            );
        }
        assert!(matches!(
            analyze(
                &buf,
                &e,
                RecoveryMode::AbsoluteConsistency,
                WatermarkState::Absent
            ),
            Err(WalError::Corrupt { lsn: 2, .. })
        ));
    }

    #[test]
    fn damage_to_a_durable_record_is_refused_unless_told() {
        // 3 was written after 2 was durable (sync mark 3).
        let (mut buf, offs, e) = segment(&[(1, 1), (2, 2), (3, 3)]);
        buf[offs[1] + 20] ^= 1;
        let err = analyze(&buf, &e, RecoveryMode::default(), WatermarkState::Absent).unwrap_err();
        assert!(
            matches!(err, WalError::MidLogCorruption { lsn: 2, offset, next_offset, .. } if offset == offs[1] as u64 && next_offset == offs[2] as u64)
        );
        let a = analyze(&buf, &e, RecoveryMode::PointInTime, WatermarkState::Absent).unwrap();
        assert_eq!(a.next_lsn, 2);
        let a = analyze(
            &buf,
            &e,
            RecoveryMode::SkipCorrupted,
            WatermarkState::Absent,
        )
        .unwrap();
        assert_eq!((a.next_lsn, a.records, a.skipped.len()), (4, 2, 1));
        assert_eq!(a.skipped[0].resumed_at, 3);
    }

    #[test]
    fn stale_bytes_after_zeros_are_cut() {
        let (mut buf, _, e) = segment(&[(1, 1)]);
        let n = buf.len();
        buf[n - 10] = 0x55;
        let a = analyze(&buf, &e, RecoveryMode::default(), WatermarkState::Absent).unwrap();
        assert_eq!(
            a.cut.unwrap().bytes,
            (n - 10 + 1 - (SEGMENT_HEADER_LEN + 58)) as u64
        );
    }

    fn wm(durable_end: Lsn, poisoned: bool) -> WatermarkState {
        WatermarkState::Valid(crate::format::Watermark {
            durable_end,
            poisoned,
            boot_id: [1; 16],
        })
    }

    #[test]
    fn records_after_a_failed_writer_s_last_fsync_are_cut_even_when_valid() {
        // 1 and 2 were durable; 3 and 4 were written, then an fsync failed.
        let (buf, offs, e) = segment(&[(1, 1), (2, 2), (3, 3), (4, 3)]);
        for mode in [
            RecoveryMode::TolerateCorruptedTail,
            RecoveryMode::PointInTime,
            RecoveryMode::SkipCorrupted,
        ] {
            let a = analyze(&buf, &e, mode, wm(3, true)).unwrap();
            let cut = a.cut.unwrap();
            assert_eq!(
                (a.end, a.next_lsn, a.records, cut.lsn, cut.frames_dropped),
                (offs[2], 3, 2, 3, 2),
                "{mode:?}"
            );
        }
        assert!(matches!(
            analyze(&buf, &e, RecoveryMode::AbsoluteConsistency, wm(3, true)),
            Err(WalError::BadSegment { .. })
        ));
        // The same watermark without the poison flag keeps them all.
        let a = analyze(&buf, &e, RecoveryMode::default(), wm(3, false)).unwrap();
        assert_eq!((a.next_lsn, a.cut), (5, None));
    }

    #[test]
    fn damage_below_the_watermark_is_refused_without_a_vouching_record() {
        // 3 is the last record, damaged; no later record vouches for it, but
        // the watermark does (a fsynced record rotted, or was cut).
        let (mut buf, offs, e) = segment(&[(1, 1), (2, 2), (3, 3)]);
        buf[offs[2] + 20] ^= 1;
        let err = analyze(&buf, &e, RecoveryMode::default(), wm(4, false)).unwrap_err();
        assert!(
            matches!(err, WalError::DurableDamaged { lsn: 3, durable_end: 4, offset, .. } if offset == offs[2] as u64),
            "{err}"
        );
        // Without the watermark it is a torn tail.
        let a = analyze(&buf, &e, RecoveryMode::default(), WatermarkState::Invalid).unwrap();
        assert_eq!(a.next_lsn, 3);
        // PointInTime cuts it anyway, as asked.
        let a = analyze(&buf, &e, RecoveryMode::PointInTime, wm(4, false)).unwrap();
        assert_eq!(a.next_lsn, 3);
    }

    #[test]
    fn durable_records_missing_from_the_tail_are_refused() {
        let (buf, offs, e) = segment(&[(1, 1), (2, 2)]);
        let end = offs[1] + 58;
        let err = analyze(&buf[..end], &e, RecoveryMode::default(), wm(5, false)).unwrap_err();
        assert!(
            matches!(
                err,
                WalError::DurableDamaged {
                    lsn: 3,
                    durable_end: 5,
                    ..
                }
            ),
            "{err}"
        );
        let a = analyze(&buf[..end], &e, RecoveryMode::default(), wm(3, false)).unwrap();
        assert_eq!(a.next_lsn, 3);
    }
}
