//! What goes through the Raft log and comes back out of the state machine.
//!
//! A log entry carries a [`Command`]; applying it on any replica yields an [`Applied`]. Every
//! type here is encoded with postcard, on disk (the log) and on the wire (Raft RPCs, forwarded
//! writes), so changing a field changes the format.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Cursor;

openraft::declare_raft_types!(
    /// The Raft types of the D1 group.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = D1Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, D1Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, D1Node>;
pub type Snapshot = openraft::storage::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;

/// A member of the Raft group as Raft knows it: enough to reach it over the peer gRPC service
/// and to apply fault injection (which is keyed by gossip address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct D1Node {
    /// The node id of the cluster (`node-1`), not the Raft id.
    pub name: String,
    pub rpc_addr: String,
    pub gossip_addr: String,
}

impl fmt::Display for D1Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.rpc_addr)
    }
}

/// The Raft id of a node: the first 8 bytes of SHA-256 of its cluster node id, so every node
/// derives the same id for a peer from gossip alone.
pub fn raft_id(node_id: &str) -> u64 {
    let hash = Sha256::digest(node_id.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(id)
}

/// One SQL value, as SQLite stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One SQL statement and its positional parameters (`?1`, `?2` … or `?`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<Value>,
}

/// A client's write: the statements of one `query`, `batch` or `exec` call, applied
/// atomically to one database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// Chosen by the node that took the request; a retry after a leader change carries the
    /// same id, and the state machine answers it from its record instead of applying it again.
    pub id: u128,
    pub database: String,
    /// The leader's clock when it proposed the write, in ms since the epoch: what `'now'`
    /// means to every replica that applies it.
    pub time_ms: i64,
    pub kind: WriteKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WriteKind {
    /// Statements with parameters, each returning rows.
    Statements(Vec<Statement>),
    /// A script of `;`-separated statements without parameters (D1's `exec`).
    Script(String),
}

/// A Raft log entry's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateDatabase {
        name: String,
    },
    /// The writes the leader gathered while the previous entries were in flight (entries
    /// written before budgets were carried; applied with `Budget::default()`).
    Writes(Vec<WriteRequest>),
    /// The same, with the leader's budget for each statement, so every replica stops a
    /// statement at the same step.
    BudgetedWrites {
        budget: super::sqlite::Budget,
        requests: Vec<WriteRequest>,
    },
    /// A command for an application that shares the group (see [`crate::app`]).
    App {
        app: String,
        command: Vec<u8>,
    },
    /// Commands for one application that the leader's batcher gathered into one entry.
    Apps {
        app: String,
        commands: Vec<Vec<u8>>,
    },
}

/// What one statement returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub changes: u64,
    pub last_row_id: i64,
    pub duration_us: u64,
}

/// Why a write applied nothing: which statement failed and why (every replica fails the same
/// way, since they apply the same statements to the same state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementFailure {
    pub index: usize,
    pub message: String,
}

/// The result of one [`WriteRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Statements(Vec<QueryResult>),
    /// A script ran this many statements.
    Script(u32),
    Failed(StatementFailure),
    /// The database does not exist (it was never created, or not before this write).
    UnknownDatabase,
}

/// What applying one log entry produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Blank and membership entries.
    #[default]
    Nothing,
    Database {
        created: bool,
    },
    /// One outcome per request, in the entry's order.
    Writes(Vec<Outcome>),
    /// The entry was refused by every replica alike (a database name D1 does not allow).
    Refused {
        reason: String,
    },
    /// An application's reply to its command.
    App(Vec<u8>),
    /// An application's replies to the commands of an `Apps` entry, in order.
    Apps(Vec<Vec<u8>>),
}

/// A write's answer to the client: the outcome and the log index that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReply {
    pub outcome: Outcome,
    /// The commit index of the entry: a read with this bookmark on any replica sees the write.
    pub bookmark: u64,
}
