//! A holder's side of the ownership protocol.
//!
//! A holder keeps one promise per object: the highest epoch it has accepted. It promises
//! only a newer epoch than that, and refuses anything from an older one ([`Reply::Fenced`]),
//! which is what stops a deposed owner from releasing a response. Steps apply only in order
//! from the version held, skipping only those of the copy's own lineage it already has
//! ([`rules::plan_steps`]); a holder that is behind or of another lineage answers
//! [`Reply::NeedSnapshot`] and gets the owner's whole copy, which never moves it backwards.
//! Every change to a copy and its holder state is one atomic write. A request addressed to
//! another node (a stale address) is refused before anything is read.

use super::rules::{self, StepPlan};
use super::storage::HolderState;
use super::wire::{Epoch, Reply, Request};
use super::{error_reply, Durable, DurableError, ObjectId};

/// Answers one protocol request; runs on the blocking pool (RocksDB).
pub fn serve(durable: &Durable, request: Request) -> Reply {
    if let Some(to) = addressee(&request) {
        if to != durable.inner.me {
            return Reply::Failed {
                client_error: false,
                message: format!("addressed to {to}, but this is {}", durable.inner.me),
            };
        }
    }
    let result = match request {
        Request::Promise { namespace, id, epoch, .. } => promise(durable, ObjectId(id), namespace, epoch),
        Request::Replicate { namespace, id, epoch, steps, head, .. } => {
            with_epoch(durable, ObjectId(id), namespace, epoch, |state, storage, id| {
                match rules::plan_steps(&state.version, &steps, &head) {
                    StepPlan::NeedSnapshot => {
                        // Record the (possibly newer) promise all the same.
                        storage.set_state(id, state)?;
                        Ok(Reply::NeedSnapshot)
                    }
                    StepPlan::ApplyFrom(first) if first == steps.len() => {
                        storage.set_state(id, state)?;
                        Ok(Reply::Replicated)
                    }
                    StepPlan::ApplyFrom(first) => {
                        // Each applied step records the state with it.
                        for step in &steps[first..] {
                            state.version = step.version.clone();
                            storage.apply(id, &step.writes, state)?;
                        }
                        Ok(Reply::Replicated)
                    }
                }
            })
        }
        Request::Install { namespace, id, epoch, snapshot, .. } => {
            with_epoch(durable, ObjectId(id), namespace, epoch, |state, storage, id| {
                if rules::install_replaces(&state.version, &snapshot.version) {
                    state.version = snapshot.version.clone();
                    storage.install(id, &snapshot, state)?;
                } else {
                    // A late install of what this copy already has (or has passed).
                    storage.set_state(id, state)?;
                }
                Ok(Reply::Replicated)
            })
        }
        Request::Pull { id, epoch, .. } => {
            let id = ObjectId(id);
            let _guard = durable.lock(&id);
            let storage = &durable.inner.storage;
            match storage.state(&id) {
                Ok(state) if state.as_ref().is_some_and(|s| s.promised > epoch) => {
                    Ok(Reply::Fenced { promised: state.map(|s| s.promised).unwrap_or_default() })
                }
                Ok(_) => storage.snapshot(&id).map(Reply::Snapshot),
                Err(e) => Err(e),
            }
        }
        Request::Event { .. } | Request::Attach { .. } => {
            Err(DurableError::Internal("not a replication request".into()))
        }
    };
    result.unwrap_or_else(error_reply)
}

fn addressee(request: &Request) -> Option<&str> {
    match request {
        Request::Promise { to, .. }
        | Request::Replicate { to, .. }
        | Request::Install { to, .. }
        | Request::Pull { to, .. } => Some(to),
        Request::Event { .. } | Request::Attach { .. } => None,
    }
}

fn promise(durable: &Durable, id: ObjectId, namespace: String, epoch: Epoch) -> Result<Reply, DurableError> {
    let _guard = durable.lock(&id);
    let storage = &durable.inner.storage;
    let mut state = storage.state(&id)?.unwrap_or_else(|| HolderState { namespace, ..HolderState::default() });
    if !rules::admits_promise(&state.promised, &epoch) {
        return Ok(Reply::Fenced { promised: state.promised });
    }
    state.promised = epoch;
    storage.set_state(&id, &state)?;
    Ok(Reply::Promised(state.version))
}

/// Runs `change` on the object's holder state if `epoch` is not older than the promise
/// (accepting it as the promise if newer: its owner reached a quorum without this node).
fn with_epoch(
    durable: &Durable,
    id: ObjectId,
    namespace: String,
    epoch: Epoch,
    change: impl FnOnce(&mut HolderState, &super::storage::ObjectStorage, &ObjectId) -> Result<Reply, DurableError>,
) -> Result<Reply, DurableError> {
    let _guard = durable.lock(&id);
    let storage = &durable.inner.storage;
    let mut state = storage.state(&id)?.unwrap_or_else(|| HolderState { namespace, ..HolderState::default() });
    if !rules::admits_writes(&state.promised, &epoch) {
        return Ok(Reply::Fenced { promised: state.promised });
    }
    state.promised = epoch;
    change(&mut state, storage, &id)
}
