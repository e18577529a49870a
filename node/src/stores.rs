//! Where sibling stores meet without depending on each other: R2 keeps its metadata, and
//! Queues its state, in D1's Raft group (see `R2.md`, `QUEUES.md`). Each hands D1 an
//! application ([`R2Metadata`], [`QueuesState`]) and receives a log ([`D1Log`]); neither crate
//! names the other.

use nimbus_d1::{app::Application, D1Error, D1};
use nimbus_queues::{state::State as QueueState, QueueError, QueueLog};
use nimbus_r2::meta::{Metadata, APP};
use nimbus_r2::{MetadataLog, R2Error};
use std::sync::Arc;

/// Declares a newtype over a sibling's state file that serves it to D1 as an application:
/// the file's own `apply`, `snapshot` and `restore`, errors as text.
macro_rules! application {
    ($(#[$doc:meta])* $name:ident($state:ty)) => {
        $(#[$doc])*
        pub struct $name(pub Arc<$state>);

        impl Application for $name {
            fn apply(&self, index: u64, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
                self.0.apply(index, commands).map_err(|e| e.to_string())
            }

            fn snapshot(&self) -> Result<Vec<u8>, String> {
                self.0.snapshot().map_err(|e| e.to_string())
            }

            fn restore(&self, image: Option<&[u8]>) -> Result<(), String> {
                self.0.restore(image).map_err(|e| e.to_string())
            }
        }
    };
}

application!(
    /// R2's metadata as an application of D1's group.
    R2Metadata(Metadata)
);
application!(
    /// Queues' state as an application of D1's group.
    QueuesState(QueueState)
);

/// The applications D1's group carries, by name.
pub fn applications(r2: Arc<Metadata>, queues: Arc<QueueState>) -> nimbus_d1::app::Applications {
    let mut apps = nimbus_d1::app::Applications::new();
    apps.insert(APP.to_owned(), Arc::new(R2Metadata(r2)) as Arc<dyn Application>);
    apps.insert(nimbus_queues::state::APP.to_owned(), Arc::new(QueuesState(queues)) as Arc<dyn Application>);
    apps
}

/// D1's group as R2's metadata log.
pub struct D1Log(pub D1);

fn r2_error(error: D1Error) -> R2Error {
    match error {
        D1Error::Unavailable(reason) => R2Error::Unavailable(reason),
        e @ D1Error::BookmarkTimeout { .. } => R2Error::Unavailable(e.to_string()),
        e @ D1Error::ForwardToLeader { .. } => R2Error::Unavailable(e.to_string()),
        other => R2Error::Internal(format!("metadata log: {other}")),
    }
}

#[async_trait::async_trait]
impl MetadataLog for D1Log {
    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, R2Error> {
        self.0.propose_app(APP, command).await.map(|(reply, _)| reply).map_err(r2_error)
    }

    async fn linearize(&self) -> Result<(), R2Error> {
        self.0.linearize().await.map(|_| ()).map_err(r2_error)
    }

    fn leads(&self) -> bool {
        self.0.leads()
    }
}

fn queue_error(error: D1Error) -> QueueError {
    match error {
        D1Error::Unavailable(reason) => QueueError::Unavailable(reason),
        e @ (D1Error::BookmarkTimeout { .. } | D1Error::ForwardToLeader { .. }) => {
            QueueError::Unavailable(e.to_string())
        }
        other => QueueError::Internal(format!("queues log: {other}")),
    }
}

#[async_trait::async_trait]
impl QueueLog for D1Log {
    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, QueueError> {
        self.0.propose_app(nimbus_queues::state::APP, command).await.map(|(reply, _)| reply).map_err(queue_error)
    }

    async fn linearize(&self) -> Result<(), QueueError> {
        self.0.linearize().await.map(|_| ()).map_err(queue_error)
    }

    fn leads(&self) -> bool {
        self.0.leads()
    }
}
