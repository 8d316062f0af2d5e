//! Encryption of record payloads at rest, and the authentication of
//! everything an encrypted log's readers act on (`docs/security.md`,
//! `docs/format.md` "Encrypted segments"): AES-256-GCM from RustCrypto,
//! under a key derived from the log's key and a random 16-byte salt with
//! HKDF-SHA256 (one per writer, as Tink's AES-GCM-HKDF streaming AEAD
//! derives one per stream), used for records and, with an empty message,
//! as a MAC for segment headers and the durable head.
//!
//! A sealed payload is `salt (16) || counter (8) || ciphertext || tag
//! (16)`: the first 24 bytes name the derived key and its GCM nonce
//! (four zero bytes and the counter); the frame's
//! CRC covers those bytes, so a reader without the key still checks every
//! frame. A record's associated data ([`RecordContext`]) binds the key,
//! the log, the record's LSN, session, time and sync mark, and the chain
//! value before it (the previous record's tag): a record copied, moved,
//! reordered, replayed at a reused LSN with a later record after it, or
//! with any clear field changed fails its tag. Nonces are a random
//! per-writer salt and a counter ([`Sealer`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::format::{FrameHeader, Lsn};

/// Bytes of the salt a record key is derived with.
const SALT_LEN: usize = 16;
/// Bytes of what names a sealed payload's key and nonce: the salt, then a
/// 64-bit little-endian counter.
pub(crate) const NONCE_LEN: usize = SALT_LEN + 8;
/// Bytes of a tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed payload has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// HKDF's `info` for a record key (`docs/format.md`, "Encrypted segments").
const RECORD_KEY_INFO: &[u8] = b"logbook record key v3";
/// HKDF's `info` for a key's fingerprint (and id).
const KEY_ID_INFO: &[u8] = b"logbook key id v3";
/// How many derived keys a [`Key`] keeps (most recently used first): a
/// log holds one salt per writer `open`, and a reader goes through them
/// in order, so a few suffice.
const DERIVED_KEPT: usize = 8;

/// A 256-bit key and its id.
///
/// The id is derived from the key (the first four bytes of an HKDF-SHA256
/// output of it): it names the key in segment headers and errors without
/// revealing it.
///
/// The key bytes are wiped when the last copy of the `Key` is dropped, and
/// so are the AES round keys derived from them (`aes-gcm`'s `zeroize`
/// feature); the constructors wipe every buffer they read them into.
/// Copies that moves leave on the stack, and the block buffer of the
/// SHA-256 that derives from the key, are not wiped (`docs/security.md`,
/// "What it does not protect").
#[derive(Clone)]
pub struct Key {
    id: u32,
    /// The whole output the id is the start of: tells two keys apart when
    /// their 32-bit ids collide (not secret, like the id).
    fingerprint: [u8; 16],
    inner: Arc<KeyInner>,
}

/// The secret part of a [`Key`], shared by its clones.
struct KeyInner {
    secret: Zeroizing<[u8; 32]>,
    /// Record keys derived lately, by salt, the most recently used first.
    derived: Mutex<Vec<([u8; SALT_LEN], Arc<Aes256Gcm>)>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

/// Bytes a key file may hold at most (a key, whitespace around it): a
/// larger file is refused before it is read whole.
const MAX_KEY_FILE_LEN: u64 = 1024;

impl Key {
    /// The key made of these 32 bytes. The bytes passed in are wiped once
    /// the key is made; copies the caller keeps are the caller's to wipe.
    #[must_use]
    pub fn new(mut bytes: [u8; 32]) -> Key {
        let key = Key::from_bytes(&bytes);
        bytes.zeroize();
        key
    }

    /// The key made of these bytes (copied, into a buffer wiped on drop).
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Key {
        let mut fingerprint = [0u8; 16];
        // 16 bytes are far below HKDF's limit (255 hash lengths).
        let _ = Hkdf::<Sha256>::new(None, bytes).expand(KEY_ID_INFO, &mut fingerprint);
        let mut id = [0u8; 4];
        id.copy_from_slice(&fingerprint[..4]);
        Key {
            id: u32::from_le_bytes(id),
            fingerprint,
            inner: Arc::new(KeyInner {
                secret: Zeroizing::new(*bytes),
                derived: Mutex::new(Vec::with_capacity(DERIVED_KEPT)),
            }),
        }
    }

