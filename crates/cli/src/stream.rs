//! Where a read command is given `nats://HOST:PORT` instead of a
//! directory: the records of every log in a JetStream stream, read by
//! `logbook-fleet` (the CLI only presents them).

use std::future::Future;
use std::path::{Path, PathBuf};

use logbook_fleet::{FleetRecord, Select, Target, in_log_order};
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

/// The records `select` picks, each log's in LSN order.
pub(crate) fn records(target: &Target, select: Select) -> anyhow::Result<Vec<FleetRecord>> {
    Ok(in_log_order(block_on(logbook_fleet::read(
        target, select,
    ))??))
}

/// What stands for a stream record's segment in messages and in
/// `--physical`: `nats://HOST:PORT/STREAM/<log id>`.
pub(crate) fn place(target: &Target, log: Uuid) -> PathBuf {
    PathBuf::from(format!("{}/{}/{log}", target.url(), target.stream()))
}

/// `the stream S at URL`.
pub(crate) fn name(target: &Target) -> String {
    format!("the stream {} at {}", target.stream(), target.url())
}

/// The sessions among `records` whose id starts with `prefix` (with or
/// without dashes), in order of first appearance.
pub(crate) fn sessions_with_prefix(records: &[FleetRecord], prefix: &str) -> Vec<Uuid> {
    let prefix = prefix.to_ascii_lowercase();
    let mut out: Vec<Uuid> = Vec::new();
    for r in records {
        if out.contains(&r.session) {
            continue;
        }
        let hyphenated = r.session.to_string();
        if hyphenated.starts_with(&prefix) || r.session.simple().to_string().starts_with(&prefix) {
            out.push(r.session);
        }
    }
    out
}
