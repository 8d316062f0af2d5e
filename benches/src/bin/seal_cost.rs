//! What sealing one record costs on its own: AES-256-GCM (the cipher
//! `logbook-wal` seals with, under a key derived per writer) with the
//! associated data of the chained format (84 bytes: a domain tag, key id,
//! log id, LSN, session, time, sync mark and the previous record's tag)
//! against the data of the unchained one (44 bytes: key id, log id, LSN,
//! session): the chain's own cost. XChaCha20-Poly1305, the cipher of
//! earlier builds, is measured beside it with the chained data. Prints ns
//! per seal for each, alternating rounds.
//!
//! Usage: `seal_cost [--payload BYTES] [--records N] [--aad BYTES]`. With
//! `--aad`, only AES-256-GCM with that much associated data is run (for
//! `valgrind --tool=callgrind`, whose instruction counts do not depend on
//! the machine's load).

use std::time::Instant;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};

/// ns per seal of `records` payloads of `payload` bytes with `aad` bytes
/// of associated data, the nonce (`nonce_len` bytes) counting up.
fn seal<C: AeadInOut>(
    cipher: &C,
    nonce_len: usize,
    payload: usize,
    aad: usize,
    records: u64,
) -> f64 {
    let aad = vec![1u8; aad];
    let mut buf = vec![0u8; payload];
    let mut nonce = vec![0u8; nonce_len];
    let mut mix = 0u8;
    let started = Instant::now();
    for i in 0..records {
        nonce[nonce_len - 8..].copy_from_slice(&i.to_le_bytes());
        let tag = cipher
            .encrypt_inout_detached(
                nonce.as_slice().try_into().expect("nonce length"),
                &aad,
                buf.as_mut_slice().into(),
            )
            .expect("seal");
        mix ^= tag[0];
    }
    let ns = started.elapsed().as_secs_f64() * 1e9 / records as f64;
    std::hint::black_box(mix);
    ns
}

fn main() {
    let mut payload = 200usize;
    let mut records = 300_000u64;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--payload", Some(v)) => payload = usize::try_from(v).unwrap_or(200),
            ("--records", Some(v)) => records = v,
            ("--aad", Some(v)) => only = Some(usize::try_from(v).unwrap_or(84)),
            _ => {
                eprintln!("usage: seal_cost [--payload BYTES] [--records N] [--aad BYTES]");
                std::process::exit(2);
            }
        }
    }
    let aes = Aes256Gcm::new(&[7u8; 32].into());
    let xchacha = XChaCha20Poly1305::new(&[7u8; 32].into());
    if let Some(aad) = only {
        let ns = seal(&aes, 12, payload, aad, records);
        println!("{payload}-byte payload, {aad}-byte associated data: {ns:.0} ns per seal");
        return;
    }
    println!(
        "| round | AES-256-GCM, unchained (44 B) | AES-256-GCM, chained (84 B) | difference | XChaCha20-Poly1305, chained |"
    );
    println!("|---|--:|--:|--:|--:|");
    for round in 1..=3 {
        let a = seal(&aes, 12, payload, 44, records);
        let b = seal(&aes, 12, payload, 84, records);
        let x = seal(&xchacha, 24, payload, 84, records);
        println!(
            "| {round} | {a:.0} ns | {b:.0} ns | {:+.0} ns | {x:.0} ns |",
            b - a
        );
    }
}
