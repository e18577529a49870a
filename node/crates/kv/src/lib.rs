//! Workers KV: every node holds a full replica, written locally and spread by gossip.
//!
//! Owns the `kv` and `kv_index` column families. Guarantees:
//! - every write carries a version — (hybrid logical clock, node id) — and an entry is only
//!   ever replaced by a higher version, so replicas that see the same writes in any order end
//!   equal; a delete is a tombstone with a version, so a stale write arriving later cannot
//!   resurrect the key; tombstones are purged only after a grace period much longer than the
//!   anti-entropy cycle;
//! - Cloudflare's limits (key 512 B, value 25 MiB, metadata 1 KiB of JSON, expiration at
//!   least 60 s ahead, list limit 1000) are checked before anything is written; expired
//!   entries are invisible at once and purged in the background;
//! - namespaces exist only once declared (by a deployment's binding, the REST API or the
//!   CLI); the declarations are KV entries themselves and replicate the same way;
//! - the bucket digests ([`digest`]) always match the stored entries, so anti-entropy can
//!   compare replicas by exchanging 8 KiB.
//!
//! # Layout
//! - [`Hlc`], [`Version`]: the clock and the order of writes.
//! - `entry`: the stored form of an entry.
//! - [`digest`]: buckets, digests and the per-bucket index.
//! - [`KvStore`]: get / put / delete / list for callers, merge / digests / fetch for peers.
//! - [`replication`]: rumors over gossip, pushes and anti-entropy over gRPC, bulk copy (the
//!   client half of the `KvPeer` service).
//! - [`server`]: the server half of `KvPeer`; `peer`: what a replica reads for its peers.
//! - `wire`: entries as protobuf, for rumors and the peer service.
//! - [`KvError`]: what the caller did wrong, or what failed.

mod digest;
mod entry;
mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
mod hlc;
mod peer;
pub mod replication;
pub mod server;
mod wire;

pub use entry::Entry;
pub use error::KvError;
pub use hlc::{Hlc, Version};

use digest::{bucket_of, index_key, Digests};
use entry::storage_key;
use nimbus_storage::{Batch, Storage, CF_KV, CF_KV_INDEX, CF_META};
use nimbus_util::metrics::Metrics;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
pub const MAX_METADATA_BYTES: usize = 1024;
/// The longest node id a version may carry.
pub const MAX_NODE_ID_BYTES: usize = 128;
pub const MAX_LIST_LIMIT: usize = 1000;
/// The namespace that holds the declarations of the others (key = namespace id).
const NAMESPACES: &str = "__namespaces";
/// Local writes waiting for replication; when full, anti-entropy carries the overflow.
const OUTBOX_CAPACITY: usize = 65_536;
/// Lock stripes that serialise writes to the same key (and so its digest update).
const STRIPES: usize = 64;
/// `meta` key: the clock reading at the end of the last completed anti-entropy exchange.
const LAST_SYNC: &[u8] = b"kv/last_sync";

/// Options of a put, as Cloudflare's `put(key, value, { expiration, expirationTtl, metadata })`.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub expiration: Option<u64>,
    pub expiration_ttl: Option<u64>,
    pub metadata: Option<String>,
}

pub use nimbus_api::kv::{KeyInfo, ListPage, Namespace};

/// A local write, on its way to the other replicas.
#[derive(Debug, Clone)]
pub struct Change {
    pub namespace: String,
    pub key: String,
    pub entry: Entry,
}

/// The receiving end of the local writes, taken by [`replication`].
pub type Changes = mpsc::Receiver<Change>;