    /// The AES-256-GCM key derived from this key and `salt`:
    /// HKDF-SHA256 with the salt and [`RECORD_KEY_INFO`], not kept.
    fn derive(&self, salt: &[u8; SALT_LEN]) -> Aes256Gcm {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes are far below HKDF's limit (255 hash lengths).
        let _ =
            Hkdf::<Sha256>::new(Some(salt), &*self.inner.secret).expand(RECORD_KEY_INFO, &mut *okm);
        Aes256Gcm::new((&*okm).into())
    }

    /// [`Key::derive`], kept for the next call with the same salt (the
    /// records of one writer all have its salt).
    fn derived(&self, salt: &[u8; SALT_LEN]) -> Arc<Aes256Gcm> {
        let mut kept = self
            .inner
            .derived
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = kept.iter().position(|(s, _)| s == salt) {
            if i > 0 {
                let hit = kept.remove(i);
                kept.insert(0, hit);
            }
            if let Some((_, cipher)) = kept.first() {
                return cipher.clone();
            }
        }
        let cipher = Arc::new(self.derive(salt));
        kept.truncate(DERIVED_KEPT - 1);
        kept.insert(0, (*salt, cipher.clone()));
        cipher
    }

    /// A key written as 64 hexadecimal digits (surrounding whitespace
    /// ignored).
    ///
    /// # Errors
    ///
    /// [`KeyError::Malformed`], saying what is wrong (never the key).
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
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let malformed = |reason: String| KeyError::Malformed { path: None, reason };
        let text = text.trim();
        if text.len() != 64 {
            return Err(malformed(format!(
                "a key is 64 hexadecimal digits (256 bits), not {} characters",
                text.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).unwrap_or("");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| malformed("a key is 64 hexadecimal digits (0-9, a-f)".to_owned()))?;
        }
        Ok(Key::from_bytes(&bytes))
    }

    /// The key in the file at `path`: 32 raw bytes, or 64 hexadecimal
    /// digits (surrounding whitespace, such as a trailing newline, allowed).
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`] if the file cannot be read; [`KeyError::Malformed`]
    /// if it holds neither form (the message names the file, never its
    /// bytes).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Key, KeyError> {
        use std::io::Read;
        let path = path.as_ref();
        let io = |op, source| KeyError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(|e| io("open", e))?;
        // One allocation, never grown (growing would leave copies behind),
        // wiped on drop.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io("read", e))?;
        let malformed = |reason: String| KeyError::Malformed {
            path: Some(path.to_path_buf()),
            reason,
        };
        if bytes.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(malformed(format!(
                "a key file holds 32 bytes or 64 hexadecimal digits, not over {MAX_KEY_FILE_LEN} bytes"
            )));
        }
        if let Ok(raw) = <&[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Key::from_bytes(raw));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            malformed(format!(
                "a key file holds 32 bytes or 64 hexadecimal digits, not {} bytes of binary",
                bytes.len()
            ))
        })?;
        Key::from_hex(text).map_err(|e| match e {
            KeyError::Malformed { reason, .. } => malformed(reason),
            other => other,
        })
    }

    /// The key's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether `other` is the same key (the same 32 bytes), not merely one
    /// with the same id.
    #[must_use]
    pub fn same_key(&self, other: &Key) -> bool {
        self.fingerprint == other.fingerprint
    }
}

/// What is wrong with a key, a key file or a key ring. Never shows key
/// bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be opened, read, written or made durable.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"read"`, `"write"`, `"fsync"`, …).
        op: &'static str,
        /// The key file (or its directory).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Text or a file that is not a key.
    #[error("{}{reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Malformed {
        /// The key file, if the key came from one.
        path: Option<PathBuf>,
        /// What is wrong (never the bytes).
        reason: String,
    },
    /// A new key file was not written, because a file is there already.
    #[error("{} already exists (nothing written)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    /// A ring was to be made of no key.
    #[error("a key ring needs at least one key")]
    NoKeys,
    /// Two different keys with one id were to go into one ring: a segment
    /// names its key by id, so one of them could never be used. (The same
    /// key twice is one key, not this.)
    #[error(
        "keys {first} and {second} (counting from 0) are different keys with the same id {id:08x}: a ring cannot hold both"
    )]
    IdCollision {
        /// The id both have.
        id: u32,
        /// The position of the first, in the order the keys were given
        /// ([`KeyRing::from_keys`]), or among the ring's keys
        /// ([`KeyRing::try_with`]).
        first: usize,
        /// The position of the second, in the order the keys were given,
        /// or the number of keys the ring held ([`KeyRing::try_with`]).
        second: usize,
    },
}

