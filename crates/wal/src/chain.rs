//! The chain of an encrypted log (`docs/security.md`): what a writer
//! keeps to seal each record against the one before it, the seal block
//! that authenticates each encrypted segment's header, and the durable
//! head it publishes in `LOCK`. The bytes are laid out in `format.rs`, the
//! cryptography is in `crypto.rs`; this module ties them to the log.

use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use crate::crypto::{self, Chain, Domain, Key, KeyRing, RecordContext, SEAL_OVERHEAD, Sealer};
use crate::error::WalError;
use crate::format::{
    FrameFields, HEAD_LEN, Head, LOCK_FILE, Lsn, RECORD_HEADER_LEN, SEAL_BLOCK_LEN,
    SEGMENT_HEADER_LEN, SealBlock, SegmentHeader, WATERMARK_LEN, encode_frame_with, frame_len,
    header_authenticated,
};
use crate::fs::{Fs, FsFile, OpenMode};
use crate::segment::{SegmentEntry, read_full_at};

/// A writer's side of the chain: the sealer, the chain value after the
/// last record written, and the one after the last record made durable
/// (the head it publishes).
#[derive(Debug)]
pub(crate) struct ChainState {
    pub(crate) sealer: Sealer,
    pub(crate) log: Uuid,
    /// The log's first encrypted LSN.
    pub(crate) enc_start: Lsn,
    /// The tag of record `tag_lsn` (zeros before `enc_start`).
    pub(crate) tag: Chain,
    pub(crate) tag_lsn: Lsn,
    /// The head: the last record fsynced, and its tag.
    pub(crate) synced: (Lsn, Chain),
    /// The batch being written, sealed.
    pub(crate) buf: Vec<u8>,
}

impl ChainState {
    /// The chain of a writer whose last record is `tag_lsn` with tag
    /// `tag` (zeros if it is in the clear or none), all durable.
    pub(crate) fn new(key: Key, log: Uuid, enc_start: Lsn, tag_lsn: Lsn, tag: Chain) -> ChainState {
        ChainState {
            sealer: Sealer::new(key),
            log,
            enc_start,
            tag,
            tag_lsn,
            synced: (tag_lsn, tag),
            buf: Vec::new(),
        }
    }

    /// Seal the frames at the start of `batch` (plaintext payloads, as
    /// queued) into `self.buf`, chaining from the last record written:
    /// whole frames, until at least `limit` bytes of `batch` are taken (or
    /// all of it). Returns the bytes of `batch` taken and their frames.
    ///
    /// Finding the frames as it seals them, in one pass, rather than by
    /// walking their lengths first: on the committer thread the batch was
    /// just written by the appender's core, and a walk from length to
    /// length waits on each line it touches, where sealing reads the bytes
    /// in order (`docs/performance.md`, "Encryption at rest").
    pub(crate) fn seal_batch(&mut self, batch: &[u8], limit: usize) -> (usize, Lsn) {
        self.buf.clear();
        let mut prev = self.tag;
        let (mut off, mut count) = (0, 0);
        while let Some(fields) = batch
            .get(off..)
            .filter(|_| off < limit)
            .and_then(FrameFields::parse)
        {
            let len = frame_len(fields.payload_len as usize);
            let Some(payload) = batch.get(off + RECORD_HEADER_LEN..off + len) else {
                break;
            };
            let h = fields.header;
            let ctx = RecordContext::of(&self.log, &h, &prev);
            let sealer = &mut self.sealer;
            let mut tag = prev;
            encode_frame_with(&mut self.buf, &h, payload.len() + SEAL_OVERHEAD, |dst| {
                tag = sealer.seal_to(&ctx, payload, dst);
            });
            prev = tag;
            off += len;
            count += 1;
        }
        (off, count)
    }

    /// Note that the frames of `chunk` (sealed), the last of which is
    /// `last_lsn`, were written.
    pub(crate) fn written(&mut self, chunk: &[u8], last_lsn: Lsn) {
        if let Some(tag) = crypto::tag_of(chunk) {
            self.tag = tag;
            self.tag_lsn = last_lsn;
        }
    }

