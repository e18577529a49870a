//! Long-lived tasks and shutdown.
//!
//! Every task the node starts goes through [`Tasks::spawn`], which hands it the shutdown
//! token; [`Tasks::shutdown`] cancels the token and waits for every task to return, so a
//! node stops with its RocksDB flushed and no request half-served by a dying task.

use std::future::Future;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    /// Cancelled once, when the node begins to stop; every task selects on it.
    shutdown: CancellationToken,
    /// Counts live tasks so shutdown can wait for the last one.
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts a named task that is given the shutdown token.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = task(self.shutdown.clone());
        self.tracker.spawn(async move {
            fut.await;
            tracing::debug!(task = name, "task finished");
        });
    }

    /// Cancels every task and waits for all of them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
