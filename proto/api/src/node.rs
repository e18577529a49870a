//! A node's status endpoints and its ready line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The line a node prints on stdout once it serves (one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub node_id: String,
    pub region: String,
    /// The public edge: workers and `/healthz`.
    pub http: SocketAddr,
    /// The management API: REST, status, `/metrics`, behind tokens.
    pub management: SocketAddr,
    pub rpc: SocketAddr,
    pub gossip: SocketAddr,
    /// The S3 API (R2): signed S3 requests only.
    #[serde(default)]
    pub s3: Option<SocketAddr>,
    pub workers_restored: usize,
}

/// The node's view of D1's Raft group: `GET /v1/node/d1`, `nimbus cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct D1Status {
    pub node_id: String,
    pub raft_id: u64,
    /// `voter` or `replica`, as configured.
    pub role: String,
    /// openraft's server state: `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub state: String,
    pub term: u64,
    pub leader: Option<String>,
    #[serde(default)]
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Entries committed (as far as this node knows) but not yet applied here.
    pub lag: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub snapshots_installed: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// The RPC address the group's membership records for each node (by name).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    pub databases: usize,
    /// How far behind the leader this replica may be, when it has heard from one.
    pub staleness_ms: Option<u64>,
}

/// A live Durable Object on a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveObject {
    pub namespace: String,
    pub id: String,
    /// `term@node` once activated.
    pub epoch: Option<String>,
    pub live_ms: u64,
}

/// A node's Durable Objects: `GET /v1/node/durable`, `nimbus cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DurableStatus {
    pub node_id: String,
    pub live: Vec<LiveObject>,
    pub activations: u64,
    pub evictions: u64,
    pub members_live: usize,
    pub members_known: usize,
    pub has_majority: bool,
    /// WebSockets accepted by objects this node owns.
    pub websockets: usize,
}

/// What a node serves: `GET /v1/node`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub region: String,
    pub workers: Vec<WorkerStatus>,
}

/// One installed worker on a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub version: u64,
    pub component_hash: String,
    /// Warm instances waiting for a request.
    pub idle_instances: usize,
}
