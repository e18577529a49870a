//! Cluster membership: SWIM gossip over UDP with foca.
//!
//! Owns the node's view of who is in the cluster. One task owns the `Foca` instance and is
//! fed an [`Input`] enum — datagrams, timers, and commands that carry a `oneshot` reply —
//! so no lock guards the protocol state (corrosion's `FocaInput` pattern). Guarantees: a
//! member's identity carries its node id, region and addresses; a restarted node rejoins
//! with a newer identity (its `bump` is its start time) that wins over the old one; a node
//! that stops gracefully announces its departure; every change is published on a broadcast
//! channel that KV, Durable Objects and routing subscribe to. Upper layers spread their own
//! small updates ("rumors") on the same datagrams: news is pushed on at once to a few random
//! members and keeps spreading until every node has heard it.
//!
//! # Layout
//! - [`Member`]: the identity gossiped for each node.
//! - [`Membership`]: the handle other subsystems hold (members, subscribe, broadcast, leave).
//! - [`rumors`]: the [`Rumors`] trait an upper layer implements for its broadcasts.
//! - [`peers`]: gRPC channels to members, with the same fault injection.
//! - [`placement`]: rendezvous hashing, where a key lives among the members.
//! - [`faults`]: peers to drop traffic to and from, for partition tests.
//! - [`keyring`]: every datagram sealed (ChaCha20-Poly1305) under the cluster's keys; what
//!   does not open is dropped and counted.

pub mod faults;
pub mod keyring;
pub mod peers;
pub mod placement;
pub mod rumors;
/// Mutual TLS for the cluster plane (shared with the control plane, so it lives in
/// `nimbus-proto`).
pub use nimbus_proto::tls;

pub use rumors::{NoRumors, RumorError, RumorId, Rumors};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, Identity, OwnedNotification, PostcardCodec, Timer};
use nimbus_util::metrics::{ChangeLabel, Metrics, StateLabel};
use nimbus_util::tasks::Tasks;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What every node gossips about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub region: String,
    pub http_addr: SocketAddr,
    pub rpc_addr: SocketAddr,
    pub gossip_addr: SocketAddr,
    /// Votes in D1's Raft group (`d1.role = "voter"`); other nodes join it as read replicas.
    pub d1_voter: bool,
    /// Start time in ms, bumped by `renew`: the higher one is the live incarnation of a node.
    pub bump: u64,
}

impl Identity for Member {
    /// Two identities at the same gossip address are the same node (foca also routes by it:
    /// a seed is addressed by socket before its identity is known); the newer one wins.
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member { bump: self.bump + 1, ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// A membership change, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    Up(Member),
    Down(Member),
}

/// How a member looks from this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    #[serde(flatten)]
    pub member: Member,
    /// `alive`, `suspect` or `down`.
    pub state: &'static str,
    pub incarnation: u16,
    pub is_self: bool,
}

/// The membership actor's inputs.
enum Input {
    Datagram(Bytes),
    Timer(Timer<Member>),
    /// Join through the seeds (known only by address) if no member is known yet.
    AnnounceIfAlone,
    /// Every [`SEED_ANNOUNCE_TICKS`] announce ticks: announce to seeds not alive in the view.
    AnnounceToSeeds,
    Members(oneshot::Sender<Vec<MemberView>>),
    /// A rumor this node starts (see [`Rumors`]).
    Broadcast(Bytes),
    Leave(oneshot::Sender<()>),
}

/// The handle to the membership actor.
#[derive(Clone)]
pub struct Membership {
    me: Member,
    inputs: mpsc::Sender<Input>,
    /// Carries every up/down change; subscribers that lag re-read [`Membership::members`].
    events: broadcast::Sender<MembershipEvent>,
    pub faults: Arc<faults::Faults>,
    /// Rumors foca is still passing on; spreaders use a bulk path instead when it is long.
    rumor_backlog: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot bind the gossip socket on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the membership task has stopped")]
    Stopped,
}

/// Gossip settings; LAN defaults from foca, scaled by `expected_size`.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    pub listen: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub probe_period: Duration,
    pub suspect_to_down: Duration,
    pub remove_down_after: Duration,
    /// The latency matrix the peer transport applies.
    pub network: nimbus_util::config::NetworkConfig,
    /// The address peers send gossip to, when it is not the socket's own.
    pub advertise: Option<SocketAddr>,
    /// Seals and opens every datagram.
    pub keyring: Arc<keyring::Keyring>,
}

