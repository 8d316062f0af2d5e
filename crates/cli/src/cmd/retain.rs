//! `logbook retain`: remove old segments by age, size or LSN (a dry run
//! unless `--apply`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use logbook_wal::{Lsn, Retention, Wal, WalOptions};
use serde::Serialize;
use uuid::Uuid;

use crate::output::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook retain /var/lib/agent/log --older-than 30d            what would go
  logbook retain /var/lib/agent/log --max-bytes 10G --apply
  logbook retain /var/lib/agent/log --before 100000 --apply

Removes whole sealed segments from the front of the log (never the active
one), oldest first: those whose newest record is older than --older-than,
those that keep the log above --max-bytes, those wholly below --before. Without
--apply nothing is removed: the command prints the segments, their bytes, the
first LSN kept and the sessions it would cut short (records on both sides of
the cut: `sessions` then marks them truncated) or remove whole. With --apply
the log is opened as its writer (refused while another holds it). A writer can
apply the same policy at every segment roll (WalOptions::retention). --json
prints one object.";

/// Remove old segments by age, total size or LSN.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct RetainArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Remove segments whose newest record is older than this (30d, 12h).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) older_than: Option<Duration>,
    /// Remove the oldest segments while the log takes more than this
    /// (bytes, or with K, M, G, T: powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub(crate) max_bytes: Option<u64>,
    /// Remove the segments whose records are all below this LSN.
    #[arg(long, value_name = "LSN", value_parser = output::parse_lsn)]
    pub(crate) before: Option<Lsn>,
    /// Remove them (without it: a dry run).
    #[arg(long)]
    pub(crate) apply: bool,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("not an age such as 30d or 12h: {e}"))
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'B' => 0,
                _ => return Err(format!("{text}: a size is a number with K, M, G or T")),
            };
            (t.get(..i).unwrap_or_default(), shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text}: a size is a whole number with K, M, G or T"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text}: too large"))
}

#[derive(Debug, Serialize)]
struct RetainJson {
    applied: bool,
    segments: Vec<PathBuf>,
    bytes: u64,
    keep_from: Lsn,
    cut_short: Vec<Uuid>,
    removed_sessions: Vec<Uuid>,
}

pub(crate) fn run(args: &RetainArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    let policy = Retention {
        max_age: args.older_than,
        max_bytes: args.max_bytes,
        before_lsn: args.before,
    };
    if policy.is_none() {
        anyhow::bail!("give --older-than, --max-bytes or --before");
    }
    drop(crate::scan::open_reader(dir)?);
    let preview = logbook_replay::retention_preview(dir, &policy)?;
    let mut removed = preview.plan.clone();
    if args.apply && !preview.plan.is_empty() {
        let options = WalOptions {
            create_if_missing: false,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir, crate::keys::writer_options(options)).with_context(|| {
            format!(
                "cannot apply retention to the log in {} (nothing removed)",
                dir.display()
            )
        })?;
        let done = wal.retain(&policy);
        wal.close()?;
        removed = done.with_context(|| format!("retention in {}", dir.display()))?;
    }
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &RetainJson {
                applied: args.apply,
                segments: removed.segments.iter().map(|s| s.path.clone()).collect(),
                bytes: removed.bytes,
                keep_from: removed.keep_from,
                cut_short: preview.cut_short.clone(),
                removed_sessions: preview.removed.clone(),
            },
        )?;
    } else if removed.is_empty() {
        writeln!(out, "nothing to remove (nothing changed)")?;
    } else {
        let verb = if args.apply {
            "removed"
        } else {
            "would remove"
        };
        writeln!(
            out,
            "{verb} {} segment(s), {} bytes, LSN {} to {}; the log keeps LSN {} on",
            removed.segments.len(),
            removed.bytes,
            removed.segments.first().map_or(0, |s| s.first_lsn),
            removed.keep_from.saturating_sub(1),
            removed.keep_from
        )?;
        for s in &removed.segments {
            writeln!(out, "  {}  {} bytes", s.path.display(), s.bytes)?;
        }
        if !preview.cut_short.is_empty() {
            let ids: Vec<String> = preview.cut_short.iter().map(output::short_id).collect();
            writeln!(
                out,
                "cuts short {} session(s) (listed as truncated): {}",
                ids.len(),
                ids.join(", ")
            )?;
        }
        if !preview.removed.is_empty() {
            writeln!(out, "removes {} session(s) whole", preview.removed.len())?;
        }
        if !args.apply {
            writeln!(out, "run again with --apply")?;
        }
    }
    out.flush()?;
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("10G"), Ok(10 << 30));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("3k"), Ok(3 << 10));
        assert!(parse_bytes("1X").is_err());
        assert!(parse_bytes("G").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }
}
