//! Workers KV on one node: versioned entries in RocksDB, merged by last writer wins.
//!
//! Owns the `kv` column family. Guarantees: every write carries a version — (hybrid logical
//! clock, node id) — and [`KvStore::merge`] keeps the higher version, so replicas that see
//! the same writes in any order end equal; a delete is a tombstone with a version, so a stale
//! write arriving later cannot resurrect the key; Cloudflare's limits (key 512 B, value
//! 25 MiB, metadata 1 KiB of JSON, expiration at least 60 s ahead, list limit 1000) are checked
//! before anything is written; expired entries are invisible at once and purged later.
//! Replication (gossip, anti-entropy) builds on `merge`; it is not in this module.
//!
//! # Layout
//! - [`Hlc`], [`Version`]: the clock and the order of writes.
//! - [`KvStore`]: get / put / delete / list / merge / purge.
//! - [`KvError`]: what the caller did wrong, or what failed.

mod error;
mod hlc;

pub use error::KvError;
pub use hlc::{Hlc, Version};

use crate::storage::{Batch, Storage, CF_KV};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
pub const MAX_METADATA_BYTES: usize = 1024;
pub const MAX_LIST_LIMIT: usize = 1000;

/// A stored entry; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub version: Version,
    pub value: Option<Vec<u8>>,
    pub metadata: Option<String>,
    /// Seconds since the Unix epoch.
    pub expiration: Option<u64>,
}

/// Everything but the value, stored in front of it.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: Version,
    tombstone: bool,
    metadata: Option<String>,
    expiration: Option<u64>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let header = Header {
            version: self.version.clone(),
            tombstone: self.value.is_none(),
            metadata: self.metadata.clone(),
            expiration: self.expiration,
        };
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(4 + header.len() + value.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(value);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Entry, KvError> {
        let corrupt = || KvError::Corrupt("entry shorter than its header".into());
        let len = u32::from_be_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        let header: Header = serde_json::from_slice(bytes.get(4..4 + len).ok_or_else(corrupt)?)
            .map_err(|e| KvError::Corrupt(e.to_string()))?;
        let value = (!header.tombstone).then(|| bytes[4 + len..].to_vec());
        Ok(Entry { version: header.version, value, metadata: header.metadata, expiration: header.expiration })
    }

    fn expired(&self, now_secs: u64) -> bool {
        self.expiration.is_some_and(|e| e <= now_secs)
    }
}

/// Options of a put, as Cloudflare's `put(key, value, { expiration, expirationTtl, metadata })`.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub expiration: Option<u64>,
    pub expiration_ttl: Option<u64>,
    pub metadata: Option<String>,
}

/// One key of a list result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub expiration: Option<u64>,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    pub keys: Vec<KeyInfo>,
    pub list_complete: bool,
    /// Pass back to get the next page; `None` when complete.
    pub cursor: Option<String>,
}

#[derive(Clone)]
pub struct KvStore {
    storage: Storage,
    clock: Arc<Hlc>,
    node_id: Arc<str>,
    /// Smallest expiration TTL accepted, in seconds (60 as in Cloudflare; lower for tests).
    min_ttl_secs: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn storage_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + 1 + key.len());
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

impl KvStore {
    pub fn new(storage: Storage, node_id: &str, min_ttl_secs: u64) -> Self {
        KvStore { storage, clock: Arc::new(Hlc::default()), node_id: node_id.into(), min_ttl_secs }
    }

    fn validate_namespace(namespace: &str) -> Result<(), KvError> {
        if namespace.is_empty() || namespace.len() > 64 || namespace.contains('\0') {
            return Err(KvError::InvalidNamespace(namespace.to_string()));
        }
        Ok(())
    }

