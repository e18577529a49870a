//! What a replica tells its peers and takes from them: digests, the versions in a set of
//! buckets, entries by key, pages of the whole replica for a bulk copy. Used by the peer
//! gRPC service and by [`super::replication`] on the calling side.

use super::digest::BUCKETS;
use super::entry::{split_storage_key, storage_key};
use super::{Entry, KvError, KvStore, Version};
use nimbus_storage::{CF_KV, CF_KV_INDEX};

/// A stored entry with its place.
pub type Located = (String, String, Entry);

impl KvStore {
    /// (storage key, version) of every entry in `buckets`, tombstones and expired included.
    pub fn versions_in(&self, buckets: &[u32]) -> Result<Vec<(Vec<u8>, Version)>, KvError> {
        let mut out = Vec::new();
        for bucket in buckets {
            let Ok(bucket) = u16::try_from(*bucket) else { continue };
            if usize::from(bucket) >= BUCKETS {
                continue;
            }
            for (index, version) in self.storage.scan_prefix(CF_KV_INDEX, &bucket.to_be_bytes(), None, usize::MAX)? {
                let version = Version::from_order_bytes(&version)
                    .ok_or_else(|| KvError::Corrupt("index entry without a version".into()))?;
                out.push((index[2..].to_vec(), version));
            }
        }
        Ok(out)
    }

    /// The stored entries (tombstones included) at these storage keys; absent ones skipped.
    pub fn fetch_raw(&self, raw_keys: &[Vec<u8>]) -> Result<Vec<Located>, KvError> {
        let mut out = Vec::with_capacity(raw_keys.len());
        for raw in raw_keys {
            let (Some(entry), Some((namespace, key))) = (self.read(raw)?, split_storage_key(raw)) else { continue };
            out.push((namespace, key, entry));
        }
        Ok(out)
    }

    /// Up to `max_bytes` (at least one entry) of the replica in key order, after
    /// `(namespace, key)`; an empty page means the end.
    pub fn snapshot_page(&self, after: Option<(&str, &str)>, max_bytes: usize) -> Result<Vec<Located>, KvError> {
        let start = after.map(|(namespace, key)| storage_key(namespace, key));
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut cursor = start;
        loop {
            let rows = self.storage.scan_prefix(CF_KV, b"", cursor.as_deref(), 256)?;
            let Some((last, _)) = rows.last() else { return Ok(out) };
            cursor = Some(last.clone());
            for (raw, value) in rows {
                let Some((namespace, key)) = split_storage_key(&raw) else { continue };
                bytes += raw.len() + value.len();
                out.push((namespace, key, Entry::decode(&value)?));
                if bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
    }
}
