//! A holder's side of the ownership protocol.
//!
//! A holder keeps one promise per object: the highest epoch it has accepted. It refuses
//! anything from an older epoch ([`Reply::Fenced`]), which is what stops a deposed owner from
//! releasing a response. Steps apply only in order from the version held; a holder that is
//! behind or diverged answers [`Reply::NeedSnapshot`] and gets the owner's whole copy. Every
//! change to a copy and its holder state is one atomic write.

use super::storage::HolderState;
use super::wire::{Epoch, Reply, Request};
use super::{error_reply, Durable, DurableError, ObjectId};

/// Answers one protocol request; runs on the blocking pool (RocksDB).
pub fn serve(durable: &Durable, request: Request) -> Reply {
    let result = match request {
        Request::Promise { namespace, id, epoch } => promise(durable, ObjectId(id), namespace, epoch),
        Request::Replicate { namespace, id, epoch, steps } => {
            with_epoch(durable, ObjectId(id), namespace, epoch, |state, storage, id| {
                // Each applied step records the state with it; only a batch that applied
                // nothing needs the (possibly newer) promise recorded alone.
                let mut recorded = false;
                let mut reply = Reply::Replicated;
                for step in steps {
                    if step.version <= state.version {
                        continue; // already here (a retried batch, or covered by a snapshot)
                    }
                    if step.base != state.version {
                        reply = Reply::NeedSnapshot;
                        break;
                    }
                    state.version = step.version;
                    storage.apply(id, &step.writes, state)?;
                    recorded = true;
                }
                if !recorded {
                    storage.set_state(id, state)?;
                }
                Ok(reply)
            })
        }
        Request::Install { namespace, id, epoch, snapshot } => {
            with_epoch(durable, ObjectId(id), namespace, epoch, |state, storage, id| {
                state.version = snapshot.version;
                storage.install(id, &snapshot, state)?;
                Ok(Reply::Replicated)
            })
        }
        Request::Pull { id, epoch } => {
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

fn promise(durable: &Durable, id: ObjectId, namespace: String, epoch: Epoch) -> Result<Reply, DurableError> {
    let _guard = durable.lock(&id);
    let storage = &durable.inner.storage;
    let mut state = storage.state(&id)?.unwrap_or_else(|| HolderState { namespace, ..HolderState::default() });
    if state.promised > epoch {
        return Ok(Reply::Fenced { promised: state.promised });
    }
    if state.promised < epoch {
        state.promised = epoch;
        storage.set_state(&id, &state)?;
    }
    Ok(Reply::Promised(state.version))
}

/// Runs `change` on the object's holder state if `epoch` is not older than the promise
/// (accepting it as the promise if newer: its owner reached a majority without this node).
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
    if state.promised > epoch {
        return Ok(Reply::Fenced { promised: state.promised });
    }
    state.promised = epoch;
    change(&mut state, storage, &id)
}
