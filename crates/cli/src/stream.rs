//! What a read command reads: a log directory, one segment file of a log,
//! or, given `nats://HOST:PORT` instead, the records of every log in a
//! JetStream stream (read by `logbook-fleet`). All of them are one
//! [`Source`] of `logbook-replay`, read and decoded by the library; the
//! CLI only presents them.

use std::future::Future;
use std::path::Path;

use logbook_fleet::{Select, Target};
use logbook_replay::Source;
use uuid::Uuid;

/// Whether a path argument is a NATS URL.
pub(crate) fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("nats://"))
}

/// The target named by a path argument and `--stream`.
pub(crate) fn target(path: &Path, stream: &str) -> anyhow::Result<Target> {
    let url = path.to_str().unwrap_or_default();
    Ok(Target::parse(url)?.with_stream(stream))
}

/// Run a future to its end on a runtime of this thread.
pub(crate) fn block_on<T>(f: impl Future<Output = T>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

/// What a path argument names: the records of every log in the stream
/// `stream` for a `nats://` URL (read now, each log's in LSN order), else
/// a log directory, or one segment file if `path` is a file.
pub(crate) fn source(path: &Path, stream: &str) -> anyhow::Result<Source> {
    if is_url(path) {
        let target = target(path, stream)?;
        let records = block_on(logbook_fleet::read(&target, Select::All))??;
        return Ok(logbook_fleet::to_source(&target, records));
    }
    let source = Source::of(path);
    match &source {
        Source::Segment(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if logbook_wal::LogFile::of(&name) != Some(logbook_wal::LogFile::Segment) {
                anyhow::bail!(
                    "{} is not a directory, nor a segment file (<20 digits>.wal): give a log \
                     directory or one of its segments",
                    path.display()
                );
            }
        }
        // A missing directory, or one with no log, in the CLI's words.
        Source::Dir(dir) => drop(crate::scan::open_reader(dir)?),
        _ => {}
    }
    Ok(source)
}

/// `the stream S at URL`.
pub(crate) fn name(target: &Target) -> String {
    format!("the stream {} at {}", target.stream(), target.url())
}

/// `--log ID`: keep only the records of the one log of `source` whose id
/// starts with `prefix`. `Ok(None)` when it is there; `Ok(Some(why))` when
/// no log of the source has such an id (nothing found).
///
/// # Errors
///
/// A prefix that several logs share (a usage error).
pub(crate) fn keep_log(
    source: &mut Source,
    prefix: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    let all = source.logs();
    match source.keep_logs_with_prefix(prefix).as_slice() {
        [_] => Ok(None),
        [] => Ok(Some(format!(
            "no log of {} has an id that starts with {prefix} ({})",
            source.name(),
            if all.is_empty() {
                "it has no log id".to_owned()
            } else {
                format!(
                    "its log(s): {}",
                    all.iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ))),
        many => anyhow::bail!(
            "--log {prefix} names {} logs of {} ({}): give more of the id",
            many.len(),
            source.name(),
            many.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `--log`'s value: a log id or a prefix of one (hexadecimal digits and
/// dashes).
pub(crate) fn parse_log_prefix(text: &str) -> Result<String, String> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 36 || !s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(format!(
            "`{text}` is not a log id or a prefix of one (like 3601f79c)"
        ));
    }
    Ok(s)
}
