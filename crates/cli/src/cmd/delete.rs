//! `logbook delete`: delete a session, or its records after a point, with
//! a durable tombstone (a dry run unless `--apply`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use logbook_replay::{DeletePlan, ReplayError, Selection};
use logbook_wal::{Lsn, Wal, WalOptions};
use serde::Serialize;
use uuid::Uuid;

use crate::cmd::replay::{Resolved, resolve_session};
use crate::output::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook delete ./logbook-demo 1d17157b              # what would be deleted
  logbook delete ./logbook-demo 1d17157b --apply      # delete the whole session
  logbook delete ./logbook-demo 1d17157b --after 57 --apply   # undo after LSN 57

Without --apply, nothing is written: the command prints how many records and
bytes the deletion covers. With --apply it appends a durable session_deleted
record (a tombstone): from then on replay, sessions, export, follow and fork
leave the deleted records out. Their bytes stay in the segments until
`logbook compact DIR --apply` erases them; `logbook dump --include-deleted`
shows them until then. The log must not be held by a live writer (delete from
inside the program that writes it with logbook_replay::delete). --json prints
one object with session, records, bytes, lsns, applied and tombstone_lsn.";

/// Delete a session, or its records after a point.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct DeleteArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// The session: its id, or a prefix of it that only it has.
    #[arg(value_parser = crate::cmd::dump::parse_session_prefix)]
    pub(crate) session: String,
    /// Delete only the session's records after this LSN (pop, undo).
    #[arg(long, value_name = "LSN", value_parser = output::parse_lsn)]
    pub(crate) after: Option<Lsn>,
    /// Write the tombstone (without it: a dry run).
    #[arg(long)]
    pub(crate) apply: bool,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Serialize)]
struct DeleteJson<'a> {
    session: Uuid,
    records: usize,
    bytes: u64,
    lsns: &'a [Lsn],
    applied: bool,
    tombstone_lsn: Option<Lsn>,
}

pub(crate) fn run(args: &DeleteArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    drop(crate::scan::open_reader(dir)?);
    let id = match resolve_session(dir, &args.session)? {
        Resolved::One(id) => id,
        Resolved::None(why) => {
            output::report_nothing_found(&why);
            return Ok(Outcome::NothingFound);
        }
    };
    let selection = args.after.map_or(Selection::Session, Selection::After);
    let plan = if args.apply {
        let options = WalOptions {
            create_if_missing: false,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir, crate::keys::writer_options(options)).with_context(|| {
            format!(
                "cannot delete in the log in {} (nothing changed)",
                dir.display()
            )
        })?;
        let reason = if args.after.is_some() {
            "after"
        } else {
            "session"
        };
        let done = logbook_replay::delete(&wal, id, &selection, reason);
        wal.close()?;
        done
    } else {
        logbook_replay::plan_delete(dir, id, &selection)
    };
    let plan: DeletePlan = match plan {
        Ok(plan) => plan,
        Err(e @ (ReplayError::UnknownSession(_) | ReplayError::DeletedSession { .. })) => {
            output::report_nothing_found(&format!("{e} (nothing changed)"));
            return Ok(Outcome::NothingFound);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("nothing changed")),
    };
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &DeleteJson {
                session: id,
                records: plan.lsns.len(),
                bytes: plan.bytes,
                lsns: &plan.lsns,
                applied: plan.tombstone_lsn.is_some(),
                tombstone_lsn: plan.tombstone_lsn,
            },
        )?;
    } else if let Some(lsn) = plan.tombstone_lsn {
        writeln!(
            out,
            "deleted {} record(s) of {id} ({} bytes): tombstone at LSN {lsn}; `logbook compact {} --apply` erases the bytes",
            plan.lsns.len(),
            plan.bytes,
            dir.display()
        )?;
    } else if plan.lsns.is_empty() {
        writeln!(out, "nothing to delete of {id} (nothing changed)")?;
    } else {
        writeln!(
            out,
            "would delete {} record(s) of {id} ({} bytes), LSN {} to {}; run again with --apply",
            plan.lsns.len(),
            plan.bytes,
            plan.lsns.first().copied().unwrap_or_default(),
            plan.lsns.last().copied().unwrap_or_default(),
        )?;
    }
    out.flush()?;
    Ok(Outcome::Clean)
}