/// The keys a log is written and read with: the current one (new segments
/// are encrypted with it) and older ones (to read segments written before
/// a rotation). No two keys of a ring share an id.
///
/// # Examples
///
/// ```
/// use logbook_wal::{Key, KeyRing};
///
/// let (old, new) = (Key::new([1; 32]), Key::new([2; 32]));
/// let ring = KeyRing::from_keys([new.clone(), old.clone(), new.clone()]).unwrap();
/// assert_eq!(ring.current().id(), new.id());
/// assert!(ring.get(old.id()).is_some());
/// assert_eq!(ring.len(), 2, "the same key twice is one key");
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

    /// A ring of `keys`: the first is the current one, the others read
    /// older segments. A key given again is kept once.
    ///
    /// # Errors
    ///
    /// [`KeyError::NoKeys`] for no key; [`KeyError::IdCollision`] if two
    /// different keys have one id, with their positions in `keys`.
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Result<KeyRing, KeyError> {
        let mut keys = keys.into_iter().enumerate();
        let Some((_, first)) = keys.next() else {
            return Err(KeyError::NoKeys);
        };
        let mut ring = KeyRing::new(first);
        // Where each key of the ring was given.
        let mut given = vec![0];
        for (i, key) in keys {
            let held = ring.keys.len();
            ring = ring.try_with(key).map_err(|e| match e {
                KeyError::IdCollision { id, first, .. } => KeyError::IdCollision {
                    id,
                    first: given.get(first).copied().unwrap_or(first),
                    second: i,
                },
                other => other,
            })?;
            if ring.keys.len() > held {
                given.push(i);
            }
        }
        Ok(ring)
    }

    /// This ring, also able to read segments encrypted with `older`
    /// (unchanged if it holds `older` already).
    ///
    /// # Errors
    ///
    /// [`KeyError::IdCollision`] if the ring holds another key with
    /// `older`'s id.
    pub fn try_with(mut self, older: Key) -> Result<KeyRing, KeyError> {
        match self.keys.iter().position(|k| k.id == older.id) {
            Some(i) if self.keys.get(i).is_some_and(|k| k.same_key(&older)) => Ok(self),
            Some(i) => Err(KeyError::IdCollision {
                id: older.id,
                first: i,
                second: self.keys.len(),
            }),
            None => {
                self.keys.push(older);
                Ok(self)
            }
        }
    }

    /// The key new segments are encrypted with.
    #[must_use]
    pub fn current(&self) -> &Key {
        // `new` puts one in, and nothing takes any out.
        &self.keys[0]
    }

    /// How many keys the ring holds (at least one).
    #[must_use]
    #[allow(clippy::len_without_is_empty, reason = "a ring is never empty")]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The ids of the ring's keys, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(Key::id)
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
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.same_key(b))
    }
}

impl Eq for KeyRing {}

/// The keys [`install_default_keys`] installed, in one ring.
static DEFAULT_KEYS: std::sync::RwLock<Option<Arc<KeyRing>>> = std::sync::RwLock::new(None);

/// Add `ring`'s keys to those every [`Reader`](crate::Reader) of this
/// process decrypts with when it is not given any
/// ([`Reader::with_keys`](crate::Reader::with_keys) overrides them): so
/// that a program (the `logbook` command, the Python binding) that reads
/// logs through higher-level calls (`logbook_replay::list_sessions`, …)
/// can read encrypted ones. Each call adds its keys to those installed
/// before (a process with several logs under different keys reads each
/// of them); a key installed again is kept once. A reader still accepts
/// only records sealed in the log it reads, at their place in its chain
/// (`docs/security.md`): holding another log's key lets it read nothing of
/// that log through this one.
///
/// # Errors
///
/// [`KeyError::IdCollision`] if a key of `ring` and one installed before
/// are different keys with one id (nothing is installed then).
pub fn install_default_keys(ring: Arc<KeyRing>) -> Result<(), KeyError> {
    let mut held = DEFAULT_KEYS.write().unwrap_or_else(PoisonError::into_inner);
    let merged = match held.as_ref() {
        None => ring,
        Some(before) => {
            let mut merged = KeyRing::clone(before);
            for key in &ring.keys {
                merged = merged.try_with(key.clone())?;
            }
            Arc::new(merged)
        }
    };
    *held = Some(merged);
    Ok(())
}

