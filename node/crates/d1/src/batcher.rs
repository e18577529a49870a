//! The leader's write batcher: one actor that gathers the writes arriving while earlier log
//! entries are in flight into the next entry.
//!
//! A lone write is proposed at once (no added latency); under load, up to [`MAX_BATCH`]
//! writes share one entry, one fsync and one SQLite transaction per database. Applications'
//! commands (R2's metadata) are batched the same way, per application, in entries of their
//! own. At most [`MAX_IN_FLIGHT`] entries are proposed at a time, which is what lets the
//! queue build up.

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
    Write {
        request: WriteRequest,
        reply: oneshot::Sender<Result<WriteReply, D1Error>>,
    },
    /// A command for an application; its reply and the entry's index.
    App {
        app: String,
        command: Vec<u8>,
        reply: AppReply,
    },
}

/// Where an application's command gets its reply and the index of the entry that held it.
pub type AppReply = oneshot::Sender<Result<(Vec<u8>, u64), D1Error>>;

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
    let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, ()>> = FuturesUnordered::new();
    // An input of another kind than the batch it was read for: the first of the next batch.
    let mut carried: Option<Input> = None;
    loop {
        if in_flight.len() < MAX_IN_FLIGHT {
            if let Some(first) = carried.take() {
                carried = propose(first, &mut inputs, &raft, ack_before_commit, budget, &mut in_flight);
                continue;
            }
        }
        tokio::select! {
            first = inputs.recv(), if carried.is_none() && in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = first else { break };
                carried = propose(first, &mut inputs, &raft, ack_before_commit, budget, &mut in_flight);
            }
            Some(()) = in_flight.next() => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Proposes `first` with the inputs of its kind queued behind it as one entry; the first
/// input of another kind, if one was read, is returned for the next entry.
fn propose(
    first: Input,
    inputs: &mut mpsc::Receiver<Input>,
    raft: &Raft,
    ack_before_commit: bool,
    budget: super::sqlite::Budget,
    in_flight: &mut FuturesUnordered<futures::future::BoxFuture<'static, ()>>,
) -> Option<Input> {
    match first {
        Input::Write { request, reply } => {
            let mut size = approximate_size(&request);
            let mut requests = vec![request];
            let mut replies = vec![reply];
            let mut carried = None;
            while requests.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                match inputs.try_recv() {
                    Ok(Input::Write { request, reply }) => {
                        size += approximate_size(&request);
                        requests.push(request);
                        replies.push(reply);
                    }
                    Ok(other) => {
                        carried = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
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
            in_flight.push(Box::pin(async move {
                let result = raft.client_write(Command::BudgetedWrites { budget, requests }).await;
                deliver(result, replies);
            }));
            carried
        }
        Input::App { app, command, reply } => {
            let mut size = command.len();
            let mut commands = vec![command];
            let mut replies = vec![reply];
            let mut carried = None;
            while commands.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                match inputs.try_recv() {
                    Ok(Input::App { app: next, command, reply }) if next == app => {
                        size += command.len();
                        commands.push(command);
                        replies.push(reply);
                    }
                    Ok(other) => {
                        carried = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let raft = raft.clone();
            in_flight.push(Box::pin(async move {
                let result = raft.client_write(Command::Apps { app, commands }).await;
                deliver_apps(result, replies);
            }));
            carried
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

fn deliver_apps(result: WriteResult, replies: Vec<AppReply>) {
    match result {
        Ok(response) => {
            let index = response.log_id.index;
            match response.data {
                Applied::Apps(answers) if answers.len() == replies.len() => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok((answer, index)));
                    }
                }
                Applied::Refused { reason } => {
                    for reply in replies {
                        let _ = reply.send(Err(D1Error::Invalid(reason.clone())));
                    }
                }
                other => {
                    let error = format!("an application's entry applied as {other:?}");
                    for reply in replies {
                        let _ = reply.send(Err(D1Error::Internal(error.clone())));
                    }
                }
            }
        }
        Err(error) => {
            let error = super::RemoteError::from(write_error(error));
            for reply in replies {
                let _ = reply.send(Err(error.clone().into()));
            }
        }
    }
}
