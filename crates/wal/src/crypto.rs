//! Encryption of record payloads at rest, and the authentication of
//! everything an encrypted log's readers act on (`docs/security.md`,
//! `docs/format.md` "Encrypted segments"): XChaCha20-Poly1305 from
//! RustCrypto, used for records and, with an empty message, as a MAC for
//! segment headers, the durable head and session indexes.
//!
//! A sealed payload is `nonce (24) || ciphertext || tag (16)`; the frame's
//! CRC covers those bytes, so a reader without the key still checks every
//! frame. A record's associated data ([`RecordContext`]) binds the key,
//! the log, the record's LSN, session, time and sync mark, and the chain
//! value before it (the previous record's tag): a record copied, moved,
//! reordered, replayed at a reused LSN with a later record after it, or
//! with any clear field changed fails its tag. Nonces are a random
//! per-writer prefix and a counter ([`Sealer`]).

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, AeadInPlace, KeyInit, OsRng, Payload};

use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use uuid::Uuid;

use crate::format::Lsn;

/// Bytes of a nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of a tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed payload has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A 256-bit key and its id.
///
/// The id is derived from the key (the first four bytes of the tag of an
/// empty message under a fixed nonce): it names the key in segment headers
/// and errors without revealing it.
#[derive(Clone)]
pub struct Key {
    id: u32,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Key {
    /// The key made of these 32 bytes.
    #[must_use]
    pub fn new(bytes: [u8; 32]) -> Key {
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        let tag = cipher
            .encrypt(
                &XNonce::default(),
                Payload {
                    msg: &[],
                    aad: b"logbook key id v1",
                },
            )
            .unwrap_or_default();
        let mut id = [0u8; 4];
        if let Some(head) = tag.get(..4) {
            id.copy_from_slice(head);
        }
        Key {
            id: u32::from_le_bytes(id),
            cipher,
        }
    }

    /// A key written as 64 hexadecimal digits (surrounding whitespace
    /// ignored).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong (never the key).
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::Key;
    ///
    /// let key = Key::from_hex(&"ab".repeat(32)).unwrap();
    /// assert_eq!(key.id(), Key::from_hex(&"AB".repeat(32)).unwrap().id());
    /// assert!(Key::from_hex("abc").is_err());
    /// ```
    pub fn from_hex(text: &str) -> Result<Key, String> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(format!(
                "a key is 64 hexadecimal digits (256 bits), not {} characters",
                text.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).unwrap_or("");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| "a key is 64 hexadecimal digits (0-9, a-f)".to_owned())?;
        }
        Ok(Key::new(bytes))
    }

    /// The key in the file at `path`: 32 raw bytes, or 64 hexadecimal
    /// digits (a trailing newline allowed).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or holds neither form (the message names
    /// the file, never its bytes).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Key, String> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Key::new(raw));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("{}: not a key (32 bytes or 64 hex digits)", path.display()))?;
        Key::from_hex(text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The keys a log is written and read with: the current one (new segments
/// are encrypted with it) and older ones (to read segments written before
/// a rotation).
///
/// # Examples
///
/// ```
/// use logbook_wal::{Key, KeyRing};
///
/// let (old, new) = (Key::new([1; 32]), Key::new([2; 32]));
/// let ring = KeyRing::new(new.clone()).with(old.clone());
/// assert_eq!(ring.current().id(), new.id());
/// assert!(ring.get(old.id()).is_some());
/// assert!(ring.get(7).is_none() || Key::new([1; 32]).id() == 7);
/// ```
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring whose current key is `current`.
    #[must_use]
    pub fn new(current: Key) -> KeyRing {
        KeyRing {
            keys: vec![current],
        }
    }

    /// This ring, also able to read segments encrypted with `older`.
    #[must_use]
    pub fn with(mut self, older: Key) -> KeyRing {
        if self.get(older.id).is_none() {
            self.keys.push(older);
        }
        self
    }

    /// The key new segments are encrypted with.
    #[must_use]
    pub fn current(&self) -> &Key {
        // `new` puts one in, and nothing takes any out.
        &self.keys[0]
    }

    /// The key with id `id`, if the ring has it.
    #[must_use]
    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The plaintext of a payload sealed with key `key_id` for the record
    /// `ctx` (a record shipped elsewhere still sealed, say); `None` if the
    /// ring lacks that key or the tag does not check: the record is not
    /// what the key holder wrote at that place of that log's chain.
    #[must_use]
    pub fn open(&self, key_id: u32, ctx: &RecordContext<'_>, sealed: &[u8]) -> Option<Vec<u8>> {
        let key = self.get(key_id)?;
        let mut out = Vec::new();
        open_into(key, ctx, sealed, &mut out).then_some(out)
    }
}

impl PartialEq for KeyRing {
    fn eq(&self, other: &KeyRing) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| a.id == b.id)
    }
}

