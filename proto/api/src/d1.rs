//! A node's D1 REST API (`/v1/d1/…`): databases, queries and batches at a read level, scripts,
//! replica checksums.

use serde::{Deserialize, Serialize};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Run by the leader after its read index: every write acknowledged before the read is
    /// seen, whichever node took either (D1 without a session, Cloudflare's default).
    #[default]
    Primary,
    /// The local replica as it is (a session's first query, `first-unconstrained`).
    Local,
    /// The local replica once it has applied the given bookmark (a session's later queries).
    Bookmark,
    /// The local replica once it has applied the leader's read index (rqlite's `strong`):
    /// primary semantics without shipping the rows, for the price of waiting on the replica.
    Linearizable,
}

/// A database as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub size_bytes: u64,
    pub applied_index: u64,
}

/// `GET /v1/d1/databases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Databases {
    pub databases: Vec<DatabaseInfo>,
}

/// `PUT /v1/d1/databases/{name}`: 201 when new, 200 when it existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub name: String,
    pub created: bool,
    pub bookmark: String,
}

/// A SQLite value in JSON: null, a number, a string, or `{"blob": "<base64>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob { blob: String },
}

/// What one statement did, and who answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub changes: u64,
    pub last_row_id: i64,
    pub duration_ms: f64,
    pub served_by: String,
    pub served_by_region: String,
    pub served_by_primary: bool,
}

/// One statement's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    pub meta: Meta,
}

/// `POST /v1/d1/{database}/query`: a statement or a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryReply {
    pub results: Vec<StatementResult>,
    /// Send back as `session` (or `bookmark`) to read at least this state next.
    pub bookmark: String,
    pub served_by: String,
    pub served_by_region: String,
    pub served_by_primary: bool,
    pub wrote: bool,
    pub consistency: Consistency,
    /// For a read: how long since the serving replica last heard from a leader (ms), if ever.
    pub staleness_ms: Option<u64>,
}

/// `POST /v1/d1/{database}/exec`: a script of statements without parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Executed {
    pub count: u32,
    pub bookmark: String,
}

/// `GET /v1/d1/{database}/checksum`: to compare replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checksum {
    pub database: String,
    pub checksum: String,
    pub applied_index: u64,
}

/// A D1 error answer: `kind` says which (`sql`, `invalid`, `unknown-database`, `too-large`,
/// `unavailable`, `bookmark-timeout`, `internal`), `statement` which statement of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct D1ErrorBody {
    pub error: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
}
