//! The leader's write batcher: one actor that gathers the writes arriving while earlier log
//! entries are in flight into the next entry.
//!
//! A lone write is proposed at once (no added latency); under load, up to [`MAX_BATCH`]
//! writes share one entry, one fsync and one SQLite transaction per database. At most
//! [`MAX_IN_FLIGHT`] entries are proposed at a time, which is what lets the queue build up.

use super::error::D1Error;
use super::types::{Applied, Command, Outcome, Raft, WriteReply, WriteRequest};
use futures::stream::{FuturesUnordered, StreamExt};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Requests per log entry.
const MAX_BATCH: usize = 1_024;
/// Bytes of SQL and parameters per log entry (roughly), so one entry stays a few MiB.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Entries proposed and not yet applied.
const MAX_IN_FLIGHT: usize = 2;

pub enum Input {
    Write { request: WriteRequest, reply: oneshot::Sender<Result<WriteReply, D1Error>> },
}

/// Maps openraft's write error to what the caller should do.
pub fn write_error(error: RaftError<u64, ClientWriteError<u64, super::types::D1Node>>) -> D1Error {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => match forward.leader_node {
            Some(node) => D1Error::ForwardToLeader { leader: node.name },
            None => D1Error::Unavailable("no leader is known (an election is under way)".into()),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => D1Error::internal(e),
        RaftError::Fatal(e) => D1Error::Unavailable(format!("the Raft node has stopped: {e}")),
    }
}

fn approximate_size(request: &WriteRequest) -> usize {
    match &request.kind {
        super::types::WriteKind::Statements(statements) => {
            statements.iter().map(|s| s.sql.len() + s.params.len() * 16).sum::<usize>() + 64
        }
        super::types::WriteKind::Script(sql) => sql.len() + 64,
    }
}

/// `ack_before_commit` is the deliberate bug of `admin.unsafe_ack_d1_before_commit`: every
/// write is answered "done" as soon as it is proposed, whether or not a quorum commits it.
pub async fn run(
    raft: Raft,
    mut inputs: mpsc::Receiver<Input>,
    ack_before_commit: bool,
    budget: super::sqlite::Budget,
    shutdown: CancellationToken,
) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            first = inputs.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(Input::Write { request, reply }) = first else { break };
                let mut size = approximate_size(&request);
                let mut requests = vec![request];
                let mut replies = vec![reply];
                while requests.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                    let Ok(Input::Write { request, reply }) = inputs.try_recv() else { break };
                    size += approximate_size(&request);
                    requests.push(request);
                    replies.push(reply);
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                for request in &mut requests {
                    request.time_ms = now;
                }
                if ack_before_commit {
                    for (request, reply) in requests.iter().zip(replies.drain(..)) {
                        let outcome = match request.kind {
                            super::types::WriteKind::Statements(_) => Outcome::Statements(Vec::new()),
                            super::types::WriteKind::Script(_) => Outcome::Script(0),
                        };
                        let _ = reply.send(Ok(WriteReply { outcome, bookmark: 0 }));
                    }
                }
                let raft = raft.clone();
                in_flight.push(async move {
                    let result = raft.client_write(Command::BudgetedWrites { budget, requests }).await;
                    deliver(result, replies);
                });
            }
            Some(()) = in_flight.next() => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<super::types::TypeConfig>,
    RaftError<u64, ClientWriteError<u64, super::types::D1Node>>,
>;

fn deliver(result: WriteResult, replies: Vec<oneshot::Sender<Result<WriteReply, D1Error>>>) {
    match result {
        Ok(response) => {
            let bookmark = response.log_id.index;
            let outcomes = match response.data {
                Applied::Writes(outcomes) => outcomes,
                other => {
                    let error = D1Error::Internal(format!("a write entry applied as {other:?}"));
                    for reply in replies {
                        let _ = reply.send(Err(D1Error::Internal(error.to_string())));
                    }
                    return;
                }
            };
            for (reply, outcome) in replies.into_iter().zip(outcomes.into_iter().chain(std::iter::repeat(
                Outcome::Failed(super::types::StatementFailure { index: 0, message: "no outcome".into() }),
            ))) {
                let _ = reply.send(Ok(WriteReply { outcome, bookmark }));
            }
        }
        Err(error) => {
            // `D1Error` cannot be cloned (it may hold a storage error); its wire form can.
            let error = super::RemoteError::from(write_error(error));
            for reply in replies {
                let _ = reply.send(Err(error.clone().into()));
            }
        }
    }
}