impl Eq for KeyRing {}

/// The ring [`install_default_keys`] installed.
static DEFAULT_KEYS: std::sync::OnceLock<std::sync::Arc<KeyRing>> = std::sync::OnceLock::new();

/// Install the keys every [`Reader`](crate::Reader) of this process decrypts
/// with when it is not given any ([`Reader::with_keys`](crate::Reader::with_keys)
/// overrides it): so that a program (the `logbook` command) that reads a
/// log through higher-level calls (`logbook_replay::list_sessions`, …) can
/// read an encrypted one. Once per process, like a crypto provider.
///
/// # Errors
///
/// The ring back if one was installed already.
pub fn install_default_keys(ring: std::sync::Arc<KeyRing>) -> Result<(), std::sync::Arc<KeyRing>> {
    DEFAULT_KEYS.set(ring)
}

/// The ring [`install_default_keys`] installed, if any: what readers use
/// when not given one.
#[must_use]
pub fn default_keys() -> Option<std::sync::Arc<KeyRing>> {
    DEFAULT_KEYS.get().cloned()
}

/// Bytes of a chain value: the Poly1305 tag of a sealed record.
pub const CHAIN_LEN: usize = TAG_LEN;

/// A chain value: the tag of the record before (zeros before the log's
/// first encrypted record).
pub type Chain = [u8; CHAIN_LEN];

/// Domain separation of the associated data of each kind of thing sealed
/// or MAC'd under a log's key (`docs/security.md`).
const RECORD_DOMAIN: &[u8; 8] = b"LBREC\x00v2";
const SEGMENT_DOMAIN: &[u8; 8] = b"LBSEG\x00v2";
const HEAD_DOMAIN: &[u8; 8] = b"LBHED\x00v2";
const INDEX_DOMAIN: &[u8; 8] = b"LBIDX\x00v2";

/// Bytes of a record's associated data.
const RECORD_AAD_LEN: usize = 8 + 4 + 16 + 8 + 16 + 8 + 8 + CHAIN_LEN;

/// Everything a reader acts on about one record, bound into its tag: the
/// key, the log, the record's LSN, session, time and sync mark (all the
/// frame's clear fields but the length, which the ciphertext fixes), and
/// the chain value before it, which fixes its order (`docs/security.md`).
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The log's id (`LOG_ID`, and every encrypted segment's seal block).
    pub log: &'a Uuid,
    /// The record's LSN.
    pub lsn: Lsn,
    /// Its session.
    pub session: &'a Uuid,
    /// Its time, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Its sync mark.
    pub sync_mark: Lsn,
    /// The chain value before it: the tag of the record at `lsn - 1`
    /// (the last 16 bytes of its sealed payload), zeros for the log's first
    /// encrypted record.
    pub prev: &'a [u8; 16],
}

impl RecordContext<'_> {
    fn aad(&self, key_id: u32) -> [u8; RECORD_AAD_LEN] {
        let mut a = [0u8; RECORD_AAD_LEN];
        let mut w = Put(&mut a, 0);
        w.put(RECORD_DOMAIN);
        w.put(&key_id.to_le_bytes());
        w.put(self.log.as_bytes());
        w.put(&self.lsn.to_le_bytes());
        w.put(self.session.as_bytes());
        w.put(&self.timestamp_us.to_le_bytes());
        w.put(&self.sync_mark.to_le_bytes());
        w.put(self.prev);
        a
    }
}

/// A cursor writing into a fixed buffer (the associated data above).
struct Put<'a>(&'a mut [u8], usize);

impl Put<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(self.1..self.1 + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.1 += bytes.len();
    }
}

