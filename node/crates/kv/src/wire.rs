//! The one place where KV entries meet protobuf: the peer service's messages, and rumors
//! (a rumor is a `KvEntry` message, prost-encoded, small enough for one gossip datagram).

use super::entry::{split_storage_key, storage_key};
use super::{Entry, KvError, Version};
use nimbus_proto::peer::{KeyVersion, KvEntry};
use prost::Message;

/// Largest encoded entry sent as a rumor; larger ones are pushed over gRPC. foca's LAN
/// datagrams are 1400 bytes and carry its own header and membership updates too.
pub const MAX_RUMOR_BYTES: usize = 1024;

pub fn to_wire(namespace: &str, key: &str, entry: &Entry) -> KvEntry {
    KvEntry {
        namespace: namespace.to_string(),
        key: key.to_string(),
        hlc: entry.version.hlc,
        node: entry.version.node.clone(),
        tombstone: entry.is_tombstone(),
        value: entry.value.clone().unwrap_or_default(),
        metadata: entry.metadata.clone(),
        expiration: entry.expiration,
    }
}

/// (namespace, key, entry) of a wire entry.
pub fn from_wire(wire: KvEntry) -> (String, String, Entry) {
    let entry = Entry {
        version: Version { hlc: wire.hlc, node: wire.node },
        value: (!wire.tombstone).then_some(wire.value),
        metadata: wire.metadata,
        expiration: wire.expiration,
    };
    (wire.namespace, wire.key, entry)
}

/// A rumor for a local write, or `None` when the entry is too large to ride gossip.
pub fn encode_rumor(namespace: &str, key: &str, entry: &Entry) -> Option<Vec<u8>> {
    let wire = to_wire(namespace, key, entry);
    (wire.encoded_len() <= MAX_RUMOR_BYTES).then(|| wire.encode_to_vec())
}

pub fn decode_rumor(data: &[u8]) -> Result<(String, String, Entry), KvError> {
    let wire = KvEntry::decode(data).map_err(|e| KvError::Corrupt(format!("rumor: {e}")))?;
    Ok(from_wire(wire))
}

/// A key and its version as the anti-entropy exchange names them.
pub fn key_version(raw_key: &[u8], version: &Version) -> Option<KeyVersion> {
    let (namespace, key) = split_storage_key(raw_key)?;
    Some(KeyVersion { namespace, key, hlc: version.hlc, node: version.node.clone() })
}

/// The storage key and version of a [`KeyVersion`].
pub fn from_key_version(kv: &KeyVersion) -> (Vec<u8>, Version) {
    (storage_key(&kv.namespace, &kv.key), Version { hlc: kv.hlc, node: kv.node.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_entry_round_trips_as_a_rumor_and_a_large_one_does_not_fit() {
        let entry = Entry {
            version: Version { hlc: 42, node: "n1".into() },
            value: Some(b"v".to_vec()),
            metadata: Some("{}".into()),
            expiration: Some(7),
        };
        let rumor = encode_rumor("ns", "k", &entry).expect("fits");
        assert_eq!(decode_rumor(&rumor).expect("decodes"), ("ns".into(), "k".into(), entry.clone()));
        let tombstone = Entry { value: None, metadata: None, expiration: None, ..entry.clone() };
        let rumor = encode_rumor("ns", "k", &tombstone).expect("fits");
        assert_eq!(decode_rumor(&rumor).expect("decodes").2, tombstone);
        let large = Entry { value: Some(vec![0; MAX_RUMOR_BYTES]), ..entry };
        assert!(encode_rumor("ns", "k", &large).is_none());
        assert!(decode_rumor(b"\xff\xff\xff").is_err());
    }
}
