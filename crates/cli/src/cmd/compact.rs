//! `logbook compact`: erase the bytes of deleted records (a dry run
//! unless `--apply`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use logbook_wal::{Compaction, Wal, WalOptions};
use serde::Serialize;

use crate::output::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook compact ./logbook-demo            what would be erased
  logbook compact ./logbook-demo --apply    erase it

Rewrites each sealed segment that holds records a tombstone lists (see
`logbook delete`), each such record replaced by a redacted placeholder (its
frame header; in an encrypted log, its 16-byte tag), and swaps the segment in
by fsync, rename and directory fsync: a crash at any point leaves the old
segment or the new one. With --apply the log is opened as its writer
(refused while another holds it), and the active segment is sealed first, so
that no byte of a deleted record's payload is left in the directory when the
command returns. Copies made before (backups, records already shipped to a
stream) still hold them. Without --apply nothing is written. --json prints one
object.";

/// Erase the bytes of deleted records.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct CompactArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Rewrite the segments (without it: a dry run).
    #[arg(long)]
    pub(crate) apply: bool,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also remove the deleted records' messages from the stream this log
    /// ships to (nats://HOST:PORT): a purge of each session deleted whole,
    /// then each listed record's message; idempotent (with --apply).
    #[arg(long, value_name = "URL", requires = "apply")]
    pub(crate) to: Option<PathBuf>,
    /// With --to: the JetStream stream.
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
}

#[derive(Debug, Serialize)]
struct CompactJson {
    applied: bool,
    segments: Vec<PathBuf>,
    erased: u64,
    reclaimed: u64,
    in_active_segment: u64,
    skipped: Vec<SkippedJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<StreamJson>,
}

#[derive(Debug, Serialize)]
struct StreamJson {
    tombstones: u64,
    purged: u64,
    deleted: u64,
}

#[derive(Debug, Serialize)]
struct SkippedJson {
    segment: PathBuf,
    reason: String,
}

pub(crate) fn run(args: &CompactArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    drop(crate::scan::open_reader(dir)?);
    let done: Compaction = if args.apply {
        let options = WalOptions {
            create_if_missing: false,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir, crate::keys::writer_options(options)).with_context(|| {
            format!(
                "cannot compact the log in {} (nothing changed)",
                dir.display()
            )
        })?;
        let done = wal.compact();
        wal.close()?;
        done.with_context(|| format!("compacting the log in {}", dir.display()))?
    } else {
        // Sealed records without their key may be tombstones: refused
        // (exit 2), never "nothing to erase", as `--apply` refuses.
        logbook_wal::compaction_plan(dir, None).map_err(|e| {
            let needs_key = matches!(e, logbook_wal::WalError::Encrypted { .. });
            anyhow::Error::new(e).context(if needs_key {
                format!(
                    "cannot tell what a compaction of the log in {} would erase: its tombstones are sealed, and the key is needed (--key-file or LOGBOOK_KEY)",
                    dir.display()
                )
            } else {
                format!("reading the log in {}", dir.display())
            })
        })?
    };
    let in_stream = match &args.to {
        Some(url) => {
            let target = crate::stream::target(url, &args.stream)?;
            let log = logbook_wal::log_id(dir)
                .with_context(|| format!("reading the log id of {}", dir.display()))?;
            Some(crate::stream::block_on(logbook_fleet::erase_in_stream(
                &target, log,
            ))??)
        }
        None => None,
    };
    for (path, why) in &done.skipped {
        output::report_problem(&format!(
            "{}: not compacted, it does not read cleanly: {why}",
            path.display()
        ));
    }
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &CompactJson {
                applied: args.apply,
                segments: done.segments.iter().map(|s| s.path.clone()).collect(),
                erased: done.erased,
                reclaimed: done.reclaimed,
                in_active_segment: done.in_active_segment,
                skipped: done
                    .skipped
                    .iter()
                    .map(|(segment, reason)| SkippedJson {
                        segment: segment.clone(),
                        reason: reason.clone(),
                    })
                    .collect(),
                stream: in_stream.map(|e| StreamJson {
                    tombstones: e.tombstones,
                    purged: e.purged,
                    deleted: e.deleted,
                }),
            },
        )?;
    } else if done.erased == 0 && done.in_active_segment == 0 {
        writeln!(out, "nothing to erase (nothing changed)")?;
    } else {
        let verb = if args.apply { "erased" } else { "would erase" };
        writeln!(
            out,
            "{verb} {} record(s) in {} segment(s), {} bytes reclaimed",
            done.erased,
            done.segments.len(),
            done.reclaimed
        )?;
        if done.in_active_segment > 0 {
            writeln!(
                out,
                "{} deleted record(s) in the active segment{}",
                done.in_active_segment,
                if args.apply {
                    " stay until it is sealed (appends were in flight)"
                } else {
                    ": --apply seals it first"
                }
            )?;
        }
        if !args.apply {
            writeln!(out, "run again with --apply")?;
        }
    }
    if let (Some(e), false) = (in_stream, args.json) {
        writeln!(
            out,
            "stream: {} message(s) purged, {} deleted ({} tombstone(s) kept)",
            e.purged, e.deleted, e.tombstones
        )?;
    }
    out.flush()?;
    Ok(Outcome::from_count(done.skipped.len() as u64))
}
