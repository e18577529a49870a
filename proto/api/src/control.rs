//! The control plane's HTTP API (`/v1/deployments`, `/v1/cluster`), as the CLI reads it.

use serde::{Deserialize, Serialize};

/// An error answer: the status code says what kind, `error` says what happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `POST /v1/deployments/{name}`: the version a deploy created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub name: String,
    pub version: u64,
    /// The watch sequence number that carries it to the nodes.
    pub seq: u64,
    pub component_hash: String,
    pub component_size: u64,
    pub imports: Vec<String>,
    /// `wasm` (an uploaded component) or `js` (the engine snapshot built from a script).
    pub runtime: String,
}

/// `GET /v1/deployments`: one row per worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub name: String,
    pub active_version: u64,
    pub latest_version: u64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One stored version of a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u64,
    pub component_hash: String,
    pub component_size: u64,
    /// Unix seconds.
    pub created_at: i64,
    pub message: Option<String>,
}

/// What a node last acknowledged for a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    pub node_id: String,
    pub version: u64,
    pub ok: bool,
    pub error: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Where a node stands with the active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Serves the active version.
    Current,
    /// Serves an older version.
    Behind,
    /// Could not apply the active version (the error says why).
    Failed,
}

/// A node's acknowledgement, with where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRollout {
    #[serde(flatten)]
    pub ack: Rollout,
    pub state: RolloutState,
}

/// `GET /v1/deployments/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerDetail {
    pub name: String,
    pub active_version: u64,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
    pub rollout: Vec<NodeRollout>,
}

/// `POST /v1/deployments/{name}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolledBack {
    pub name: String,
    pub version: u64,
    pub previous_version: u64,
    pub seq: u64,
}

/// `GET /v1/cluster`: a node the control plane knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub region: String,
    pub http_addr: String,
    /// Whether its watch stream is open now.
    pub connected: bool,
    /// Unix seconds.
    pub last_seen: i64,
}

/// `POST /v1/tokens`: what to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label for people (`ci`, `grafana`).
    pub name: String,
    /// `admin`, or `<product>:read|edit` (products: kv, d1, r2, queues, workers, cluster).
    pub scopes: Vec<String>,
}

/// `GET /v1/tokens`: one token, never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /v1/tokens`: the token created, with its secret (shown this once, stored hashed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}
