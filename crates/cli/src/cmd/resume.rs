//! `logbook resume DIR SESSION --from nats://…`: pull a session from a
//! stream into this host's log and resume it here.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use logbook_fleet::{FleetError, Select};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

use crate::output::{self, Outcome};
use crate::stream;

const EXAMPLES: &str = "\
Examples:
  logbook resume /var/lib/agent/log 3f2a9c1e --from nats://10.0.0.5:4222
  logbook resume ./log 3f2a9c1e --from nats://127.0.0.1:4222 --stream TEST

Pulls every record of the session that this log lacks from the stream (the
records shipped by the host it ran on), with their times, appends them to this
log (listed in its IMPORTS file, so that `logbook ship` never sends them again),
then appends a durable SessionResumed: the session is resumed here, and what
this host writes next ships as this log's. `logbook replay nats://… SESSION`
then shows one session across both hosts. SESSION is an id or a prefix of one
that names a single session of the stream. A pull cut short (a full disk) is
completed by running it again.

Everything that can refuse it is checked before anything is written: an
unknown or ambiguous session, a completed one (only an unfinished session can
be resumed), a record sealed with a key not given. A refused resume exits 2
(1 when no session matches) and leaves DIR as it was, not even created.";

/// Resume a session from a stream on this host's log.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ResumeArgs {
    /// This host's log directory (created if missing, unless the resume is
    /// refused).
    pub(crate) dir: PathBuf,
    /// The session's id, or a prefix of it that names one session of the
    /// stream.
    pub(crate) session: String,
    /// The NATS server: nats://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) from: String,
    /// The JetStream stream.
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// The records' subject prefix (default: the stream's own).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) subject_prefix: Option<String>,
}

pub(crate) fn run(args: &ResumeArgs) -> anyhow::Result<Outcome> {
    let mut target = stream::target(Path::new(&args.from), &args.stream)?;
    if let Some(prefix) = &args.subject_prefix {
        target = target.with_prefix(prefix)?;
    }
    // Everything that can refuse the resume, before the log is opened (or
    // created): a refused command changes nothing.
    let session = match Uuid::parse_str(&args.session) {
        Ok(id) => id,
        Err(_) => {
            let records = stream::block_on(logbook_fleet::read(&target, Select::All))??;
            let source = logbook_fleet::to_source(&target, records);
            let mut matching = logbook_replay::sessions_with_prefix_in(&source, &args.session)?;
            matching.sort_unstable();
            match matching.as_slice() {
                [one] => *one,
                [] => {
                    output::report_nothing_found(&format!(
                        "{} holds no session whose id starts with {}",
                        stream::name(&target),
                        args.session
                    ));
                    return Ok(Outcome::NothingFound);
                }
                many => {
                    return Err(crate::cmd::replay::ambiguous_prefix_in(
                        &stream::name(&target),
                        &args.session,
                        many,
                    ));
                }
            }
        }
    };
    let pull = match stream::block_on(logbook_fleet::fetch_session(&target, session))? {
        Ok(pull) => pull,
        Err(e @ FleetError::UnknownSession { .. }) => {
            output::report_nothing_found(&e.to_string());
            return Ok(Outcome::NothingFound);
        }
        Err(e) => return Err(e.into()),
    };
    pull.check(&args.dir)?;

    // Not preallocated (as `import`): the pulled records, nothing more; a
    // nearly full disk does not fail on 64 MiB of room the pull never uses.
    let wal = Wal::open(
        &args.dir,
        crate::keys::writer_options(WalOptions {
            preallocate: false,
            ..WalOptions::default()
        }),
    )?;
    let pulled = stream::block_on(pull.resume_into(&wal))??;
    let mut out = output::stdout();
    let r = &pulled.resumed;
    writeln!(
        out,
        "session {session} resumed in {}: {} record(s) pulled from {} ({} already here{}); SessionResumed at LSN {} (from LSN {}); {} pending tool call(s)",
        args.dir.display(),
        pulled.imported,
        stream::name(&target),
        pulled.already_here,
        if pulled.deleted > 0 {
            format!(
                ", {} left out: tombstone(s) and the records they delete",
                pulled.deleted
            )
        } else {
            String::new()
        },
        r.resumed_lsn,
        r.last_lsn,
        r.pending_tool_calls.len()
    )?;
    out.flush()?;
    wal.close()?;
    next_steps(args, session, r.pending_tool_calls.len());
    Ok(Outcome::Clean)
}

/// What a runtime does next, on stderr: two lines.
fn next_steps(args: &ResumeArgs, session: Uuid, pending: usize) {
    let dir = args.dir.display();
    let short = output::short_id(&session);
    let tools = if pending == 0 {
        String::new()
    } else {
        format!(", and the {pending} pending tool call(s) to re-run or report failed")
    };
    output::report_note(&format!(
        "next: the agent runtime continues session {session} on this host: it opens {dir} with a \
         writer and emits the session's events through its sink (logbook_wal::Wal::sink); \
         `logbook replay {dir} {short}` shows its state{tools}"
    ));
    let mut ship = format!("logbook ship {dir} --to {} --follow", args.from);
    if args.stream != logbook_fleet::DEFAULT_STREAM {
        ship.push_str(&format!(" --stream {}", args.stream));
    }
    if let Some(prefix) = &args.subject_prefix {
        ship.push_str(&format!(" --subject-prefix {prefix}"));
    }
    output::report_note(&format!(
        "then `{ship}` sends what it writes to the stream (the pulled records are not sent again)"
    ));
}
