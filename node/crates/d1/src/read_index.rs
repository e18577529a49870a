//! The leader's read index: one quorum round for every read waiting at once.
//!
//! A linearizable read, and every read with primary semantics, needs the leader to confirm
//! with a quorum of voters that it still leads and then to have applied its commit index.
//! openraft sends a round of heartbeats per call. This actor lets the reads that arrive while
//! a round is in flight share the next one, and that stays correct: the next round starts
//! after each of them arrived, so its index covers every write acknowledged before any of
//! them asked.

use super::forward::RemoteError;
use super::types::Raft;
use openraft::error::{CheckIsLeaderError, RaftError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Reads that may wait for a round at once; more are refused as unavailable.
pub const MAX_WAITING: usize = 16_384;

pub enum Input {
    /// Confirm that this node leads; answer with the index a read must see.
    Confirm(oneshot::Sender<Result<u64, RemoteError>>),
}

/// Serves [`Input`]s until shutdown, one confirmation round at a time.
pub async fn run(raft: Raft, mut inputs: mpsc::Receiver<Input>, timeout: Duration, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            input = inputs.recv() => match input {
                Some(input) => input,
                None => return,
            },
        };
        let mut waiting = vec![first];
        while waiting.len() < MAX_WAITING {
            match inputs.try_recv() {
                Ok(input) => waiting.push(input),
                Err(_) => break,
            }
        }
        let result = tokio::time::timeout(timeout, confirm(&raft))
            .await
            .unwrap_or_else(|_| Err(RemoteError::Unavailable("no quorum confirmed the leader in time".into())));
        for Input::Confirm(reply) in waiting {
            let _ = reply.send(result.clone());
        }
    }
}

/// One round: heartbeats to the voters, then the leader's own apply up to the read index.
async fn confirm(raft: &Raft) -> Result<u64, RemoteError> {
    match raft.ensure_linearizable().await {
        Ok(read) => Ok(read.map_or(0, |id| id.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => match forward.leader_node {
            Some(node) => Err(RemoteError::ForwardToLeader(node.name)),
            None => Err(RemoteError::Unavailable("no leader is known".into())),
        },
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
            Err(RemoteError::Unavailable(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(RemoteError::Unavailable(e.to_string())),
    }
}
