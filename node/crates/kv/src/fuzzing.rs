//! Entry points for the fuzz targets in `fuzz/`, compiled only under `cargo fuzz` (which sets
//! `--cfg fuzzing`). Each takes bytes as a peer would send them and runs the same code the
//! node runs on them, against a real replica.

use crate::replication::{apply_remote, bucket_versions, fetch, fetch_keys};
use crate::wire::{decode_rumor, encode_rumor};
use crate::KvStore;
use nimbus_proto::peer::{FetchKvRequest, KvBucketVersionsRequest, KvEntry};
use nimbus_util::metrics::Metrics;
use prost::Message;

/// A gossip rumor: whatever decodes must encode back to an entry that decodes the same.
pub fn rumor(data: &[u8]) {
    let Ok((namespace, key, entry)) = decode_rumor(data) else { return };
    if let Some(bytes) = encode_rumor(&namespace, &key, &entry) {
        let again = decode_rumor(&bytes).expect("an encoded rumor decodes");
        assert_eq!(again, (namespace, key, entry), "a rumor changed on a round trip");
    }
}

/// One peer message to the `KvPeer` service, chosen by the first byte: an entry pushed or
/// gossiped (merged into `kv`), a bucket-versions request or a fetch request (answered).
pub fn peer_message(kv: &KvStore, metrics: &Metrics, data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else { return };
    match kind % 3 {
        0 => {
            let Ok(wire) = KvEntry::decode(payload) else { return };
            let (namespace, key) = (wire.namespace.clone(), wire.key.clone());
            let (hlc, node) = (wire.hlc, wire.node.clone());
            // A refused entry is `Ok(false)`; only storage failures are errors.
            let won = apply_remote(kv, metrics, wire, "push").expect("a peer's entry never fails the store");
            if won {
                let stored = kv.read(&crate::entry::storage_key(&namespace, &key)).expect("the store reads");
                let stored = stored.expect("an entry that won is stored");
                assert_eq!((stored.version.hlc, stored.version.node.as_str()), (hlc, node.as_str()));
            }
        }
        1 => {
            let Ok(request) = KvBucketVersionsRequest::decode(payload) else { return };
            if let Err(e) = bucket_versions(kv, &request.buckets) {
                assert!(e.is_client_error(), "bucket versions failed the store: {e}");
            }
        }
        _ => {
            let Ok(request) = FetchKvRequest::decode(payload) else { return };
            let Ok(keys) = fetch_keys(&request.keys) else { return };
            assert!(keys.len() <= crate::replication::KEYS_PER_FETCH);
            if let Err(e) = fetch(kv, &keys) {
                panic!("a fetch failed the store: {e}");
            }
        }
    }
}