    /// Everything written so far was fsynced.
    pub(crate) fn synced(&mut self) {
        self.synced = (self.tag_lsn, self.tag);
    }

    /// The seal block of a new segment whose first record is `base_lsn`,
    /// chained to the last record written.
    pub(crate) fn new_segment(&self, base_lsn: Lsn) -> NewSeal<'_> {
        let prev = if base_lsn > self.enc_start && self.tag_lsn + 1 == base_lsn {
            self.tag
        } else {
            [0; 16]
        };
        NewSeal {
            key: self.sealer.key(),
            log: self.log,
            enc_start: self.enc_start.min(base_lsn),
            prev,
        }
    }

    /// The head to publish: the last record fsynced, MAC'd.
    pub(crate) fn head(&mut self) -> Head {
        let (lsn, tag) = self.synced;
        let mut head = Head {
            key_id: self.sealer.key().id(),
            log_id: self.log,
            lsn: if lsn >= self.enc_start { lsn } else { 0 },
            tag: if lsn >= self.enc_start { tag } else { [0; 16] },
            enc_start: self.enc_start,
            mac: [0; 40],
        };
        head.mac = self.sealer.mac(Domain::Head, &[&head.authenticated()]);
        head
    }
}

/// What a new encrypted segment's seal block says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewSeal<'a> {
    pub(crate) key: &'a Key,
    pub(crate) log: Uuid,
    pub(crate) enc_start: Lsn,
    pub(crate) prev: Chain,
}

impl NewSeal<'_> {
    /// The seal block of the segment with this `header`.
    pub(crate) fn block(&self, header: &SegmentHeader) -> SealBlock {
        let mut block = SealBlock {
            log_id: self.log,
            enc_start: self.enc_start,
            prev: self.prev,
            mac: [0; 40],
        };
        let h = header.encode();
        block.mac = crypto::mac(
            self.key,
            Domain::Segment,
            &[header_authenticated(&h), &block.authenticated()],
        );
        block
    }
}

/// Whether `block` authenticates `header` under `key`.
pub(crate) fn seal_block_checks(key: &Key, header: &SegmentHeader, block: &SealBlock) -> bool {
    let h = header.encode();
    crypto::mac_checks(
        key,
        Domain::Segment,
        &[header_authenticated(&h), &block.authenticated()],
        &block.mac,
    )
}

/// The seal block of an encrypted segment (`header`), read from `file`.
///
/// # Errors
///
/// [`WalError::BadSegment`] if it is short or its CRC fails; I/O errors.
pub(crate) fn read_seal_block(
    file: &dyn FsFile,
    entry: &SegmentEntry,
) -> Result<SealBlock, WalError> {
    let mut buf = [0u8; SEAL_BLOCK_LEN];
    let got = read_full_at(file, &mut buf, SEGMENT_HEADER_LEN as u64)
        .map_err(|e| WalError::io("read", &entry.path, e))?;
    SealBlock::decode(buf.get(..got).unwrap_or_default()).ok_or_else(|| WalError::BadSegment {
        path: entry.path.clone(),
        reason: format!(
            "the seal block at offset {SEGMENT_HEADER_LEN} of an encrypted segment is damaged"
        ),
    })
}

/// The seal block of `entry` if it is an encrypted segment whose block
/// authenticates under a key of `ring`; `None` for anything else (a clear
/// segment, a key not given, an unreadable or damaged header or block),
/// which is for readers to report where they read it.
///
/// # Errors
///
/// The segment cannot be opened.
pub(crate) fn authentic_seal(
    fs: &dyn Fs,
    entry: &SegmentEntry,
    ring: &KeyRing,
) -> Result<Option<SealBlock>, WalError> {
    let file = fs
        .open(&entry.path, OpenMode::Read)
        .map_err(|e| WalError::io("open", &entry.path, e))?;
    let Ok(header) = crate::segment::read_header(&*file, entry) else {
        return Ok(None);
    };
    let Some(key) = header.key_id.and_then(|id| ring.get(id)) else {
        return Ok(None);
    };
    let Ok(block) = read_seal_block(&*file, entry) else {
        return Ok(None);
    };
    Ok(seal_block_checks(key, &header, &block).then_some(block))
}