/// The keys [`install_default_keys`] installed, if any: what readers use
/// when not given any.
#[must_use]
pub fn default_keys() -> Option<Arc<KeyRing>> {
    DEFAULT_KEYS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Bytes of a chain value: the GCM tag of a sealed record.
pub const CHAIN_LEN: usize = TAG_LEN;

/// A chain value: the tag of the record before (zeros before the log's
/// first encrypted record).
pub type Chain = [u8; CHAIN_LEN];

/// Domain separation of the associated data of each kind of thing sealed
/// or MAC'd under a log's key (`docs/security.md`).
const RECORD_DOMAIN: &[u8; 8] = b"LBREC\x00v3";
const SEGMENT_DOMAIN: &[u8; 8] = b"LBSEG\x00v3";
const HEAD_DOMAIN: &[u8; 8] = b"LBHED\x00v3";

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

impl<'a> RecordContext<'a> {
    /// The context of the record whose frame header is `header`, in log
    /// `log`, after chain value `prev`.
    pub(crate) fn of(log: &'a Uuid, header: &'a FrameHeader, prev: &'a Chain) -> Self {
        RecordContext {
            log,
            lsn: header.lsn,
            session: &header.session,
            timestamp_us: header.timestamp_us,
            sync_mark: header.sync_mark,
            prev,
        }
    }

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

/// Seals one writer's records: a key derived from the log's key and a
/// random 128-bit salt drawn once per sealer (each writer's `open`), and
/// GCM nonces counting up under it, with no system call per record. Two
/// sealers share a salt (and so a derived key) with negligible
/// probability, so a nonce never repeats under a key even where LSNs are
/// reused (a cut tail, a discarded batch), which nonces derived from the
/// LSN could not promise.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Key,
    salt: [u8; SALT_LEN],
    cipher: Arc<Aes256Gcm>,
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
        let salt = random_salt();
        let cipher = key.derived(&salt);
        Sealer {
            key,
            salt,
            cipher,
            counter: 0,
        }
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// The next `salt || counter`, and the cipher it names (borrowed: no
    /// reference count touched per record).
    fn next_nonce(&mut self) -> ([u8; NONCE_LEN], &Aes256Gcm) {
        if self.counter == u64::MAX {
            // 2^64 - 1 nonces under one salt: draw another (never
            // reached). The last counter value is never used, so a
            // nonce is never handed out twice.
            *self = Sealer::new(self.key.clone());
        }
        let mut n = [0u8; NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        (n, &self.cipher)
    }

    /// Write `nonce || ciphertext || tag` of `plaintext` for the record
    /// `ctx` into `out`, which is [`SEAL_OVERHEAD`] bytes longer than the
    /// plaintext; returns the tag (the next record's chain value).
    pub(crate) fn seal_to(
        &mut self,
        ctx: &RecordContext<'_>,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Chain {
        let aad = ctx.aad(self.key.id);
        let (nonce, cipher) = self.next_nonce();
        let (head, rest) = out.split_at_mut(NONCE_LEN.min(out.len()));
        head.copy_from_slice(&nonce[..head.len()]);
        let body = rest.len().saturating_sub(TAG_LEN);
        let (body, tag_out) = rest.split_at_mut(body);
        // Encrypted from `plaintext` straight into `body` (no copy first).
        // Fails only for a message over 2^36 bytes (a record is 16 MiB at
        // most), or if `out` is not the plaintext's length plus the
        // overhead (never: every caller sizes it so).
        let tag = InOutBuf::new(plaintext, body)
            .ok()
            .and_then(|io| {
                cipher
                    .encrypt_inout_detached(&gcm_nonce(&nonce), &aad, io)
                    .ok()
            })
            .unwrap_or_default();
        let mut chain = [0u8; CHAIN_LEN];
        chain.copy_from_slice(&tag);
        if tag_out.len() == TAG_LEN {
            tag_out.copy_from_slice(&tag);
        }
        chain
    }

    /// [`Sealer::seal_to`] appended to `out`.
    #[cfg(test)]
    pub(crate) fn seal_into(
        &mut self,
        ctx: &RecordContext<'_>,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Chain {
        let at = out.len();
        out.resize(at + plaintext.len() + SEAL_OVERHEAD, 0);
        self.seal_to(ctx, plaintext, &mut out[at..])
    }

    /// A MAC of `data` under the key, for `domain`: `nonce || tag`
    /// ([`MAC_LEN`] bytes), from this sealer's nonces.
    pub(crate) fn mac(&mut self, domain: Domain, data: &[&[u8]]) -> [u8; MAC_LEN] {
        let key_id = self.key.id;
        let (nonce, cipher) = self.next_nonce();
        mac_with(cipher, key_id, &nonce, domain, data)
    }
}

/// What a MAC authenticates (each has its own associated-data domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// A segment header and its seal block.
    Segment,
    /// The durable head in `LOCK`.
    Head,
}

/// Bytes of a MAC: a salt and counter, and the tag of an empty message
/// whose associated data is what is authenticated.
pub(crate) const MAC_LEN: usize = NONCE_LEN + TAG_LEN;

/// A fresh random salt, from the operating system.
///
/// # Panics
///
/// If the operating system's generator fails (`getrandom(2)` on Linux
/// fails only before the kernel's pool is first seeded, long before a
/// log is opened): a salt that is not random could repeat a nonce.
fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    if let Err(error) = getrandom::fill(&mut salt) {
        panic!("the operating system's random generator failed: {error}");
    }
    salt
}

