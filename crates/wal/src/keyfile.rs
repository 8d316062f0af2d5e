//! Writing a fresh key to a file ([`Key::create_file`], `logbook key new`).
//!
//! The key comes from the operating system's random generator (through
//! `getrandom`); the file is written as 64 hexadecimal
//! digits and a newline, readable by its owner only from the moment it
//! exists, and made durable (file and directory) before the key is
//! returned.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{Key, KeyError};

/// The mode of a key file: read and write for its owner only.
const KEY_FILE_MODE: u32 = 0o600;

impl Key {
    /// A fresh random key, written to a new file at `path`: 64 hexadecimal
    /// digits and a newline, mode `0600` from its creation (never readable
    /// by others, even for a moment), fsynced with its directory.
    ///
    /// Without `replace`, an existing file is never touched. With it, the
    /// key is written to a temporary file beside `path` and renamed over
    /// it, so `path` holds the old key or the whole new one, and the new
    /// file has mode `0600` whatever the old one had.
    ///
    /// # Errors
    ///
    /// [`KeyError::Exists`] if `path` exists and not `replace`;
    /// [`KeyError::Random`] if the OS random generator fails;
    /// [`KeyError::Io`] naming the file for a failed create, write, fsync
    /// or rename (a file this call created is removed again).
    pub fn create_file(path: impl AsRef<Path>, replace: bool) -> Result<Key, KeyError> {
        let path = path.as_ref();
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = Key::from_bytes(&bytes);
        let mut text = Zeroizing::new(String::with_capacity(65));
        for byte in bytes.iter() {
            for digit in [byte >> 4, byte & 0xf] {
                text.push(char::from_digit(u32::from(digit), 16).unwrap_or('0'));
            }
        }
        text.push('\n');
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if replace {
            let name = path.file_name().unwrap_or(path.as_os_str());
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{}.tmp", std::process::id()));
            let temp = dir.join(temp_name);
            write_new(&temp, text.as_bytes())?;
            if let Err(source) = std::fs::rename(&temp, path) {
                let _ = std::fs::remove_file(&temp);
                return Err(KeyError::Io {
                    op: "replace",
                    path: path.to_path_buf(),
                    source,
                });
            }
        } else {
            write_new(path, text.as_bytes())?;
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Io {
                op: "fsync the directory",
                path: dir,
                source,
            })?;
        Ok(key)
    }
}

/// Create `path` (which must not exist) with mode 0600, write `bytes` and
/// fsync it; on failure remove what was created.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |op, source| KeyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io("create", e)
            }
        })?;
    let written = file
        .write_all(bytes)
        .map_err(|e| io("write", e))
        .and_then(|()| file.sync_all().map_err(|e| io("fsync", e)));
    if written.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_key_file_is_64_hex_digits_mode_0600_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.key");
        let key = Key::create_file(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(mode(&path), 0o600);
        assert!(Key::from_file(&path).unwrap().same_key(&key));
        // Fresh each time.
        let other = Key::create_file(tmp.path().join("other.key"), false).unwrap();
        assert!(!other.same_key(&key));
        assert_ne!(
            std::fs::read(tmp.path().join("other.key")).unwrap(),
            text.as_bytes()
        );
    }

    #[test]
    fn an_existing_file_is_kept_unless_replaced_and_replacing_resets_the_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.key");
        std::fs::write(&path, "precious").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match Key::create_file(&path, false) {
            Err(KeyError::Exists { path: p }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let key = Key::create_file(&path, true).unwrap();
        assert!(Key::from_file(&path).unwrap().same_key(&key));
        assert_eq!(mode(&path), 0o600, "not the old file's 0644");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn a_key_file_that_cannot_be_created_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("missing").join("log.key");
        let error = Key::create_file(&path, false).unwrap_err();
        assert!(
            matches!(error, KeyError::Io { op: "create", .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
    }
}
