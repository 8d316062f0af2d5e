//! Review 22: an outside attack on encryption at rest (AES-256-GCM under
//! per-writer HKDF keys, opening ahead, sealing on the committer).
//! Each test is one reproduction or one check of a documented claim.
//! Three reproduced defects, fixed since (each fails without its fix):
//! `a_roll_inside_an_encrypted_batch_is_forgotten_as_a_durable_point`
//! (`write_records` kept only the last piece's durable point),
//! `an_appender_waiting_in_seal_aside_is_woken` (it waited on the parity
//! of a batch nobody announced),
//! `a_stale_record_put_back_at_a_reused_lsn_is_refused_by_the_next_open`
//! (a writer went on from a tail the head disowns).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use logbook_wal::sim::SimFs;
use logbook_wal::{Key, KeyRing, Lsn, Reader, SyncPolicy, Wal, WalOptions};
use sha2::Sha256;
use uuid::Uuid;

const KEY: [u8; 32] = [5; 32];

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::new(Key::new(KEY)))
}

fn derive(salt: &[u8]) -> Aes256Gcm {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), &KEY)
        .expand(b"logbook record key v3", &mut okm)
        .unwrap();
    Aes256Gcm::new((&okm).into())
}

fn key_id() -> u32 {
    let mut fp = [0u8; 16];
    Hkdf::<Sha256>::new(None, &KEY)
        .expand(b"logbook key id v3", &mut fp)
        .unwrap();
    u32::from_le_bytes(fp[..4].try_into().unwrap())
}

fn gcm_nonce(counter: &[u8]) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(counter);
    n.into()
}

/// Check a MAC (`salt || counter || tag` of an empty message) as format.md
/// describes it, independently of the crate.
fn mac_ok(domain: &[u8], data: &[&[u8]], mac: &[u8]) -> bool {
    let mut aad = domain.to_vec();
    aad.extend_from_slice(&key_id().to_le_bytes());
    for d in data {
        aad.extend_from_slice(d);
    }
    derive(&mac[..16])
        .decrypt_inout_detached(
            &gcm_nonce(&mac[16..24]),
            &aad,
            (&mut [][..]).into(),
            &Tag::try_from(&mac[24..40]).unwrap(),
        )
        .is_ok()
}

