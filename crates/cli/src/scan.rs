//! Walking a log: the library's [`Reader::walk`] with a callback that may
//! fail, and the wording of the problems it reports. Shared by `dump`,
//! `verify`, `stats` and `repair`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use std::ops::ControlFlow;

use anyhow::Context;
use logbook_replay::{SourceItem, SourceReader};
use logbook_wal::{Item, Reader, TailDamage, WalError};

/// Whether a walk goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At the current end of the log.
    EndOfLog,
    /// The callback said stop.
    Stopped,
}

/// Feed every record and every problem of `reader`, in log order, to `f`,
/// until the current end of the log or until `f` says stop: the library's
/// [`Reader::walk`], with a callback that may fail (a closed stdout).
///
/// # Errors
///
/// The first error that is not corruption (I/O: an unreadable segment, a
/// directory that cannot be listed), or `f`'s error.
pub(crate) fn walk(
    reader: &mut Reader,
    mut f: impl FnMut(Item<'_>) -> anyhow::Result<Flow>,
) -> anyhow::Result<End> {
    let walked = reader.walk(|item| match f(item) {
        Ok(Flow::Continue) => ControlFlow::Continue(()),
        Ok(Flow::Stop) => ControlFlow::Break(Ok(())),
        Err(e) => ControlFlow::Break(Err(e)),
    })?;
    match walked {
        ControlFlow::Continue(()) => Ok(End::EndOfLog),
        ControlFlow::Break(result) => result.map(|()| End::Stopped),
    }
}

/// [`walk`] over any source's reader (a log directory, a segment file, a
/// stream's records): the library's [`SourceReader::walk`], with a callback
/// that may fail.
///
/// # Errors
///
/// As [`walk`].
pub(crate) fn walk_source(
    reader: &mut SourceReader<'_>,
    mut f: impl FnMut(SourceItem<'_>) -> anyhow::Result<Flow>,
) -> anyhow::Result<End> {
    let walked = reader.walk(|item| match f(item) {
        Ok(Flow::Continue) => ControlFlow::Continue(()),
        Ok(Flow::Stop) => ControlFlow::Break(Ok(())),
        Err(e) => ControlFlow::Break(Err(e)),
    })?;
    match walked {
        ControlFlow::Continue(()) => Ok(End::EndOfLog),
        ControlFlow::Break(result) => result.map(|()| End::Stopped),
    }
}

/// Open a reader on `dir`, naming the directory in errors.
pub(crate) fn open_reader(dir: &Path) -> anyhow::Result<Reader> {
    Ok(Reader::open(dir)?)
}

/// A problem the reader reported, on one line. Mid-log corruption is
/// worded for a reader (the log's own message speaks of recovery).
pub(crate) fn describe(e: &WalError) -> String {
    match e {
        WalError::MidLogCorruption {
            path,
            offset,
            lsn,
            next_offset,
            valid_after,
        } => format!(
            "{} at offset {offset}: corrupt record (expected LSN {lsn}), followed by \
             {valid_after} valid record(s) written after it was durable (the first at offset \
             {next_offset}): mid-log corruption",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// A torn tail on one line.
pub(crate) fn describe_tail(damage: &TailDamage) -> String {
    format!(
        "{} at offset {}: torn tail where LSN {} was due: {}",
        damage.path.display(),
        damage.offset,
        damage.lsn,
        damage.reason
    )
}

/// Read `len` bytes of `path` from `offset` (fewer at the end of the file).
pub(crate) fn read_bytes(path: &Path, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("seek {}", path.display()))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64)
        .read_to_end(&mut buf)
        .with_context(|| format!("read {}", path.display()))?;
    Ok(buf)
}
