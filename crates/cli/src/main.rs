//! The `logbook` command. Its subcommands are built by the CLI issue.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!(
        "logbook: not built yet — the demo will crash a child process that writes agent sessions,"
    );
    eprintln!("recover the log, list the interrupted sessions and resume one.");
    std::process::ExitCode::from(2)
}