#[derive(Clone)]
pub struct KvStore {
    storage: Storage,
    clock: Arc<Hlc>,
    node_id: Arc<str>,
    /// Smallest expiration TTL accepted, in seconds (60 as in Cloudflare; lower for tests).
    min_ttl_secs: u64,
    /// How far ahead of this clock a peer's version may be (see [`KvStore::merge`]).
    max_clock_offset_ms: u64,
    digests: Arc<Digests>,
    stripes: Arc<[Mutex<()>]>,
    /// Namespaces known to exist; they are never undeclared, so a hit needs no read.
    declared: Arc<RwLock<HashSet<String>>>,
    outbox: mpsc::Sender<Change>,
    metrics: Arc<Metrics>,
    /// Non-zero while this replica is back from an absence longer than the tombstone grace:
    /// the clock reading of its last exchange (see [`KvStore::check_absence`]).
    stale_before: Arc<AtomicU64>,
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn not_written<T>(result: std::sync::LockResult<T>) -> Result<T, KvError> {
    result.map_err(|_| KvError::Corrupt("a writer panicked while holding a key lock".into()))
}

impl KvStore {
    /// Opens the replica in `storage`, rebuilding the bucket digests from the index.
    pub fn open(
        storage: Storage,
        node_id: &str,
        min_ttl_secs: u64,
        max_clock_offset_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Result<(KvStore, Changes), KvError> {
        let digests = Digests::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = storage.scan_prefix(CF_KV_INDEX, b"", after.as_deref(), 10_000)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            for (raw, version) in &rows {
                let version = Version::from_order_bytes(version)
                    .ok_or_else(|| KvError::Corrupt("index entry without a version".into()))?;
                // An index key is `bucket ‖ storage key`: no need to hash again.
                let (bucket, storage_key) = raw.split_at(2.min(raw.len()));
                let bucket = u16::from_be_bytes(bucket.try_into().map_err(|_| KvError::Corrupt("index key".into()))?);
                digests.replace(bucket, storage_key, None, Some(&version));
            }
        }
        let clock = Hlc::default();
        let (outbox, changes) = mpsc::channel(OUTBOX_CAPACITY);
        let kv = KvStore {
            storage,
            clock: Arc::new(clock),
            node_id: node_id.into(),
            min_ttl_secs,
            max_clock_offset_ms,
            digests: Arc::new(digests),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            declared: Arc::default(),
            outbox,
            metrics,
            stale_before: Arc::default(),
        };
        Ok((kv, changes))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn digests(&self) -> &Digests {
        &self.digests
    }

    fn validate_namespace_id(id: &str) -> Result<(), KvError> {
        nimbus_proto::manifest::validate_kv_namespace_id(id).map_err(|e| KvError::InvalidNamespace(e.0))
    }

    /// Cloudflare's value and metadata size limits, for local writes and peers' entries alike.
    fn check_sizes(value_len: usize, metadata: Option<&str>) -> Result<(), KvError> {
        if value_len > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge { size: value_len, limit: MAX_VALUE_BYTES });
        }
        match metadata {
            Some(metadata) if metadata.len() > MAX_METADATA_BYTES => Err(KvError::InvalidMetadata(format!(
                "metadata is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                metadata.len()
            ))),
            _ => Ok(()),
        }
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

    /// Declares a namespace; false when it already existed.
    pub fn declare_namespace(&self, id: &str, title: Option<&str>) -> Result<bool, KvError> {
        Self::validate_namespace_id(id)?;
        if self.namespace_exists(id)? {
            return Ok(false);
        }
        let title = title.unwrap_or(id).to_string();
        self.write_new(NAMESPACES, id, Some(title.into_bytes()), None, None)?;
        self.declared.write().map_err(|_| KvError::Corrupt("namespace cache poisoned".into()))?.insert(id.to_string());
        Ok(true)
    }

    /// Every declared namespace, by id.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, KvError> {
        let rows = self.storage.scan_prefix(CF_KV, &storage_key(NAMESPACES, ""), None, usize::MAX)?;
        let mut out = Vec::new();
        for (raw, bytes) in rows {
            let entry = Entry::decode(&bytes)?;
            if let (Some((_, id)), Some(title)) = (entry::split_storage_key(&raw), entry.value) {
                out.push(Namespace { id, title: String::from_utf8_lossy(&title).into_owned() });
            }
        }
        Ok(out)
    }

    fn namespace_exists(&self, id: &str) -> Result<bool, KvError> {
        if self.declared.read().map(|d| d.contains(id)).unwrap_or(false) {
            return Ok(true);
        }
        let exists = self.read(&storage_key(NAMESPACES, id))?.is_some_and(|e| !e.is_tombstone());
        if exists {
            if let Ok(mut declared) = self.declared.write() {
                declared.insert(id.to_string());
            }
        }
        Ok(exists)
    }

