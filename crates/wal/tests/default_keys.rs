//! The process's default keys (`install_default_keys`): each call adds its
//! keys, so a process with several logs under different keys reads each of
//! them (it read only with the first ring it installed); a key whose id
//! collides with one installed before is refused, nothing installed.
//!
//! In a test binary of its own: the default keys are the process's.

use std::sync::Arc;

use logbook_bus::SessionEvent;
use logbook_wal::{
    EventRecord, Key, KeyError, KeyRing, Reader, Wal, WalOptions, default_keys,
    install_default_keys,
};
use uuid::Uuid;

fn key(n: u64) -> Key {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    Key::new(bytes)
}

fn log_with(dir: &std::path::Path, ring: &Arc<KeyRing>, text: &str) {
    let wal = Wal::open(
        dir,
        WalOptions {
            encryption: Some(ring.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    wal.append(Uuid::nil(), &SessionEvent::UserMessage(text.into()))
        .unwrap();
    wal.close().unwrap();
}

/// What a reader given no keys reads from `dir`.
fn read(dir: &std::path::Path) -> Result<Vec<String>, logbook_wal::WalError> {
    let mut out = Vec::new();
    let mut reader = Reader::open(dir)?;
    while let Some(r) = reader.next_ref() {
        match EventRecord::decode(&r?)?.event {
            SessionEvent::UserMessage(t) => out.push(t),
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok(out)
}

#[test]
fn each_install_adds_its_keys_and_a_colliding_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (ring_a, ring_b) = (
        Arc::new(KeyRing::new(key(1))),
        Arc::new(KeyRing::new(key(2))),
    );
    log_with(&a, &ring_a, "in a");
    log_with(&b, &ring_b, "in b");

    install_default_keys(ring_a.clone()).unwrap();
    assert_eq!(read(&a).unwrap(), ["in a"]);
    assert!(read(&b).is_err(), "b's key is not installed yet");

    install_default_keys(ring_b).unwrap();
    assert_eq!(read(&a).unwrap(), ["in a"], "a's key is still there");
    assert_eq!(read(&b).unwrap(), ["in b"]);
    // Installed again: kept once.
    install_default_keys(ring_a).unwrap();
    assert_eq!(default_keys().unwrap().len(), 2);

    // Two different keys with one id (`749fe283`, see crypto.rs's tests).
    let (first, second) = (key(5_211), key(6_094));
    assert_eq!(first.id(), second.id());
    install_default_keys(Arc::new(KeyRing::new(first))).unwrap();
    let refused = install_default_keys(Arc::new(KeyRing::new(second)));
    assert!(
        matches!(
            refused,
            Err(KeyError::IdCollision {
                id: 0x749f_e283,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(default_keys().unwrap().len(), 3, "nothing installed");
    assert_eq!(read(&b).unwrap(), ["in b"]);
}
