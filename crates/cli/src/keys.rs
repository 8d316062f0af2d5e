//! `--key-file` and `LOGBOOK_KEY`: the keys of an encrypted log
//! (`docs/format.md`, "Encrypted segments").
//!
//! The first key given is the current one (a command that writes encrypts
//! new segments with it); the others read older segments. Readers get the
//! ring through `logbook_wal::install_default_keys`, so every read path of
//! the libraries decrypts; writers get it in `WalOptions::encryption`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use logbook_wal::{Key, KeyRing, WalOptions};

/// The ring of this run, once set up.
static RING: OnceLock<Option<Arc<KeyRing>>> = OnceLock::new();

/// The `--key-file` arguments of this run, made absolute: a child process
/// (the demo's writer) gets the same keys.
static FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Build the ring from `--key-file` arguments (in order) and the
/// `LOGBOOK_KEY` environment variable (64 hex digits, after them), and
/// install it for every reader of this process.
pub(crate) fn set_up(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for file in files {
        keys.push(Key::from_file(file).map_err(|e| anyhow::anyhow!("--key-file {e}"))?);
    }
    if let Ok(hex) = std::env::var("LOGBOOK_KEY") {
        keys.push(Key::from_hex(&hex).map_err(|e| anyhow::anyhow!("LOGBOOK_KEY: {e}"))?);
    }
    let ring = keys.split_first().map(|(first, rest)| {
        Arc::new(
            rest.iter()
                .cloned()
                .fold(KeyRing::new(first.clone()), KeyRing::with),
        )
    });
    if let Some(ring) = &ring {
        // Only this function installs one, once.
        let _ = logbook_wal::install_default_keys(ring.clone());
    }
    let _ = RING.set(ring);
    let _ = FILES.set(
        files
            .iter()
            .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
            .collect(),
    );
    Ok(())
}

/// The arguments that give a child `logbook` process this run's key files
/// (`LOGBOOK_KEY` it inherits with the environment).
pub(crate) fn child_args() -> Vec<std::ffi::OsString> {
    FILES
        .get()
        .into_iter()
        .flatten()
        .flat_map(|f| ["--key-file".into(), f.clone().into_os_string()])
        .collect()
}

/// The id of the key new segments get, if this run has keys.
pub(crate) fn current_key_id() -> Option<u32> {
    RING.get()
        .cloned()
        .flatten()
        .map(|ring| ring.current().id())
}

/// `options` with this run's keys, if any were given.
pub(crate) fn writer_options(options: WalOptions) -> WalOptions {
    WalOptions {
        encryption: RING.get().cloned().flatten(),
        ..options
    }
}
