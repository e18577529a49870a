//! This node's view of the Raft group, for `nimbus cluster status`, `/v1/node/d1` and
//! `/metrics`.

use super::D1;
pub use nimbus_api::node::D1Status;
use nimbus_util::config::D1Role;

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
