//! A node's KV REST API (`/v1/kv/…`, `/v1/node/kv`). Values themselves travel as raw bytes,
//! with metadata and expiration in `x-nimbus-metadata` / `x-nimbus-expiration` headers.

use serde::{Deserialize, Serialize};

/// One key of a list result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    /// Unix seconds.
    pub expiration: Option<u64>,
    /// JSON text.
    pub metadata: Option<String>,
}

/// `GET /v1/kv/{namespace}/keys`: one page of keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage {
    pub keys: Vec<KeyInfo>,
    pub list_complete: bool,
    /// Pass back to get the next page; `None` when complete.
    pub cursor: Option<String>,
}

/// A declared namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub id: String,
    pub title: String,
}

/// `GET /v1/kv/namespaces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Namespaces {
    pub namespaces: Vec<Namespace>,
}

/// `PUT /v1/kv/namespaces/{id}`: 201 when new, 200 when it existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declared {
    pub id: String,
    pub created: bool,
}

/// The version a write got: higher `hlc` wins, ties broken by node id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteVersion {
    pub hlc: u64,
    pub node: String,
}

/// `PUT` and `DELETE /v1/kv/{namespace}/{key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    pub version: WriteVersion,
}

/// A replica's size and the root of its bucket digests: equal on two nodes means equal
/// replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    pub entries: u64,
    /// 16 hex digits.
    pub digest: String,
}

/// `GET /v1/node/kv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replica {
    pub node_id: String,
    #[serde(flatten)]
    pub summary: ReplicaSummary,
}
