//! The reader's cursor in one segment: a sealed segment mapped whole, or
//! the tail read with `pread` in chunks and re-read on demand (a live
//! writer may be appending to it, or cutting it back after a full disk).

use crate::crypto::{Chain, Key};
use crate::error::WalError;
use crate::format::{
    FrameError, FrameHeader, Lsn, MAX_SEGMENT_SIZE, RECORD_HEADER_LEN, SealBlock, SegmentHeader,
};
use crate::fs::{Contents, FsFile};
use crate::scan::{Problem, Step, step};
use crate::segment::SegmentEntry;

/// No record lies past this offset of a segment.
pub(super) const SEGMENT_LIMIT: usize = MAX_SEGMENT_SIZE as usize;

/// Bytes read at a time from the tail segment when reading one session's
/// records through an index.
const JUMP_CHUNK: usize = 4096;

/// Bytes read at a time from the tail segment, at most.
const TAIL_CHUNK: usize = 1 << 20;

/// Bytes of the tail read first: each read after it doubles, up to
/// [`TAIL_CHUNK`]. A preallocated tail is mostly zeros past its records:
/// a short read (one session, a small log) costs a short read.
const FIRST_TAIL_CHUNK: usize = 64 << 10;

pub(super) enum Data {
    /// A sealed segment, whole.
    Sealed(Contents),
    /// The tail: `buf` holds the file's bytes from `start`.
    Tail {
        file: Box<dyn FsFile>,
        buf: Vec<u8>,
        start: usize,
        file_len: usize,
    },
}

/// A segment being read: where the next frame starts and which LSN it
/// must carry.
pub(super) struct Current {
    pub(super) entry: SegmentEntry,
    /// The codec id of the segment's header.
    pub(super) codec_id: u16,
    pub(super) data: Data,
    pub(super) offset: usize,
    pub(super) expected: Lsn,
    /// The segment's header.
    pub(super) header: SegmentHeader,
    /// Reading one session through the segment's index: the places left.
    pub(super) jumps: Option<Jumps>,
    /// Under `jumps`: `offset` is at the place to read next (not past the
    /// record last returned).
    pub(super) positioned: bool,
    /// An encrypted segment's seal block.
    pub(super) seal: Option<SealBlock>,
    /// The key to open its records with, if the reader has it (and the
    /// seal block checked under it).
    pub(super) key: Option<Key>,
}

/// The places of one session's records in a segment, from its index.
pub(super) struct Jumps {
    /// (offset, LSN), in log order, not yet visited.
    pub(super) places: std::vec::IntoIter<(u32, Lsn)>,
    /// Where the index stops: the segment is scanned from there on.
    pub(super) covered: usize,
    /// The LSN due at `covered`.
    pub(super) next_lsn: Lsn,
}

/// What is at the cursor.
pub(super) enum Peek {
    Record { len: usize, header: FrameHeader },
    End,
    Bad(Problem),
}

impl Current {
    pub(super) fn open(
        entry: SegmentEntry,
        header: SegmentHeader,
        seal: Option<SealBlock>,
        file: Box<dyn FsFile>,
        tail: bool,
    ) -> Result<Current, WalError> {
        let codec_id = header.codec_id;
        let expected = entry.base_lsn;
        let data = if tail {
            Data::Tail {
                file,
                buf: Vec::new(),
                start: 0,
                file_len: 0,
            }
        } else {
            Data::Sealed(
                file.contents()
                    .map_err(|e| WalError::io("read", &entry.path, e))?,
            )
        };
        let mut cur = Current {
            codec_id,
            entry,
            data,
            offset: header.records_start(),
            expected,
            header,
            jumps: None,
            positioned: false,
            seal,
            key: None,
        };
        cur.invalidate();
        Ok(cur)
    }