impl Membership {
    /// Binds the gossip socket and starts the actor. `me` gets the socket's real address;
    /// `rumors` receives the broadcasts peers spread.
    pub async fn start(
        mut me: Member,
        settings: GossipSettings,
        rumors: Arc<dyn Rumors>,
        metrics: Arc<Metrics>,
        tasks: &Tasks,
    ) -> Result<Membership, MembershipError> {
        let socket = UdpSocket::bind(settings.listen)
            .await
            .map_err(|source| MembershipError::Bind { addr: settings.listen, source })?;
        me.gossip_addr = match settings.advertise {
            Some(addr) => addr,
            None => socket.local_addr().map_err(|source| MembershipError::Bind { addr: settings.listen, source })?,
        };
        let socket = Arc::new(socket);
        // Room for bursts of rumors; beyond it they are dropped and anti-entropy repairs.
        let (inputs, rx) = mpsc::channel(16_384);
        let (events, _) = broadcast::channel(256);
        let faults = Arc::new(faults::Faults::new(&me.region, settings.network.clone()));
        let rumor_backlog = Arc::new(AtomicUsize::new(0));
        let membership = Membership {
            me: me.clone(),
            inputs: inputs.clone(),
            events: events.clone(),
            faults: faults.clone(),
            rumor_backlog: rumor_backlog.clone(),
        };

        let mut config = foca::Config::new_lan(NonZeroU32::new(16).unwrap_or(NonZeroU32::MIN));
        config.probe_period = settings.probe_period;
        config.probe_rtt = settings.probe_period / 2;
        config.suspect_to_down_after = settings.suspect_to_down;
        config.remove_down_after = settings.remove_down_after;
        // Sealing adds its header and tag to every datagram foca fills.
        if let Some(size) = std::num::NonZeroUsize::new(config.max_packet_size.get().saturating_sub(keyring::OVERHEAD))
        {
            config.max_packet_size = size;
        }
        // After a partition heals, each side holds the other as down; announcing to down
        // members brings them back. foca's LAN default (every 65 s) is slower than the
        // 60 s a down member is kept, so a healed partition could stay split: scale it to
        // the probe period instead.
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: settings.probe_period * 4,
            num_members: std::num::NonZeroUsize::new(2).unwrap_or(std::num::NonZeroUsize::MIN),
        });
        let fresh = Arc::new(AtomicUsize::new(0));
        let handler = rumors::RumorHandler { rumors, fresh: fresh.clone() };
        let foca = Foca::with_custom_broadcast(me, config, rand::rngs::StdRng::from_os_rng(), PostcardCodec, handler);

        let seeds: Vec<SocketAddr> = settings.seeds.into_iter().filter(|s| *s != membership.me.gossip_addr).collect();
        let keyring = settings.keyring;
        tracing::info!(primary_key = %keyring.primary_id(), "gossip sealed with ChaCha20-Poly1305");
        {
            let (socket, inputs, faults) = (socket.clone(), inputs.clone(), faults.clone());
            let (keyring, metrics) = (keyring.clone(), metrics.clone());
            tasks.spawn("gossip-receive", move |shutdown| receive(socket, inputs, faults, keyring, metrics, shutdown));
        }
        let timing = Timing { announce_every: settings.probe_period, suspect_to_down: settings.suspect_to_down };
        let out = Outputs { socket, inputs: inputs.clone(), events, faults, metrics, fresh, rumor_backlog, keyring };
        tasks.spawn("membership", move |shutdown| run(foca, rx, out, seeds, timing, shutdown));
        Ok(membership)
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// Every member this node knows, itself included.
    pub async fn members(&self) -> Result<Vec<MemberView>, MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(Input::Members(tx)).await.map_err(|_| MembershipError::Stopped)?;
        rx.await.map_err(|_| MembershipError::Stopped)
    }

    /// Starts spreading a rumor; false when the actor's queue is full and it was dropped
    /// (callers must have another way to repair, as KV's anti-entropy).
    pub fn broadcast(&self, rumor: Bytes) -> bool {
        self.inputs.try_send(Input::Broadcast(rumor)).is_ok()
    }

    /// How many rumors foca is still passing on. Each new rumor costs foca a pass over this
    /// backlog, so a spreader with many updates should send them another way.
    pub fn rumor_backlog(&self) -> usize {
        self.rumor_backlog.load(Ordering::Relaxed)
    }

    /// Members currently alive, without this node.
    pub async fn alive_peers(&self) -> Result<Vec<Member>, MembershipError> {
        Ok(self.members().await?.into_iter().filter(|m| !m.is_self && m.state == "alive").map(|m| m.member).collect())
    }

    /// Announces a graceful departure to the cluster.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(Input::Leave(tx)).await.map_err(|_| MembershipError::Stopped)?;
        rx.await.map_err(|_| MembershipError::Stopped)
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    /// How often a node that knows no one announces to its seeds.
    announce_every: Duration,
    suspect_to_down: Duration,
}

