//! The gossip keyring: every datagram sealed with ChaCha20-Poly1305 under a cluster key.
//!
//! As memberlist's keyring: one **primary** key seals what this node sends, and every key in
//! the ring (the primary and older ones) opens what it receives, so keys rotate without a
//! split — add the new key everywhere as a secondary, make it primary everywhere, then remove
//! the old one (three rolling restarts). A key's id is the first four bytes of its SHA-256,
//! carried in the clear so the receiver picks the key without trying each.
//!
//! Datagram: `version (1) · key id (4) · nonce (12) · ciphertext · tag (16)`; the version and
//! key id are authenticated as associated data. Nonces are random (96 bits): a collision needs
//! about 2^48 datagrams under one key. A datagram that does not open (no such key, forged,
//! truncated, replayed bytes altered) is refused; the caller drops and counts it.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + NONCE_LEN;
/// Bytes sealing adds to every datagram.
pub const OVERHEAD: usize = HEADER + 16;

/// Why the configured keys were refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("gossip.keys is empty: every gossip datagram is encrypted, so the cluster needs a key (`nimbus keys gossip` makes one)")]
    Empty,
    #[error("gossip.keys[{index}] is not 32 bytes of base64: {reason}")]
    BadKey { index: usize, reason: String },
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("shorter than a sealed datagram or of another version")]
    Malformed,
    #[error("sealed with a key this node does not hold")]
    UnknownKey,
    #[error("does not authenticate")]
    Forged,
}

struct Key {
    id: [u8; 4],
    key: LessSafeKey,
}

/// The keys a node seals and opens gossip with; the first is the primary.
pub struct Keyring {
    keys: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex_id(&k.id)).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

fn hex_id(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keyring {
    /// Keys as base64 (standard alphabet) of 32 bytes each; the first seals.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (index, encoded) in keys.iter().enumerate() {
            let bad = |reason: String| KeyringError::BadKey { index, reason };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_ref().trim())
                .map_err(|e| bad(e.to_string()))?;
            if bytes.len() != 32 {
                return Err(bad(format!("{} bytes", bytes.len())));
            }
            let unbound =
                UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| bad("refused by the cipher".into()))?;
            let digest = Sha256::digest(&bytes);
            let id = [digest[0], digest[1], digest[2], digest[3]];
            ring.push(Key { id, key: LessSafeKey::new(unbound) });
        }
        Ok(Keyring { keys: ring, rng: SystemRandom::new() })
    }

    /// A fresh random key, base64, for `gossip.keys`.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        // The OS random source does not fail on Linux once the process runs.
        let _ = SystemRandom::new().fill(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The primary key's id, as hex (for logs and status).
    pub fn primary_id(&self) -> String {
        self.keys.first().map(|k| hex_id(&k.id)).unwrap_or_default()
    }

    /// Seals `plaintext` under the primary key.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let Some(primary) = self.keys.first() else { return Vec::new() };
        let mut nonce = [0u8; NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            // Without randomness there is no safe nonce: send nothing rather than reuse one.
            return Vec::new();
        }
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.push(VERSION);
        out.extend_from_slice(&primary.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        let aad = Aad::from(header_aad(&primary.id));
        if primary.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut body).is_err() {
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// Opens a sealed datagram: the plaintext, or why it was refused.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, Refused> {
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return Err(Refused::Malformed);
        }
        let id: [u8; 4] = datagram[1..5].try_into().map_err(|_| Refused::Malformed)?;
        let nonce: [u8; NONCE_LEN] = datagram[5..HEADER].try_into().map_err(|_| Refused::Malformed)?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or(Refused::UnknownKey)?;
        let mut body = datagram[HEADER..].to_vec();
        let plain_len = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(header_aad(&id)), &mut body)
            .map_err(|_| Refused::Forged)?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }
}

fn header_aad(id: &[u8; 4]) -> [u8; 5] {
    [VERSION, id[0], id[1], id[2], id[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_datagrams_open_under_any_key_of_the_ring() {
        let (old, new) = (Keyring::generate(), Keyring::generate());
        let sender = Keyring::new(std::slice::from_ref(&old)).expect("ring");
        let rotating = Keyring::new(&[new, old]).expect("ring");
        let datagram = sender.seal(b"hello");
        assert_eq!(datagram.len(), 5 + OVERHEAD);
        assert_eq!(rotating.open(&datagram), Ok(b"hello".to_vec()), "an older key still opens");
        assert_eq!(sender.open(&rotating.seal(b"x")), Err(Refused::UnknownKey), "the new primary is unknown to it");
        assert_ne!(sender.seal(b"hello"), datagram, "a fresh nonce every time");
    }

    #[test]
    fn forged_truncated_and_foreign_datagrams_are_refused() {
        let ring = Keyring::new(&[Keyring::generate()]).expect("ring");
        let stranger = Keyring::new(&[Keyring::generate()]).expect("ring");
        let mut datagram = ring.seal(b"membership update");
        assert_eq!(ring.open(&stranger.seal(b"join me")), Err(Refused::UnknownKey));
        assert_eq!(ring.open(&datagram[..OVERHEAD - 1]), Err(Refused::Malformed));
        assert_eq!(ring.open(b"plain foca bytes, not sealed at all"), Err(Refused::Malformed));
        let last = datagram.len() - 1;
        datagram[last] ^= 1;
        assert_eq!(ring.open(&datagram), Err(Refused::Forged));
        datagram[last] ^= 1;
        datagram[HEADER] ^= 1;
        assert_eq!(ring.open(&datagram), Err(Refused::Forged), "ciphertext altered");
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(Keyring::new::<String>(&[]), Err(KeyringError::Empty)));
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        assert!(matches!(Keyring::new(&[short]), Err(KeyringError::BadKey { index: 0, .. })));
        assert!(matches!(
            Keyring::new(&[Keyring::generate(), "%%".into()]),
            Err(KeyringError::BadKey { index: 1, .. })
        ));
    }
}
