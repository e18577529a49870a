use nimbus_storage::StorageError;

/// Why a D1 operation failed. Variants are named for what the caller should do: fix the
/// request (`Invalid*`, `Sql`, `UnknownDatabase`, `TooLarge`), retry later (`Unavailable`,
/// `BookmarkTimeout`), or report a bug (`Internal`).
#[derive(Debug, thiserror::Error)]
pub enum D1Error {
    #[error("database `{0}` does not exist: create it with `nimbus d1 create {0}`, PUT /v1/d1/databases/{0}, or a deployment's binding")]
    UnknownDatabase(String),
    #[error(
        "invalid database name `{0}`: use 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    /// A statement failed; when it was part of a write, nothing of that write was applied.
    #[error("statement {index}: {message}")]
    Sql { index: usize, message: String },
    #[error("this replica has applied index {applied}; bookmark {wanted} was not reached within {waited_ms} ms")]
    BookmarkTimeout { applied: u64, wanted: u64, waited_ms: u64 },
    /// No leader could take the write or confirm the read (election, minority partition).
    #[error("D1 is unavailable: {0}")]
    Unavailable(String),
    /// Another node leads; the write (or read index) has to go there.
    #[error("node {leader} leads the D1 group")]
    ForwardToLeader { leader: String },
    #[error("D1 internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<super::types::StatementFailure> for D1Error {
    fn from(failure: super::types::StatementFailure) -> Self {
        D1Error::Sql { index: failure.index, message: failure.message }
    }
}

impl D1Error {
    /// True when the same request may succeed if retried (after a leader change, say).
    pub fn is_retryable(&self) -> bool {
        matches!(self, D1Error::Unavailable(_) | D1Error::ForwardToLeader { .. } | D1Error::BookmarkTimeout { .. })
    }

    /// True when the request was at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            D1Error::UnknownDatabase(_)
                | D1Error::InvalidName(_)
                | D1Error::Invalid(_)
                | D1Error::TooLarge { .. }
                | D1Error::Sql { .. }
        )
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        D1Error::Internal(error.to_string())
    }
}
