//! Forms the Raft group from gossip and keeps its membership in step with the cluster.
//!
//! - Before the group exists: once `bootstrap_expect` voters are alive, the one with the
//!   lowest node id initialises the group with all of them (the others wait to hear from it).
//! - On the leader: every alive node that Raft does not know yet joins as a learner (a read
//!   replica); a node configured as a voter is promoted once it has caught up. Nodes are never
//!   removed automatically: a voter that is down still counts towards the quorum, as it must.
//! - Everywhere: the address book follows gossip, so a node restarted on new ports is reached
//!   at its new address.

use super::types::{raft_id, D1Node};
use super::D1;
use nimbus_cluster::{Member, Membership, MembershipEvent};
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A learner this close to the leader's log is promoted to voter.
const PROMOTE_WITHIN: u64 = 64;

pub fn node_of(member: &Member) -> D1Node {
    D1Node {
        name: member.node_id.clone(),
        rpc_addr: member.rpc_addr.to_string(),
        gossip_addr: member.gossip_addr.to_string(),
    }
}

pub async fn run(d1: D1, membership: Membership, shutdown: CancellationToken) {
    let mut events = membership.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            event = events.recv() => {
                if let Ok(MembershipEvent::Up(member)) = &event {
                    d1.address_book().set(&member.node_id, member.rpc_addr, member.gossip_addr);
                }
            }
        }
        if let Err(e) = step(&d1, &membership).await {
            tracing::debug!("d1 group: {e}");
        }
    }
}

async fn step(d1: &D1, membership: &Membership) -> Result<(), String> {
    let members = membership.members().await.map_err(|e| e.to_string())?;
    let alive: Vec<&Member> = members.iter().filter(|v| v.state == "alive").map(|v| &v.member).collect();
    for member in &alive {
        d1.address_book().set(&member.node_id, member.rpc_addr, member.gossip_addr);
    }
    let raft = d1.raft();
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        return bootstrap(d1, &alive).await;
    }
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(metrics.id) {
        return Ok(());
    }
    let config = metrics.membership_config.membership().clone();
    let known: BTreeSet<u64> = config.nodes().map(|(id, _)| *id).collect();
    let voters: BTreeSet<u64> = config.voter_ids().collect();
    for member in &alive {
        let id = raft_id(&member.node_id);
        if !known.contains(&id) {
            tracing::info!(node = %member.node_id, "adding a D1 learner");
            raft.add_learner(id, node_of(member), false).await.map_err(|e| e.to_string())?;
            continue;
        }
        // Keep the address Raft records current (it is what a node learns on a snapshot).
        // `SetNodes`, not `add_learner`: openraft's `AddNodes` never overwrites a known node,
        // so re-adding would append a membership entry every tick and change nothing.
        let recorded = config.get_node(&id);
        if recorded.is_some_and(|n| *n != node_of(member)) {
            tracing::info!(node = %member.node_id, rpc = %member.rpc_addr, "recording a D1 node's new address");
            raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node_of(member))])), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        if member.d1_voter && !voters.contains(&id) {
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |log_id| log_id.index);
            if last.saturating_sub(matched) <= PROMOTE_WITHIN {
                tracing::info!(node = %member.node_id, "promoting a D1 learner to voter");
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

async fn bootstrap(d1: &D1, alive: &[&Member]) -> Result<(), String> {
    let me = d1.me();
    let voters: Vec<&&Member> = alive.iter().filter(|m| m.d1_voter).collect();
    if !alive.iter().any(|m| m.node_id == me.name && m.d1_voter) || voters.len() < d1.settings().bootstrap_expect {
        return Ok(());
    }
    if voters.iter().map(|m| &m.node_id).min() != Some(&me.name) {
        return Ok(());
    }
    let nodes: BTreeMap<u64, D1Node> = voters.iter().map(|m| (raft_id(&m.node_id), node_of(m))).collect();
    tracing::info!(voters = ?nodes.values().map(|n| n.name.clone()).collect::<Vec<_>>(), "initialising the D1 group");
    d1.raft().initialize(nodes).await.map_err(|e| e.to_string())
}
