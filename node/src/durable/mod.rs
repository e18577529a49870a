//! Durable Objects: addressing and placement (the first part; execution, storage and
//! forwarding come next).
//!
//! Guarantees so far:
//! - an [`ObjectId`] is 256 bits: 24 bytes that name the object (a hash of the namespace and
//!   name for `idFromName`, random for `newUniqueId`) and 8 bytes that bind it to its
//!   namespace, so `idFromString` refuses a malformed id and an id from another namespace;
//! - [`placement`] maps an id to an owner and two successors by rendezvous hashing over the
//!   live members: every node with the same view computes the same answer, and a member
//!   joining or leaving moves only the objects it gains or held.
//!
//! # Layout
//! - [`ObjectId`], [`Namespace`]: ids and the namespace they belong to.
//! - [`placement`]: owner and successors of an id.
//! - [`storage`]: an object's keys, values and alarm on one node (RocksDB), within Cloudflare's
//!   limits, each write atomic.
//! - [`DurableError`]: what the caller did wrong.

pub mod placement;
pub mod storage;

use sha2::{Digest, Sha256};
use std::fmt;

/// Why a Durable Object call failed.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("`{0}` is not a Durable Object id: expected 64 hex characters")]
    MalformedId(String),
    #[error("id `{id}` does not belong to namespace `{namespace}`")]
    ForeignId { id: String, namespace: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// A Durable Object namespace: one class of one worker (`<worker>:<class>`), as Cloudflare
/// scopes ids to the script and class that define them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(worker: &str, class_name: &str) -> Self {
        Namespace(format!("{worker}:{class_name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the object called `name` in this namespace.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let hash = Sha256::new()
            .chain_update(b"nimbus-do-name\0")
            .chain_update(self.0.as_bytes())
            .chain_update(b"\0")
            .chain_update(name.as_bytes())
            .finalize();
        let mut body = [0u8; 24];
        body.copy_from_slice(&hash[..24]);
        self.seal(body)
    }

    /// A new id that no name maps to.
    pub fn new_unique_id(&self) -> ObjectId {
        let mut body = [0u8; 24];
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        rand::RngCore::fill_bytes(&mut rng, &mut body);
        // Names hash to any value, so mark unique ids: their first bit is always set, a
        // name-derived id may have it either way, and two random ids collide with chance 2^-191.
        body[0] |= 0x80;
        self.seal(body)
    }

    /// Parses and checks an id that a client handed back.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId, DurableError> {
        let bytes = hex::decode(text).map_err(|_| DurableError::MalformedId(text.to_owned()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| DurableError::MalformedId(text.to_owned()))?;
        let mut body = [0u8; 24];
        body.copy_from_slice(&bytes[..24]);
        let id = self.seal(body);
        if id.0 != bytes {
            return Err(DurableError::ForeignId { id: text.to_owned(), namespace: self.0.clone() });
        }
        Ok(id)
    }

    fn seal(&self, body: [u8; 24]) -> ObjectId {
        let tag = Sha256::new()
            .chain_update(b"nimbus-do-tag\0")
            .chain_update(self.0.as_bytes())
            .chain_update(body)
            .finalize();
        let mut id = [0u8; 32];
        id[..24].copy_from_slice(&body);
        id[24..].copy_from_slice(&tag[..8]);
        ObjectId(id)
    }
}

/// A Durable Object's id: 256 bits, shown as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_stable_ids_scoped_to_their_namespace() {
        let counters = Namespace::new("app", "Counter");
        let a = counters.id_from_name("room-1");
        assert_eq!(a, counters.id_from_name("room-1"), "the same name, the same id");
        assert_ne!(a, counters.id_from_name("room-2"));
        assert_ne!(a, Namespace::new("app", "Chat").id_from_name("room-1"), "namespaces do not share ids");
        assert_eq!(a.to_string().len(), 64);
        assert_eq!(counters.id_from_string(&a.to_string()).expect("round trip"), a);
    }

    #[test]
    fn unique_ids_differ_and_round_trip() {
        let ns = Namespace::new("app", "Counter");
        let (a, b) = (ns.new_unique_id(), ns.new_unique_id());
        assert_ne!(a, b);
        assert_eq!(ns.id_from_string(&b.to_string()).expect("round trip"), b);
    }

    #[test]
    fn malformed_and_foreign_ids_are_refused() {
        let ns = Namespace::new("app", "Counter");
        for bad in ["", "xyz", &"0".repeat(63), &"g".repeat(64), &"0".repeat(66)] {
            assert!(matches!(ns.id_from_string(bad), Err(DurableError::MalformedId(_))), "{bad:?}");
        }
        let other = Namespace::new("app", "Chat").id_from_name("x").to_string();
        assert!(matches!(ns.id_from_string(&other), Err(DurableError::ForeignId { .. })));
        let mut tampered = ns.id_from_name("x").to_string();
        tampered.replace_range(0..1, if tampered.starts_with('0') { "1" } else { "0" });
        assert!(ns.id_from_string(&tampered).is_err(), "a changed digit fails the namespace tag");
    }
}
