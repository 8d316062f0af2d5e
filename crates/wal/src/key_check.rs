//! At open: a writer's key ring must hold the key of at least one of the
//! log's encrypted segments, if it has any (`docs/format.md`, "Encrypted
//! segments"). A ring that matches none is most likely the wrong key file:
//! without this check the writer would start a new segment under it, and
//! the log would then need both keys, one of which nobody meant to use.

use crate::crypto::KeyRing;
use crate::error::WalError;
use crate::fs::{Fs, OpenMode};
use crate::segment::{self, SegmentEntry};

/// `Ok` if `ring` is `None`, the log has no encrypted segment, or one of
/// them is encrypted with a key of `ring`; else
/// [`WalError::UnrelatedKeys`] naming the newest encrypted segment and its
/// key. Reads segment headers newest first and stops at the first match
/// (usually the tail); changes nothing. Headers that cannot be read are
/// skipped: recovery and readers report them.
pub(crate) fn check_writer_keys(
    fs: &dyn Fs,
    segments: &[SegmentEntry],
    ring: Option<&KeyRing>,
) -> Result<(), WalError> {
    let Some(ring) = ring else {
        return Ok(());
    };
    let mut newest = None;
    for entry in segments.iter().rev() {
        let file = fs
            .open(&entry.path, OpenMode::Read)
            .map_err(|e| WalError::io("open", &entry.path, e))?;
        let Ok(header) = segment::read_header(&*file, entry) else {
            continue;
        };
        let Some(key_id) = header.key_id else {
            continue;
        };
        if ring.get(key_id).is_some() {
            return Ok(());
        }
        newest.get_or_insert((entry, key_id));
    }
    match newest {
        None => Ok(()),
        Some((entry, key_id)) => Err(WalError::UnrelatedKeys {
            segment: entry.path.clone(),
            key_id,
            given: ring.ids().collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use uuid::Uuid;

    use crate::crypto::Key;
    use crate::{Reader, Wal, WalOptions};

    fn options(keys: &[&Key]) -> WalOptions {
        WalOptions {
            encryption: KeyRing::from_keys(keys.iter().map(|k| (*k).clone()))
                .ok()
                .map(Arc::new),
            ..WalOptions::default()
        }
    }

    use super::*;

    fn write(dir: &Path, keys: &[&Key], payload: &[u8]) {
        let wal = Wal::open(dir, options(keys)).unwrap();
        wal.append_raw(Uuid::from_u128(1), payload).unwrap();
        wal.close().unwrap();
    }

    /// Every file of a directory and its bytes.
    fn snapshot(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn segment_count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".wal")
            })
            .count()
    }

    #[test]
    fn a_writer_whose_keys_match_no_encrypted_segment_is_refused_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (Key::new([1; 32]), Key::new([2; 32]), Key::new([3; 32]));
        write(tmp.path(), &[&a], b"one");
        let before = snapshot(tmp.path());
        for ring in [&[&b][..], &[&b, &c]] {
            match Wal::open(tmp.path(), options(ring)) {
                Err(WalError::UnrelatedKeys {
                    segment,
                    key_id,
                    given,
                }) => {
                    assert!(segment.ends_with("00000000000000000001.wal"), "{segment:?}");
                    assert_eq!(key_id, a.id());
                    assert_eq!(given, ring.iter().map(|k| k.id()).collect::<Vec<_>>());
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("opened with keys that match no segment"),
            }
            assert_eq!(snapshot(tmp.path()), before, "nothing changed");
        }
        let message = Wal::open(tmp.path(), options(&[&b]))
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains(&format!("{:08x}", a.id())), "{message}");
        assert!(message.contains(&format!("{:08x}", b.id())), "{message}");
    }

    #[test]
    fn rotation_and_enabling_encryption_still_open() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (Key::new([1; 32]), Key::new([2; 32]));
        // A clear log: any key may start encrypting it.
        write(tmp.path(), &[], b"clear");
        write(tmp.path(), &[&a], b"under a");
        assert_eq!(segment_count(tmp.path()), 2);
        // Rotation: the new key first, the old one to read with.
        write(tmp.path(), &[&b, &a], b"under b");
        assert_eq!(segment_count(tmp.path()), 3);
        // The new key alone matches the newest segment: fine (the old one
        // is needed only to read the older segment).
        write(tmp.path(), &[&b], b"under b again");
        assert_eq!(segment_count(tmp.path()), 3);
        // The old key alone matches an older segment, but a writer
        // continues the chain of the newest one and must authenticate it
        // (`docs/security.md`): refused, nothing changed.
        let before = snapshot(tmp.path());
        let err = Wal::open(tmp.path(), options(&[&a])).unwrap_err();
        assert!(matches!(err, WalError::KeyRequired { .. }), "{err}");
        assert_eq!(snapshot(tmp.path()), before);
        // A rotation back, with the newest segment's key to read it.
        write(tmp.path(), &[&a, &b], b"under a again");
        assert_eq!(segment_count(tmp.path()), 4);
        let ring = Arc::new(KeyRing::from_keys([a, b]).unwrap());
        let payloads: Vec<Vec<u8>> = Reader::open(tmp.path())
            .unwrap()
            .with_keys(ring)
            .map(|r| r.unwrap().payload)
            .collect();
        let want: [&[u8]; 5] = [
            b"clear",
            b"under a",
            b"under b",
            b"under b again",
            b"under a again",
        ];
        assert_eq!(payloads, want);
    }
}
