//! The leader's disk work: write a batch of frames to the active segment
//! (rolling to a new one when it is full), zero ahead of the records,
//! fsync, and cut a failed write back. Only the leader of group commit
//! (see the parent module) runs this, holding the `io` lock and not the
//! state lock (it only reads, under it, whether the log was poisoned
//! meanwhile), so nothing here touches the shared queue.

use std::time::Instant;

use metrics::Histogram;

use super::Writer;
use crate::chain::ChainState;
use crate::error::WalError;
use crate::format::{FrameFields, Lsn, frame_len};
use crate::fs::FsFile;
use crate::index;
use crate::options::SyncPolicy;
use crate::segment::{self, SegmentEntry};

/// The active segment; only the leader touches it.
#[derive(Debug)]
pub(crate) struct Io {
    pub(crate) entry: SegmentEntry,
    pub(crate) file: Box<dyn FsFile>,
    pub(crate) write_pos: u64,
    /// Sealed (fsynced and cut to length) but no successor created yet.
    pub(crate) sealed: bool,
    /// Bytes below this offset have been written (zeros past the records),
    /// so overwriting them changes no file-system metadata.
    pub(crate) zeroed_to: u64,
    /// The records below this offset were fsynced.
    pub(crate) synced_pos: u64,
    /// The session index of the segment, built as frames are written; only
    /// for a segment this writer wrote from its first record.
    pub(crate) index: Option<index::Builder>,
    /// Where the segment's records start.
    pub(crate) records_start: u64,
    /// The chain of an encrypted log (`chain.rs`): set when this writer
    /// has a key.
    pub(crate) chain: Option<ChainState>,
}

impl Io {
    pub(crate) fn new(
        entry: SegmentEntry,
        file: Box<dyn FsFile>,
        records_start: usize,
        write_pos: u64,
    ) -> Io {
        let records_start = records_start as u64;
        Io {
            entry,
            file,
            write_pos,
            sealed: false,
            zeroed_to: write_pos,
            synced_pos: write_pos,
            index: (write_pos == records_start).then(index::Builder::default),
            records_start,
            chain: None,
        }
    }
}

/// Zeros written ahead of the records at a time (see [`Writer::zero_ahead`]).
const ZERO_CHUNK: u64 = 1 << 20;

/// Bytes of an encrypted log's batch sealed at a time, then written, so
/// that the sealed bytes are written while still in the CPU's cache.
const SEAL_PIECE: usize = 256 << 10;

/// Batches at least this large are not zero-filled ahead.
const ZERO_AHEAD_MAX_BATCH: u64 = 64 << 10;

/// What one leader's turn achieved.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) written_end: Lsn,
    /// Bytes of the batch handed to the file system (the frames below
    /// `written_end`).
    pub(super) written_bytes: usize,
    pub(super) durable_end: Option<Lsn>,
    pub(super) error: Option<WalError>,
    pub(super) fsyncs: u64,
    pub(super) fsync_micros: u64,
    pub(super) segments_created: u64,
}

impl Outcome {
    /// `fdatasync` the active segment, counting and timing the call (into
    /// `latency` too).
    fn sync(&mut self, io: &mut Io, latency: &Histogram) -> Result<(), WalError> {
        let started = Instant::now();
        let synced = io.file.sync_data();
        let elapsed = started.elapsed();
        latency.record(elapsed);
        self.fsync_micros += u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Every call counts, a failed one too: as the latency histogram.
        self.fsyncs += 1;
        synced.map_err(|e| WalError::fatal("fsync", &io.entry.path, e))?;
        io.synced_pos = io.write_pos;
        if let Some(chain) = io.chain.as_mut() {
            chain.synced();
        }
        Ok(())
    }
}

fn frame_len_at(batch: &[u8], at: usize) -> usize {
    let mut len = [0u8; 4];
    if let Some(b) = batch.get(at..at + 4) {
        len.copy_from_slice(b);
    }
    frame_len(u32::from_le_bytes(len) as usize)
}

