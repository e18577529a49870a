//! What crosses the wire when a node forwards a write to the leader: the proposal, the
//! leader's answer, and errors in a form the forwarding node turns back into [`D1Error`].

use super::types::{WriteReply, WriteRequest};
use super::D1Error;
use serde::{Deserialize, Serialize};

/// What a forwarded proposal asks the leader to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    Write(WriteRequest),
    Create(String),
}

/// The leader's answer to a [`Proposal`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposed {
    Write { reply: WriteReply, leader: String },
    Created { created: bool, bookmark: u64 },
}

/// A D1 error as it crosses the wire to the node that forwarded the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteError {
    ForwardToLeader(String),
    Unavailable(String),
    Failed(String),
}

impl From<D1Error> for RemoteError {
    fn from(error: D1Error) -> Self {
        match error {
            D1Error::ForwardToLeader { leader } => RemoteError::ForwardToLeader(leader),
            D1Error::Unavailable(reason) => RemoteError::Unavailable(reason),
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
        }
    }
}