/// The bytes of an encrypted log follow format.md ("Encrypted segments",
/// "The durable head") byte for byte: key id, seal block MAC, record
/// payload (salt, counter, AES-256-GCM under HKDF-SHA256(salt, key,
/// "logbook record key v3"), nonce 0000||counter, the 84-byte associated
/// data), the head in LOCK. Computed here with the crates directly, not
/// with the crate's own code: a known-answer check nothing else in the
/// test suite makes.
#[test]
fn the_bytes_on_disk_are_those_format_md_describes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = WalOptions {
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let wal = Wal::open(dir, opts).unwrap();
    let log = wal.log_id();
    let s = Uuid::from_u128(0x1234);
    for i in 0..3u8 {
        wal.append_raw(s, &[b'a' + i; 10]).unwrap();
    }
    wal.close().unwrap();
    assert_eq!(Key::new(KEY).id(), key_id(), "key id derivation");
    let seg = std::fs::read(dir.join(logbook_wal::format::segment_file_name(1))).unwrap();
    let header = &seg[..40];
    assert_eq!(u32::from_le_bytes(header[12..16].try_into().unwrap()), 1);
    assert_eq!(
        u32::from_le_bytes(header[32..36].try_into().unwrap()),
        key_id()
    );
    let block = &seg[40..124];
    assert_eq!(&block[..16], log.as_bytes());
    assert_eq!(u64::from_le_bytes(block[16..24].try_into().unwrap()), 1);
    assert_eq!(&block[24..40], &[0u8; 16]);
    assert!(
        mac_ok(b"LBSEG\0v3", &[&header[..36], &block[..40]], &block[40..80]),
        "seal block MAC as documented"
    );
    assert_eq!(
        crc32fast::hash(&block[..80]),
        u32::from_le_bytes(block[80..84].try_into().unwrap())
    );
    let mut at = 124;
    let mut prev = [0u8; 16];
    let mut counters = Vec::new();
    for i in 0..3u8 {
        let len = u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
        let lsn = u64::from_le_bytes(seg[at + 8..at + 16].try_into().unwrap());
        let sync = u64::from_le_bytes(seg[at + 16..at + 24].try_into().unwrap());
        let ts = u64::from_le_bytes(seg[at + 24..at + 32].try_into().unwrap());
        let session = &seg[at + 32..at + 48];
        let payload = &seg[at + 48..at + 48 + len];
        assert_eq!(len, 10 + 40);
        let mut aad = b"LBREC\0v3".to_vec();
        aad.extend_from_slice(&key_id().to_le_bytes());
        aad.extend_from_slice(log.as_bytes());
        aad.extend_from_slice(&lsn.to_le_bytes());
        aad.extend_from_slice(session);
        aad.extend_from_slice(&ts.to_le_bytes());
        aad.extend_from_slice(&sync.to_le_bytes());
        aad.extend_from_slice(&prev);
        assert_eq!(aad.len(), 84);
        let mut body = payload[24..len - 16].to_vec();
        derive(&payload[..16])
            .decrypt_inout_detached(
                &gcm_nonce(&payload[16..24]),
                &aad,
                body.as_mut_slice().into(),
                &Tag::try_from(&payload[len - 16..]).unwrap(),
            )
            .expect("the record opens as format.md says");
        assert_eq!(body, [b'a' + i; 10]);
        counters.push(u64::from_le_bytes(payload[16..24].try_into().unwrap()));
        prev.copy_from_slice(&payload[len - 16..]);
        at += 48 + len;
    }
    let lock = std::fs::read(dir.join("LOCK")).unwrap();
    let rec_salt = &seg[124 + 48..124 + 48 + 16];
    println!(
        "record counters: {counters:?}; seal block MAC counter {}, its salt {} the records' salt; head MAC counter {}, its salt {} the records' salt",
        u64::from_le_bytes(block[56..64].try_into().unwrap()),
        if &block[40..56] == rec_salt {
            "=="
        } else {
            "!="
        },
        u64::from_le_bytes(lock[36 + 72..36 + 80].try_into().unwrap()),
        if &lock[36 + 56..36 + 72] == rec_salt {
            "=="
        } else {
            "!="
        },
    );
    let head = &lock[36..136];
    assert_eq!(&head[..4], b"LBHD");
    assert_eq!(u64::from_le_bytes(head[24..32].try_into().unwrap()), 3);
    assert_eq!(&head[32..48], &prev, "the head names the last record's tag");
    assert!(
        mac_ok(b"LBHED\0v3", &[&head[..56]], &head[56..96]),
        "head MAC as documented"
    );
}

