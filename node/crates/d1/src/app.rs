//! Applications: state machines that share the D1 Raft group beside the users' databases.
//!
//! R2's metadata (and later Queues and Cron Triggers) needs what D1's group already has: one
//! leader, a quorum-committed log, follower reads after the read index, snapshots. Instead of
//! a second group, an application registers here under a name at start and receives its own
//! commands, as opaque bytes it encodes and decodes itself, in log order on every replica.
//!
//! The contract an application keeps:
//! - `apply` is deterministic: the same command on the same state gives the same state and
//!   reply on every replica (times and ids travel in the command, chosen by the proposer);
//! - a command an application refuses (a failed precondition, a malformed command) is a
//!   reply saying so, never an `Err`: `Err` means its storage failed, and stops this replica;
//! - `apply` with an index the application already holds (a replay after a crash) changes
//!   nothing; the commands of one index (the leader's batcher groups concurrent ones into
//!   one entry) apply as one step, in order;
//! - `snapshot` and `restore` round-trip the whole state; `restore(None)` empties it (a
//!   snapshot made before the application existed).
//!
//! The crate that implements an application need not depend on D1: the node adapts it
//! (`nimbus-node`'s store wiring), so siblings stay apart.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A state machine fed by the group's log.
pub trait Application: Send + Sync + 'static {
    /// Applies the commands committed together at log `index`, in order; one reply per
    /// command, each for its proposer.
    fn apply(&self, index: u64, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String>;
    /// The whole state, for a snapshot taken while applies wait.
    fn snapshot(&self) -> Result<Vec<u8>, String>;
    /// Replaces the whole state with a snapshot's image (`None`: the empty state).
    fn restore(&self, image: Option<&[u8]>) -> Result<(), String>;
}

/// The applications of a group, by name.
pub type Applications = BTreeMap<String, Arc<dyn Application>>;
