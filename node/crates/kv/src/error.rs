use nimbus_storage::StorageError;

/// Why a KV operation failed. The `Invalid*` and `*TooLarge` variants are the caller's to
/// fix (a 4xx); nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    InvalidNamespace(String),
    #[error("namespace `{0}` does not exist: declare it with `nimbus kv namespace create {0}`, PUT /v1/kv/namespaces/{0}, or a deployment's binding")]
    UnknownNamespace(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("value is {size} bytes, over the limit of {limit}")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("invalid expiration: {0}")]
    InvalidExpiration(String),
    #[error("list limit {0} is outside 1..=1000")]
    InvalidLimit(usize),
    #[error("invalid cursor `{0}`")]
    InvalidCursor(String),
    /// A peer's entry whose clock runs too far ahead of this node's.
    #[error("entry from {node} is stamped {ahead_ms} ms ahead of this node's clock (at most {max_ms} ms allowed: kv.max_clock_offset_ms)")]
    ClockSkew { node: String, ahead_ms: u64, max_ms: u64 },
    /// A peer's anti-entropy request over the limits.
    #[error("anti-entropy request refused: {0}")]
    AntiEntropy(String),
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
    #[error("stored entry is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl KvError {
    /// True when the request was at fault (and retrying it unchanged cannot help).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, KvError::Peer { .. } | KvError::Corrupt(_) | KvError::Storage(_))
    }
}
