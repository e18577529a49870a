//! The D1 state machine: one SQLite file per database, fed by the Raft log.
//!
//! Guarantees: entries apply in log order, each database's share of an entry in one SQLite
//! transaction that also records the entry's index, so a replay after a crash skips what a
//! file already holds. A snapshot is a copy of every database taken with SQLite's backup API
//! while applies wait, so it matches exactly the applied id it is labelled with; installing
//! one writes each database as a new file generation and swaps it in, so reads in flight
//! finish on the old files.

use super::app::Applications;
use super::sqlite::{self, Database};
use super::types::{
    Applied, Command, Entry, LogId, Outcome, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use nimbus_storage::{Batch, Storage, CF_RAFT_STATE};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, StorageIOError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// `raft_state` key of the applied log id and membership.
const APPLIED: &[u8] = b"sm_applied";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// What a snapshot's bytes hold: this image, then (since applications share the group)
/// [`AppImages`] right after it. Postcard writes a struct as its fields one after the other,
/// so a snapshot made before applications existed is this image alone, and still reads.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotImage {
    /// Database name → the bytes of its SQLite file.
    databases: Vec<(String, Vec<u8>)>,
}

/// Application name → its snapshot image.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct AppImages(Vec<(String, Vec<u8>)>);

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    storage: Storage,
    databases: RwLock<BTreeMap<String, Arc<Database>>>,
    /// Held while entries apply and while a snapshot is taken or installed.
    applying: Mutex<Applying>,
    /// The next file generation (see [`sqlite::file_path`]).
    generation: AtomicU64,
    /// The last applied index, for readers waiting on a bookmark.
    applied_index: watch::Sender<u64>,
    snapshots_installed: AtomicU64,
    apps: Applications,
}

struct Applying {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, error: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::error(error.to_string())).into()
}

fn sm_error(verb: ErrorVerb, error: impl std::fmt::Display) -> StorageError {
    io_error(ErrorSubject::StateMachine, verb, error)
}

