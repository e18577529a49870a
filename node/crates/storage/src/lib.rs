//! The node's durable state in one RocksDB database.
//!
//! Owns the column families every subsystem writes to and guarantees that what a caller
//! writes in one [`Storage::write`] batch lands atomically and survives a crash (WAL, synced
//! on every batch). Subsystems keep their own keys inside their own column family.
//!
//! # Layout
//! - `deployments`: worker name → the deployment the node serves (see `deploy`).
//! - `meta`: small node-wide records such as the last applied watch sequence.
//! - `kv`: Workers KV entries, `namespace \0 key` → versioned entry (see `kv`).
//! - `kv_index`: `bucket ‖ namespace \0 key` → version, what anti-entropy compares.
//! - `raft_log`: D1's Raft log, big-endian index → entry (see `d1::log_store`).
//! - `raft_state`: D1's vote, committed and purged log ids, and the state machine's applied id.
//! - `durable`: Durable Object storage, `object id ‖ 0 ‖ key` → value, `object id ‖ 1` → alarm.

mod error;

pub use error::StorageError;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use std::path::Path;
use std::sync::{Arc, Weak};

pub const CF_DEPLOYMENTS: &str = "deployments";
pub const CF_META: &str = "meta";
pub const CF_KV: &str = "kv";
pub const CF_KV_INDEX: &str = "kv_index";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_DURABLE: &str = "durable";
const COLUMN_FAMILIES: [&str; 7] =
    [CF_DEPLOYMENTS, CF_META, CF_KV, CF_KV_INDEX, CF_RAFT_LOG, CF_RAFT_STATE, CF_DURABLE];

#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
}

/// See [`Storage::downgrade`].
pub struct WeakStorage {
    db: Weak<DB>,
}

impl WeakStorage {
    /// The database, if some [`Storage`] still holds it open.
    pub fn upgrade(&self) -> Option<Storage> {
        self.db.upgrade().map(|db| Storage { db })
    }
}

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One atomic set of puts and deletes across column families.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
}

enum Op {
    Put { cf: &'static str, key: Vec<u8>, value: Vec<u8> },
    Delete { cf: &'static str, key: Vec<u8> },
    DeleteRange { cf: &'static str, start: Vec<u8>, end: Vec<u8> },
}

impl Batch {
    pub fn put(&mut self, cf: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, cf: &'static str, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { cf, key: key.into() });
    }

    /// Deletes every key with `start <= key < end`.
    pub fn delete_range(&mut self, cf: &'static str, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange { cf, start: start.into(), end: end.into() });
    }
}

impl Storage {
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io { path: dir.to_owned(), source })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        let cfs = COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&options, dir, cfs)?;
        Ok(Storage { db: Arc::new(db) })
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Every (key, value) of a column family, in key order.
    pub fn scan(&self, cf: &'static str) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        self.db
            .iterator_cf(handle, rocksdb::IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StorageError::from))
            .collect()
    }

    /// Up to `limit` entries whose key starts with `prefix` and sorts after `after` (or from
    /// the start of the prefix), in key order.
    pub fn scan_prefix(
        &self,
        cf: &'static str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let start = after.unwrap_or(prefix);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            if after.is_some_and(|a| &*key == a) {
                continue;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Every (key, value) with `start <= key < end`, in key order.
    pub fn scan_range(&self, cf: &'static str, start: &[u8], end: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            if &*key >= end {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Up to `limit` entries with `start <= key < end`, greatest key first.
    pub fn scan_range_rev(
        &self,
        cf: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, rocksdb::IteratorMode::From(end, rocksdb::Direction::Reverse)) {
            let (key, value) = item?;
            if &*key >= end {
                continue;
            }
            if &*key < start || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// The entry with the greatest key, if any.
    pub fn last(&self, cf: &'static str) -> Result<Option<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        match self.db.iterator_cf(handle, rocksdb::IteratorMode::End).next() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((key.to_vec(), value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Applies `batch` atomically and syncs the WAL before returning.
    pub fn write(&self, batch: Batch) -> Result<(), StorageError> {
        self.write_with(batch, true)
    }

    /// Applies `batch` atomically without waiting for the disk: it survives a crash of the
    /// process at once, and a crash of the machine after the next [`Storage::sync_wal`].
    pub fn write_unsynced(&self, batch: Batch) -> Result<(), StorageError> {
        self.write_with(batch, false)
    }

    /// Syncs what [`Storage::write_unsynced`] left in the WAL.
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// A handle that does not keep the database open, for helper threads: the database then
    /// closes on the thread that drops the last [`Storage`], never on a helper racing exit.
    pub fn downgrade(&self) -> WeakStorage {
        WeakStorage { db: Arc::downgrade(&self.db) }
    }

    fn write_with(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                Op::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                Op::DeleteRange { cf, start, end } => wb.delete_range_cf(self.cf(cf)?, start, end),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        Ok(self.db.write_opt(wb, &options)?)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or(StorageError::MissingColumnFamily(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_reopen_and_deletes_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let storage = Storage::open(dir.path()).expect("open");
            let mut batch = Batch::default();
            batch.put(CF_META, "a", "1");
            batch.put(CF_DEPLOYMENTS, "hello", "v1");
            batch.put(CF_DEPLOYMENTS, "gone", "v1");
            storage.write(batch).expect("write");
            let mut batch = Batch::default();
            batch.delete(CF_DEPLOYMENTS, "gone");
            storage.write(batch).expect("write");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        assert_eq!(storage.get(CF_META, b"a").expect("get"), Some(b"1".to_vec()));
        let rows = storage.scan(CF_DEPLOYMENTS).expect("scan");
        assert_eq!(rows, vec![(b"hello".to_vec(), b"v1".to_vec())]);
    }
}
