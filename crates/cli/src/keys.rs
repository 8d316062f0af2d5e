//! `--key-file` and `LOGBOOK_KEY`: the keys of an encrypted log
//! (`docs/format.md`, "Encrypted segments"; `docs/operations.md`, "Keys").
//!
//! The first `--key-file` is the current key (a command that writes
//! encrypts new segments with it); the other files, then `LOGBOOK_KEY`,
//! read older segments; `LOGBOOK_KEY` is current only when no `--key-file`
//! is given. The same key given twice is one key; two different keys with
//! one id are refused, naming both. Readers get the ring through
//! `logbook_wal::install_default_keys`, so every read path of the
//! libraries decrypts; writers get it in `WalOptions::encryption`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use logbook_wal::{Key, KeyError, KeyRing, WalOptions};
use zeroize::Zeroizing;

/// The ring of this run, once set up.
static RING: OnceLock<Option<Arc<KeyRing>>> = OnceLock::new();

/// The `--key-file` arguments of this run, made absolute: a child process
/// (the demo's writer) gets the same keys.
static FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Build the ring from `--key-file` arguments (in order) and the
/// `LOGBOOK_KEY` environment variable (64 hex digits, after them), and
/// install it for every reader of this process.
pub(crate) fn set_up(files: &[PathBuf]) -> anyhow::Result<()> {
    let ring = ring(files, lookup_env_key()?)?.map(Arc::new);
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

/// `LOGBOOK_KEY`, if set (its copy wiped once parsed).
fn lookup_env_key() -> anyhow::Result<Option<Key>> {
    let Some(value) = std::env::var_os("LOGBOOK_KEY") else {
        return Ok(None);
    };
    let value = Zeroizing::new(value.into_encoded_bytes());
    let text = std::str::from_utf8(&value)
        .map_err(|_| anyhow::anyhow!("LOGBOOK_KEY: a key is 64 hexadecimal digits (0-9, a-f)"))?;
    Key::from_hex(text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("LOGBOOK_KEY: {e}"))
}

/// The ring of the key files (in order), then `env_key`; `None` if no key.
fn ring(files: &[PathBuf], env_key: Option<Key>) -> anyhow::Result<Option<KeyRing>> {
    let mut keys = Vec::new();
    let mut sources = Vec::new();
    for file in files {
        keys.push(Key::from_file(file).map_err(|e| anyhow::anyhow!("--key-file: {e}"))?);
        sources.push(format!("--key-file {}", file.display()));
    }
    if let Some(key) = env_key {
        keys.push(key);
        sources.push("LOGBOOK_KEY".to_owned());
    }
    if keys.is_empty() {
        return Ok(None);
    }
    match KeyRing::from_keys(keys) {
        Ok(ring) => Ok(Some(ring)),
        Err(KeyError::IdCollision { id, first, second }) => {
            let name = |i: usize| sources.get(i).map_or("?", String::as_str);
            Err(anyhow::anyhow!(
                "{} and {} are different keys with the same id {id:08x}: a log names its keys by id, so they cannot be used together (use one of them, or make a new key with `logbook key new`)",
                name(first),
                name(second)
            ))
        }
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_file_is_current_and_logbook_key_comes_after_the_files() {
        let tmp = std::env::temp_dir().join(format!("logbook-keys-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        std::fs::write(&a, "01".repeat(32)).unwrap();
        std::fs::write(&b, "02".repeat(32)).unwrap();
        let env = Key::new([3; 32]);
        let ring = ring(&[b.clone(), a.clone()], Some(env.clone()))
            .unwrap()
            .unwrap();
        let ids: Vec<u32> = ring.ids().collect();
        let id = |p: &PathBuf| Key::from_file(p).unwrap().id();
        assert_eq!(ids, [id(&b), id(&a), env.id()]);
        // Without a file, LOGBOOK_KEY is current.
        let ring = ring_of_env(env.clone());
        assert_eq!(ring.current().id(), env.id());
        assert!(super::ring(&[], None).unwrap().is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn ring_of_env(key: Key) -> KeyRing {
        ring(&[], Some(key)).unwrap().unwrap()
    }
}