/// Seals one writer's records: one key, and nonces that never repeat
/// under it without a system call per record: a random 128-bit prefix
/// drawn once per sealer (each writer's `open`) followed by a 64-bit
/// counter. Two sealers share a prefix with negligible probability, so a
/// nonce never repeats even where LSNs are reused (a cut tail, a discarded
/// batch), which derived nonces could not promise.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Key,
    prefix: [u8; 16],
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.key)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(key: Key) -> Sealer {
        let seed = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(seed.get(..16).unwrap_or(&[0; 16]));
        Sealer {
            key,
            prefix,
            counter: 0,
        }
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    fn next_nonce(&mut self) -> XNonce {
        let mut n = [0u8; NONCE_LEN];
        n[..16].copy_from_slice(&self.prefix);
        n[16..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter = self.counter.wrapping_add(1);
        if self.counter == 0 {
            // 2^64 nonces under one prefix: draw another (never reached).
            *self = Sealer::new(self.key.clone());
        }
        XNonce::from(n)
    }

    /// Append `nonce || ciphertext || tag` of `plaintext` for the record
    /// `ctx` to `out`; returns the tag (the next record's chain value).
    pub(crate) fn seal_into(
        &mut self,
        ctx: &RecordContext<'_>,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Chain {
        let nonce = self.next_nonce();
        let aad = ctx.aad(self.key.id);
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .cipher
            .encrypt_in_place_detached(&nonce, &aad, out.get_mut(start..).unwrap_or_default())
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        let mut chain = [0u8; CHAIN_LEN];
        chain.copy_from_slice(&tag);
        chain
    }

    /// A MAC of `data` under the key, for `domain`: `nonce || tag`
    /// ([`MAC_LEN`] bytes), from this sealer's nonces.
    pub(crate) fn mac(&mut self, domain: Domain, data: &[&[u8]]) -> [u8; MAC_LEN] {
        let nonce = self.next_nonce();
        mac_with(&self.key, &nonce, domain, data)
    }
}

/// What a MAC authenticates (each has its own associated-data domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// A segment header and its seal block.
    Segment,
    /// The durable head in `LOCK`.
    Head,
    /// A session index.
    Index,
}

/// Bytes of a MAC: a nonce and the tag of an empty message whose
/// associated data is what is authenticated.
pub(crate) const MAC_LEN: usize = NONCE_LEN + TAG_LEN;

fn mac_with(key: &Key, nonce: &XNonce, domain: Domain, data: &[&[u8]]) -> [u8; MAC_LEN] {
    let aad = mac_aad(key.id, domain, data);
    let tag = key
        .cipher
        .encrypt_in_place_detached(nonce, &aad, &mut [])
        .unwrap_or_default();
    let mut out = [0u8; MAC_LEN];
    out[..NONCE_LEN].copy_from_slice(nonce);
    out[NONCE_LEN..].copy_from_slice(&tag);
    out
}

fn mac_aad(key_id: u32, domain: Domain, data: &[&[u8]]) -> Vec<u8> {
    let prefix = match domain {
        Domain::Segment => SEGMENT_DOMAIN,
        Domain::Head => HEAD_DOMAIN,
        Domain::Index => INDEX_DOMAIN,
    };
    let mut aad = Vec::with_capacity(12 + data.iter().map(|d| d.len()).sum::<usize>());
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(&key_id.to_le_bytes());
    for d in data {
        aad.extend_from_slice(d);
    }
    aad
}

/// A MAC of `data` under `key` with a fresh random nonce (for what is
/// written rarely: segment headers, indexes).
pub(crate) fn mac(key: &Key, domain: Domain, data: &[&[u8]]) -> [u8; MAC_LEN] {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    mac_with(key, &nonce, domain, data)
}

/// Whether `mac` ([`MAC_LEN`] bytes) authenticates `data` under `key`.
pub(crate) fn mac_checks(key: &Key, domain: Domain, data: &[&[u8]], mac: &[u8]) -> bool {
    if mac.len() != MAC_LEN {
        return false;
    }
    let (nonce, tag) = mac.split_at(NONCE_LEN);
    let aad = mac_aad(key.id, domain, data);
    key.cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &aad,
            &mut [],
            chacha20poly1305::Tag::from_slice(tag),
        )
        .is_ok()
}

