//! D1: SQLite databases behind one Raft group (openraft), with a read replica on every node.
//!
//! Owns the `raft_log` and `raft_state` column families and the SQLite files under
//! `<data_dir>/d1`. Guarantees:
//! - a write is acknowledged only once its log entry is committed by a quorum of voters and
//!   applied on the leader; its reply carries a bookmark (the entry's index);
//! - any node accepts writes and forwards them to the leader; a retry after a leader change
//!   carries the same request id and is answered from the record, never applied twice;
//! - a write (`query`, `batch`, `exec`) applies all its statements or none, and every replica
//!   ends with the same rows, also for `random()` or `datetime('now')` (see [`sqlite`]);
//! - a read without a session has primary semantics, as on Cloudflare: the leader runs it
//!   after its read index (confirmed by a quorum), so it sees every write acknowledged
//!   before it, through any node;
//! - a read may instead run on the local replica at the consistency the caller picks:
//!   `local` (as is, with its staleness reported), `bookmark` (after this replica applied
//!   the bookmark; a session's every query after its first) or `linearizable` (after the
//!   leader's read index);
//! - a replica that is far behind (or new) receives a snapshot made with SQLite's backup API.
//!
//! # Layout
//! - [`types`]: log entries, replies and the Raft type configuration.
//! - [`log_store`]: the Raft log and vote in RocksDB.
//! - [`state_machine`]: applies entries to the SQLite files; snapshots.
//! - [`sqlite`]: one database: deterministic execution, limits, read connections, checksum.
//! - [`network`]: Raft RPCs and forwarded writes over the `D1Peer` gRPC service (the client
//!   half); [`server`]: its server half.
//! - [`forward`]: writes forwarded to the leader, as they cross the wire.
//! - [`status`]: this node's view of the group.
//! - [`batcher`]: the leader's actor that groups concurrent writes into log entries.
//! - [`read_index`]: the leader's actor that lets concurrent reads share one quorum round.
//! - [`group`]: forms the group from the configured voters and adds every other node as a
//!   learner, following gossip.
//! - [`app`]: other state machines (R2's metadata) that share the group and its log.
//! - [`D1Error`]: what the caller should do about a failure.

pub mod app;
mod batcher;
mod error;
mod forward;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod group;
// openraft's `StorageError` (224 bytes) is what its storage traits return; boxing it in our
// helpers would only move the allocation.
#[allow(clippy::result_large_err)]
mod log_store;
mod network;
mod read_index;
pub mod server;
mod sqlite;
#[allow(clippy::result_large_err)]
mod state_machine;
mod status;
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests;
mod types;

pub use error::D1Error;
pub use forward::{PrimaryRead, Proposal, Proposed, RemoteError};
pub use sqlite::Budget;
pub use status::D1Status;
pub use types::{QueryResult, Statement, Value};

use log_store::LogStore;
use network::{AddressBook, Method, Network};
use nimbus_cluster::peers::PeerChannels;
use nimbus_util::config::{D1Config, D1Role};
use nimbus_util::tasks::Tasks;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use state_machine::StateMachine;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use types::{D1Node, Outcome, Raft, WriteKind, WriteReply, WriteRequest};

/// Longest `exec` script.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

pub use nimbus_api::d1::{Consistency, DatabaseInfo};

/// The answer to a query or batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryReply {
    pub results: Vec<QueryResult>,
    /// For a write, its commit index; for a read, what the serving replica had applied.
    /// Either way, a later read with it as bookmark sees at least this state.
    pub bookmark: u64,
    /// The node whose SQLite answered (the leader, for a write or a primary read).
    pub served_by: String,
    /// That node's region.
    pub served_by_region: String,
    /// Whether the leader answered, after confirming with a quorum that it leads.
    pub served_by_primary: bool,
    pub wrote: bool,
    /// For a read: how long since this replica last heard from a leader (ms), if ever.
    pub staleness_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct D1Settings {
    /// This node's region, reported with every reply it serves.
    pub region: String,
    pub role: D1Role,
    pub bootstrap_expect: usize,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    /// Each statement's work and answer budget (reads here; writes carry the leader's).
    pub budget: sqlite::Budget,
}

/// The handle every front end (REST, worker bindings, peers) uses.
#[derive(Clone)]
pub struct D1 {
    inner: Arc<Inner>,
}

