//! `logbook export` and `logbook import`: sessions as JSON Lines.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use logbook_replay::{ExportFilter, ImportOptions, ReplayError};
use logbook_wal::{Wal, WalOptions};

use crate::cmd::replay::{Resolved, resolve_session};
use crate::output::{self, Outcome};

const EXPORT_EXAMPLES: &str = "\
Examples:
  logbook export ./logbook-demo > sessions.jsonl
  logbook export ./logbook-demo --session 1d17157b --since 2h > one.jsonl

Writes one JSON object per record, in LSN order, with the fields v (the format
version, 1), lsn, session, ts (RFC 3339, UTC, to the microsecond), ts_us (µs
since the Unix epoch), kind (the event's stable kind name) and event (the event,
as `logbook dump --json` prints it). docs/json.md describes every kind and
field. A session whose beginning the export does not hold (retained away, or
before --since) starts with a session_truncated line, so that it stays marked
truncated where it is imported. `logbook import` reads it back into any log.
Records of an event kind this build does not know are left out and counted on
stderr. A damaged log is an error (exit 1): an export never leaves records out
silently.";

/// Write sessions as JSON Lines (docs/json.md).
#[derive(Debug, Args)]
#[command(after_help = EXPORT_EXAMPLES)]
pub(crate) struct ExportArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Only this session (an id, or a prefix of one that only it has).
    #[arg(long, value_name = "ID", value_parser = crate::cmd::dump::parse_session_prefix)]
    pub(crate) session: Option<String>,
    /// Only records appended at or after this time (RFC 3339, a date,
    /// @epoch-seconds or a duration back from now such as 15m).
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) since: Option<u64>,
    /// Only records appended before this time.
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) until: Option<u64>,
}

const IMPORT_EXAMPLES: &str = "\
Examples:
  logbook import ./other-log sessions.jsonl
  logbook import ./other-log sessions.jsonl --dry-run      what it would import
  logbook import ./new-log sessions.jsonl --create         a new log
  logbook export ./a --session 1d17157b | logbook import ./b -

Appends the events of an export (docs/json.md) to the log in DIR, in the order
of the lines: each keeps its session and its time; LSNs are new, and the LSNs
inside events (session_forked's at_lsn, session_resumed's from_lsn) are
remapped to the new LSNs of the records they named, which must be in the file.

DIR must hold a log: a mistyped directory is refused, unless --create (a new
log there). Every check comes before anything is written (exit 2, nothing
changed): a bad line is named with its number; a reference to a record not in
the file is named with its line; a file whose sessions the log already has is
refused (importing it again would double them) unless --new-ids, which imports
them under new ids. --dry-run makes every check and says what would be
imported, writing nothing. The import does not preallocate segments: a small
import leaves small files (a writer that preallocates, such as an agent runtime
with the default options, grows the tail segment when it opens the log);
--segment-size sets where its segments roll (default 64 MiB). The log must not
be held by a live writer.";

/// Append the events of an export to a log.
#[derive(Debug, Args)]
#[command(after_help = IMPORT_EXAMPLES)]
pub(crate) struct ImportArgs {
    /// The log directory (it must hold a log, unless --create).
    pub(crate) dir: PathBuf,
    /// The export to read: a file, or - for standard input.
    pub(crate) file: PathBuf,
    /// Make every check and say what would be imported; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Create the log if DIR holds none (without it, a directory with no
    /// log is refused: a mistyped path).
    #[arg(long)]
    pub(crate) create: bool,
    /// Import the file's sessions under new ids (a second copy), instead of
    /// refusing a file whose sessions the log already has.
    #[arg(long)]
    pub(crate) new_ids: bool,
    /// Roll to a new segment when one would exceed this size (bytes, or
    /// with KiB, MiB, GiB; at least 4 KiB; default 64 MiB). The import
    /// does not preallocate: its segments end at their last record.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) segment_size: Option<u64>,
}