    /// Checks a namespace a caller names: well-formed and declared.
    fn check_namespace(&self, namespace: &str) -> Result<(), KvError> {
        Self::validate_namespace_id(namespace)?;
        if !self.namespace_exists(namespace)? {
            return Err(KvError::UnknownNamespace(namespace.to_string()));
        }
        Ok(())
    }

    fn read(&self, raw_key: &[u8]) -> Result<Option<Entry>, KvError> {
        match self.storage.get(CF_KV, raw_key)? {
            Some(bytes) => Ok(Some(Entry::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The live entry for a key: `None` when absent, deleted or expired.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        self.check_namespace(namespace)?;
        Self::validate_key(key)?;
        Ok(self.read(&storage_key(namespace, key))?.filter(|e| !e.is_tombstone() && !e.expired(now_secs())))
    }

    /// Writes a value with a new version; nothing is written when a limit is exceeded.
    pub fn put(&self, namespace: &str, key: &str, value: Vec<u8>, options: PutOptions) -> Result<Entry, KvError> {
        self.check_namespace(namespace)?;
        Self::validate_key(key)?;
        Self::check_sizes(value.len(), options.metadata.as_deref())?;
        if let Some(metadata) = &options.metadata {
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
        self.write_new(namespace, key, Some(value), options.metadata, expiration)
    }

    /// Writes a tombstone with a new version; returns it.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Entry, KvError> {
        self.check_namespace(namespace)?;
        Self::validate_key(key)?;
        self.write_new(namespace, key, None, None, None)
    }

    /// A local write: a fresh version, stored, then handed to replication.
    fn write_new(
        &self,
        namespace: &str,
        key: &str,
        value: Option<Vec<u8>>,
        metadata: Option<String>,
        expiration: Option<u64>,
    ) -> Result<Entry, KvError> {
        let entry = Entry {
            version: Version { hlc: self.clock.now(), node: self.node_id.to_string() },
            value,
            metadata,
            expiration,
        };
        self.commit(&storage_key(namespace, key), &entry)?;
        self.metrics.kv_local_writes.inc();
        let change = Change { namespace: namespace.to_string(), key: key.to_string(), entry: entry.clone() };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(change) {
            self.metrics.kv_outbox_dropped.inc();
        }
        Ok(entry)
    }

    /// Stores `entry` unless the stored version is at least as high; true when it was stored.
    /// The index row and the bucket digest change with it, under the key's lock.
    fn commit(&self, raw_key: &[u8], entry: &Entry) -> Result<bool, KvError> {
        let bucket = bucket_of(raw_key);
        let _guard = not_written(self.stripes[usize::from(bucket) % STRIPES].lock())?;
        let index = index_key(bucket, raw_key);
        let old = match self.storage.get(CF_KV_INDEX, &index)? {
            Some(bytes) => Some(
                Version::from_order_bytes(&bytes)
                    .ok_or_else(|| KvError::Corrupt("index entry without a version".into()))?,
            ),
            None => None,
        };
        if old.as_ref().is_some_and(|old| *old >= entry.version) {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.put(CF_KV, raw_key.to_vec(), entry.encode());
        batch.put(CF_KV_INDEX, index, entry.version.to_order_bytes());
        self.storage.write_unsynced(batch)?;
        self.digests.replace(bucket, raw_key, old.as_ref(), Some(&entry.version));
        Ok(true)
    }

    /// Applies an entry from another replica if its version is higher than ours; true when it
    /// won. The clock observes the remote version so later local writes order after it.
    ///
    /// A peer's entry is untrusted input: it passes the checks a local write passes (namespace
    /// id, key, value and metadata limits), and its clock may be at most `kv.max_clock_offset_ms`
    /// ahead of ours — a far-future version would win every later write and drag this node's
    /// clock along, so it is refused (`KvError::ClockSkew`) and nothing is written.
    pub fn merge(&self, namespace: &str, key: &str, remote: &Entry) -> Result<bool, KvError> {
        if namespace != NAMESPACES {
            Self::validate_namespace_id(namespace)?;
        }
        Self::validate_key(key)?;
        Self::check_sizes(remote.value.as_ref().map_or(0, Vec::len), remote.metadata.as_deref())?;
        let node = &remote.version.node;
        if node.is_empty() || node.len() > MAX_NODE_ID_BYTES {
            return Err(KvError::InvalidKey(format!("version from a node id of {} bytes", node.len())));
        }
        let ahead_ms = (remote.version.hlc >> hlc::LOGICAL_BITS).saturating_sub(hlc::wall_ms());
        if ahead_ms > self.max_clock_offset_ms {
            return Err(KvError::ClockSkew { node: node.clone(), ahead_ms, max_ms: self.max_clock_offset_ms });
        }
        self.clock.observe(remote.version.hlc);
        self.commit(&storage_key(namespace, key), remote)
    }

    /// Live keys with `prefix`, in order, at most `limit` (≤ 1000), after `cursor`.
    pub fn list(&self, namespace: &str, prefix: &str, limit: usize, cursor: Option<&str>) -> Result<ListPage, KvError> {
        self.check_namespace(namespace)?;
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
                if entry.is_tombstone() || entry.expired(now) {
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
        let mut purged = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self.storage.scan_prefix(CF_KV, b"", after.as_deref(), 1000)?;
            let Some((last, _)) = rows.last() else { return Ok(purged) };
            after = Some(last.clone());
            for (raw_key, raw) in rows {
                let entry = Entry::decode(&raw)?;
                let stale_tombstone = entry.is_tombstone() && entry.version.hlc < horizon;
                if (entry.expired(now) || stale_tombstone) && self.forget(&raw_key, &entry.version)? {
                    purged += 1;
                }
            }
        }
    }

    /// Deletes the entry at `raw_key` if it still has `version`: purging, or dropping what a
    /// replica kept past the tombstone grace (see [`KvStore::check_absence`]).
    pub fn forget(&self, raw_key: &[u8], version: &Version) -> Result<bool, KvError> {
        let bucket = bucket_of(raw_key);
        let _guard = not_written(self.stripes[usize::from(bucket) % STRIPES].lock())?;
        let index = index_key(bucket, raw_key);
        if self.storage.get(CF_KV_INDEX, &index)?.as_deref() != Some(&version.to_order_bytes()[..]) {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(CF_KV, raw_key.to_vec());
        batch.delete(CF_KV_INDEX, index);
        self.storage.write_unsynced(batch)?;
        self.digests.replace(bucket, raw_key, Some(version), None);
        Ok(true)
    }

    /// Records that this replica just completed an exchange with a peer: everything it held
    /// until now is on another node too.
    pub fn record_sync(&self) -> Result<(), KvError> {
        self.stale_before.store(0, Ordering::Relaxed);
        let mut batch = Batch::default();
        batch.put(CF_META, LAST_SYNC.to_vec(), self.clock.now().to_be_bytes().to_vec());
        Ok(self.storage.write_unsynced(batch)?)
    }

    /// Checks, at start, whether the last exchange is older than `tombstone_grace_ms`. If so
    /// the cluster may have purged tombstones of deletes this replica never saw: until its
    /// next complete exchange, entries it held then that a peer lacks were deleted (not lost)
    /// and are dropped, and peers are refused so they cannot pull such entries back in.
    /// Returns the clock reading of the last exchange when stale.
    pub fn check_absence(&self, tombstone_grace_ms: u64) -> Result<Option<u64>, KvError> {
        let Some(bytes) = self.storage.get(CF_META, LAST_SYNC)? else { return Ok(None) };
        let last = u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| KvError::Corrupt("last sync".into()))?);
        let horizon = self.clock.now().saturating_sub(tombstone_grace_ms << hlc::LOGICAL_BITS);
        let stale = (last < horizon).then_some(last);
        self.stale_before.store(stale.unwrap_or(0), Ordering::Relaxed);
        Ok(stale)
    }

    /// Entries at or before this clock reading may have been deleted elsewhere (0: none).
    pub fn stale_before(&self) -> u64 {
        self.stale_before.load(Ordering::Relaxed)
    }

    /// True while back from a long absence: peers must not copy from this replica yet.
    pub fn is_catching_up(&self) -> bool {
        self.stale_before() != 0
    }

    /// Syncs the writes made since the last call to disk.
    pub fn sync(&self) -> Result<(), KvError> {
        Ok(self.storage.sync_wal()?)
    }
}

#[cfg(test)]
mod tests;