    /// The chain value before the record at `at`: the seal block's for the
    /// segment's first record, else the 16 bytes before it (the previous
    /// record's tag).
    pub(super) fn chain_before(&self, at: usize) -> Result<Chain, WalError> {
        let mut chain = [0u8; 16];
        if at <= self.header.records_start() {
            return Ok(self.seal.map_or(chain, |s| s.prev));
        }
        let (bytes, base) = self.bytes();
        if let Some(b) = at
            .checked_sub(16 + base)
            .and_then(|from| bytes.get(from..from + 16))
        {
            chain.copy_from_slice(b);
            return Ok(chain);
        }
        if let Data::Tail { file, .. } = &self.data {
            let got = crate::segment::read_full_at(&**file, &mut chain, (at - 16) as u64)
                .map_err(|e| WalError::io("read", &self.entry.path, e))?;
            if got == 16 {
                return Ok(chain);
            }
        }
        Err(WalError::Corrupt {
            path: self.entry.path.clone(),
            offset: at as u64,
            lsn: self.expected,
            reason: FrameError::Truncated {
                needed: 16,
                available: 0,
            },
        })
    }

    /// The bytes held and the file offset of their first byte.
    pub(super) fn bytes(&self) -> (&[u8], usize) {
        match &self.data {
            Data::Sealed(c) => (c.get(..SEGMENT_LIMIT).unwrap_or(c), 0),
            Data::Tail { buf, start, .. } => (buf, *start),
        }
    }

    /// Forget buffered tail bytes so that the next peek re-reads them.
    pub(super) fn invalidate(&mut self) {
        if let Data::Tail {
            buf,
            start,
            file_len,
            ..
        } = &mut self.data
        {
            buf.clear();
            *start = self.offset;
            *file_len = usize::MAX; // unknown: re-read
        }
    }

    /// Make sure that, on the tail, at least `need` bytes from `offset` are
    /// buffered, or everything up to the end of the file.
    pub(super) fn ensure(&mut self, need: usize) -> Result<(), WalError> {
        let offset = self.offset;
        let Data::Tail {
            file,
            buf,
            start,
            file_len,
        } = &mut self.data
        else {
            return Ok(());
        };
        let buffered_to = *start + buf.len();
        if offset >= *start
            && (buffered_to >= offset.saturating_add(need) || buffered_to >= *file_len)
        {
            return Ok(());
        }
        let path = &self.entry.path;
        let len = usize::try_from(file.len().map_err(|e| WalError::io("stat", path, e))?)
            .unwrap_or(usize::MAX)
            .min(SEGMENT_LIMIT);
        *file_len = len;
        // Going from place to place through an index, read a frame's worth,
        // not a chunk: the next place is usually far ahead.
        let chunk = if self.jumps.is_some() {
            JUMP_CHUNK
        } else {
            buf.len()
                .saturating_mul(2)
                .clamp(FIRST_TAIL_CHUNK, TAIL_CHUNK)
        };
        let want = need.max(chunk).min(len.saturating_sub(offset));
        buf.clear();
        buf.resize(want, 0);
        *start = offset;
        let mut got = 0;
        while got < want {
            let n = file
                .read_at(&mut buf[got..], (offset + got) as u64)
                .map_err(|e| WalError::io("read", path, e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(())
    }

    pub(super) fn peek(&mut self) -> Result<Peek, WalError> {
        self.ensure(RECORD_HEADER_LEN)?;
        let first = self.classify();
        if let Peek::Bad(Problem::Frame(FrameError::Truncated { needed, .. })) = first {
            // Perhaps only the buffer ends here: read the whole frame.
            if matches!(self.data, Data::Tail { .. }) {
                self.ensure(needed)?;
                return Ok(self.classify());
            }
        }
        Ok(first)
    }

    pub(super) fn classify(&self) -> Peek {
        let (bytes, base) = self.bytes();
        match step(bytes, self.offset.saturating_sub(base), self.expected) {
            Step::Record { len, header, .. } => Peek::Record { len, header },
            Step::End => Peek::End,
            Step::Bad(p) => Peek::Bad(p),
        }
    }
}
