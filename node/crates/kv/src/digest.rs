//! A summary of a replica that two nodes compare to find what differs, cheaply.
//!
//! Keys fall into [`BUCKETS`] buckets by a hash of their storage key. A bucket's digest is
//! the XOR of one 64-bit hash per entry over (key, version): XOR needs no order, so the
//! digest is kept up to date in memory as entries change (take the old hash out, put the
//! new one in) and two replicas with the same entries have the same digests whatever order
//! the writes came in. The `kv_index` column family lists, per bucket, every key and its
//! version (`bucket ‖ storage key` → version), so the keys of a differing bucket are read
//! without scanning the replica.

use super::Version;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// Enough buckets that a few differences touch few of them; 8 KiB of digests per exchange.
pub const BUCKETS: usize = 1024;

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    let out = hasher.finalize();
    u64::from_le_bytes(out[..8].try_into().unwrap_or_default())
}

/// The bucket of a storage key.
pub fn bucket_of(storage_key: &[u8]) -> u16 {
    (hash64(&[storage_key]) % BUCKETS as u64) as u16
}

/// The hash an entry contributes to its bucket's digest.
pub fn entry_hash(storage_key: &[u8], version: &Version) -> u64 {
    hash64(&[storage_key, &version.to_order_bytes()])
}

/// The `kv_index` key of an entry.
pub fn index_key(bucket: u16, storage_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + storage_key.len());
    out.extend_from_slice(&bucket.to_be_bytes());
    out.extend_from_slice(storage_key);
    out
}

/// Every bucket's digest, and how many entries (tombstones included) the replica holds.
pub struct Digests {
    buckets: Vec<AtomicU64>,
    entries: AtomicU64,
}

impl Default for Digests {
    fn default() -> Self {
        Digests { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(), entries: AtomicU64::new(0) }
    }
}

impl Digests {
    /// Records that the entry at `storage_key` (in `bucket`, which the caller has from
    /// [`bucket_of`] or the index key) changed from `old` to `new` (either may be absent).
    /// Callers serialise changes to the same key.
    pub fn replace(&self, bucket: u16, storage_key: &[u8], old: Option<&Version>, new: Option<&Version>) {
        let bucket = &self.buckets[usize::from(bucket) % BUCKETS];
        if let Some(old) = old {
            bucket.fetch_xor(entry_hash(storage_key, old), Ordering::Relaxed);
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(new) = new {
            bucket.fetch_xor(entry_hash(storage_key, new), Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// One hash over every bucket: equal on two nodes when their replicas are equal.
    pub fn root(&self) -> u64 {
        let bytes: Vec<u8> = self.snapshot().iter().flat_map(|d| d.to_le_bytes()).collect();
        hash64(&[&bytes])
    }
}

/// The buckets whose digests differ; a missing or short remote list differs everywhere.
pub fn differing(local: &[u64], remote: &[u64]) -> Vec<u32> {
    (0..BUCKETS).filter(|i| local.get(*i) != remote.get(*i)).map(|i| i as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64) -> Version {
        Version { hlc, node: "n".into() }
    }

    #[test]
    fn digests_ignore_the_order_of_writes() {
        let (a, b) = (Digests::default(), Digests::default());
        let (x, y) = (bucket_of(b"ns\0x"), bucket_of(b"ns\0y"));
        a.replace(x, b"ns\0x", None, Some(&v(1)));
        a.replace(y, b"ns\0y", None, Some(&v(2)));
        a.replace(x, b"ns\0x", Some(&v(1)), Some(&v(3)));
        b.replace(y, b"ns\0y", None, Some(&v(2)));
        b.replace(x, b"ns\0x", None, Some(&v(3)));
        assert_eq!(a.snapshot(), b.snapshot());
        assert_eq!(a.root(), b.root());
        assert_eq!(a.entries(), 2);

        b.replace(x, b"ns\0x", Some(&v(3)), None);
        let diff = differing(&a.snapshot(), &b.snapshot());
        assert_eq!(diff, vec![u32::from(bucket_of(b"ns\0x"))]);
    }
}
