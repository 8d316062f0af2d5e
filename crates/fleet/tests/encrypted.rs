//! An encrypted log ships encrypted: each message carries the sealed
//! payload and its key id (`Logbook-Key`), never the plaintext; a reader of
//! the stream with the key (the process's keys) decodes it, one without
//! the key is told which key it needs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{Select, ShipOptions, Shipper, Target, read};
use logbook_wal::{Key, KeyRing, Wal, WalError, WalOptions};
use uuid::Uuid;

#[test]
fn an_encrypted_log_ships_sealed_and_reads_back_with_its_key() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let ring = Arc::new(KeyRing::new(Key::new([0x33; 32])));
    let wal = Wal::open(
        &dir,
        WalOptions {
            encryption: Some(ring.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let events: Vec<(Uuid, SessionEvent)> = (0..40)
        .map(|i| {
            let who = if i % 2 == 0 { a } else { b };
            (who, SessionEvent::UserMessage(format!("private note {i}")))
        })
        .collect();
    for (s, e) in &events {
        wal.append(*s, e).unwrap();
    }
    wal.close().unwrap();
    common::run(Duration::from_secs(60), async {
        let target = Target::parse(&server.url()).unwrap();
        let shipper = Shipper::new(&dir, target.clone(), ShipOptions::default()).unwrap();
        assert_eq!(shipper.ship().await.unwrap().shipped, 40);
        let records = read(&target, Select::All).await.unwrap();
        assert_eq!(records.len(), 40);
        for r in &records {
            assert_eq!(r.key_id, Some(ring.current().id()), "LSN {}", r.lsn);
            assert!(
                !r.payload.windows(12).any(|w| w == b"private note"),
                "plaintext shipped at LSN {}",
                r.lsn
            );
            // Without the key: which key it needs.
            match r.decode() {
                Err(WalError::Encrypted { key_id, lsn, .. }) => {
                    assert_eq!((key_id, lsn), (ring.current().id(), r.lsn));
                }
                other => panic!("{other:?}"),
            }
        }
        // With the process's keys (as `logbook --key-file` installs them).
        logbook_wal::install_default_keys(ring.clone()).unwrap();
        let mut got: Vec<_> = records.iter().map(|r| r.decode().unwrap()).collect();
        got.sort_by_key(|r| r.lsn);
        let expected: Vec<(Uuid, SessionEvent)> =
            got.iter().map(|r| (r.session, r.event.clone())).collect();
        assert_eq!(expected, events);
        // And a ring without the key opens nothing.
        let other = KeyRing::new(Key::new([0x34; 32]));
        assert!(records[0].unsealed(Some(&other)).is_err());
    });
}
