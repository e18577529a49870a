//! This node's view of the Raft group, for `nimbus cluster status`, `/v1/node/d1` and
//! `/metrics`.

use super::D1;
use crate::config::D1Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The node's view of the Raft group, for `nimbus cluster status` and `/v1/node/d1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct D1Status {
    pub node_id: String,
    pub raft_id: u64,
    pub role: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<String>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Entries committed (as far as this node knows) but not yet applied here.
    pub lag: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub snapshots_installed: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// The RPC address the group's membership records for each node (by name).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    pub databases: usize,
    pub staleness_ms: Option<u64>,
}

impl D1 {
    pub fn status(&self) -> D1Status {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let name_of = |id: &u64| membership.get_node(id).map(|n| n.name.clone()).unwrap_or_else(|| format!("#{id}"));
        let voters: Vec<String> = membership.voter_ids().map(|id| name_of(&id)).collect();
        let learners: Vec<String> = membership.learner_ids().map(|id| name_of(&id)).collect();
        let addresses = membership.nodes().map(|(_, n)| (n.name.clone(), n.rpc_addr.clone())).collect();
        let applied_index = metrics.last_applied.map_or(0, |id| id.index);
        let commit_index = self.inner.log.committed_index().max(applied_index);
        D1Status {
            node_id: self.inner.me.name.clone(),
            raft_id: self.inner.id,
            role: match self.inner.settings.role {
                D1Role::Voter => "voter".into(),
                D1Role::Replica => "replica".into(),
            },
            state: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader.map(|id| name_of(&id)),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            commit_index,
            applied_index,
            lag: commit_index.saturating_sub(applied_index),
            snapshot_index: metrics.snapshot.map(|id| id.index),
            purged_index: metrics.purged.map(|id| id.index),
            snapshots_installed: self.inner.sm.snapshots_installed(),
            voters,
            learners,
            addresses,
            databases: self.inner.sm.databases().len(),
            staleness_ms: self.staleness_ms(),
        }
    }
}