/// Appends `n` records of `size` bytes (payload byte = LSN mod 251).
fn fill(wal: &Wal, n: usize, size: usize) -> BTreeMap<Lsn, Vec<u8>> {
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let payload = vec![(i % 251) as u8; size];
        let lsn = wal.append_raw(Uuid::from_u128(7), &payload).unwrap();
        acked.insert(lsn, payload);
    }
    acked
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Under `SyncPolicy::Never` a full buffer is written with segment rolls
/// in it; every roll fsyncs the segment it seals and reports the records
/// before it durable (`roll`: `out.durable_end = Some(lsn)`). In the clear
/// the whole batch is one `write_frames`, and that durable point reaches
/// `durable_lsn()`, the watermark in LOCK and the head. An encrypted batch
/// is written 256 KiB piece by piece (`write_records`), and each piece's
/// outcome *replaces* the total's `durable_end`: a roll in any piece but
/// the last is forgotten, although its fsync happened.
#[test]
fn a_roll_inside_an_encrypted_batch_is_forgotten_as_a_durable_point() {
    let mut got = Vec::new();
    for encrypted in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 96 * 1024,
            buffer_bytes: 1 << 20,
            sync: SyncPolicy::Never,
            encryption: encrypted.then(ring),
            ..WalOptions::default()
        };
        let wal = Wal::open(tmp.path(), opts).unwrap();
        // Just over one buffer: one batch of ~1 MiB, written by the
        // appender (clear) or the committer thread (encrypted).
        let acked = fill(&wal, 1050, 1000);
        wait_for("the batch written", || {
            wal.stats().writes >= 1 && wal.stats().segments_created >= 5
        });
        std::thread::sleep(Duration::from_millis(200));
        let stats = wal.stats();
        let durable = wal.durable_lsn();
        let lock = std::fs::read(tmp.path().join("LOCK")).unwrap();
        let watermark = logbook_wal::format::Watermark::decode(&lock[..36]);
        let head = lock
            .get(36..136)
            .and_then(logbook_wal::Head::decode)
            .map(|h| h.lsn);
        println!(
            "encrypted={encrypted}: appended {} records, writes {}, fsyncs {}, segments created {}, durable_lsn {durable}, LOCK watermark {watermark:?}, LOCK head lsn {head:?}",
            acked.len(),
            stats.writes,
            stats.fsyncs,
            stats.segments_created
        );
        got.push((encrypted, stats.fsyncs, durable));
        wal.close().unwrap();
    }
    let (_, _, clear_durable) = got[0];
    let (_, enc_fsyncs, enc_durable) = got[1];
    assert!(clear_durable > 0, "{got:?}");
    assert!(enc_fsyncs > 0, "{got:?}");
    assert!(
        enc_durable + 200 >= clear_durable,
        "after fsyncs that made records durable (segment rolls), the encrypted log reports durable_lsn {enc_durable}, the clear one {clear_durable}: {got:?}"
    );
}

/// Every sealed payload's (salt, counter) in the log's segments, the
/// seal blocks' MACs and the head in LOCK: no two alike.
fn nonces_are_unique(fs: &SimFs, dir: &str) -> usize {
    let mut seen = HashSet::new();
    let mut n = 0;
    let reader = Reader::open_with_fs(Arc::new(fs.clone()), dir).unwrap();
    for seg in reader.segments() {
        let bytes = fs.file_bytes(&seg).unwrap();
        assert!(seen.insert(bytes[40 + 40..40 + 64].to_vec()), "seal block");
        let mut at = 124;
        while at + 48 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 || at + 48 + len > bytes.len() {
                break;
            }
            let nonce = bytes[at + 48..at + 48 + 24].to_vec();
            assert!(seen.insert(nonce), "nonce reused at {seg:?} offset {at}");
            n += 1;
            at += 48 + len;
        }
    }
    n
}

/// A full disk in the middle of a multi-piece encrypted batch under each
/// policy: every `Ok` record is in the log once, at its LSN, opens, and no
/// nonce repeats; nothing hangs.
#[test]
fn a_full_disk_in_the_middle_of_a_multi_piece_encrypted_batch() {
    for policy in [
        SyncPolicy::Never,
        SyncPolicy::Batch {
            max_delay: Duration::from_millis(50),
            max_bytes: 2 << 20,
        },
    ] {
        let fs = SimFs::new(22);
        let opts = WalOptions {
            segment_size: 4 << 20,
            buffer_bytes: 700 << 10,
            preallocate: false,
            sync: policy,
            encryption: Some(ring()),
            ..WalOptions::default()
        };
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts.clone()).unwrap();
        let mut acked = fill(&wal, 50, 1000);
        wal.sync().unwrap();
        fs.set_capacity(Some(fs.used() + (400 << 10)));
        let mut i = 0u64;
        // Append until something fails (the stall shows).
        loop {
            let payload = vec![(i % 200) as u8 + 1; 1000];
            i += 1;
            match wal.append_raw(Uuid::from_u128(8), &payload) {
                Ok(lsn) => {
                    assert!(acked.insert(lsn, payload).is_none(), "LSN {lsn} twice");
                }
                Err(e) => {
                    assert!(e.is_disk_full(), "{e}");
                    break;
                }
            }
            assert!(i < 20_000, "never stalled");
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let err = wal.sync().unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        fs.set_capacity(None);
        let last = wal.sync().unwrap();
        assert_eq!(last, *acked.keys().last().unwrap(), "{policy:?}");
        wal.close().unwrap();
        let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), "/log")
            .unwrap()
            .with_keys(ring());
        let mut read = BTreeMap::new();
        while let Some(r) = reader.next_ref() {
            let r = r.unwrap();
            assert!(read.insert(r.lsn, r.payload.to_vec()).is_none());
        }
        assert_eq!(read.len(), acked.len(), "{policy:?}");
        assert!(read == acked, "{policy:?}: a record differs");
        let n = nonces_are_unique(&fs, "/log");
        println!(
            "{policy:?}: {} records acknowledged, {n} sealed payloads, nonces unique",
            acked.len()
        );
    }
}