/// The error for a head in `dir`'s `LOCK` under a key of the ring that
/// does not authenticate.
pub(crate) fn head_forged(dir: &Path, head: &Head) -> WalError {
    WalError::Forged {
        path: dir.join(LOCK_FILE),
        offset: WATERMARK_LEN as u64,
        lsn: head.lsn,
        reason: format!(
            "the durable head does not authenticate under key {:08x}",
            head.key_id
        ),
    }
}

/// The durable head published in `dir`'s `LOCK`, if there is a
/// well-formed one (its MAC not checked).
pub(crate) fn read_head(fs: &dyn Fs, dir: &Path) -> Option<Head> {
    let file = fs.open(&dir.join(LOCK_FILE), OpenMode::Read).ok()?;
    let mut buf = [0u8; HEAD_LEN];
    let got = read_full_at(&*file, &mut buf, WATERMARK_LEN as u64).ok()?;
    Head::decode(buf.get(..got)?)
}

/// Whether `head` authenticates under a key of `ring`.
pub(crate) fn head_checks(ring: &KeyRing, head: &Head) -> bool {
    ring.get(head.key_id).is_some_and(|key| {
        crypto::mac_checks(key, Domain::Head, &[&head.authenticated()], &head.mac)
    })
}

/// The newest encrypted segment of a log, as a writer finds it at open.
#[derive(Debug)]
pub(crate) struct LastEncrypted {
    pub(crate) entry: SegmentEntry,
    pub(crate) header: SegmentHeader,
    pub(crate) block: SealBlock,
}

/// Before a writer changes anything: find the newest encrypted segment
/// (reading headers from the tail back) and refuse what a writer must not
/// continue. Without keys: any encrypted segment
/// ([`WalError::KeyRequired`]: a log never goes back to the clear, even
/// after a segment in the clear was planted after it). With keys: a
/// segment in the clear after an encrypted one ([`WalError::Forged`]), a
/// newest encrypted segment whose key the ring lacks
/// ([`WalError::KeyRequired`]: its chain cannot be continued) or whose
/// seal block does not authenticate.
pub(crate) fn survey(
    fs: &dyn Fs,
    segments: &[SegmentEntry],
    ring: Option<&KeyRing>,
) -> Result<Option<LastEncrypted>, WalError> {
    let mut clear_after: Option<&SegmentEntry> = None;
    for entry in segments.iter().rev() {
        let file = fs
            .open(&entry.path, OpenMode::Read)
            .map_err(|e| WalError::io("open", &entry.path, e))?;
        // A damaged header is for recovery (the tail) or readers to report.
        let Ok(header) = crate::segment::read_header(&*file, entry) else {
            continue;
        };
        let Some(key_id) = header.key_id else {
            clear_after = Some(entry);
            continue;
        };
        let Some(ring) = ring else {
            return Err(WalError::KeyRequired {
                segment: entry.path.clone(),
                key_id,
            });
        };
        let block = read_seal_block(&*file, entry)?;
        if let Some(clear) = clear_after {
            return Err(WalError::Forged {
                path: clear.path.clone(),
                offset: 0,
                lsn: clear.base_lsn,
                reason: format!(
                    "a segment in the clear after the encrypted segment {} (the log is encrypted from LSN {}): planted, or written without keys; nothing was changed",
                    entry.path.display(),
                    block.enc_start
                ),
            });
        }
        let Some(key) = ring.get(key_id) else {
            return Err(WalError::KeyRequired {
                segment: entry.path.clone(),
                key_id,
            });
        };
        if !seal_block_checks(key, &header, &block) {
            return Err(WalError::Forged {
                path: entry.path.clone(),
                offset: SEGMENT_HEADER_LEN as u64,
                lsn: entry.base_lsn,
                reason: format!("the segment header does not authenticate under key {key_id:08x}"),
            });
        }
        let last = LastEncrypted {
            entry: entry.clone(),
            header,
            block,
        };
        same_log_throughout(fs, segments, ring, &last)?;
        return Ok(Some(last));
    }
    Ok(None)
}

