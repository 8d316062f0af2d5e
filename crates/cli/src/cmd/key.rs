//! `logbook key new` and `logbook key id`: make a key file, and name the
//! key in one (`docs/operations.md`, "Keys").

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use logbook_wal::{Key, KeyError};

use crate::output::{self, Outcome};

/// Make a key file, or print the id of the key in one.
#[derive(Debug, Args)]
#[command(after_help = "\
A key file holds 32 raw bytes, or 64 hexadecimal digits (a trailing newline
allowed); `key new` writes the digits and a newline. Give it to any command
with --key-file FILE (or its digits in LOGBOOK_KEY). A key's id (8 hex
digits) names it in segment headers and messages, never revealing it.

Examples:
  logbook key new ./log.key             a fresh key, mode 0600; prints its id
  logbook key id ./log.key              which key is this?
  logbook import ./log events.jsonl --key-file ./log.key

Rotate: `logbook key new ./new.key`, then write with
--key-file ./new.key --key-file ./old.key (the first is current; the old
one still reads older segments). docs/operations.md, \"Keys\", has more.")]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a fresh random 256-bit key to FILE (mode 0600) and print its id.
    New(NewArgs),
    /// Print the id of the key in FILE (never the key).
    Id(IdArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The key file to create; refused if it exists (see --force).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Replace FILE if it exists (its old key is lost: anything encrypted
    /// with it becomes unreadable unless the key is kept elsewhere).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct IdArgs {
    /// The key file: 32 bytes, or 64 hex digits.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub(crate) fn run(args: &KeyArgs) -> anyhow::Result<Outcome> {
    let key = match &args.command {
        KeyCommand::New(new) => Key::create_file(&new.file, new.force).map_err(|e| match e {
            KeyError::Exists { path } => anyhow::anyhow!(
                "{} already exists: nothing written (--force replaces it, and loses the key it holds)",
                path.display()
            ),
            // It names the file.
            other => other.into(),
        })?,
        KeyCommand::Id(id) => Key::from_file(&id.file)?,
    };
    let mut out = output::stdout();
    writeln!(out, "{:08x}", key.id())?;
    out.flush()?;
    Ok(Outcome::Clean)
}