impl Writer {
    /// Write `batch` (frames of LSNs `first..end`) to the active segment,
    /// rolling as needed, and fsync it when `sync`; then publish the
    /// durable watermark if it moved or the writer is poisoned.
    pub(super) fn write_batch(
        &self,
        io: &mut Io,
        batch: &[u8],
        first: Lsn,
        end: Lsn,
        sync: bool,
    ) -> Outcome {
        // Poisoned while this leader waited for the I/O lock (a
        // compaction's failed fsync): write nothing, so that no record
        // queued before the poison is acknowledged after it.
        if let Some(cause) = self.poison_cause() {
            return Outcome {
                written_end: first,
                written_bytes: 0,
                durable_end: None,
                error: Some(WalError::Poisoned { cause }),
                fsyncs: 0,
                fsync_micros: 0,
                segments_created: 0,
            };
        }
        let out = self.write_records(io, batch, first, end, sync);
        let poisoned = out.error.as_ref().is_some_and(|e| !e.is_disk_full());
        if poisoned {
            // After a failed fsync the pages past the last good one may be
            // clean in the cache yet never written: cut them off, so that a
            // reopen in this boot cannot read them back as records (besides
            // the poisoned watermark, which says the same). Best effort: a
            // failure here leaves that job to the watermark alone.
            if let Err(e) = io.file.set_len(io.synced_pos) {
                tracing::warn!(error = %e, path = %io.entry.path.display(), "cannot cut the unsynced tail of a poisoned log");
            }
            io.write_pos = io.synced_pos;
        }
        if out.durable_end.is_some() || poisoned {
            let durable = out.durable_end.unwrap_or(0);
            let head = io.chain.as_mut().map(ChainState::head);
            self.publish_watermark(durable, poisoned, head);
        }
        out
    }

    fn write_records(
        &self,
        io: &mut Io,
        batch: &[u8],
        first: Lsn,
        end: Lsn,
        sync: bool,
    ) -> Outcome {
        // An encrypted log seals the batch here, off the appenders' lock and
        // in LSN order, each record against the one before it; what is not
        // written (a full disk) is sealed again, with fresh nonces, when it
        // is retried, chained to what was written.
        // Nothing to seal (an fsync of what was written before, say): as in
        // the clear.
        if io.chain.is_none() || batch.is_empty() {
            return self.write_frames(io, batch, first, end, sync);
        }
        // A piece at a time, so that what is sealed is still in the cache
        // when it is written.
        let mut total = Outcome {
            written_bytes: 0,
            written_end: first,
            durable_end: None,
            error: None,
            fsyncs: 0,
            fsync_micros: 0,
            segments_created: 0,
        };
        let (mut off, mut lsn) = (0, first);
        while off < batch.len() {
            let Some(chain) = io.chain.as_mut() else {
                break;
            };
            let (n, count) = chain.seal_batch(batch.get(off..).unwrap_or_default(), SEAL_PIECE);
            if n == 0 {
                // Not a frame (cannot happen: the batch is the appenders'
                // frames): leave it unwritten rather than loop.
                break;
            }
            let last = off + n >= batch.len();
            let sealed = std::mem::take(&mut chain.buf);
            let out = self.write_frames(io, &sealed, lsn, lsn + count, sync && last);
            if let Some(chain) = io.chain.as_mut() {
                chain.buf = sealed;
            }
            let written = out.written_end - lsn;
            total.written_bytes +=
                out.written_bytes - usize::try_from(written).unwrap_or(0) * crate::SEAL_OVERHEAD;
            total.written_end = out.written_end;
            // A roll in any piece made the records before it durable:
            // the latest such point stands, whatever the pieces after it.
            total.durable_end = out.durable_end.or(total.durable_end);
            total.fsyncs += out.fsyncs;
            total.fsync_micros += out.fsync_micros;
            total.segments_created += out.segments_created;
            if out.error.is_some() {
                total.error = out.error;
                return total;
            }
            off += n;
            lsn += count;
        }
        debug_assert_eq!(lsn, end);
        total
    }

