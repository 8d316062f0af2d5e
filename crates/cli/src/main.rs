//! `logbook`: inspect, verify and repair Logbook write-ahead logs, and see
//! the whole story in `logbook demo`.
//!
//! `main` only parses the command line, runs one subcommand and maps its
//! result to an exit code: 0 ok, 1 a problem found in the log, 2 a usage
//! or I/O error. A closed stdout (`logbook dump DIR | head`) is not an
//! error: it ends `dump` early (exit 1 if a problem was reported before,
//! 0 if not); every other command goes on to its end without printing.
#![forbid(unsafe_code)]

mod cmd;
mod exporter;
mod keys;
mod output;
mod render;
mod scan;
mod stream;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::output::{EXIT_OK, EXIT_PROBLEM, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook demo                          crash a child writing agent sessions, recover, resume
  logbook dump ./logbook-demo | head    the first records
  logbook verify ./logbook-demo         check every header, CRC and LSN
  logbook stats ./logbook-demo          segments, kinds, sessions, time span
  logbook sessions ./logbook-demo       which sessions completed, failed, were interrupted
  logbook replay ./logbook-demo ID      one session rebuilt from its records
  logbook repair ./logbook-demo         what recovery would cut (a dry run)
  logbook key new ./log.key             a fresh key for an encrypted log (--key-file)
  logbook ship ./log --to nats://10.0.0.5:4222 --follow    ship to a JetStream stream
  logbook sessions nats://10.0.0.5:4222 every session of every shipped log

Exit status: 0 ok, 1 a problem found in the log, 2 a usage or I/O error.
Data goes to stdout, diagnostics to stderr; `logbook help <command>` has more.
Shell completions: `logbook completions bash|zsh|fish|elvish|powershell`;
man pages: `logbook man` (or `logbook man --dir DIR` for one page per command).";

/// Inspect, verify and repair Logbook write-ahead logs.
#[derive(Debug, Parser)]
#[command(name = "logbook", version, after_help = EXAMPLES)]
struct Cli {
    /// A 256-bit key for an encrypted log (32 bytes, or 64 hex digits);
    /// repeat it for older keys (the first is the one new segments get).
    /// Also LOGBOOK_KEY (64 hex digits), after the files.
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Vec<std::path::PathBuf>,
    /// Never write derived files (session indexes, .sum/.run session
    /// summaries) into the log directory while reading it; also
    /// LOGBOOK_NO_DERIVED_WRITES=1. Reads then change nothing there (they
    /// are skipped silently anyway where the directory is not writable).
    #[arg(long, global = true)]
    no_derived_writes: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print records: LSN, time, session, kind and a summary (or JSON).
    Dump(cmd::dump::DumpArgs),
    /// Check every segment header, record CRC and LSN; report each problem.
    Verify(cmd::verify::VerifyArgs),
    /// Segments, records and bytes by kind, sessions, time span.
    Stats(cmd::stats::StatsArgs),
    /// List the sessions: status, events, tokens, times.
    Sessions(cmd::sessions::SessionsArgs),
    /// Show one session rebuilt: transcript, tool calls, tokens.
    Replay(cmd::replay::ReplayArgs),
    /// Show what recovery would cut (dry run), or cut it with --apply.
    Repair(cmd::repair::RepairArgs),
    /// Start a new session from another's history up to an LSN.
    Fork(cmd::fork::ForkArgs),
    /// Delete a session, or its records after an LSN (dry run unless --apply).
    Delete(cmd::delete::DeleteArgs),
    /// Erase the bytes of deleted records (dry run unless --apply).
    Compact(cmd::compact::CompactArgs),
    /// Remove old segments by age, size or LSN (dry run unless --apply).
    Retain(cmd::retain::RetainArgs),
    /// Write sessions as JSON Lines (docs/json.md).
    Export(cmd::export::ExportArgs),
    /// Append the events of an export to a log.
    Import(cmd::export::ImportArgs),
    /// Ship the log's durable records to a NATS JetStream stream, once each.
    Ship(cmd::ship::ShipArgs),
    /// Pull a session from a NATS JetStream stream into this log and resume it.
    Resume(cmd::resume::ResumeArgs),
    /// Make a key file for an encrypted log, or print a key's id.
    Key(cmd::key::KeyArgs),
    /// Run agent sessions in a child, kill it, recover, resume: the tour.
    Demo(cmd::demo::DemoArgs),
    /// The demo's child process (internal).
    #[command(hide = true)]
    DemoChild(cmd::demo::ChildArgs),
    /// Print a shell completion script.
    #[command(hide = true)]
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page, or write one per command.
    #[command(hide = true)]
    Man(cmd::docs::ManArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: to stdout, status 0.
            let _ = e.print();
            return ExitCode::from(EXIT_OK);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `logbook` alone: the help, on stderr, status 2.
            let _ = e.print();
            return ExitCode::from(output::EXIT_ERROR);
        }
        Err(e) => {
            // A usage error on one line, like every other diagnostic.
            output::diag(format_args!(
                "logbook: error: {}",
                usage_line(&e.render().to_string())
            ));
            return ExitCode::from(output::EXIT_ERROR);
        }
    };
    // `key` makes and names keys: it needs no ring (and works whatever
    // LOGBOOK_KEY holds).
    let keys = match cli.command {
        Command::Key(_) => Ok(()),
        _ => keys::set_up(&cli.key_file),
    };
    if let Err(error) = keys {
        output::diag(format_args!("logbook: error: {}", output::one_line(&error)));
        return ExitCode::from(output::EXIT_ERROR);
    }
    if cli.no_derived_writes
        || std::env::var_os("LOGBOOK_NO_DERIVED_WRITES").is_some_and(|v| !v.is_empty() && v != "0")
    {
        logbook_wal::set_derived_writes(false);
    }
    let result = match &cli.command {
        Command::Dump(args) => cmd::dump::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Stats(args) => cmd::stats::run(args),
        Command::Sessions(args) => cmd::sessions::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Repair(args) => cmd::repair::run(args),
        Command::Fork(args) => cmd::fork::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Retain(args) => cmd::retain::run(args),
        Command::Compact(args) => cmd::compact::run(args),
        Command::Export(args) => cmd::export::export(args),
        Command::Import(args) => cmd::export::import(args),
        Command::Ship(args) => cmd::ship::run(args),
        Command::Resume(args) => cmd::resume::run(args),
        Command::Key(args) => cmd::key::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::DemoChild(args) => cmd::demo::child(args),
        Command::Completions(args) => cmd::docs::completions(args, Cli::command()),
        Command::Man(args) => cmd::docs::man(args, Cli::command()),
    };
    ExitCode::from(match result {
        Ok(Outcome::Clean) => EXIT_OK,
        Ok(Outcome::Problems | Outcome::NothingFound) => EXIT_PROBLEM,
        Err(error) if output::is_broken_pipe(&error) => output::exit_code(&error),
        Err(error) => {
            output::diag(format_args!("logbook: error: {}", output::one_line(&error)));
            output::exit_code(&error)
        }
    })
}

/// clap's rendered usage error on one line: its message, then the usage
/// line and where to look for more.
fn usage_line(rendered: &str) -> String {
    let mut message = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if !line.starts_with("For more information") {
            message.push(line.strip_prefix("error: ").unwrap_or(line).to_owned());
        }
    }
    let mut text = String::new();
    for part in message {
        if !text.is_empty() {
            text.push_str(if text.ends_with(':') { " " } else { "; " });
        }
        text.push_str(&part);
    }
    if let Some(u) = usage {
        text.push_str(&format!(" (usage: {u}; `logbook help` has more)"));
    }
    output::flatten(&text)
}
