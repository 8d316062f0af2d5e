//! What the chain of an encrypted log costs on its own: sealing a record's
//! payload with XChaCha20-Poly1305 (as `logbook-wal` does) with the
//! associated data of the chained format (84 bytes: a domain tag, key id,
//! log id, LSN, session, time, sync mark and the previous record's tag)
//! against the data of the unchained one it replaced (44 bytes: key id,
//! log id, LSN, session). Prints ns per seal for each, alternating rounds.
//!
//! Usage: `seal_cost [--payload BYTES] [--records N] [--aad BYTES]`. With
//! `--aad`, only that one is run (for `valgrind --tool=callgrind`, whose
//! instruction counts do not depend on the machine's load).

use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

fn seal(cipher: &XChaCha20Poly1305, payload: usize, aad: usize, records: u64) -> f64 {
    let aad = vec![1u8; aad];
    let mut buf = vec![0u8; payload];
    let mut nonce = [0u8; 24];
    let mut mix = 0u8;
    let started = Instant::now();
    for i in 0..records {
        nonce[16..].copy_from_slice(&i.to_le_bytes());
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut buf)
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
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    if let Some(aad) = only {
        let ns = seal(&cipher, payload, aad, records);
        println!("{payload}-byte payload, {aad}-byte associated data: {ns:.0} ns per seal");
        return;
    }
    println!("| round | unchained (44 B) | chained (84 B) | difference |");
    println!("|---|--:|--:|--:|");
    for round in 1..=3 {
        let a = seal(&cipher, payload, 44, records);
        let b = seal(&cipher, payload, 84, records);
        println!("| {round} | {a:.0} ns | {b:.0} ns | {:+.0} ns |", b - a);
    }
}