    /// Write frames as they go to disk (sealed, for an encrypted log).
    fn write_frames(&self, io: &mut Io, batch: &[u8], first: Lsn, end: Lsn, sync: bool) -> Outcome {
        let mut out = Outcome {
            written_bytes: 0,
            written_end: first,
            durable_end: None,
            error: None,
            fsyncs: 0,
            fsync_micros: 0,
            segments_created: 0,
        };
        let mut off = 0;
        let mut lsn = first;
        while off < batch.len() {
            // The whole frames that fit in the active segment.
            let mut n = 0;
            let mut count = 0;
            if !io.sealed {
                while off + n < batch.len() {
                    let len = frame_len_at(batch, off + n);
                    if io.write_pos + (n + len) as u64 > self.opts.segment_size {
                        break;
                    }
                    n += len;
                    count += 1;
                }
            }
            if n == 0 {
                if !io.sealed && io.write_pos <= io.records_start {
                    // Cannot happen: `max_payload_len` makes one record fit.
                    out.error = Some(WalError::InvalidOptions(
                        "record larger than a segment".into(),
                    ));
                    return out;
                }
                if let Err(e) = self.roll(io, lsn, &mut out) {
                    out.error = Some(e);
                    return out;
                }
                continue;
            }
            let chunk = batch.get(off..off + n).unwrap_or_default();
            let zeroed = self.zero_ahead(io, n as u64);
            if let Err(e) = zeroed.and_then(|()| io.file.write_all_at(chunk, io.write_pos)) {
                out.error = Some(self.write_failed(io, e, sync, &mut out));
                return out;
            }
            if let Some(ix) = io.index.as_mut() {
                index_frames(ix, chunk, io.write_pos, lsn);
            }
            io.write_pos += n as u64;
            off += n;
            lsn += count;
            if let Some(chain) = io.chain.as_mut() {
                chain.written(chunk, lsn - 1);
            }
            out.written_end = lsn;
            out.written_bytes = off;
        }
        debug_assert_eq!(lsn, end);
        if sync {
            if let Err(e) = out.sync(io, &self.metrics.fsync_seconds) {
                out.error = Some(e);
                return out;
            }
            out.durable_end = Some(lsn);
        }
        out
    }

    /// Keep the bytes ahead of the records written with zeros, a chunk at a
    /// time, so that appends overwrite allocated, written blocks: on ext4 an
    /// `fdatasync` after writing into a fallocated (unwritten) extent must
    /// also commit the extent's conversion, which costs about twice as much.
    /// The zeros ride on the batch's own fsync, once per [`ZERO_CHUNK`].
    /// Not under `SyncPolicy::Never`, which does not fsync per batch and
    /// would only pay for writing every byte twice.
    ///
    /// Only for batches under [`ZERO_AHEAD_MAX_BATCH`]: the zeros double
    /// the bytes the disk writes, a cost that grows with the batch, while
    /// the extent conversion they avoid costs about the same per fsync
    /// whatever the batch. Measured here (`docs/performance.md`): batches of
    /// 33 KiB fsync in ~155 µs with zeros ahead against ~200 µs without;
    /// at 128 KiB the two are even.
    fn zero_ahead(&self, io: &mut Io, len: u64) -> std::io::Result<()> {
        if !self.opts.preallocate
            || self.opts.sync == SyncPolicy::Never
            || len >= ZERO_AHEAD_MAX_BATCH
        {
            return Ok(());
        }
        let want = (io.write_pos + len + ZERO_CHUNK / 2).min(self.opts.segment_size);
        while io.zeroed_to < want {
            let start = io.zeroed_to.max(io.write_pos);
            let end = (start + ZERO_CHUNK).min(self.opts.segment_size);
            let zeros = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
            io.file.write_all_at(&zeros, start)?;
            io.zeroed_to = end;
        }
        Ok(())
    }