/// Every encrypted segment of the log whose seal block authenticates names
/// the same log as the newest one: else one of them was planted (a segment
/// of another log under the same key), and a writer must not take its id
/// (`LOG_ID` may be missing) nor continue its chain.
fn same_log_throughout(
    fs: &dyn Fs,
    segments: &[SegmentEntry],
    ring: &KeyRing,
    newest: &LastEncrypted,
) -> Result<(), WalError> {
    for entry in segments {
        if entry.base_lsn >= newest.entry.base_lsn {
            break;
        }
        let Some(block) = authentic_seal(fs, entry, ring)? else {
            continue;
        };
        if block.log_id != newest.block.log_id {
            return Err(WalError::Forged {
                path: newest.entry.path.clone(),
                offset: SEGMENT_HEADER_LEN as u64,
                lsn: newest.entry.base_lsn,
                reason: format!(
                    "the newest encrypted segment belongs to log {}, but {} belongs to log {}: one of them was planted; nothing was changed",
                    newest.block.log_id,
                    entry.path.display(),
                    block.log_id
                ),
            });
        }
    }
    Ok(())
}

/// The chain a writer with `ring` continues: from the tail (`file`, whose
/// records end at `end`) if it is encrypted, else starting at `next_lsn`.
pub(crate) fn writer_chain(
    ring: &KeyRing,
    log: Uuid,
    tail: Option<&LastEncrypted>,
    file: &dyn FsFile,
    tail_entry: &SegmentEntry,
    end: u64,
    next_lsn: Lsn,
) -> Result<ChainState, WalError> {
    let key = ring.current().clone();
    let Some(last) = tail.filter(|t| t.entry == *tail_entry) else {
        return Ok(ChainState::new(key, log, next_lsn, next_lsn - 1, [0; 16]));
    };
    let start = last.header.records_start();
    let mut tag = last.block.prev;
    if end > start as u64 {
        // The tail's last record must be the key holder's: the chain goes
        // on from its tag, and a writer never extends a forgery.
        let contents = file
            .contents()
            .map_err(|e| WalError::io("read", &tail_entry.path, e))?;
        let bytes = contents
            .get(..usize::try_from(end).unwrap_or(usize::MAX))
            .unwrap_or(&contents);
        let (mut at, mut before) = (start, None);
        while let crate::format::Frame::Valid { len, .. } =
            crate::format::decode_frame(bytes.get(at..).unwrap_or_default())
        {
            before = Some(at);
            at += len;
        }
        let forged = |reason: String, offset: usize| WalError::Forged {
            path: tail_entry.path.clone(),
            offset: offset as u64,
            lsn: next_lsn - 1,
            reason,
        };
        let Some(last_at) = before.filter(|_| at as u64 == end) else {
            // Damage skipped before it (`RecoveryMode::SkipCorrupted`):
            // the chain goes on from the stored tag; readers check it.
            tracing::warn!(path = %tail_entry.path.display(), "the tail's last record could not be located to authenticate it");
            let got = read_full_at(file, &mut tag, end - 16)
                .map_err(|e| WalError::io("read", &tail_entry.path, e))?;
            if got != tag.len() {
                return Err(forged(format!("no tag before offset {end}"), at));
            }
            return Ok(ChainState::new(
                ring.current().clone(),
                log,
                last.block.enc_start,
                next_lsn - 1,
                tag,
            ));
        };
        let frame = bytes.get(last_at..at).unwrap_or_default();
        let Some(fields) = FrameFields::parse(frame) else {
            return Err(forged(
                "the tail's last frame cannot be read".into(),
                last_at,
            ));
        };
        let prev = if last_at == start {
            last.block.prev
        } else {
            let mut p = [0u8; 16];
            p.copy_from_slice(bytes.get(last_at - 16..last_at).unwrap_or(&[0; 16]));
            p
        };
        let h = fields.header;
        let ctx = RecordContext::of(&log, &h, &prev);
        let sealed = frame.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let key = last
            .header
            .key_id
            .and_then(|id| ring.get(id))
            .ok_or_else(|| WalError::KeyRequired {
                segment: tail_entry.path.clone(),
                key_id: last.header.key_id.unwrap_or(0),
            })?;
        if !crypto::open_into(key, &ctx, sealed, &mut Vec::new()) {
            return Err(forged(
                format!(
                    "the tail's last record does not open under key {:08x}: not the key holder's; a writer does not go on from it",
                    key.id()
                ),
                last_at,
            ));
        }
        tag = crypto::tag_of(sealed).unwrap_or_default();
    }
    Ok(ChainState::new(
        key,
        log,
        last.block.enc_start,
        next_lsn - 1,
        tag,
    ))
}