/// Under `SyncPolicy::Never` in an encrypted log, an appender that finds
/// two buffers queued while another thread leads waits in `seal_aside` on
/// the turn of the batch in flight (`st.batch - 1`). A `sync()` caller
/// leads with `sync = true` and so may lead the next batch too (`go_on`);
/// an appender that wakes between the two batches and re-takes the lock
/// first computes the same parity again, the parity of a batch that the
/// leader then never announces (nothing more queued: no `next` wake-up),
/// and the committer thread that would lead that batch was never started
/// (`seal_aside` starts it only after its loop). The appender sleeps
/// until some other thread happens to lead.
#[test]
fn an_appender_waiting_in_seal_aside_is_woken() {
    let mut hung = 0;
    let rounds = 300;
    for round in 0..rounds {
        let fs = SimFs::new(round);
        let opts = WalOptions {
            buffer_bytes: 4096,
            preallocate: false,
            sync: SyncPolicy::Never,
            encryption: Some(ring()),
            ..WalOptions::default()
        };
        let wal = Arc::new(Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts).unwrap());
        // Something queued below one buffer, for the syncing thread to
        // lead with.
        wal.append_raw(Uuid::from_u128(1), &[1; 100]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let a = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let _ = wal.sync();
                }
            })
        };
        let b = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                // One record over two buffers: waits in seal_aside if
                // someone leads.
                let r = wal.append_raw(Uuid::from_u128(2), &[2; 10_000]);
                let _ = tx.send(r.is_ok());
            })
        };
        a.join().unwrap();
        match rx.recv_timeout(Duration::from_secs(3)) {
            Ok(ok) => {
                assert!(ok);
                b.join().unwrap();
            }
            Err(_) => {
                hung += 1;
                println!(
                    "round {round}: the appender is still blocked 3 s after the syncing thread finished (next_lsn {}, durable {})",
                    wal.last_lsn(),
                    wal.durable_lsn()
                );
                // A sync from another thread does not free it: every
                // record is durable already, so `sync` leads nothing.
                let synced = wal.sync();
                let still = rx.recv_timeout(Duration::from_secs(2)).is_err();
                println!(
                    "round {round}: wal.sync() = {synced:?}; appender still blocked 2 s later: {still}"
                );
                // Leave it (and the log) behind.
                std::mem::forget(b);
                std::mem::forget(wal);
                break;
            }
        }
    }
    assert_eq!(hung, 0, "an appender blocked forever");
}

