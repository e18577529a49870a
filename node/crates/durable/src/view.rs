//! The membership view placement runs on: the live members, and how many are known.
//!
//! A task follows membership events (and re-reads the member list every half second, in
//! case a burst of events was missed) and publishes a [`View`] on a watch channel whenever
//! the live set changes. A node that sees only a minority of the members it knows alive
//! owns nothing: the other side of a partition may hold the majority and serve.
//!
//! "Known" includes members this node has seen in the last [`REMEMBER`], persisted across
//! restarts: a node that has just restarted and not yet heard from anyone must not count
//! itself a majority of one and take over objects the running cluster still owns. Until
//! [`follow`] has published its first view (the persisted memory merged with what gossip
//! says), the channel holds an [`View::unpublished`] view, which owns nothing: requests
//! wait for the first view (or fail with 503) and the alarm scheduler does not start.

use super::placement;
use super::ObjectId;
use nimbus_cluster::{Member, Membership};
use nimbus_storage::{Batch, Storage, CF_META};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub me: String,
    /// Alive or suspected members (this node included), sorted by node id.
    pub live: Vec<Member>,
    /// Members gossip still remembers, down ones included.
    pub known: usize,
    /// False until the first view built from the member memory and gossip is published.
    pub ready: bool,
}

impl View {
    /// The view before the first one is published: this node alone, owning nothing.
    pub fn unpublished(me: Member) -> Self {
        View { me: me.node_id.clone(), live: vec![me], known: 1, ready: false }
    }

    /// True when this node has published a view and sees a strict majority of the members
    /// it knows in it.
    pub fn has_majority(&self) -> bool {
        self.ready && self.live.len() * 2 > self.known
    }

    /// The owner then the successors of `id`.
    pub fn holders(&self, id: &ObjectId) -> Vec<&Member> {
        let names: Vec<&str> = self.live.iter().map(|m| m.node_id.as_str()).collect();
        placement::holders(id, &names)
            .into_iter()
            .filter_map(|name| self.live.iter().find(|m| m.node_id == name))
            .collect()
    }

    /// The member that owns `id` in this view, if this side of the cluster may own anything.
    pub fn owner(&self, id: &ObjectId) -> Option<&Member> {
        if !self.has_majority() {
            return None;
        }
        self.holders(id).into_iter().next()
    }

    pub fn owns(&self, id: &ObjectId) -> bool {
        self.owner(id).is_some_and(|m| m.node_id == self.me)
    }
}

/// How long a member that gossip no longer lists still counts as known.
pub const REMEMBER: Duration = Duration::from_secs(600);
const REMEMBERED_KEY: &[u8] = b"durable/members";

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Members seen lately (node id → last seen, ms since the epoch), as persisted.
fn remembered(storage: &Storage) -> BTreeMap<String, u64> {
    storage
        .get(CF_META, REMEMBERED_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The channel [`follow`] publishes on, holding the unpublished view until it does.
pub fn channel(me: Member) -> (watch::Sender<View>, watch::Receiver<View>) {
    watch::channel(View::unpublished(me))
}

/// Keeps `publish` up to date with membership until shutdown. `hold_first` delays the first
/// view (a debug-build test knob, `admin.unsafe_hold_durable_view_ms`: it widens the window
/// a restarted node spends without a view, so a test can aim requests into it).
///
/// The first view is published only when it can be trusted: the member memory is loaded
/// (its members count as seen now, so a node that was down longer than [`REMEMBER`] still
/// knows them) and, for a node that joins through seeds (`seeded`), either the memory or
/// gossip names another member: a new node that has heard from nobody yet is not a
/// majority of one.
pub async fn follow(
    membership: Membership,
    storage: Storage,
    publish: watch::Sender<View>,
    seeded: bool,
    hold_first: Duration,
    shutdown: CancellationToken,
) {
    if !hold_first.is_zero() {
        tracing::warn!(?hold_first, "admin.unsafe_hold_durable_view_ms: holding back the first durable view");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(hold_first) => {}
        }
    }
    let mut events = membership.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let loaded = now_ms();
    // Forgetting counts time this node has run without seeing a member, not time it was down.
    let mut seen: BTreeMap<String, u64> = remembered(&storage).into_keys().map(|id| (id, loaded)).collect();
    let mut persisted_at = 0u64;
    loop {
        if let Ok(members) = membership.members().await {
            let now = now_ms();
            let mut new_member = false;
            for m in &members {
                new_member |= seen.insert(m.member.node_id.clone(), now).is_none();
            }
            let forget_before = now.saturating_sub(REMEMBER.as_millis() as u64);
            seen.retain(|_, last| *last >= forget_before);
            // Persist every new member at once, the timestamps now and then.
            if new_member || now.saturating_sub(persisted_at) > 5_000 {
                let mut batch = Batch::default();
                batch.put(CF_META, REMEMBERED_KEY, serde_json::to_vec(&seen).unwrap_or_default());
                if storage.write_unsynced(batch).is_ok() {
                    persisted_at = now;
                }
            }
            let me = &membership.me().node_id;
            if seeded && !publish.borrow().ready && !seen.keys().any(|id| id != me) {
                // Nobody known yet: wait for gossip to reach a seed.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = events.recv() => {}
                    _ = tick.tick() => {}
                }
                continue;
            }
            let known = seen.len().max(members.len()).max(1);
            let mut live: Vec<Member> = members.into_iter().filter(|m| m.state != "down").map(|m| m.member).collect();
            if !live.iter().any(|m| m.node_id == membership.me().node_id) {
                live.push(membership.me().clone());
            }
            live.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            let view = View { me: membership.me().node_id.clone(), live, known, ready: true };
            publish.send_if_modified(|current| {
                if *current == view {
                    false
                } else {
                    tracing::info!(
                        live = view.live.len(),
                        known = view.known,
                        "durable objects: membership view changed"
                    );
                    *current = view;
                    true
                }
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = events.recv() => {}
            _ = tick.tick() => {}
        }
    }
}
