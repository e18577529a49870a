//! The Raft log and vote in RocksDB (`raft_log`, `raft_state`).
//!
//! Guarantees: an entry is readable as soon as `append` returns (it is in the memtable and
//! the WAL), and openraft is told it is durable only after the WAL has been synced. Syncs run
//! on one thread, in order, and one sync covers every append before it, so concurrent
//! appends share an fsync (group commit). The vote is synced before `save_vote` returns.

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use nimbus_storage::{Batch, Storage, WeakStorage, CF_RAFT_LOG, CF_RAFT_STATE};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, StorageIOError};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

#[derive(Clone)]
pub struct LogStore {
    storage: Storage,
    /// Appends waiting for their WAL sync; the sync thread answers them in order.
    flushes: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// The committed index as last saved, for status reports.
    committed: Arc<AtomicU64>,
}

fn read_error(subject: ErrorSubject<u64>, error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Read, openraft::AnyError::new(&error)).into()
}

fn write_error(subject: ErrorSubject<u64>, error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::new(&error)).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(storage: Storage) -> Result<Self, StorageError> {
        let (flushes, pending) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let syncing = storage.downgrade();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(syncing, pending))
            .map_err(|e| write_error(ErrorSubject::Logs, e))?;
        let store = LogStore { storage, flushes, committed: Arc::default() };
        if let Some(committed) = store.read_state::<LogId>(COMMITTED)? {
            store.committed.store(committed.index, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The committed index as openraft last reported it.
    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    fn read_state<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.storage.get(CF_RAFT_STATE, key).map_err(|e| read_error(ErrorSubject::Store, e))? else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes).map(Some).map_err(|e| read_error(ErrorSubject::Store, e))
    }

    fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
        postcard::to_allocvec(value).map_err(|e| write_error(ErrorSubject::Store, e))
    }
}

/// Answers appends once the WAL holding them is synced, batching every append that queued
/// up during the previous sync into the next one. It holds the database only while syncing,
/// and lets go before answering, so the store closes with the last `LogStore`, not here.
fn sync_loop(storage: WeakStorage, pending: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = pending.recv() {
        let mut waiting = vec![first];
        waiting.extend(pending.try_iter());
        let synced = match storage.upgrade() {
            Some(storage) => storage.sync_wal().map_err(std::io::Error::other),
            None => Err(std::io::Error::other("the log store is closed")),
        };
        for callback in waiting {
            callback.log_io_completed(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let rows = self
            .storage
            .scan_range(CF_RAFT_LOG, &index_key(start), &index_key(end))
            .map_err(|e| read_error(ErrorSubject::Logs, e))?;
        rows.iter()
            .map(|(_, value)| postcard::from_bytes::<Entry>(value).map_err(|e| read_error(ErrorSubject::Logs, e)))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.read_state::<LogId>(PURGED)?;
        let last = self.storage.last(CF_RAFT_LOG).map_err(|e| read_error(ErrorSubject::Logs, e))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry = postcard::from_bytes(&value).map_err(|e| read_error(ErrorSubject::Logs, e))?;
                Some(*entry.get_log_id())
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.put(CF_RAFT_STATE, VOTE, Self::encode(vote)?);
        self.storage.write(batch).map_err(|e| write_error(ErrorSubject::Vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(committed) = committed else { return Ok(()) };
        self.committed.store(committed.index, Ordering::Relaxed);
        let mut batch = Batch::default();
        batch.put(CF_RAFT_STATE, COMMITTED, Self::encode(&committed)?);
        self.storage.write_unsynced(batch).map_err(|e| write_error(ErrorSubject::Store, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_state(COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::default();
        for entry in entries {
            batch.put(CF_RAFT_LOG, index_key(entry.get_log_id().index), Self::encode(&entry)?);
        }
        self.storage.write_unsynced(batch).map_err(|e| write_error(ErrorSubject::Logs, e))?;
        self.flushes
            .send(callback)
            .map_err(|_| write_error(ErrorSubject::Logs, std::io::Error::other("the log sync thread has stopped")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.delete_range(CF_RAFT_LOG, index_key(log_id.index), index_key(u64::MAX));
        batch.delete(CF_RAFT_LOG, index_key(u64::MAX));
        self.storage.write(batch).map_err(|e| write_error(ErrorSubject::Logs, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.put(CF_RAFT_STATE, PURGED, Self::encode(&log_id)?);
        batch.delete_range(CF_RAFT_LOG, index_key(0), index_key(log_id.index.saturating_add(1)));
        self.storage.write(batch).map_err(|e| write_error(ErrorSubject::Logs, e))
    }
}
