//! Encryption of record payloads at rest (`docs/format.md`, "Encrypted
//! segments"): XChaCha20-Poly1305 from RustCrypto, a fresh random 192-bit
//! nonce per record, and the record's place bound in as associated data.
//!
//! A sealed payload is `nonce (24) || ciphertext || tag (16)`; the frame's
//! CRC covers those bytes, so a reader without the key still checks every
//! frame. The associated data is the key id, the log id, the record's LSN
//! and its session: a record copied to another LSN, session or log fails
//! its tag. (A record's LSN also fixes its segment: segments hold
//! consecutive LSNs, checked by every reader.)

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
    /// `lsn` of `session` in log `log` (a record shipped elsewhere still
    /// sealed, say); `None` if the ring lacks that key or the tag does not
    /// check.
    #[must_use]
    pub fn open(
        &self,
        key_id: u32,
        log: &Uuid,
        lsn: Lsn,
        session: &Uuid,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        let key = self.get(key_id)?;
        let mut out = Vec::new();
        open_into(key, log, lsn, session, sealed, &mut out).then_some(out)
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

/// The associated data of a record.
fn aad(key_id: u32, log: &Uuid, lsn: Lsn, session: &Uuid) -> [u8; 4 + 16 + 8 + 16] {
    let mut a = [0u8; 44];
    a[..4].copy_from_slice(&key_id.to_le_bytes());
    a[4..20].copy_from_slice(log.as_bytes());
    a[20..28].copy_from_slice(&lsn.to_le_bytes());
    a[28..].copy_from_slice(session.as_bytes());
    a
}

/// `plaintext` sealed for the record `lsn` of `session` in log `log`.
pub(crate) fn seal(key: &Key, log: &Uuid, lsn: Lsn, session: &Uuid, plaintext: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(key.id, log, lsn, session);
    let sealed = key
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The plaintext of a payload sealed for the record `lsn` of `session` in
/// log `log`, or `None` if the tag does not check (wrong key, tampered
/// bytes, or a record moved from another place).
#[cfg(test)]
pub(crate) fn open(
    key: &Key,
    log: &Uuid,
    lsn: Lsn,
    session: &Uuid,
    sealed: &[u8],
) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let aad = aad(key.id, log, lsn, session);
    key.cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: rest,
                aad: &aad,
            },
        )
        .ok()
}

/// [`open`] into `out` (cleared first, reused across records): whether
/// the tag checked. On `false`, `out` holds nothing of use.
pub(crate) fn open_into(
    key: &Key,
    log: &Uuid,
    lsn: Lsn,
    session: &Uuid,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if sealed.len() < SEAL_OVERHEAD {
        return false;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    out.extend_from_slice(rest);
    let aad = aad(key.id, log, lsn, session);
    key.cipher
        .decrypt_in_place(XNonce::from_slice(nonce), &aad, out)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_at_its_place_with_its_key() {
        let (k, other) = (Key::new([7; 32]), Key::new([8; 32]));
        assert_ne!(k.id(), other.id());
        let (log, s) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = seal(&k, &log, 5, &s, b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(
            open(&k, &log, 5, &s, &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(open(&other, &log, 5, &s, &sealed), None, "wrong key");
        assert_eq!(open(&k, &log, 6, &s, &sealed), None, "another LSN");
        assert_eq!(open(&k, &log, 5, &log, &sealed), None, "another session");
        assert_eq!(open(&k, &s, 5, &s, &sealed), None, "another log");
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 1;
            assert_eq!(open(&k, &log, 5, &s, &b), None, "byte {i}");
        }
        assert_ne!(
            seal(&k, &log, 5, &s, b"hello"),
            sealed,
            "a fresh nonce each time"
        );
    }
}
