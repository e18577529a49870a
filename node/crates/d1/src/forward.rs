//! What crosses the wire when a node forwards work to the leader: a proposal (a write, a
//! database creation) or a read with primary semantics, the leader's answer, and errors in a
//! form the forwarding node turns back into [`D1Error`].

use super::types::{Statement, WriteReply, WriteRequest};
use super::D1Error;
use serde::{Deserialize, Serialize};

/// What a forwarded proposal asks the leader to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    Write(WriteRequest),
    Create(String),
    /// A command for an application that shares the group.
    App {
        app: String,
        command: Vec<u8>,
    },
}

/// The leader's answer to a [`Proposal`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposed {
    Write { reply: WriteReply, leader: String, region: String },
    Created { created: bool, bookmark: u64 },
    App { reply: Vec<u8>, bookmark: u64 },
}

/// A read the leader runs after its read index (D1 without a session).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrimaryRead {
    pub database: String,
    pub statements: Vec<Statement>,
}

/// A D1 error as it crosses the wire to the node that forwarded the request. The request's
/// own faults keep their kind, so the caller still gets a 400 or a 404, not a 500.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteError {
    ForwardToLeader(String),
    Unavailable(String),
    Failed(String),
    Sql { index: usize, message: String },
    UnknownDatabase(String),
}

impl From<D1Error> for RemoteError {
    fn from(error: D1Error) -> Self {
        match error {
            D1Error::ForwardToLeader { leader } => RemoteError::ForwardToLeader(leader),
            D1Error::Unavailable(reason) => RemoteError::Unavailable(reason),
            e @ D1Error::BookmarkTimeout { .. } => RemoteError::Unavailable(e.to_string()),
            D1Error::Sql { index, message } => RemoteError::Sql { index, message },
            D1Error::UnknownDatabase(name) => RemoteError::UnknownDatabase(name),
            other => RemoteError::Failed(other.to_string()),
        }
    }
}

impl From<RemoteError> for D1Error {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::ForwardToLeader(leader) => D1Error::ForwardToLeader { leader },
            RemoteError::Unavailable(reason) => D1Error::Unavailable(reason),
            RemoteError::Failed(reason) => D1Error::Internal(reason),
            RemoteError::Sql { index, message } => D1Error::Sql { index, message },
            RemoteError::UnknownDatabase(name) => D1Error::UnknownDatabase(name),
        }
    }
}