type NodeFoca = Foca<Member, PostcardCodec, rand::rngs::StdRng, rumors::RumorHandler>;

/// How many queued inputs the actor handles before it flushes what they produced, so a burst
/// of rumors leaves in a few full datagrams rather than one each.
const INPUT_BATCH: usize = 256;
/// Every this many announce ticks (probe periods), seeds not alive in the view are announced
/// to, which heals a partition that outlasted `remove_down_after`.
const SEED_ANNOUNCE_TICKS: u64 = 10;

/// Rumors assumed to fit one datagram, and the most datagram rounds one flush sends; the
/// rest rides foca's periodic gossip.
const RUMORS_PER_FLUSH: usize = 8;
const MAX_FLUSHES: usize = 16;

/// Reads datagrams, opens them with the keyring and hands what opens to the actor; what does
/// not open never reaches foca (counted in `nimbus_gossip_refused_datagrams_total`).
async fn receive(
    socket: Arc<UdpSocket>,
    inputs: mpsc::Sender<Input>,
    faults: Arc<faults::Faults>,
    keyring: Arc<keyring::Keyring>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        match received {
            Ok((len, from)) if !faults.blocks(from) => {
                let plaintext = match keyring.open(&buf[..len]) {
                    Ok(plaintext) => plaintext,
                    Err(refused) => {
                        metrics.gossip_refused.inc();
                        tracing::debug!(%from, "gossip datagram dropped: {refused}");
                        continue;
                    }
                };
                if inputs.send(Input::Datagram(Bytes::from(plaintext))).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("gossip receive: {e}"),
        }
    }
}

/// Where the actor's effects go: the network, its own timers, subscribers, metrics.
struct Outputs {
    socket: Arc<UdpSocket>,
    /// Timers come back to the actor as inputs.
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<MembershipEvent>,
    faults: Arc<faults::Faults>,
    metrics: Arc<Metrics>,
    /// Rumors that were news since the last flush (counted by the rumor handler).
    fresh: Arc<AtomicUsize>,
    /// Published after every step (see [`Membership::rumor_backlog`]).
    rumor_backlog: Arc<AtomicUsize>,
    /// Seals every datagram before it leaves.
    keyring: Arc<keyring::Keyring>,
}

async fn run(
    mut foca: NodeFoca,
    mut rx: mpsc::Receiver<Input>,
    out: Outputs,
    seeds: Vec<SocketAddr>,
    timing: Timing,
    shutdown: CancellationToken,
) {
    let mut runtime = AccumulatingRuntime::new();
    // Seeds may start after us, and a partitioned node may have forgotten everyone: keep
    // announcing while alone. The same tick runs the suspicion watchdog.
    let mut announce = tokio::time::interval(timing.announce_every);
    let mut suspicions = Suspicions::default();
    let mut ticks = 0u64;
    loop {
        let input = tokio::select! {
            _ = announce.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(SEED_ANNOUNCE_TICKS) { Input::AnnounceToSeeds } else { Input::AnnounceIfAlone }
            }
            _ = shutdown.cancelled() => {
                // Tell the others we are leaving rather than letting them suspect us.
                if foca.leave_cluster(&mut runtime).is_ok() {
                    drain(&mut runtime, &out).await;
                }
                return;
            }
            input = rx.recv() => match input {
                Some(input) => input,
                None => return,
            },
        };
        let mut handled = 0;
        let mut next = Some(input);
        while let Some(input) = next.take() {
            if let Err(e) = handle(&mut foca, input, &mut runtime, &mut suspicions, &seeds, timing, &out).await {
                tracing::debug!("foca: {e}");
            }
            handled += 1;
            if handled < INPUT_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // News (ours or heard) goes on to a few random members now; foca keeps piggybacking
        // it on later messages until it has been sent often enough.
        // A burst gets more datagrams: each carries what fits in one packet.
        let fresh = out.fresh.swap(0, Ordering::Relaxed);
        for _ in 0..fresh.div_ceil(RUMORS_PER_FLUSH).min(MAX_FLUSHES) {
            if let Err(e) = foca.broadcast(&mut runtime) {
                tracing::debug!("foca broadcast: {e}");
                break;
            }
        }
        drain(&mut runtime, &out).await;
        count_members(&foca, &out.metrics);
        out.rumor_backlog.store(foca.custom_broadcast_backlog(), Ordering::Relaxed);
    }
}

