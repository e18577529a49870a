//! A node's R2 management API (`/v1/r2/…`): buckets, objects (bytes travel raw, streamed),
//! S3 access keys, and a maintenance round on demand.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    /// Unix milliseconds.
    pub created_ms: u64,
}

/// `GET /v1/r2/buckets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Buckets {
    pub buckets: Vec<Bucket>,
}

/// `POST /v1/r2/buckets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateBucket {
    pub name: String,
}

/// An object as R2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub version: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// Unix milliseconds.
    pub uploaded_ms: u64,
    pub content_type: Option<String>,
    pub custom_metadata: BTreeMap<String, String>,
    /// How many chunks hold the bytes.
    pub chunks: usize,
}

/// `GET /v1/r2/buckets/{bucket}/objects`: one page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    pub delimited_prefixes: Vec<String>,
    pub truncated: bool,
    /// Pass back as `cursor` for the next page.
    pub cursor: Option<String>,
}

/// `POST /v1/r2/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateAccessKey {
    pub name: String,
}

/// The answer to `POST /v1/r2/keys`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyCreated {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub name: String,
    pub created_ms: u64,
}

/// `GET /v1/r2/keys`: ids and names, never secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeys {
    pub keys: Vec<AccessKeyInfo>,
}

/// `POST /v1/r2/maintain`: what one round of repair, garbage collection and expiry did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRound {
    pub repaired: u64,
    pub missing: u64,
    pub collected: u64,
    pub expired_uploads: u64,
    /// Chunk files on this node after the round.
    pub chunks_here: u64,
}