/// Check that the record at `head.lsn` (before the tail's last record) is
/// the one the authenticated `head` names, reading it with the keys: a
/// keyed reader refuses a record at the head's LSN whose tag differs.
///
/// # Errors
///
/// [`WalError::Forged`] (or the error the reader gives at that LSN) if
/// it is not, or if the log holds no record at that LSN.
pub(crate) fn head_record_holds(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    ring: &Arc<KeyRing>,
    head: &Head,
) -> Result<(), WalError> {
    let mut reader = crate::Reader::open_with_fs(fs.clone(), dir)?
        .with_keys(ring.clone())
        .from_lsn(head.lsn);
    while let Some(r) = reader.next_ref() {
        match r {
            Ok(r) if r.lsn >= head.lsn => {
                if r.lsn == head.lsn {
                    return Ok(());
                }
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(&e, WalError::Forged { lsn, .. } | WalError::Decrypt { lsn, .. } if *lsn == head.lsn) =>
            {
                return Err(e);
            }
            Err(_) => {}
        }
    }
    Err(WalError::Forged {
        path: dir.join(LOCK_FILE),
        offset: WATERMARK_LEN as u64,
        lsn: head.lsn,
        reason: "the log holds no record at the LSN its writer made durable (the head): nothing more is written".into(),
    })
}

/// The chain value a sealed record was sealed against: the tag of the
/// record before it, read from its segment (the 16 bytes before its frame,
/// or its segment's seal block for the first record of a segment). What a
/// record shipped elsewhere carries so that a reader with the key can
/// check it there (`logbook-fleet`). `None` for a record in the clear.
///
/// # Errors
///
/// I/O errors naming the segment; [`WalError::BadSegment`] if its seal
/// block is damaged.
pub fn chain_before(record: &crate::RecordRef<'_>) -> Result<Option<Chain>, WalError> {
    let fs = crate::fs::StdFs;
    let entry = SegmentEntry {
        base_lsn: 0,
        path: record.segment.to_path_buf(),
    };
    let file = fs
        .open(record.segment, OpenMode::Read)
        .map_err(|e| WalError::io("open", record.segment, e))?;
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    let got =
        read_full_at(&*file, &mut h, 0).map_err(|e| WalError::io("read", record.segment, e))?;
    let header = SegmentHeader::decode(h.get(..got).unwrap_or_default()).map_err(|reason| {
        WalError::BadHeader {
            path: record.segment.to_path_buf(),
            reason,
        }
    })?;
    if header.key_id.is_none() {
        return Ok(None);
    }
    if record.offset <= header.records_start() as u64 {
        return Ok(Some(read_seal_block(&*file, &entry)?.prev));
    }
    let mut tag = [0u8; 16];
    let got = read_full_at(&*file, &mut tag, record.offset - 16)
        .map_err(|e| WalError::io("read", record.segment, e))?;
    if got != tag.len() {
        return Err(WalError::BadSegment {
            path: record.segment.to_path_buf(),
            reason: format!("no tag before the record at offset {}", record.offset),
        });
    }
    Ok(Some(tag))
}

/// The durable head the writer of the log in `dir` last published in
/// `LOCK` (the last record it made durable and its tag), if there is one
/// and it authenticates under `ring` (`docs/security.md`).
///
/// # Errors
///
/// [`WalError::Forged`] if `LOCK` holds a head under a key of `ring` that
/// does not authenticate.
pub fn published_head(dir: &Path, ring: &KeyRing) -> Result<Option<Head>, WalError> {
    published_head_with(&crate::fs::StdFs, dir, ring)
}

/// [`published_head`] on any file system.
pub(crate) fn published_head_with(
    fs: &dyn Fs,
    dir: &Path,
    ring: &KeyRing,
) -> Result<Option<Head>, WalError> {
    let Some(head) = read_head(fs, dir) else {
        return Ok(None);
    };
    if head_checks(ring, &head) {
        return Ok(Some(head));
    }
    if ring.get(head.key_id).is_some() {
        return Err(head_forged(dir, &head));
    }
    Ok(None)
}

/// A head of an encrypted log: the LSN of one of its records and that
/// record's tag, the chain value every later record depends on
/// (`docs/security.md`). Written `LSN:HEX` (32 hexadecimal digits), the
/// form `logbook verify` prints and `--expect-head` takes: a value an
/// operator records elsewhere (a ticket, another machine) and compares
/// later. A log whose chain holds the record at that LSN with that tag is
/// that log, grown or not; nobody without the key can make another one
/// that does.
///
/// # Examples
///
/// ```
/// use logbook_wal::ChainHead;
///
/// let head: ChainHead = "57:000102030405060708090a0b0c0d0e0f".parse()?;
/// assert_eq!(head.lsn, 57);
/// assert_eq!(head.tag[15], 0x0f);
/// assert_eq!(head.to_string(), "57:000102030405060708090a0b0c0d0e0f");
/// assert!("57:0001".parse::<ChainHead>().is_err());
/// # Ok::<(), logbook_wal::ChainHeadError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHead {
    /// The record's LSN.
    pub lsn: Lsn,
    /// Its tag.
    pub tag: Chain,
}