/// Crafted changes to the frames of an encrypted segment, deep enough
/// that the reader opens ahead on its second thread (after 64 records):
/// a keyed reader neither panics nor hangs, and every record it returns
/// is the one the writer wrote at that LSN.
#[test]
fn crafted_frames_deep_in_an_encrypted_segment_neither_panic_hang_nor_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = WalOptions {
        segment_size: 1 << 20,
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let wal = Wal::open(dir, opts).unwrap();
    let mut orig = BTreeMap::new();
    for i in 0..400u64 {
        let payload = vec![(i % 250) as u8 + 1; 20 + (i as usize * 37) % 700];
        let lsn = wal
            .append_raw(Uuid::from_u128(u128::from(i % 5)), &payload)
            .unwrap();
        orig.insert(lsn, payload);
    }
    wal.close().unwrap();
    let seg = dir.join(logbook_wal::format::segment_file_name(1));
    let clean = std::fs::read(&seg).unwrap();
    // Frame offsets.
    let mut frames = Vec::new();
    let mut at = 124;
    while at + 48 <= clean.len() {
        let len = u32::from_le_bytes(clean[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        frames.push((at, 48 + len));
        at += 48 + len;
    }
    assert_eq!(frames.len(), 400);
    let fix_crc = |b: &mut [u8], at: usize| {
        let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        if at + 48 + len <= b.len() {
            let crc = crc32fast::hash(&b[at + 8..at + 48 + len]);
            b[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        }
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    {
        let mut reader = Reader::open(dir).unwrap().with_keys(ring());
        let mut n = 0;
        while let Some(r) = reader.next_ref() {
            r.unwrap();
            n += 1;
        }
        assert_eq!(n, 400);
        assert!(reader.opened_ahead() > 0, "the second thread opened none");
        println!(
            "clean read: {} of 400 records opened ahead",
            reader.opened_ahead()
        );
    }
    let mut kinds = BTreeMap::new();
    for round in 0..400 {
        let mut b = clean.clone();
        let f = 70 + (next() as usize % 320);
        let (fat, flen) = frames[f];
        let kind = next() % 7;
        match kind {
            // A byte of the frame (header or sealed payload), CRC fixed.
            0 => {
                let i = fat + 8 + next() as usize % (flen - 8);
                b[i] ^= 1 << (next() % 8);
                fix_crc(&mut b, fat);
            }
            // Its length field, CRC fixed where it can be.
            1 => {
                let len = match next() % 4 {
                    0 => 0,
                    1 => next() as u32 % 64,
                    2 => (flen - 48) as u32 + 1 + next() as u32 % 2000,
                    _ => next() as u32,
                };
                b[fat..fat + 4].copy_from_slice(&len.to_le_bytes());
                fix_crc(&mut b, fat);
            }
            // Another frame copied over it with this frame's LSN.
            2 => {
                let (oat, olen) = frames[next() as usize % 400];
                let mut copy = clean[oat..oat + olen].to_vec();
                copy[8..16].copy_from_slice(&(f as u64 + 1).to_le_bytes());
                let crc = crc32fast::hash(&copy[8..]);
                copy[4..8].copy_from_slice(&crc.to_le_bytes());
                let end = (fat + copy.len()).min(b.len());
                b[fat..end].copy_from_slice(&copy[..end - fat]);
            }
            // Two neighbours swapped, LSNs and CRCs fixed.
            3 if f + 1 < 400 => {
                let (nat, nlen) = frames[f + 1];
                let mut x = clean[nat..nat + nlen].to_vec();
                let mut y = clean[fat..fat + flen].to_vec();
                x[8..16].copy_from_slice(&(f as u64 + 1).to_le_bytes());
                y[8..16].copy_from_slice(&(f as u64 + 2).to_le_bytes());
                for v in [&mut x, &mut y] {
                    let crc = crc32fast::hash(&v[8..]);
                    v[4..8].copy_from_slice(&crc.to_le_bytes());
                }
                b[fat..fat + nlen].copy_from_slice(&x);
                b[fat + nlen..fat + nlen + flen].copy_from_slice(&y);
            }
            // Sealed payload cut shorter than salt+counter+tag, CRC fixed.
            4 => {
                let keep = 1 + next() as usize % 39;
                let mut frame = clean[fat..fat + 48 + keep].to_vec();
                frame[..4].copy_from_slice(&(keep as u32).to_le_bytes());
                let crc = crc32fast::hash(&frame[8..]);
                frame[4..8].copy_from_slice(&crc.to_le_bytes());
                b[fat..fat + frame.len()].copy_from_slice(&frame);
            }
            // The salt of one record replaced by another writer-looking one.
            5 => {
                for k in 0..16 {
                    b[fat + 48 + k] = next() as u8;
                }
                fix_crc(&mut b, fat);
            }
            // The file cut inside the frame.
            _ => b.truncate(fat + next() as usize % flen),
        }
        *kinds.entry(kind).or_insert(0) += 1;
        std::fs::write(&seg, &b).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.to_path_buf();
        let orig2 = orig.clone();
        let h = std::thread::spawn(move || {
            let mut reader = Reader::open(&d).unwrap().with_keys(ring());
            let (mut ok, mut errs, mut wrong) = (0, 0, Vec::new());
            let mut steps = 0;
            while let Some(r) = reader.next_ref() {
                steps += 1;
                if steps > 5000 {
                    break;
                }
                match r {
                    Ok(r) => {
                        if orig2.get(&r.lsn).map(Vec::as_slice) != Some(r.payload)
                            || r.key_id.is_some()
                        {
                            wrong.push(r.lsn);
                        }
                        ok += 1;
                    }
                    Err(_) => errs += 1,
                }
            }
            let _ = tx.send((ok, errs, wrong, reader.opened_ahead()));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((ok, errs, wrong, ahead)) => {
                assert!(
                    wrong.is_empty(),
                    "round {round} kind {kind} frame {f}: records returned that the writer did not write there: {wrong:?} (ok {ok}, errors {errs}, opened ahead {ahead})"
                );
                assert!(
                    errs > 0 || kind == 6,
                    "round {round} kind {kind}: nothing reported"
                );
            }
            Err(_) => {
                let panicked = h.is_finished();
                panic!("round {round} kind {kind} frame {f}: reader panicked={panicked} or hung");
            }
        }
        h.join().unwrap();
    }
    std::fs::write(&seg, &clean).unwrap();
    println!("mutations by kind: {kinds:?}");
}

/// `a_stale_record_put_back_at_a_reused_lsn_is_refused` (tamper.rs), with
/// one routine step added between the attack and the read: the key holder
/// opens the log again (a service restart) and closes it. The writer
/// authenticates the tail's last record (it opens: the key holder did seal
/// it, at that LSN after that record) but never compares it with the
/// durable head in `LOCK`, which names another tag at that LSN; it then
/// publishes a new head naming the stale record. From then on a keyed
/// reader returns the stale record as the acknowledged one, with no error.
#[test]
fn a_stale_record_put_back_at_a_reused_lsn_is_refused_by_the_next_open() {
    use logbook_bus::SessionEvent;
    use logbook_wal::EventRecord;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = || WalOptions {
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let s = Uuid::from_u128(9);
    let wal = Wal::open(dir, opts()).unwrap();
    wal.append(s, &SessionEvent::UserMessage("one".into()))
        .unwrap();
    wal.append(s, &SessionEvent::UserMessage("two".into()))
        .unwrap();
    drop(wal);
    let lock_before = std::fs::read(dir.join("LOCK")).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    let payment = SessionEvent::ToolCallStart {
        tool_call_id: "t1".into(),
        name: "pay".into(),
        arguments: "invoice 42, 1 000 000".into(),
    };
    assert_eq!(wal.append(s, &payment).unwrap(), 3);
    drop(wal);
    let seg = dir.join(logbook_wal::format::segment_file_name(1));
    let places: Vec<(usize, usize)> = Reader::open(dir)
        .unwrap()
        .with_keys(ring())
        .map(|r| {
            let r = r.unwrap();
            (
                r.offset as usize,
                48 + r.payload.len() + logbook_wal::SEAL_OVERHEAD,
            )
        })
        .collect();
    let (at3, len3) = places[2];
    let stale = std::fs::read(&seg).unwrap()[at3..at3 + len3].to_vec();
    // As in tamper.rs: LSN 3 never acknowledged (cut, the watermark of
    // before), then reused by an acknowledged record.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at3 as u64).unwrap();
    drop(f);
    std::fs::write(dir.join("LOCK"), &lock_before).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    assert_eq!(wal.append(s, &SessionEvent::Done).unwrap(), 3);
    drop(wal);
    let read = || -> (Vec<(Lsn, SessionEvent)>, Vec<String>) {
        let (mut ev, mut err) = (Vec::new(), Vec::new());
        let mut reader = Reader::open(dir).unwrap().with_keys(ring());
        while let Some(r) = reader.next_ref() {
            match r {
                Ok(r) => {
                    let e = EventRecord::decode(&r).unwrap();
                    ev.push((e.lsn, e.event));
                }
                Err(e) => err.push(format!("{e}")),
            }
        }
        (ev, err)
    };
    // The attack: the stale record put back at LSN 3 (the file ends with it).
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(at3);
    bytes.extend_from_slice(&stale);
    std::fs::write(&seg, &bytes).unwrap();
    let (events, errors) = read();
    println!("before the next open: {events:?} errors {errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not the record the writer made durable")),
        "caught by the head, as tamper.rs shows"
    );
    // The key holder restarts: refused, the head names another record.
    let opened = Wal::open(dir, opts());
    println!("the next open: {:?}", opened.as_ref().map(|w| w.last_lsn()));
    match opened {
        Err(logbook_wal::WalError::Forged { lsn, .. }) => assert_eq!(lsn, 3),
        other => panic!("the next open went on from the stale record: {other:?}"),
    }
    let (events, errors) = read();
    println!("after it: {events:?} errors {errors:?}");
    assert!(
        !events.iter().any(|(_, e)| *e == payment),
        "the stale payment is returned as LSN 3, with no error: {events:?} {errors:?}"
    );
}

/// A keyed reader following a live encrypted tail (records opened ahead
/// while the writer appends, syncs and rolls): every record it returns is
/// the one written at that LSN, none is reported damaged, none is missed.
#[test]
fn a_keyed_reader_following_a_live_encrypted_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let opts = WalOptions {
        segment_size: 256 << 10,
        buffer_bytes: 64 << 10,
        sync: SyncPolicy::Never,
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, opts).unwrap();
    let total = 6000u64;
    let payload = |lsn: u64| vec![(lsn % 251) as u8; 30 + (lsn as usize * 13) % 400];
    let d = dir.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = Reader::open(&d).unwrap().with_keys(ring());
        let mut next = 1u64;
        let t = Instant::now();
        while next <= total && t.elapsed() < Duration::from_secs(60) {
            match reader.next_ref() {
                Some(Ok(r)) => {
                    assert_eq!(r.lsn, next);
                    assert_eq!(r.payload, &payload(r.lsn)[..], "LSN {}", r.lsn);
                    next += 1;
                }
                Some(Err(e)) => panic!("at LSN {next}: {e}"),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        (next - 1, reader.opened_ahead())
    });
    for lsn in 1..=total {
        assert_eq!(
            wal.append_raw(Uuid::from_u128(u128::from(lsn % 3)), &payload(lsn))
                .unwrap(),
            lsn
        );
        if lsn % 97 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    let (read, ahead) = reader.join().unwrap();
    println!("read {read} of {total} records while they were written, {ahead} opened ahead");
    assert_eq!(read, total);
    wal.close().unwrap();
}

/// Under `SyncPolicy::Always`, one batch of two 256 KiB pieces whose
/// second piece meets a full disk: the call fails, the LSNs from the
/// failure on are reused, the records after it are chained to what was
/// written, and after a power cut and reopen a keyed reader finds every
/// acknowledged record and no broken chain.
#[test]
fn a_full_disk_in_the_second_piece_under_always_then_a_power_cut() {
    let fs = SimFs::new(7);
    let opts = WalOptions {
        segment_size: 4 << 20,
        preallocate: false,
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts.clone()).unwrap();
    let mut acked = fill(&wal, 10, 1000);
    fs.set_capacity(Some(fs.used() + (380 << 10)));
    let batch: Vec<(Uuid, Vec<u8>)> = (0..400u32)
        .map(|i| (Uuid::from_u128(3), vec![(i % 200) as u8 + 3; 1000]))
        .collect();
    let err = wal.append_many_raw(&batch).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    fs.set_capacity(None);
    let mut after = Vec::new();
    for i in 0..20u8 {
        let p = vec![250 - i; 500];
        let lsn = wal.append_raw(Uuid::from_u128(4), &p).unwrap();
        acked.insert(lsn, p.clone());
        after.push(lsn);
    }
    println!(
        "the failed call, then 20 appends acknowledged at LSNs {:?}..{:?}",
        after.first(),
        after.last()
    );
    fs.power_cut();
    drop(wal);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts).unwrap();
    wal.close().unwrap();
    let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), "/log")
        .unwrap()
        .with_keys(ring());
    let mut read = BTreeMap::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        read.insert(r.lsn, r.payload.to_vec());
    }
    for (lsn, p) in &acked {
        assert_eq!(read.get(lsn), Some(p), "acknowledged LSN {lsn}");
    }
    println!(
        "{} records read back, every acknowledged one among them",
        read.len()
    );
    nonces_are_unique(&fs, "/log");
}