/// Feeds one input to foca.
async fn handle(
    foca: &mut NodeFoca,
    input: Input,
    runtime: &mut AccumulatingRuntime<Member>,
    suspicions: &mut Suspicions,
    seeds: &[SocketAddr],
    timing: Timing,
    out: &Outputs,
) -> Result<(), foca::Error> {
    match input {
        Input::Datagram(data) => foca.handle_data(&data, &mut *runtime),
        Input::Timer(timer) => foca.handle_timer(timer, &mut *runtime),
        Input::AnnounceIfAlone if foca.num_members() == 0 => {
            suspicions.seen.clear();
            announce_to(foca, seeds.iter(), runtime)
        }
        Input::AnnounceToSeeds => {
            // Seeds we do not count as alive: after a long partition both sides may have
            // forgotten each other entirely; a seed on the other side brings them together.
            let alive: Vec<SocketAddr> = foca.iter_members().map(|m| m.id().gossip_addr).collect();
            announce_to(foca, seeds.iter().filter(|s| !alive.contains(s)), runtime)
        }
        Input::AnnounceIfAlone => {
            let overdue = suspicions.overdue(foca, timing.suspect_to_down * 2);
            if !overdue.is_empty() {
                tracing::info!(members = ?overdue.iter().map(|m| m.id().node_id.as_str()).collect::<Vec<_>>(), "suspicion outlived its timer; declaring down");
            }
            foca.apply_many(overdue.into_iter(), true, &mut *runtime)
        }
        Input::Members(reply) => {
            let me = foca.identity().clone();
            let mut views: Vec<MemberView> = foca
                .iter_membership_state()
                .map(|m| MemberView {
                    member: m.id().clone(),
                    state: match m.state() {
                        foca::State::Alive => "alive",
                        foca::State::Suspect => "suspect",
                        foca::State::Down => "down",
                    },
                    incarnation: m.incarnation(),
                    is_self: false,
                })
                .collect();
            views.push(MemberView { member: me, state: "alive", incarnation: 0, is_self: true });
            let _ = reply.send(newest_per_node(views));
            Ok(())
        }
        // Alone, a rumor has nobody to go to and would only grow foca's backlog; whoever
        // joins later catches up by anti-entropy.
        Input::Broadcast(_) if foca.num_members() == 0 => Ok(()),
        Input::Broadcast(rumor) => foca.add_broadcast(&rumor).map(|_| ()),
        Input::Leave(reply) => {
            let result = foca.leave_cluster(&mut *runtime);
            drain(runtime, out).await;
            let _ = reply.send(());
            result
        }
    }
}

fn count_members(foca: &NodeFoca, metrics: &Metrics) {
    let (mut alive, mut suspect, mut down) = (1i64, 0i64, 0i64);
    for member in foca.iter_membership_state() {
        match member.state() {
            foca::State::Alive => alive += 1,
            foca::State::Suspect => suspect += 1,
            foca::State::Down => down += 1,
        }
    }
    for (state, n) in [("alive", alive), ("suspect", suspect), ("down", down)] {
        metrics.members.get_or_create(&StateLabel { state: state.into() }).set(n);
    }
}

/// Announces this node to `seeds`, whose identities are unknown until they answer (foca
/// routes by address).
fn announce_to<'a>(
    foca: &mut NodeFoca,
    seeds: impl Iterator<Item = &'a SocketAddr>,
    runtime: &mut AccumulatingRuntime<Member>,
) -> Result<(), foca::Error> {
    let mut result = Ok(());
    for seed in seeds {
        let probe = Member {
            node_id: format!("seed@{seed}"),
            region: String::new(),
            http_addr: *seed,
            rpc_addr: *seed,
            gossip_addr: *seed,
            d1_voter: false,
            bump: 0,
        };
        result = result.and(foca.announce(probe, &mut *runtime));
    }
    result
}

/// Members seen in the suspect state, and since when.
///
/// SWIM turns an unrefuted suspicion into `down` when its timer fires. foca keys that timer
/// to the node's own identity, so a node that renews its identity (after being told it was
/// declared down, e.g. when a partition heals) drops the timers it had pending, and a member
/// it suspected then stays suspect for ever if that member never hears of the suspicion.
/// This watchdog applies the rule foca could not: a suspicion older than twice the timeout
/// becomes `down`; the member then learns it, renews, and rejoins as alive.
#[derive(Default)]
struct Suspicions {
    seen: std::collections::HashMap<(Member, u16), std::time::Instant>,
}