impl std::fmt::Display for ChainHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.lsn)?;
        for b in self.tag {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a text is not a [`ChainHead`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a head: {reason} (a head is LSN:TAG, the LSN a whole number and the tag 32 hexadecimal digits, as `logbook verify` prints it)"
)]
pub struct ChainHeadError {
    /// The text (a head is not secret).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::str::FromStr for ChainHead {
    type Err = ChainHeadError;

    fn from_str(text: &str) -> Result<ChainHead, ChainHeadError> {
        let bad = |reason| ChainHeadError {
            text: text.to_owned(),
            reason,
        };
        let (lsn, hex) = text.trim().split_once(':').ok_or(bad("no `:`"))?;
        if lsn.is_empty() || !lsn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the LSN is not a whole number"));
        }
        let lsn: Lsn = lsn.parse().map_err(|_| bad("the LSN is too large"))?;
        if lsn == 0 {
            return Err(bad("LSNs start at 1"));
        }
        if hex.len() != 2 * crypto::CHAIN_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the tag is not 32 hexadecimal digits"));
        }
        let mut tag: Chain = [0; crypto::CHAIN_LEN];
        for (i, byte) in tag.iter_mut().enumerate() {
            *byte = hex
                .get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or(bad("the tag is not 32 hexadecimal digits"))?;
        }
        Ok(ChainHead { lsn, tag })
    }
}

/// What a reader with keys found of a head it was asked to look for
/// ([`Reader::watch_head`](crate::Reader::watch_head)), so far.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadCheck {
    /// The record at the head's LSN was opened and carries the head's
    /// tag: the log's chain holds the head.
    Holds {
        /// Its segment.
        segment: std::path::PathBuf,
        /// Its offset there.
        offset: u64,
    },
    /// The record at the head's LSN was opened and carries another tag:
    /// this log's history is not the one whose head was recorded (rolled
    /// back and written again, another log, or a head recorded wrong).
    Differs {
        /// Its segment.
        segment: std::path::PathBuf,
        /// Its offset there.
        offset: u64,
        /// Its tag.
        found: Chain,
    },
    /// The record at the head's LSN was returned without being opened: in
    /// the clear (`key_id` `None`, a log read without keys or a clear
    /// prefix), or sealed with a key the reader was not given.
    Unchecked {
        /// Its segment.
        segment: std::path::PathBuf,
        /// Its offset there.
        offset: u64,
        /// The key it is sealed with, if any.
        key_id: Option<u32>,
    },
    /// No record at the head's LSN was returned: after a whole read, the
    /// log ends before it, or the record there is damaged or forged (each
    /// a problem the reader reported).
    NotRead,
}