/// A size in bytes: a number, optionally followed by K/KiB, M/MiB or
/// G/GiB (powers of 1024), at least a segment's minimum.
fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` is not a size: give bytes, or a number with KiB, MiB or GiB"
            ));
        }
    };
    let size = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .ok_or_else(|| {
            format!("`{text}` is not a size: give bytes, or a number with KiB, MiB or GiB")
        })?;
    let min = logbook_wal::MIN_SEGMENT_SIZE;
    if size < min {
        return Err(format!(
            "{size} bytes is below the smallest segment, {min} bytes (4 KiB)"
        ));
    }
    Ok(size)
}

pub(crate) fn export(args: &ExportArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    drop(crate::scan::open_reader(dir)?);
    let mut filter = ExportFilter::all().between(args.since, args.until);
    if let Some(prefix) = &args.session {
        let id = match resolve_session(dir, prefix)? {
            Resolved::One(id) => id,
            Resolved::None(why) => {
                output::report_nothing_found(&why);
                return Ok(Outcome::NothingFound);
            }
        };
        filter = filter.session(id);
    }
    let mut out = output::stdout();
    let done = match logbook_replay::export(dir, filter, &mut out) {
        Ok(done) => done,
        Err(ReplayError::Write { source }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(Outcome::Clean);
        }
        Err(e) => return Err(e.into()),
    };
    if done.skipped > 0 {
        output::report_note(&format!(
            "{} record(s) of an event kind this build does not know were left out",
            done.skipped
        ));
    }
    if done.records == 0 {
        output::report_nothing_found(&format!(
            "no record in the log in {} matches",
            dir.display()
        ));
        return Ok(Outcome::NothingFound);
    }
    Ok(Outcome::Clean)
}

pub(crate) fn import(args: &ImportArgs) -> anyhow::Result<Outcome> {
    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let source = if args.file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };
    let dir = &args.dir;
    // Every check comes before the log is opened for writing: a refused
    // import changes nothing, not even a missing directory.
    let lines = read_all(input).with_context(|| format!("cannot read {source}"))?;
    match logbook_replay::import_check(&lines[..]) {
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("{source}: nothing imported")));
        }
        Ok(0) => {
            output::report_nothing_found(&format!("no event in {source}: nothing imported"));
            return Ok(Outcome::NothingFound);
        }
        Ok(_) => {}
    }
    let exists = match logbook_wal::Reader::open(dir) {
        Ok(_) => true,
        Err(logbook_wal::WalError::NotFound { .. } | logbook_wal::WalError::NoLog { .. }) => false,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot import into {} (nothing imported)",
                dir.display()
            )));
        }
    };
    if !exists && !args.create {
        anyhow::bail!(
            "there is no log in {}: check the path, or give --create to make a new log there \
             (nothing imported)",
            dir.display()
        );
    }
    let mut options = ImportOptions::default();
    if args.new_ids {
        options = options.with_new_ids();
    }
    let refused = |e: ReplayError| {
        let hint = if matches!(e, ReplayError::SessionExists { .. }) {
            "; --new-ids imports the file's sessions under new ids"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!(
            "cannot import {source} into the log in {} (nothing imported{hint})",
            dir.display()
        ))
    };
    let plan = logbook_replay::import_plan(dir, &lines[..], options).map_err(refused)?;
    let (first, last) = plan.lsns.unwrap_or_default();
    let ids = if args.new_ids { " under new ids" } else { "" };
    let mut out = output::stdout();
    if args.dry_run {
        let into = if exists {
            format!("the log in {}", dir.display())
        } else {
            format!("a new log in {}", dir.display())
        };
        writeln!(
            out,
            "would import {} event(s) of {} session(s){ids} from {source} into {into} as LSNs \
             {first}..={last}; nothing written (dry run)",
            plan.records, plan.sessions
        )?;
        out.flush()?;
        return Ok(Outcome::Clean);
    }
    // Not preallocated: the segments hold what was imported, nothing more
    // (a preallocating writer would also grow the log's tail segment to its
    // segment size on open).
    let wal_options = WalOptions {
        segment_size: args
            .segment_size
            .unwrap_or(WalOptions::default().segment_size),
        preallocate: false,
        create_if_missing: args.create,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir, crate::keys::writer_options(wal_options)).with_context(|| {
        format!(
            "cannot import into the log in {} (nothing imported)",
            dir.display()
        )
    })?;
    let before = wal.recovery().next_lsn;
    let done = match logbook_replay::import_with(&wal, &lines[..], options) {
        Ok(done) => done,
        Err(e) => {
            // What became durable before the failure (a full disk part-way)
            // stays: say so, never "nothing imported".
            let kept = wal.durable_lsn();
            let _ = wal.close();
            if kept >= before {
                return Err(anyhow::Error::new(e).context(format!(
                    "import of {source} into the log in {} failed part-way: LSNs {before}..={kept} ({} record(s)) were appended and stay; the import is not complete (its sessions are cut short there): once the cause is fixed, import the same file again to complete it",
                    dir.display(),
                    kept + 1 - before
                )));
            }
            return Err(refused(e));
        }
    };
    wal.close()?;
    let (first, last) = done.lsns.unwrap_or_default();
    let completed = if done.already_there > 0 {
        format!(
            " (completing an earlier import of it that stopped part-way: its first {} \
             event(s) were there already)",
            done.already_there
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "imported {} event(s) of {} session(s){ids} from {source} as LSNs {first}..={last}{completed}",
        done.records, done.sessions
    )?;
    out.flush()?;
    Ok(Outcome::Clean)
}

fn read_all(mut input: Box<dyn BufRead>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    Ok(bytes)
}