    fn validate_key(key: &str) -> Result<(), KvError> {
        if key.is_empty() || key == "." || key == ".." {
            return Err(KvError::InvalidKey(format!("key `{key}` is not allowed")));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::InvalidKey(format!("key is {} bytes, over the limit of {MAX_KEY_BYTES}", key.len())));
        }
        if key.contains('\0') {
            return Err(KvError::InvalidKey("key contains a NUL byte".into()));
        }
        Ok(())
    }

    fn read(&self, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        match self.storage.get(CF_KV, &storage_key(namespace, key))? {
            Some(bytes) => Ok(Some(Entry::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The live entry for a key: `None` when absent, deleted or expired.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        Self::validate_namespace(namespace)?;
        Self::validate_key(key)?;
        Ok(self.read(namespace, key)?.filter(|e| e.value.is_some() && !e.expired(now_secs())))
    }

    /// Writes a value with a new version; nothing is written when a limit is exceeded.
    pub fn put(&self, namespace: &str, key: &str, value: Vec<u8>, options: PutOptions) -> Result<Entry, KvError> {
        Self::validate_namespace(namespace)?;
        Self::validate_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge { size: value.len(), limit: MAX_VALUE_BYTES });
        }
        if let Some(metadata) = &options.metadata {
            if metadata.len() > MAX_METADATA_BYTES {
                return Err(KvError::InvalidMetadata(format!(
                    "metadata is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                    metadata.len()
                )));
            }
            serde_json::from_str::<serde_json::Value>(metadata)
                .map_err(|e| KvError::InvalidMetadata(format!("metadata is not JSON: {e}")))?;
        }
        let now = now_secs();
        let expiration = match (options.expiration, options.expiration_ttl) {
            (Some(_), Some(_)) => {
                return Err(KvError::InvalidExpiration("give expiration or expirationTtl, not both".into()))
            }
            (Some(at), None) if at < now + self.min_ttl_secs => {
                return Err(KvError::InvalidExpiration(format!(
                    "expiration {at} is less than {} seconds in the future",
                    self.min_ttl_secs
                )))
            }
            (None, Some(ttl)) if ttl < self.min_ttl_secs => {
                return Err(KvError::InvalidExpiration(format!(
                    "expirationTtl {ttl} is below the minimum of {} seconds",
                    self.min_ttl_secs
                )))
            }
            (Some(at), None) => Some(at),
            (None, Some(ttl)) => Some(now + ttl),
            (None, None) => None,
        };
        let entry = Entry {
            version: Version { hlc: self.clock.now(), node: self.node_id.to_string() },
            value: Some(value),
            metadata: options.metadata,
            expiration,
        };
        self.write(namespace, key, &entry)?;
        Ok(entry)
    }

    /// Writes a tombstone with a new version; returns it.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Entry, KvError> {
        Self::validate_namespace(namespace)?;
        Self::validate_key(key)?;
        let entry = Entry {
            version: Version { hlc: self.clock.now(), node: self.node_id.to_string() },
            value: None,
            metadata: None,
            expiration: None,
        };
        self.write(namespace, key, &entry)?;
        Ok(entry)
    }

    fn write(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), KvError> {
        let mut batch = Batch::default();
        batch.put(CF_KV, storage_key(namespace, key), entry.encode());
        Ok(self.storage.write(batch)?)
    }

    /// Applies an entry from another replica if its version is higher than ours; true when it
    /// won. The clock observes the remote version so later local writes order after it.
    pub fn merge(&self, namespace: &str, key: &str, remote: Entry) -> Result<bool, KvError> {
        Self::validate_namespace(namespace)?;
        Self::validate_key(key)?;
        self.clock.observe(remote.version.hlc);
        if let Some(local) = self.read(namespace, key)? {
            if local.version >= remote.version {
                return Ok(false);
            }
        }
        self.write(namespace, key, &remote)?;
        Ok(true)
    }

    /// Live keys with `prefix`, in order, at most `limit` (≤ 1000), after `cursor`.
    pub fn list(&self, namespace: &str, prefix: &str, limit: usize, cursor: Option<&str>) -> Result<ListPage, KvError> {
        Self::validate_namespace(namespace)?;
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(KvError::InvalidLimit(limit));
        }
        let scan_prefix = storage_key(namespace, prefix);
        let mut after = match cursor {
            Some(c) => Some(hex::decode(c).map_err(|_| KvError::InvalidCursor(c.to_string()))?),
            None => None,
        };
        let now = now_secs();
        let mut keys = Vec::new();
        loop {
            // Tombstones and expired entries are skipped, so a page may need several scans.
            let rows = self.storage.scan_prefix(CF_KV, &scan_prefix, after.as_deref(), limit + 1)?;
            let exhausted = rows.len() <= limit;
            for (raw_key, raw) in rows {
                after = Some(raw_key.clone());
                let entry = Entry::decode(&raw)?;
                if entry.value.is_none() || entry.expired(now) {
                    continue;
                }
                if keys.len() == limit {
                    // One more live key exists: this page is full and not the last.
                    let last =
                        storage_key(namespace, &keys.last().map(|k: &KeyInfo| k.name.clone()).unwrap_or_default());
                    return Ok(ListPage { keys, list_complete: false, cursor: Some(hex::encode(last)) });
                }
                let name = String::from_utf8_lossy(&raw_key[namespace.len() + 1..]).into_owned();
                keys.push(KeyInfo { name, expiration: entry.expiration, metadata: entry.metadata });
            }
            if exhausted {
                return Ok(ListPage { keys, list_complete: true, cursor: None });
            }
        }
    }

    /// Removes expired entries, and tombstones older than `tombstone_grace_ms`; returns how many.
    pub fn purge(&self, tombstone_grace_ms: u64) -> Result<usize, KvError> {
        let now = now_secs();
        let horizon = self.clock.now().saturating_sub(tombstone_grace_ms << hlc::LOGICAL_BITS);
        let mut batch = Batch::default();
        let mut purged = 0;
        for (key, raw) in self.storage.scan(CF_KV)? {
            let entry = Entry::decode(&raw)?;
            let stale_tombstone = entry.value.is_none() && entry.version.hlc < horizon;
            if entry.expired(now) || stale_tombstone {
                batch.delete(CF_KV, key);
                purged += 1;
            }
        }
        self.storage.write(batch)?;
        Ok(purged)
    }
}

#[cfg(test)]
mod tests;