/// A GCM tag from the 16 bytes of `tag` (zeros, which no record's check
/// accepts, if it is shorter: callers pass exactly [`TAG_LEN`] bytes).
fn tag_array(tag: &[u8]) -> Tag {
    let mut t = Tag::default();
    if let Some(src) = tag.get(..TAG_LEN) {
        t.copy_from_slice(src);
    }
    t
}

/// The salt a stored `salt || counter` names.
fn salt_of(nonce: &[u8]) -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    if let Some(s) = nonce.get(..SALT_LEN) {
        salt.copy_from_slice(s);
    }
    salt
}

/// The 96-bit GCM nonce of a stored `salt || counter`: four zero bytes,
/// then the counter.
fn gcm_nonce(nonce: &[u8]) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    if let Some(counter) = nonce.get(SALT_LEN..NONCE_LEN) {
        n[4..].copy_from_slice(counter);
    }
    n.into()
}

fn mac_with(
    cipher: &Aes256Gcm,
    key_id: u32,
    nonce: &[u8; NONCE_LEN],
    domain: Domain,
    data: &[&[u8]],
) -> [u8; MAC_LEN] {
    let aad = mac_aad(key_id, domain, data);
    let tag = cipher
        .encrypt_inout_detached(&gcm_nonce(nonce), &aad, (&mut [][..]).into())
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
    };
    let mut aad = Vec::with_capacity(12 + data.iter().map(|d| d.len()).sum::<usize>());
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(&key_id.to_le_bytes());
    for d in data {
        aad.extend_from_slice(d);
    }
    aad
}

/// A MAC of `data` under `key` with a fresh random salt (for what is
/// written rarely: segment headers).
pub(crate) fn mac(key: &Key, domain: Domain, data: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..SALT_LEN].copy_from_slice(&random_salt());
    mac_with(&key.derive(&salt_of(&nonce)), key.id, &nonce, domain, data)
}