impl StateMachine {
    /// Opens every database in `dir` (the newest generation of each) and the applied state;
    /// `apps` receive their commands (they open their own state).
    pub fn open(dir: &Path, storage: Storage, apps: Applications) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        let mut files = Vec::new();
        for item in std::fs::read_dir(dir).map_err(|e| sm_error(ErrorVerb::Read, e))? {
            let item = item.map_err(|e| sm_error(ErrorVerb::Read, e))?;
            let file_name = item.file_name().to_string_lossy().into_owned();
            if let Some((name, generation)) = sqlite::parse_file_name(&file_name) {
                let best = newest.entry(name.clone()).or_insert(generation);
                *best = (*best).max(generation);
                files.push((name, generation));
            }
        }
        let mut databases = BTreeMap::new();
        let mut max_generation = 0;
        for (name, generation) in files {
            let Some(path) = sqlite::file_path(dir, &name, generation) else { continue };
            max_generation = max_generation.max(generation);
            if newest.get(&name) != Some(&generation) {
                sqlite::remove_files(&path);
                continue;
            }
            let database = Database::open(&name, path).map_err(|e| sm_error(ErrorVerb::Read, e))?;
            databases.insert(name, Arc::new(database));
        }
        let (last_applied, membership) = match storage.get(CF_RAFT_STATE, APPLIED) {
            Ok(Some(bytes)) => postcard::from_bytes(&bytes).map_err(|e| sm_error(ErrorVerb::Read, e))?,
            Ok(None) => (None, StoredMembership::default()),
            Err(e) => return Err(sm_error(ErrorVerb::Read, e)),
        };
        let applied_index = watch::Sender::new(last_applied.map_or(0, |id: LogId| id.index));
        Ok(StateMachine {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                storage,
                databases: RwLock::new(databases),
                applying: Mutex::new(Applying { last_applied, membership }),
                generation: AtomicU64::new(max_generation + 1),
                applied_index,
                snapshots_installed: AtomicU64::new(0),
                apps,
            }),
        })
    }

    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.inner.databases.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn databases(&self) -> Vec<Arc<Database>> {
        self.inner.databases.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The last applied index.
    pub fn applied_now(&self) -> u64 {
        *self.inner.applied_index.borrow()
    }

    /// Follows the applied index.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.inner.applied_index.subscribe()
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.inner.snapshots_installed.load(Ordering::Relaxed)
    }

    fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<Applied>, StorageError> {
        let mut applying = self.inner.applying.lock().unwrap_or_else(|p| p.into_inner());
        let mut replies = Vec::with_capacity(entries.len());
        for entry in entries {
            let log_id = *entry.get_log_id();
            let reply = match entry.payload {
                EntryPayload::Blank => Applied::Nothing,
                EntryPayload::Membership(membership) => {
                    applying.membership = StoredMembership::new(Some(log_id), membership);
                    Applied::Nothing
                }
                EntryPayload::Normal(command) => self.apply_command(log_id.index, command)?,
            };
            applying.last_applied = Some(log_id);
            replies.push(reply);
        }
        self.persist_applied(&applying, false)?;
        if let Some(id) = applying.last_applied {
            self.inner.applied_index.send_replace(id.index);
        }
        Ok(replies)
    }

    /// Records the applied log id and membership, read back by [`StateMachine::open`]. After
    /// applies it need not be synced: each database file records its own applied index, so a
    /// replay after a crash skips what a file already holds.
    fn persist_applied(&self, applying: &Applying, sync: bool) -> Result<(), StorageError> {
        let state = (applying.last_applied, applying.membership.clone());
        let mut batch = Batch::default();
        batch.put(CF_RAFT_STATE, APPLIED, postcard::to_allocvec(&state).map_err(|e| sm_error(ErrorVerb::Write, e))?);
        let written = if sync { self.inner.storage.write(batch) } else { self.inner.storage.write_unsynced(batch) };
        written.map_err(|e| sm_error(ErrorVerb::Write, e))
    }

    pub(crate) fn apply_command(&self, index: u64, command: Command) -> Result<Applied, StorageError> {
        match command {
            Command::CreateDatabase { name } => {
                if self.database(&name).is_some() {
                    return Ok(Applied::Database { created: false });
                }
                // A proposal is checked where it arrives, but the log is what every replica
                // applies: a name that slipped past (a forged or older leader) is refused
                // here, the same way on every replica, and touches no file.
                let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
                let Some(path) = sqlite::file_path(&self.inner.dir, &name, generation) else {
                    tracing::warn!(index, name = %name.escape_debug(), "refused to create a database with an invalid name");
                    return Ok(Applied::Refused { reason: format!("invalid database name {:?}", name) });
                };
                let database = Database::open(&name, path).map_err(|e| sm_error(ErrorVerb::Write, e))?;
                self.inner.databases.write().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(database));
                Ok(Applied::Database { created: true })
            }
            Command::Writes(requests) => self.apply_writes(index, requests, sqlite::Budget::default()),
            Command::BudgetedWrites { budget, requests } => self.apply_writes(index, requests, budget),
            Command::App { app, command } => match self.apply_app(index, &app, &[command])? {
                Applied::Apps(mut replies) if replies.len() == 1 => Ok(Applied::App(replies.remove(0))),
                other => Ok(other),
            },
            Command::Apps { app, commands } => self.apply_app(index, &app, &commands),
        }
    }

    fn apply_app(&self, index: u64, app: &str, commands: &[Vec<u8>]) -> Result<Applied, StorageError> {
        let Some(application) = self.inner.apps.get(app) else {
            tracing::warn!(index, app = %app.escape_debug(), "refused a command for an unknown application");
            return Ok(Applied::Refused { reason: format!("no application {app:?} in this group") });
        };
        let replies = application.apply(index, commands).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        if replies.len() != commands.len() {
            let error = format!("application {app:?} answered {} of {} commands", replies.len(), commands.len());
            return Err(sm_error(ErrorVerb::Write, error));
        }
        Ok(Applied::Apps(replies))
    }

    fn apply_writes(
        &self,
        index: u64,
        requests: Vec<super::types::WriteRequest>,
        budget: sqlite::Budget,
    ) -> Result<Applied, StorageError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        let mut by_database: BTreeMap<&str, Vec<(usize, &_)>> = BTreeMap::new();
        for (ordinal, request) in requests.iter().enumerate() {
            by_database.entry(request.database.as_str()).or_default().push((ordinal, request));
        }
        for (name, group) in by_database {
            let Some(database) = self.database(name) else {
                for (ordinal, _) in group {
                    outcomes[ordinal] = Some(Outcome::UnknownDatabase);
                }
                continue;
            };
            let applied = database.apply(index, &group, budget).map_err(|e| sm_error(ErrorVerb::Write, e))?;
            for ((ordinal, _), outcome) in group.iter().zip(applied) {
                outcomes[*ordinal] = Some(outcome);
            }
        }
        Ok(Applied::Writes(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Script(0))).collect()))
    }

    /// Copies every database while applies wait, and stores the result as the current snapshot.
    fn build(&self) -> Result<Snapshot, StorageError> {
        let applying = self.inner.applying.lock().unwrap_or_else(|p| p.into_inner());
        let scratch = self.inner.dir.join("snapshot-build");
        std::fs::create_dir_all(&scratch).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let mut databases = Vec::new();
        for database in self.databases() {
            let copy = scratch.join(format!("{}.sqlite", database.name));
            sqlite::remove_files(&copy);
            database.backup_to(&copy).map_err(|e| sm_error(ErrorVerb::Read, e))?;
            let bytes = std::fs::read(&copy).map_err(|e| sm_error(ErrorVerb::Read, e))?;
            sqlite::remove_files(&copy);
            databases.push((database.name.clone(), bytes));
        }
        let mut apps = AppImages::default();
        for (name, application) in &self.inner.apps {
            apps.0.push((name.clone(), application.snapshot().map_err(|e| sm_error(ErrorVerb::Read, e))?));
        }
        let mut data =
            postcard::to_allocvec(&SnapshotImage { databases }).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        data.extend(postcard::to_allocvec(&apps).map_err(|e| sm_error(ErrorVerb::Write, e))?);
        let snapshot_id = match applying.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: applying.last_applied,
            last_membership: applying.membership.clone(),
            snapshot_id,
        };
        drop(applying);
        self.store_snapshot(&meta, &data)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }

    fn store_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let stored = StoredSnapshot { meta: meta.clone(), data: data.to_vec() };
        let bytes =
            postcard::to_allocvec(&stored).map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let path = self.inner.dir.join(SNAPSHOT_FILE);
        let temp = self.inner.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.inner.dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
        };
        let stored: StoredSnapshot =
            postcard::from_bytes(&bytes).map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }

    /// Replaces every database with the snapshot's copies.
    fn install(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), StorageError> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let (image, rest): (SnapshotImage, &[u8]) =
            postcard::take_from_bytes(&data).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?;
        let apps: AppImages = if rest.is_empty() {
            AppImages::default()
        } else {
            postcard::from_bytes(rest).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
        };
        let mut applying = self.inner.applying.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let mut fresh = BTreeMap::new();
        for (name, bytes) in image.databases {
            let Some(path) = sqlite::file_path(&self.inner.dir, &name, generation) else {
                tracing::error!(name = %name.escape_debug(), "snapshot holds a database with an invalid name, skipped");
                continue;
            };
            sqlite::remove_files(&path);
            std::fs::write(&path, &bytes).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
            let database = Database::open(&name, path).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
            fresh.insert(name, Arc::new(database));
        }
        let old = std::mem::replace(&mut *self.inner.databases.write().unwrap_or_else(|p| p.into_inner()), fresh);
        for database in old.values() {
            sqlite::remove_files(database.path());
        }
        for (name, application) in &self.inner.apps {
            let image = apps.0.iter().find(|(app, _)| app == name).map(|(_, image)| image.as_slice());
            application.restore(image).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        }
        applying.last_applied = meta.last_log_id;
        applying.membership = meta.last_membership.clone();
        self.persist_applied(&applying, true)?;
        drop(applying);
        self.store_snapshot(meta, &data)?;
        self.inner.applied_index.send_replace(meta.last_log_id.map_or(0, |id| id.index));
        self.inner.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a D1 snapshot");
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| sm_error(ErrorVerb::Write, e))?
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let sm = self.clone();
        blocking(move || sm.build()).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applying = self.inner.applying.lock().unwrap_or_else(|p| p.into_inner());
        Ok((applying.last_applied, applying.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let sm = self.clone();
        super::short_blocking(move || sm.apply_entries(entries)).await.map_err(|e| sm_error(ErrorVerb::Write, e))?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let (sm, meta) = (self.clone(), meta.clone());
        blocking(move || sm.install(&meta, snapshot.into_inner())).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let sm = self.clone();
        blocking(move || sm.current_snapshot()).await
    }
}