struct Inner {
    me: D1Node,
    id: u64,
    raft: Raft,
    sm: StateMachine,
    log: LogStore,
    network: Network,
    settings: D1Settings,
    /// Writes for the leader's batcher (only drained while this node leads).
    batcher: mpsc::Sender<batcher::Input>,
    /// Read-index requests for the leader's confirmation rounds.
    read_index: mpsc::Sender<read_index::Input>,
    /// The low half of the next request id (see [`D1::next_request_id`]).
    request_sequence: std::sync::atomic::AtomicU64,
    /// When a leader last reached this node (append or heartbeat), for reported staleness.
    leader_contact: Mutex<Option<Instant>>,
}

fn raft_config(config: &D1Config) -> Result<openraft::Config, D1Error> {
    let election = config.election_timeout_ms.max(10);
    let raft = openraft::Config {
        cluster_name: "nimbus-d1".into(),
        heartbeat_interval: config.heartbeat_ms.max(5),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs.max(1)),
        max_in_snapshot_log_to_keep: config.keep_logs,
        max_payload_entries: 512,
        ..Default::default()
    };
    raft.validate().map_err(|e| D1Error::Invalid(format!("d1 settings: {e}")))
}

impl D1 {
    /// Opens the log and the databases and starts this node's Raft member and batcher.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: &D1Config,
        region: &str,
        ack_before_commit: bool,
        data_dir: &Path,
        storage: nimbus_storage::Storage,
        me: D1Node,
        peers: PeerChannels,
        apps: app::Applications,
        tasks: &Tasks,
    ) -> Result<D1, D1Error> {
        let id = types::raft_id(&me.name);
        let log = LogStore::open(storage.clone()).map_err(D1Error::internal)?;
        let sm = StateMachine::open(&data_dir.join("d1"), storage, apps).map_err(D1Error::internal)?;
        let network = Network { peers, book: AddressBook::default(), metrics: Arc::default(), acks: Arc::default() };
        let raft = Raft::new(id, Arc::new(raft_config(config)?), network.clone(), log.clone(), sm.clone())
            .await
            .map_err(D1Error::internal)?;
        let _ = network.metrics.set(raft.metrics());
        let (batcher, inputs) = mpsc::channel(16_384);
        if ack_before_commit {
            tracing::error!("admin.unsafe_ack_d1_before_commit is set: D1 acknowledges writes before they commit");
        }
        let read_timeout = Duration::from_millis(config.read_timeout_ms.max(1));
        let (read_index, confirmations) = mpsc::channel(read_index::MAX_WAITING);
        {
            let raft = raft.clone();
            tasks.spawn("d1-read-index", move |shutdown| read_index::run(raft, confirmations, read_timeout, shutdown));
        }
        let budget = sqlite::Budget {
            max_vm_steps: config.max_vm_steps.max(1),
            max_row_bytes: sqlite::MAX_VALUE_BYTES as u64,
            max_result_bytes: config.max_result_bytes.max(1),
        };
        {
            let raft = raft.clone();
            tasks.spawn("d1-batcher", move |shutdown| batcher::run(raft, inputs, ack_before_commit, budget, shutdown));
        }
        let settings = D1Settings {
            region: region.to_owned(),
            role: config.role,
            bootstrap_expect: config.bootstrap_expect.max(1),
            write_timeout: Duration::from_millis(config.write_timeout_ms.max(1)),
            read_timeout,
            budget,
        };
        Ok(D1 {
            inner: Arc::new(Inner {
                me,
                id,
                raft,
                sm,
                log,
                network,
                settings,
                batcher,
                read_index,
                request_sequence: std::sync::atomic::AtomicU64::new(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0),
                ),
                leader_contact: Mutex::new(None),
            }),
        })
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn address_book(&self) -> &AddressBook {
        &self.inner.network.book
    }

    pub fn settings(&self) -> &D1Settings {
        &self.inner.settings
    }

    pub fn me(&self) -> &D1Node {
        &self.inner.me
    }

    /// Stops the Raft member (on node shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }

    /// Notes that a leader just reached this node; a quorum last backed that leader
    /// `quorum_age_ms` ago, which is how fresh this replica now is.
    pub fn heard_from_leader(&self, quorum_age_ms: u64) {
        let fresh_at = Instant::now().checked_sub(Duration::from_millis(quorum_age_ms));
        let mut contact = self.inner.leader_contact.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = fresh_at {
            if contact.is_none_or(|previous| at > previous) {
                *contact = Some(at);
            }
        }
    }

    fn staleness_ms(&self) -> Option<u64> {
        let leads = self.inner.raft.metrics().borrow().state == ServerState::Leader;
        if leads {
            return self.inner.network.quorum_age_ms();
        }
        let contact = *self.inner.leader_contact.lock().unwrap_or_else(|p| p.into_inner());
        contact.map(|at| at.elapsed().as_millis() as u64)
    }

    fn leader(&self) -> Option<(u64, Option<D1Node>)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader).cloned();
        Some((leader, node))
    }

    pub fn database_names(&self) -> Vec<String> {
        self.inner.sm.databases().iter().map(|d| d.name.clone()).collect()
    }

    pub fn has_database(&self, name: &str) -> bool {
        self.inner.sm.database(name).is_some()
    }

    pub fn list(&self) -> Vec<DatabaseInfo> {
        self.inner
            .sm
            .databases()
            .iter()
            .map(|d| DatabaseInfo {
                name: d.name.clone(),
                size_bytes: d.size(),
                applied_index: d.applied_index().unwrap_or(0),
            })
            .collect()
    }

    /// Creates a database (through the leader); `Ok(false)` if it already existed.
    pub async fn create(&self, name: &str) -> Result<(bool, u64), D1Error> {
        validate_name(name)?;
        if self.has_database(name) {
            return Ok((false, self.inner.sm.applied_now()));
        }
        match self.propose(Proposal::Create(name.to_owned())).await? {
            Proposed::Created { created, bookmark } => Ok((created, bookmark)),
            other => Err(D1Error::Internal(format!("creation answered with {other:?}"))),
        }
    }

    /// Runs statements: reads on this replica at `consistency`, writes through the leader.
    pub async fn query(
        &self,
        database: &str,
        statements: Vec<Statement>,
        consistency: Consistency,
        bookmark: Option<u64>,
    ) -> Result<QueryReply, D1Error> {
        check_request(database, &statements)?;
        self.wait_for(consistency, bookmark).await?;
        let db = match self.inner.sm.database(database) {
            Some(db) => db,
            None => {
                // Perhaps just created and not yet applied here: catch up with the leader once.
                let index = self.read_index().await?;
                self.wait_applied(index).await?;
                self.inner.sm.database(database).ok_or_else(|| D1Error::UnknownDatabase(database.to_owned()))?
            }
        };
        // Deciding costs a cached prepare, so it runs here; only an actual read leaves the
        // async thread (and a write goes straight to the leader).
        let read_only = db.reads_only(&statements).map_err(D1Error::from)?;
        if !read_only {
            let (reply, leader, region) = self.write(database, WriteKind::Statements(statements)).await?;
            return match reply.outcome {
                Outcome::Statements(results) => Ok(QueryReply {
                    results,
                    bookmark: reply.bookmark,
                    served_by: leader,
                    served_by_region: region,
                    served_by_primary: true,
                    wrote: true,
                    staleness_ms: None,
                }),
                Outcome::Failed(f) => Err(f.into()),
                Outcome::UnknownDatabase => Err(D1Error::UnknownDatabase(database.to_owned())),
                Outcome::Script(_) => Err(D1Error::Internal("statements answered as a script".into())),
            };
        }
        if consistency == Consistency::Primary {
            return self.read_on_primary(PrimaryRead { database: database.to_owned(), statements }).await;
        }
        let primary = consistency == Consistency::Linearizable && self.leads();
        self.read_here(db, statements, primary, self.staleness_ms()).await
    }

    /// Runs a read on this replica as it stands; the reply names this node.
    async fn read_here(
        &self,
        db: Arc<sqlite::Database>,
        statements: Vec<Statement>,
        served_by_primary: bool,
        staleness_ms: Option<u64>,
    ) -> Result<QueryReply, D1Error> {
        let applied = self.inner.sm.applied_now();
        let budget = self.inner.settings.budget;
        let results = short_blocking(move || db.read(&statements, budget)).await?.map_err(D1Error::from)?;
        Ok(QueryReply {
            results,
            bookmark: applied,
            served_by: self.inner.me.name.clone(),
            served_by_region: self.inner.settings.region.clone(),
            served_by_primary,
            wrote: false,
            staleness_ms,
        })
    }

    pub fn leads(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// A read with primary semantics: run by the leader once it has applied its read index,
    /// forwarded there from any other node (a read is safe to send again).
    async fn read_on_primary(&self, read: PrimaryRead) -> Result<QueryReply, D1Error> {
        let read = &read;
        self.follow_leader(self.inner.settings.read_timeout, |leader, remaining| async move {
            match leader {
                None => self.read_as_primary(read).await,
                Some(node) => self.call_leader(&node, Method::Read, read, remaining).await,
            }
        })
        .await
    }

    /// Runs a read on this node, which must lead (else `ForwardToLeader`), once it has
    /// applied its read index. `read` may come from a peer: it is checked like a client's.
    pub async fn read_as_primary(&self, read: &PrimaryRead) -> Result<QueryReply, D1Error> {
        check_request(&read.database, &read.statements)?;
        let index = self.read_index_here().await?;
        self.wait_applied(index).await?;
        let db =
            self.inner.sm.database(&read.database).ok_or_else(|| D1Error::UnknownDatabase(read.database.clone()))?;
        // The read connection is read-only: a statement that would write fails here.
        self.read_here(db, read.statements.clone(), true, Some(0)).await
    }

    /// Runs a `;`-separated script without parameters as one write (D1's `exec`).
    pub async fn exec(&self, database: &str, script: &str) -> Result<(u32, u64), D1Error> {
        validate_name(database)?;
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(D1Error::TooLarge { what: "the script", size: script.len(), limit: MAX_SCRIPT_BYTES });
        }
        let (reply, _, _) = self.write(database, WriteKind::Script(script.to_owned())).await?;
        match reply.outcome {
            Outcome::Script(count) => Ok((count, reply.bookmark)),
            Outcome::UnknownDatabase => Err(D1Error::UnknownDatabase(database.to_owned())),
            Outcome::Failed(f) => Err(f.into()),
            Outcome::Statements(_) => Err(D1Error::Internal("a script answered as statements".into())),
        }
    }

    /// A write through the leader: its reply, and the leader's name and region.
    async fn write(&self, database: &str, kind: WriteKind) -> Result<(WriteReply, String, String), D1Error> {
        let request = WriteRequest { id: self.next_request_id(), database: database.to_owned(), time_ms: 0, kind };
        match self.propose(Proposal::Write(request)).await? {
            Proposed::Write { reply, leader, region } => Ok((reply, leader, region)),
            other => Err(D1Error::Internal(format!("a write answered with {other:?}"))),
        }
    }

    /// A request id no other request in the cluster has: this node's Raft id, then a counter
    /// that starts at the node's start time in nanoseconds (so a restart never reuses one).
    fn next_request_id(&self) -> u128 {
        let sequence = self.inner.request_sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (u128::from(self.inner.id) << 64) | u128::from(sequence)
    }

    /// Sends a proposal to the leader, following leader changes until the write timeout. The
    /// proposal keeps its request id across attempts, so a retry is never applied twice.
    async fn propose(&self, proposal: Proposal) -> Result<Proposed, D1Error> {
        let timeout = self.inner.settings.write_timeout;
        let proposal = &proposal;
        let result = self
            .follow_leader(timeout, |leader, remaining| async move {
                match leader {
                    None => tokio::time::timeout(remaining, self.propose_here(proposal.clone()))
                        .await
                        .unwrap_or_else(|_| Err(D1Error::Unavailable(no_quorum(timeout)))),
                    Some(node) => self.call_leader(&node, Method::Propose, proposal, remaining).await,
                }
            })
            .await;
        result.map_err(|e| match e {
            D1Error::Unavailable(reason) if reason.starts_with("no quorum") => D1Error::Unavailable(reason),
            e @ (D1Error::Unavailable(_) | D1Error::ForwardToLeader { .. }) => {
                D1Error::Unavailable(format!("{e}; gave up after {} ms", timeout.as_millis()))
            }
            other => other,
        })
    }

    /// Runs `attempt` against the leader of the moment (`None`: this node leads) until it
    /// answers anything but "another node leads" or "unavailable", or `timeout` has passed;
    /// a pause between tries ends as soon as Raft's view changes. Only for requests that are
    /// safe to send again.
    async fn follow_leader<T, Attempt>(
        &self,
        timeout: Duration,
        mut attempt: impl FnMut(Option<D1Node>, Duration) -> Attempt,
    ) -> Result<T, D1Error>
    where
        Attempt: std::future::Future<Output = Result<T, D1Error>>,
    {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.inner.raft.metrics();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = match self.leader() {
                Some((id, _)) if id == self.inner.id => attempt(None, remaining).await,
                Some((_, Some(node))) => attempt(Some(node), remaining).await,
                _ => Err(D1Error::Unavailable(
                    "no leader is known (an election is under way or this node is cut off)".into(),
                )),
            };
            match result {
                Err(D1Error::ForwardToLeader { .. } | D1Error::Unavailable(_)) if Instant::now() < deadline => {
                    let pause = Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now()));
                    let _ = tokio::time::timeout(pause, metrics.changed()).await;
                }
                other => return other,
            }
        }
    }

    /// One call to the leader's peer service; its answer, or why it could not be had.
    async fn call_leader<Req: Serialize, Reply: serde::de::DeserializeOwned>(
        &self,
        leader: &D1Node,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Reply, D1Error> {
        let reply: Result<Reply, RemoteError> =
            self.inner
                .network
                .call(leader, method, request, Some(timeout))
                .await
                .map_err(|e| D1Error::Unavailable(format!("leader {}: {e}", leader.name)))?;
        reply.map_err(D1Error::from)
    }

    /// Proposes on this node, which must lead (else `ForwardToLeader`).
    pub async fn propose_here(&self, proposal: Proposal) -> Result<Proposed, D1Error> {
        match proposal {
            Proposal::Write(request) => {
                let (reply, answer) = oneshot::channel();
                self.inner
                    .batcher
                    .send(batcher::Input::Write { request, reply })
                    .await
                    .map_err(|_| D1Error::Unavailable("the node is shutting down".into()))?;
                let reply = answer.await.map_err(|_| D1Error::Unavailable("the node is shutting down".into()))??;
                Ok(Proposed::Write {
                    reply,
                    leader: self.inner.me.name.clone(),
                    region: self.inner.settings.region.clone(),
                })
            }
            Proposal::Create(name) => {
                // A peer's proposal is checked like a client's.
                validate_name(&name)?;
                let response = self
                    .inner
                    .raft
                    .client_write(types::Command::CreateDatabase { name: name.clone() })
                    .await
                    .map_err(batcher::write_error)?;
                match response.data {
                    types::Applied::Database { created } => {
                        Ok(Proposed::Created { created, bookmark: response.log_id.index })
                    }
                    types::Applied::Refused { .. } => Err(D1Error::InvalidName(name)),
                    other => Err(D1Error::Internal(format!("creation applied as {other:?}"))),
                }
            }
            Proposal::App { app, command } => {
                let (reply, answer) = oneshot::channel();
                self.inner
                    .batcher
                    .send(batcher::Input::App { app, command, reply })
                    .await
                    .map_err(|_| D1Error::Unavailable("the node is shutting down".into()))?;
                let (reply, bookmark) =
                    answer.await.map_err(|_| D1Error::Unavailable("the node is shutting down".into()))??;
                Ok(Proposed::App { reply, bookmark })
            }
        }
    }

    /// Commits a command for the application `app` through the leader (from any node) and
    /// returns the application's reply and the entry's index. A retry after a leader change
    /// may apply the command twice: an application makes its commands idempotent (R2's carry
    /// the version they write).
    pub async fn propose_app(&self, app: &str, command: Vec<u8>) -> Result<(Vec<u8>, u64), D1Error> {
        match self.propose(Proposal::App { app: app.to_owned(), command }).await? {
            Proposed::App { reply, bookmark } => Ok((reply, bookmark)),
            other => Err(D1Error::Internal(format!("an application's command answered with {other:?}"))),
        }
    }

    /// Waits until this replica has applied the leader's read index: a read of any
    /// application's state after it sees every write acknowledged before the call.
    pub async fn linearize(&self) -> Result<u64, D1Error> {
        let index = self.read_index().await?;
        self.wait_applied(index).await?;
        Ok(index)
    }

    /// Waits until this replica may serve a read at `consistency`.
    async fn wait_for(&self, consistency: Consistency, bookmark: Option<u64>) -> Result<(), D1Error> {
        match consistency {
            // The leader waits for its own read index (see `read_on_primary`).
            Consistency::Primary | Consistency::Local => Ok(()),
            Consistency::Bookmark => match bookmark {
                Some(index) => self.wait_applied(index).await,
                None => Ok(()),
            },
            Consistency::Linearizable => {
                let index = self.read_index().await?;
                self.wait_applied(index).await
            }
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), D1Error> {
        let mut applied = self.inner.sm.applied_index();
        let timeout = self.inner.settings.read_timeout;
        let reached = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= index)).await.map(|r| r.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(D1Error::Unavailable("the node is shutting down".into())),
            Err(_) => Err(D1Error::BookmarkTimeout {
                applied: self.inner.sm.applied_now(),
                wanted: index,
                waited_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// The leader's read index: every write acknowledged before this call is at or below it.
    pub async fn read_index(&self) -> Result<u64, D1Error> {
        self.follow_leader(self.inner.settings.read_timeout, |leader, remaining| async move {
            match leader {
                None => tokio::time::timeout(remaining, self.read_index_here())
                    .await
                    .unwrap_or_else(|_| Err(D1Error::Unavailable("no quorum confirmed the leader in time".into()))),
                Some(node) => self.call_leader(&node, Method::ReadIndex, &(), remaining).await,
            }
        })
        .await
    }

    /// The read index on the leader (confirms leadership with a quorum first, in a round
    /// shared with the reads waiting at the same time; see [`read_index`]).
    pub async fn read_index_here(&self) -> Result<u64, D1Error> {
        let (reply, answer) = oneshot::channel();
        self.inner.read_index.try_send(read_index::Input::Confirm(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => D1Error::Unavailable(format!(
                "{} reads are already waiting for the leader's read index",
                read_index::MAX_WAITING
            )),
            mpsc::error::TrySendError::Closed(_) => D1Error::Unavailable("the node is shutting down".into()),
        })?;
        answer.await.map_err(|_| D1Error::Unavailable("the node is shutting down".into()))?.map_err(D1Error::from)
    }

    /// SHA-256 of a database's schema and rows on this replica.
    pub async fn checksum(&self, database: &str) -> Result<String, D1Error> {
        let db = self.inner.sm.database(database).ok_or_else(|| D1Error::UnknownDatabase(database.to_owned()))?;
        blocking(move || db.checksum()).await?.map_err(D1Error::internal)
    }
}

fn no_quorum(timeout: Duration) -> String {
    format!(
        "no quorum: the write was not committed within {} ms (the leader cannot reach a majority of voters); it may or may not apply later",
        timeout.as_millis()
    )
}

/// The checks every query gets before it runs, from a client or a peer: the name, the number
/// of statements and each statement's limits.
fn check_request(database: &str, statements: &[Statement]) -> Result<(), D1Error> {
    validate_name(database)?;
    if statements.is_empty() {
        return Err(D1Error::Invalid("no statements given".into()));
    }
    if statements.len() > sqlite::MAX_BATCH_STATEMENTS {
        return Err(D1Error::Invalid(format!(
            "{} statements in one batch, over the limit of {}",
            statements.len(),
            sqlite::MAX_BATCH_STATEMENTS
        )));
    }
    for (index, statement) in statements.iter().enumerate() {
        sqlite::check_limits(statement, index).map_err(D1Error::from)?;
    }
    Ok(())
}

/// Database names as D1 allows them.
pub fn validate_name(name: &str) -> Result<(), D1Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(D1Error::InvalidName(name.to_owned()))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, D1Error> {
    tokio::task::spawn_blocking(work).await.map_err(D1Error::internal)
}

/// Runs short SQLite work (a point read, one log entry's transaction) on this thread, telling
/// a multi-thread runtime to move its other tasks away; a hop to the blocking pool costs more
/// than the work. Elsewhere (a current-thread runtime) it goes to the blocking pool.
pub(crate) async fn short_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, D1Error> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(work)),
        _ => blocking(work).await,
    }
}