/// As above, with a stale *run* put back: LSNs 3 and 4 of a writer whose
/// records were cut (never acknowledged) replace the acknowledged LSN 3,
/// so the head names a record before the tail's last. The next open finds
/// the record at the head's LSN (reading it with the key) and refuses.
#[test]
fn a_stale_run_put_back_over_the_head_is_refused_by_the_next_open() {
    use logbook_bus::SessionEvent;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = || WalOptions {
        encryption: Some(ring()),
        ..WalOptions::default()
    };
    let s = Uuid::from_u128(9);
    let wal = Wal::open(dir, opts()).unwrap();
    for text in ["one", "two"] {
        wal.append(s, &SessionEvent::UserMessage(text.into()))
            .unwrap();
    }
    drop(wal);
    let lock_before = std::fs::read(dir.join("LOCK")).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    for text in ["pay invoice 42", "and again"] {
        wal.append(s, &SessionEvent::UserMessage(text.into()))
            .unwrap();
    }
    drop(wal);
    let seg = dir.join(logbook_wal::format::segment_file_name(1));
    let at3 = Reader::open(dir)
        .unwrap()
        .with_keys(ring())
        .nth(2)
        .unwrap()
        .unwrap()
        .offset as usize;
    let end = {
        let mut r = Reader::open(dir).unwrap().with_keys(ring());
        let last = r.by_ref().last().unwrap().unwrap();
        last.offset as usize + 48 + last.payload.len() + logbook_wal::SEAL_OVERHEAD
    };
    let stale = std::fs::read(&seg).unwrap()[at3..end].to_vec();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at3 as u64).unwrap();
    drop(f);
    std::fs::write(dir.join("LOCK"), &lock_before).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    assert_eq!(wal.append(s, &SessionEvent::Done).unwrap(), 3);
    drop(wal);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(at3);
    bytes.extend_from_slice(&stale);
    std::fs::write(&seg, &bytes).unwrap();
    match Wal::open(dir, opts()) {
        Err(logbook_wal::WalError::Forged { lsn, .. }) => assert_eq!(lsn, 3),
        other => panic!(
            "the next open went on from a stale run: {:?}",
            other.map(|w| w.last_lsn())
        ),
    }
    // Nothing was written by the refused open: the same attack is still
    // found by a reader.
    let mut reader = Reader::open(dir).unwrap().with_keys(ring());
    let errors = std::iter::from_fn(|| reader.next_ref().map(|r| r.err().map(|e| e.to_string())))
        .flatten()
        .collect::<Vec<_>>();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not the record the writer made durable")),
        "{errors:?}"
    );
}