/// Whether `mac` ([`MAC_LEN`] bytes) authenticates `data` under `key`.
pub(crate) fn mac_checks(key: &Key, domain: Domain, data: &[&[u8]], mac: &[u8]) -> bool {
    if mac.len() != MAC_LEN {
        return false;
    }
    let (nonce, tag) = mac.split_at(NONCE_LEN);
    let aad = mac_aad(key.id, domain, data);
    key.derived(&salt_of(nonce))
        .decrypt_inout_detached(
            &gcm_nonce(nonce),
            &aad,
            (&mut [][..]).into(),
            &tag_array(tag),
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
    open_with(&key.derived(&salt_of(sealed)), key.id, ctx, sealed, out)
}

/// Opens records sealed with one key, keeping the derived key of the last
/// salt it met (a log's records come in long runs of one writer's salt):
/// what a reader going through a log opens with.
#[derive(Clone)]
pub(crate) struct Opener {
    key: Key,
    last: Option<([u8; SALT_LEN], Arc<Aes256Gcm>)>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Opener {
    pub(crate) fn new(key: Key) -> Opener {
        Opener { key, last: None }
    }

    /// The key it opens with.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// [`open_into`], with this opener's key.
    pub(crate) fn open_into(
        &mut self,
        ctx: &RecordContext<'_>,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        self.open_onto(ctx, sealed, out)
    }

    /// [`Opener::open_into`], the plaintext added at the end of `out`
    /// (which keeps what it held before, whether the tag checks or not).
    pub(crate) fn open_onto(
        &mut self,
        ctx: &RecordContext<'_>,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        if sealed.len() < SEAL_OVERHEAD {
            return false;
        }
        let salt = salt_of(sealed);
        let cipher = match &self.last {
            Some((s, cipher)) if *s == salt => cipher,
            _ => &self.last.insert((salt, self.key.derived(&salt))).1,
        };
        open_with(cipher, self.key.id, ctx, sealed, out)
    }
}

/// Open `sealed` (at least [`SEAL_OVERHEAD`] bytes) with `cipher`, the
/// key its salt names, its plaintext added at the end of `out` (nothing
/// added if the tag fails).
fn open_with(
    cipher: &Aes256Gcm,
    key_id: u32,
    ctx: &RecordContext<'_>,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let at = out.len();
    out.extend_from_slice(ciphertext);
    let aad = ctx.aad(key_id);
    let ok = out.get_mut(at..).is_some_and(|plain| {
        cipher
            .decrypt_inout_detached(&gcm_nonce(nonce), &aad, plain.into(), &tag_array(tag))
            .is_ok()
    });
    if !ok {
        out.truncate(at);
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

    /// A sealed record is, byte for byte, what an independent AES-GCM and
    /// HKDF give for format.md's construction: the expected bytes were
    /// computed with Python's `cryptography` (OpenSSL), not this crate's
    /// dependencies. A cipher crate that changed its output (a version
    /// upgrade, a backend) would make every existing log unreadable.
    #[test]
    fn a_sealed_record_is_what_an_independent_aes_gcm_gives() {
        let key = Key::new(std::array::from_fn(|i| i as u8));
        assert_eq!(key.id(), 0xa281_a190);
        let salt = [0xa5; SALT_LEN];
        let mut sealer = Sealer {
            cipher: key.derived(&salt),
            key: key.clone(),
            salt,
            counter: 7,
        };
        let (log, session, prev) = (
            Uuid::from_bytes([0x11; 16]),
            Uuid::from_bytes([0x22; 16]),
            [0x33; 16],
        );
        let ctx = RecordContext {
            log: &log,
            lsn: 42,
            session: &session,
            timestamp_us: 1_700_000_000_000_000,
            sync_mark: 40,
            prev: &prev,
        };
        let plain = b"the quick brown fox jumps over the lazy dog, 0123456789";
        let mut sealed = Vec::new();
        let tag = sealer.seal_into(&ctx, plain, &mut sealed);
        let expected = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a507000000000000007a7252790bcb153c\
                        6c35a3cacd8bce29f100d607b591b953ef697aaa8adbf303806ca216231a7704\
                        e5bc0a5dc79c7fbdafa87e3ee8d5067450ad557c00ef6de5d647840779bb81";
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(tag_of(&sealed), Some(tag));
        assert_eq!(open(&key, &ctx, &sealed).as_deref(), Some(&plain[..]));
    }

    /// The record cipher seals 1 200 messages as OpenSSL does: every
    /// payload length from 0 to 530 bytes (a record's tail is any partial
    /// block, and short records take the cipher's tail paths) and larger
    /// ones up to 10 KiB, associated data of 0 to 96 bytes, keys and nonces
    /// varied; each opens again, and not with a flipped tag bit. The
    /// expected digest (SHA-256 over every `ciphertext || tag`) was
    /// computed with Python's `cryptography`: the same loop, from the same
    /// seeds.
    #[test]
    fn the_cipher_seals_every_length_as_openssl_does() {
        use sha2::Digest;
        let mut all = Sha256::new();
        for i in 0u64..1200 {
            let seed = |what: &[u8]| {
                Sha256::new()
                    .chain_update(what)
                    .chain_update(i.to_le_bytes())
                    .finalize()
            };
            let key: [u8; 32] = seed(b"key").into();
            let cipher = Aes256Gcm::new(&key.into());
            let nonce = Nonce::try_from(&seed(b"nonce")[..12]).expect("12 bytes");
            let aad: Vec<u8> = seed(b"aad")
                .iter()
                .copied()
                .cycle()
                .take((i as usize * 7) % 97)
                .collect();
            let len = if i < 1062 {
                i as usize % 531
            } else {
                4096 + (i as usize - 1062) * 37
            };
            let plain: Vec<u8> = (0..len)
                .map(|j| ((j as u64 * 31 + i) & 0xff) as u8)
                .collect();
            let mut sealed = vec![0u8; len];
            let io = InOutBuf::new(&plain, &mut sealed).expect("same lengths");
            let tag = cipher
                .encrypt_inout_detached(&nonce, &aad, io)
                .expect("sealed");
            all.update(&sealed);
            all.update(tag);
            let mut opened = sealed.clone();
            assert!(
                cipher
                    .decrypt_inout_detached(&nonce, &aad, opened.as_mut_slice().into(), &tag)
                    .is_ok()
            );
            assert_eq!(opened, plain);
            let mut bad = tag;
            bad[(i % 16) as usize] ^= 1 << (i % 8);
            let mut again = sealed.clone();
            assert!(
                cipher
                    .decrypt_inout_detached(&nonce, &aad, again.as_mut_slice().into(), &bad)
                    .is_err()
            );
        }
        let hex: String = all.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "4adbc2615d9f2c589b855685771aef5981d352cc40acb638724af0e493dc4716"
        );
    }

    /// The derived cipher (AES round keys, GHASH key) is wiped when
    /// dropped, as [`Key`]'s docs say: `aes-gcm`'s `zeroize` feature. Does
    /// not compile without it.
    #[test]
    fn the_derived_cipher_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let key = Key::new([3; 32]);
        wiped_on_drop(&key.derive(&[0; SALT_LEN]));
    }

    /// Two different keys whose ids collide (`749fe283`): the
    /// little-endian numbers 5211 and 6094 in the first eight of 32 bytes,
    /// found by a search over such keys (written down: a search takes
    /// about 70 000 keys on average).
    fn colliding_keys() -> (Key, Key) {
        let key = |n: u64| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            Key::new(bytes)
        };
        (key(5_211), key(6_094))
    }

    #[test]
    fn different_keys_with_one_id_are_refused_not_dropped() {
        let (a, b) = colliding_keys();
        assert_eq!(a.id(), b.id(), "the pair still collides");
        assert_eq!(a.id(), 0x749f_e283);
        assert!(!a.same_key(&b));
        let other = Key::new([9; 32]);
        match KeyRing::new(a.clone()).try_with(b.clone()) {
            Err(KeyError::IdCollision { id, first, second }) => {
                assert_eq!((id, first, second), (a.id(), 0, 1));
            }
            other => panic!("{other:?}"),
        }
        // Positions in the order given, counting a repeated key.
        match KeyRing::from_keys([a.clone(), other.clone(), a.clone(), b.clone()]) {
            Err(KeyError::IdCollision { id, first, second }) => {
                assert_eq!((id, first, second), (a.id(), 0, 3));
            }
            other => panic!("{other:?}"),
        }
        match KeyRing::from_keys([other.clone(), b.clone(), a.clone()]) {
            Err(e @ KeyError::IdCollision { .. }) => {
                assert!(matches!(
                    e,
                    KeyError::IdCollision {
                        first: 1,
                        second: 2,
                        ..
                    }
                ));
                assert!(e.to_string().contains("749fe283"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            KeyRing::from_keys(Vec::new()),
            Err(KeyError::NoKeys)
        ));
    }

    #[test]
    fn the_same_key_twice_is_one_key_and_the_first_is_current() {
        let (a, b) = (Key::new([1; 32]), Key::new([2; 32]));
        let ring =
            KeyRing::from_keys([b.clone(), a.clone(), Key::new([2; 32]), a.clone()]).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.current().id(), b.id());
        assert_eq!(ring.ids().collect::<Vec<_>>(), [b.id(), a.id()]);
        let ring = KeyRing::new(a.clone()).try_with(a.clone()).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(ring, KeyRing::new(a));
    }

    #[test]
    fn key_files_hold_32_bytes_or_64_hex_digits_and_errors_never_show_them() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = [0xa5u8; 32];
        let want = Key::new(bytes);
        let write = |name: &str, contents: &[u8]| {
            let path = tmp.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        for (name, contents) in [
            ("raw", bytes.to_vec()),
            ("hex", "a5".repeat(32).into_bytes()),
            ("hex-newline", format!("{}\n", "A5".repeat(32)).into_bytes()),
            (
                "hex-crlf",
                format!("  {}\r\n", "a5".repeat(32)).into_bytes(),
            ),
        ] {
            let key = Key::from_file(write(name, &contents)).unwrap();
            assert!(key.same_key(&want), "{name}");
        }
        // 32 bytes of hex digits are raw bytes, not 16 bytes of hex.
        let raw_digits = Key::from_file(write("32-digits", "ab".repeat(16).as_bytes())).unwrap();
        assert!(raw_digits.same_key(&Key::new(*b"abababababababababababababababab")));
        let secret = "c3".repeat(31);
        for (name, contents) in [
            ("short", secret.clone().into_bytes()),
            ("long-binary", vec![0xc3; 33]),
            ("not-hex", format!("{secret}zz").into_bytes()),
            ("huge", "c3".repeat(4096).into_bytes()),
        ] {
            let path = write(name, &contents);
            let error = Key::from_file(&path).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, KeyError::Malformed { .. }),
                "{name}: {error:?}"
            );
            assert!(
                message.contains(&*path.to_string_lossy()),
                "{name}: {message}"
            );
            assert!(!message.contains("c3c3"), "{name}: {message}");
        }
        let missing = tmp.path().join("missing");
        let error = Key::from_file(&missing).unwrap_err();
        assert!(
            matches!(error, KeyError::Io { op: "open", .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("missing"), "{error}");
    }

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
            (
                "another session",
                RecordContext {
                    session: &log,
                    ..ctx
                },
            ),
            ("another log", RecordContext { log: &s, ..ctx }),
            (
                "another time",
                RecordContext {
                    timestamp_us: 11,
                    ..ctx
                },
            ),
            (
                "another sync mark",
                RecordContext {
                    sync_mark: 3,
                    ..ctx
                },
            ),
            (
                "another place in the chain",
                RecordContext {
                    prev: &other_prev,
                    ..ctx
                },
            ),
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
        let (n1, n2, m1) = (a.next_nonce().0, a.next_nonce().0, b.next_nonce().0);
        assert_eq!(n1[..16], n2[..16]);
        assert_ne!(n1, n2);
        assert_ne!(n1[..16], m1[..16], "random salts");
    }

    #[test]
    fn a_sealer_at_the_end_of_its_counter_draws_a_new_salt() {
        let mut a = Sealer::new(Key::new([7; 32]));
        a.counter = u64::MAX - 1;
        let last = a.next_nonce().0;
        assert_eq!(last[16..], (u64::MAX - 1).to_le_bytes());
        let next = a.next_nonce().0;
        assert_ne!(next[..16], last[..16], "a new salt, so a new derived key");
        assert_eq!(next[16..], 0u64.to_le_bytes());
        assert_eq!(a.next_nonce().0[16..], 1u64.to_le_bytes());
    }

    #[test]
    fn a_mac_checks_only_its_data_domain_and_key() {
        let (k, other) = (Key::new([7; 32]), Key::new([8; 32]));
        let m = mac(&k, Domain::Segment, &[b"abc", b"def"]);
        assert!(mac_checks(&k, Domain::Segment, &[b"abc", b"def"], &m));
        assert!(
            mac_checks(&k, Domain::Segment, &[b"abcdef"], &m),
            "data is concatenated"
        );
        assert!(!mac_checks(&k, Domain::Segment, &[b"abcdeF"], &m));
        assert!(!mac_checks(&k, Domain::Head, &[b"abcdef"], &m));
        assert!(!mac_checks(&other, Domain::Segment, &[b"abcdef"], &m));
        assert!(!mac_checks(&k, Domain::Segment, &[b"abcdef"], &m[1..]));
    }
}
