//! `logbook completions` and `logbook man`: shell completions and man
//! pages, generated from the command line's own definition (so they never
//! drift from it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::output::{self, Outcome};

/// Print a shell's completion script for `logbook`.
#[derive(Debug, Args)]
#[command(after_help = "\
Install (then start a new shell):
  logbook completions bash > ~/.local/share/bash-completion/completions/logbook
  logbook completions zsh  > ~/.zfunc/_logbook        (with fpath+=~/.zfunc before compinit)
  logbook completions fish > ~/.config/fish/completions/logbook.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Print the man page of `logbook`, or write one page per command.
#[derive(Debug, Args)]
#[command(after_help = "\
Install:
  logbook man --dir ~/.local/share/man/man1     logbook.1 and logbook-<command>.1
  man logbook-dump")]
pub(crate) struct ManArgs {
    /// Write logbook.1 and one logbook-COMMAND.1 per command into this
    /// directory (created if missing) instead of printing logbook.1.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

pub(crate) fn completions(
    args: &CompletionsArgs,
    mut command: clap::Command,
) -> anyhow::Result<Outcome> {
    let mut out = output::stdout();
    clap_complete::generate(args.shell, &mut command, "logbook", &mut out);
    out.flush()?;
    Ok(Outcome::Clean)
}

pub(crate) fn man(args: &ManArgs, command: clap::Command) -> anyhow::Result<Outcome> {
    let Some(dir) = &args.dir else {
        let mut out = output::stdout();
        clap_mangen::Man::new(command).render(&mut out)?;
        out.flush()?;
        return Ok(Outcome::Clean);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    // Built, so that each command has the global options (--key-file,
    // --no-derived-writes) on its own page too.
    let mut command = command;
    command.build();
    let mut pages = vec![("logbook.1".to_owned(), command.clone())];
    add_pages(&command, ("logbook", "logbook"), &mut pages);
    for (file, page) in pages {
        let path = dir.join(&file);
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page).render(&mut bytes)?;
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(Outcome::Clean)
}

/// A page per visible subcommand of `command` (whose page and command
/// line are `name`), and per subcommand of those (`logbook key new`:
/// `logbook-key-new.1`, the page `logbook-key.1` refers to).
fn add_pages(
    command: &clap::Command,
    (page, line): (&str, &str),
    pages: &mut Vec<(String, clap::Command)>,
) {
    // `build` added a `help` subcommand: it gets no page.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{page}-{}", sub.get_name());
        let bin = format!("{line} {}", sub.get_name());
        // The page's title and usage line name the whole command.
        let command = sub
            .clone()
            .name(name.clone())
            .display_name(name.clone())
            .bin_name(bin.clone());
        pages.push((format!("{name}.1"), command));
        add_pages(sub, (&name, &bin), pages);
    }
}