    /// A write failed. On a full disk, cut the partial write back and make
    /// what was written before it durable; otherwise the log is poisoned.
    fn write_failed(
        &self,
        io: &mut Io,
        e: std::io::Error,
        sync: bool,
        out: &mut Outcome,
    ) -> WalError {
        let error = WalError::io("write", &io.entry.path, e);
        if !error.is_disk_full() {
            return error;
        }
        if let Err(e) = io.file.set_len(io.write_pos) {
            return WalError::fatal("truncate after a full disk", &io.entry.path, e);
        }
        if sync {
            if let Err(e) = out.sync(io, &self.metrics.fsync_seconds) {
                return e;
            }
            out.durable_end = Some(out.written_end);
        }
        error
    }

    /// Seal the active segment (if not yet) and create the next one, whose
    /// first record is `lsn`.
    pub(super) fn roll(&self, io: &mut Io, lsn: Lsn, out: &mut Outcome) -> Result<(), WalError> {
        if !io.sealed {
            out.sync(io, &self.metrics.fsync_seconds)?;
            out.durable_end = Some(lsn);
            io.file
                .set_len(io.write_pos)
                .map_err(|e| WalError::fatal("truncate to seal", &io.entry.path, e))?;
            out.sync(io, &self.metrics.fsync_seconds)?;
            io.sealed = true;
        }
        let prealloc = self.opts.preallocate.then_some(self.opts.segment_size);
        let seal = io.chain.as_ref().map(|c| c.new_segment(lsn));
        match segment::create(
            &*self.fs,
            &self.dir,
            lsn,
            self.opts.codec_id,
            seal,
            prealloc,
        ) {
            Ok((entry, file, start)) => {
                let chain = io.chain.take();
                let mut sealed = std::mem::replace(io, Io::new(entry, file, start, start as u64));
                io.chain = chain;
                out.segments_created += 1;
                // Only now, with every handle the log goes on with opened:
                // storing the index is best effort, and nothing the log
                // does may depend on it having worked.
                self.store_index(&mut sealed);
                self.retain_at_roll(io.entry.base_lsn)
            }
            // A full disk while creating a segment leaves the sealed one
            // active; the next batch tries to roll again.
            Err(e) => Err(e),
        }
    }

    /// Apply the options' retention policy after a roll to the segment
    /// starting at `active_base`. A segment that cannot be read or removed
    /// is left for the next roll (a warning); a failed directory fsync is
    /// fatal, as everywhere.
    fn retain_at_roll(&self, active_base: Lsn) -> Result<(), WalError> {
        let policy = &self.opts.retention;
        if policy.is_none() {
            return Ok(());
        }
        let fs = &*self.fs;
        let plan = match crate::retain::plan(fs, &self.dir, policy, crate::clock::now_us()) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "retention at roll: cannot plan (tried again at the next roll)");
                return Ok(());
            }
        };
        match crate::retain::remove(fs, &self.dir, &plan, active_base) {
            Ok(_) => Ok(()),
            Err(crate::retain::Removal::Fatal(e)) => Err(e),
            Err(crate::retain::Removal::Failed(error)) => {
                tracing::warn!(%error, "retention at roll: a segment was not removed (tried again at the next roll)");
                Ok(())
            }
        }
    }

    /// Store the session index of the active segment, built as it was
    /// written (best effort: see [`index`]).
    pub(crate) fn store_index(&self, io: &mut Io) {
        let Some(builder) = io.index.take() else {
            return;
        };
        let stored = segment::read_header(&*io.file, &io.entry)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|header| index::store(&*self.fs, &io.entry.path, &builder.finish(&header)));
        if let Err(error) = stored {
            tracing::warn!(%error, segment = %io.entry.path.display(), "cannot store the session index (readers scan the segment instead)");
        }
    }
}

/// Note the frames of `chunk`, written at `at` in the segment, whose first
/// record is `lsn`, in the index being built.
fn index_frames(ix: &mut index::Builder, chunk: &[u8], at: u64, mut lsn: Lsn) {
    let mut off = 0;
    while off < chunk.len() {
        let len = frame_len_at(chunk, off);
        let Some(fields) = chunk.get(off..).and_then(FrameFields::parse) else {
            return;
        };
        ix.add(
            fields.header.session,
            at + off as u64,
            lsn,
            at + (off + len) as u64,
            fields.crc,
        );
        off += len;
        lsn += 1;
    }
}