impl Suspicions {
    fn overdue(&mut self, foca: &NodeFoca, after: Duration) -> Vec<foca::Member<Member>> {
        let now = std::time::Instant::now();
        let suspects: Vec<(Member, u16)> = foca
            .iter_members()
            .filter(|m| m.state() == foca::State::Suspect)
            .map(|m| (m.id().clone(), m.incarnation()))
            .collect();
        self.seen.retain(|key, _| suspects.contains(key));
        let mut overdue = Vec::new();
        for key in suspects {
            let since = *self.seen.entry(key.clone()).or_insert(now);
            if now.duration_since(since) > after {
                overdue.push(foca::Member::new(key.0.clone(), key.1, foca::State::Down));
                self.seen.remove(&key);
            }
        }
        overdue
    }
}

/// One view per node: a node that renewed its identity (restart, or rejoin after being
/// declared down) can still be listed under its older identity until foca forgets it; the
/// identity with the highest bump is the live one.
fn newest_per_node(mut views: Vec<MemberView>) -> Vec<MemberView> {
    views.sort_by(|a, b| a.member.node_id.cmp(&b.member.node_id).then(b.member.bump.cmp(&a.member.bump)));
    views.dedup_by(|later, first| later.member.node_id == first.member.node_id);
    views
}

/// Carries out what foca asked for: datagrams, timers, notifications.
async fn drain(runtime: &mut AccumulatingRuntime<Member>, out: &Outputs) {
    let Outputs { socket, inputs, events, faults, metrics, keyring, .. } = out;
    while let Some((to, data)) = runtime.to_send() {
        if faults.blocks(to.gossip_addr) {
            continue;
        }
        let data = keyring.seal(&data);
        let link = faults.link_to_region(&to.region);
        if !link.is_clear() {
            // The simulated network: the datagram leaves after the link's delay, or is lost.
            let Some(delay) = faults.shape_datagram(&link) else { continue };
            let (socket, metrics) = (socket.clone(), metrics.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(sent) = socket.send_to(&data, to.gossip_addr).await {
                    metrics.gossip_sent_bytes.inc_by(sent as u64);
                }
            });
            continue;
        }
        match socket.send_to(&data, to.gossip_addr).await {
            Ok(sent) => {
                metrics.gossip_sent_bytes.inc_by(sent as u64);
            }
            Err(e) => tracing::debug!(to = %to.gossip_addr, "gossip send: {e}"),
        }
    }
    while let Some((after, timer)) = runtime.to_schedule() {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inputs.send(Input::Timer(timer)).await;
        });
    }
    while let Some(notification) = runtime.to_notify() {
        let event = match notification {
            OwnedNotification::MemberUp(m) => Some(MembershipEvent::Up(m)),
            OwnedNotification::MemberDown(m) => Some(MembershipEvent::Down(m)),
            OwnedNotification::Rename(old, new) => {
                tracing::info!(node = %new.node_id, old_bump = old.bump, new_bump = new.bump, "member renamed");
                None
            }
            _ => None,
        };
        if let Some(event) = event {
            let change = match &event {
                MembershipEvent::Up(m) => {
                    tracing::info!(node = %m.node_id, region = %m.region, "member up");
                    faults.learn_region(m.gossip_addr, &m.region);
                    "up"
                }
                MembershipEvent::Down(m) => {
                    tracing::info!(node = %m.node_id, "member down");
                    "down"
                }
            };
            metrics.member_changes.get_or_create(&ChangeLabel { change: change.into() }).inc();
            let _ = events.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node: &str, bump: u64, state: &'static str) -> MemberView {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        MemberView {
            member: Member {
                node_id: node.into(),
                region: "r".into(),
                http_addr: addr,
                rpc_addr: addr,
                gossip_addr: addr,
                d1_voter: false,
                bump,
            },
            state,
            incarnation: 0,
            is_self: false,
        }
    }

    #[test]
    fn a_renewed_identity_hides_the_old_one() {
        let views = vec![view("b", 1, "down"), view("a", 5, "alive"), view("b", 2, "alive")];
        let states: Vec<(String, u64, &str)> =
            newest_per_node(views).into_iter().map(|v| (v.member.node_id, v.member.bump, v.state)).collect();
        assert_eq!(states, [("a".to_string(), 5, "alive"), ("b".to_string(), 2, "alive")]);
    }

    #[test]
    fn renewing_bumps_and_the_newer_identity_wins() {
        let old = view("a", 7, "alive").member;
        let new = old.renew().expect("renewable");
        assert_eq!(new.bump, 8);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