/// The tag of a sealed payload (its last 16 bytes): the chain value the
/// next record is sealed against. `None` if too short.
#[must_use]
pub fn tag_of(sealed: &[u8]) -> Option<Chain> {
    let at = sealed.len().checked_sub(TAG_LEN)?;
    let mut c = [0u8; CHAIN_LEN];
    c.copy_from_slice(sealed.get(at..)?);
    Some(c)
}

/// The plaintext of a payload sealed for the record `ctx` into `out`
/// (cleared first, reused across records): whether the tag checked (the
/// right key, the record's own bytes, at its place in this log's chain).
/// On `false`, `out` holds nothing of use.
pub(crate) fn open_into(
    key: &Key,
    ctx: &RecordContext<'_>,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if sealed.len() < SEAL_OVERHEAD {
        return false;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    out.extend_from_slice(ciphertext);
    let aad = ctx.aad(key.id);
    let ok = key
        .cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &aad,
            out,
            chacha20poly1305::Tag::from_slice(tag),
        )
        .is_ok();
    if !ok {
        out.clear();
    }
    ok
}

/// [`open_into`] into a new buffer.
#[cfg(test)]
pub(crate) fn open(key: &Key, ctx: &RecordContext<'_>, sealed: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    open_into(key, ctx, sealed, &mut out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_at_its_place_in_its_chain_with_its_key() {
        let (k, other) = (Key::new([7; 32]), Key::new([8; 32]));
        assert_ne!(k.id(), other.id());
        let (log, s) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let prev = [3u8; CHAIN_LEN];
        let ctx = RecordContext {
            log: &log,
            lsn: 5,
            session: &s,
            timestamp_us: 10,
            sync_mark: 4,
            prev: &prev,
        };
        let mut sealer = Sealer::new(k.clone());
        let mut sealed = Vec::new();
        let tag = sealer.seal_into(&ctx, b"hello", &mut sealed);
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(tag_of(&sealed), Some(tag));
        assert_eq!(open(&k, &ctx, &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(open(&other, &ctx, &sealed), None, "wrong key");
        let other_prev = [4u8; CHAIN_LEN];
        for (what, moved) in [
            ("another LSN", RecordContext { lsn: 6, ..ctx }),
            ("another session", RecordContext { session: &log, ..ctx }),
            ("another log", RecordContext { log: &s, ..ctx }),
            ("another time", RecordContext { timestamp_us: 11, ..ctx }),
            ("another sync mark", RecordContext { sync_mark: 3, ..ctx }),
            ("another place in the chain", RecordContext { prev: &other_prev, ..ctx }),
        ] {
            assert_eq!(open(&k, &moved, &sealed), None, "{what}");
        }
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 1;
            assert_eq!(open(&k, &ctx, &b), None, "byte {i}");
        }
        let mut again = Vec::new();
        sealer.seal_into(&ctx, b"hello", &mut again);
        assert_ne!(again, sealed, "a fresh nonce each time");
        assert_ne!(again[..NONCE_LEN], sealed[..NONCE_LEN]);
    }

    #[test]
    fn nonces_of_two_sealers_differ_and_count_up() {
        let k = Key::new([7; 32]);
        let (mut a, mut b) = (Sealer::new(k.clone()), Sealer::new(k));
        let (n1, n2, m1) = (a.next_nonce(), a.next_nonce(), b.next_nonce());
        assert_eq!(n1[..16], n2[..16]);
        assert_ne!(n1, n2);
        assert_ne!(n1[..16], m1[..16], "random prefixes");
    }

    #[test]
    fn a_mac_checks_only_its_data_domain_and_key() {
        let (k, other) = (Key::new([7; 32]), Key::new([8; 32]));
        let m = mac(&k, Domain::Index, &[b"abc", b"def"]);
        assert!(mac_checks(&k, Domain::Index, &[b"abc", b"def"], &m));
        assert!(mac_checks(&k, Domain::Index, &[b"abcdef"], &m), "data is concatenated");
        assert!(!mac_checks(&k, Domain::Index, &[b"abcdeF"], &m));
        assert!(!mac_checks(&k, Domain::Head, &[b"abcdef"], &m));
        assert!(!mac_checks(&other, Domain::Index, &[b"abcdef"], &m));
        assert!(!mac_checks(&k, Domain::Index, &[b"abcdef"], &m[1..]));
    }
}
