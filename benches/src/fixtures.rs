//! Logs for the read-side benchmarks, generated once and reused.

use std::io;
use std::path::{Path, PathBuf};

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_wal::{SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

/// Where benchmark logs live: `$LOGBOOK_BENCH_DIR`, or `target/bench-logs`
/// under the workspace (a real disk: keep it off tmpfs).
#[must_use]
pub fn bench_root() -> PathBuf {
    std::env::var_os("LOGBOOK_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-logs"),
        PathBuf::from,
    )
}

/// The `i`-th event of a synthetic session mix: mostly token usage and tool
/// calls, some text; about `payload` bytes each.
#[must_use]
pub fn synthetic_event(i: u64, payload: usize) -> SessionEvent {
    match i % 8 {
        0..=2 => SessionEvent::TokenUsage(TokenDelta {
            source: if i % 16 == 0 {
                TokenSource::RlmSubcall
            } else {
                TokenSource::Root
            },
            model: "claude-like-model".into(),
            prompt_tokens: 1000 + i % 500,
            completion_tokens: 200 + i % 100,
            duration_ms: 900,
        }),
        3 => SessionEvent::ToolCallStart {
            tool_call_id: format!("call-{i}"),
            name: "bash".into(),
            arguments: "a".repeat(payload.saturating_sub(40)),
        },
        4 => SessionEvent::ToolCallComplete {
            tool_call_id: format!("call-{}", i - 1),
            name: "bash".into(),
            output: "o".repeat(payload.saturating_sub(40)),
            success: true,
            duration_ms: 12,
        },
        _ => SessionEvent::TextComplete("t".repeat(payload.saturating_sub(8))),
    }
}

/// A log of `records` events of about `payload` bytes spread over
/// `sessions` sessions, in `bench_root()/name`; built once, reused after.
///
/// # Errors
///
/// The `WalError` of writing it, as an `io::Error`.
pub fn log_with(name: &str, records: u64, payload: usize, sessions: u64) -> io::Result<PathBuf> {
    let dir = bench_root().join(name);
    let done = dir.join("COMPLETE");
    if done.exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, opts).map_err(io::Error::from)?;
    for i in 0..records {
        let session = Uuid::from_u64_pair(0xbe4c, i % sessions.max(1));
        wal.append(session, &synthetic_event(i, payload))
            .map_err(io::Error::from)?;
    }
    wal.close().map_err(io::Error::from)?;
    std::fs::write(&done, b"")?;
    Ok(dir)
}

/// Drop the page cache (needs root); `false` if this machine does not allow it.
#[must_use]
pub fn drop_caches() -> bool {
    std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", b"3\n").is_ok()
}

/// Read every file of `dir` whole (the baseline for opening a log).
///
/// # Errors
///
/// The I/O error.
pub fn read_everything(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wal") {
            total += std::fs::read(&path)?.len() as u64;
        }
    }
    Ok(total)
}
