//! The faults. Each nemesis is injected once, held, then healed; it records which nodes it
//! took out and when, so availability is measured on the survivors.

use crate::api::Api;
use crate::history::History;
use crate::target::Target;
use anyhow::{anyhow, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// SIGKILL a random node, start it again at the heal.
    KillRandom,
    /// SIGKILL D1's Raft leader.
    KillD1Leader,
    /// SIGKILL the node that runs the scenario's Durable Object.
    KillDoOwner,
    /// SIGSTOP a random node (it keeps its sockets and goes silent), SIGCONT at the heal.
    Pause,
    /// Cut one random node off from all others.
    PartitionOne,
    /// Cut one region off from the others.
    PartitionRegion,
    /// Split the cluster into a majority and a minority that includes the D1 leader.
    SplitMajority,
    /// 150 ms ± 50 ms more on every peer link.
    LatencySpike,
    /// 20 % loss on every peer link.
    LossSpike,
    /// The control plane is stopped; nodes serve what they have.
    ControlPlaneDown,
    /// Every node is restarted gracefully, one after another.
    RollingRestart,
    /// SIGKILL and restart a successor of the scenario's Durable Object, then at once its
    /// owner, with the counter's requests aimed at each node as it comes back.
    RestartStorm,
}

pub const ALL: &[Nemesis] = &[
    Nemesis::KillRandom,
    Nemesis::KillD1Leader,
    Nemesis::KillDoOwner,
    Nemesis::Pause,
    Nemesis::PartitionOne,
    Nemesis::PartitionRegion,
    Nemesis::SplitMajority,
    Nemesis::LatencySpike,
    Nemesis::LossSpike,
    Nemesis::ControlPlaneDown,
    Nemesis::RollingRestart,
    Nemesis::RestartStorm,
];

impl Nemesis {
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillRandom => "kill-random",
            Nemesis::KillD1Leader => "kill-d1-leader",
            Nemesis::KillDoOwner => "kill-do-owner",
            Nemesis::Pause => "pause",
            Nemesis::PartitionOne => "partition-one",
            Nemesis::PartitionRegion => "partition-region",
            Nemesis::SplitMajority => "split-majority",
            Nemesis::LatencySpike => "latency-spike",
            Nemesis::LossSpike => "loss-spike",
            Nemesis::ControlPlaneDown => "control-plane-down",
            Nemesis::RollingRestart => "rolling-restart",
            Nemesis::RestartStorm => "restart-storm",
        }
    }

    pub fn parse(name: &str) -> Option<Nemesis> {
        ALL.iter().copied().find(|n| n.name() == name)
    }
}

/// A node taken out of service by the nemesis, from `from` to `to` (run time).
#[derive(Debug, Clone)]
pub struct Outage {
    pub node: usize,
    pub from: Duration,
    pub to: Duration,
}

/// What the nemesis did, for the report and for undoing it.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    pub description: String,
    /// Nodes out of service, and since when (closed once the heal has brought them back).
    pub down: Vec<(usize, Duration)>,
    /// Outages that began and ended during the injection (a rolling restart's).
    pub closed: Vec<Outage>,
    killed: Vec<usize>,
    paused: Vec<usize>,
    faults: bool,
    control_plane: bool,
    /// Before the heal, wait (bounded) until these nodes follow a leader other than this one.
    await_new_leader: Option<(usize, Vec<usize>)>,
}

/// Facts a nemesis may need to pick its victim, and how it steers the clients.
pub struct Knowledge {
    /// The node that runs the scenario's Durable Object, if known.
    pub do_owner: Option<usize>,
    /// The scenario's Durable Object id (hex), to find its successors.
    pub do_id: Option<String>,
    /// Where the counter clients aim half their requests (see [`crate::workload::Aim`]).
    pub aim: crate::workload::Aim,
}

/// The nodes that hold object `id` (hex), owner first, as the node places it: rendezvous
/// hashing, each node scoring `sha256(id ‖ node id)`.
pub fn holders_of(id: &str, nodes: &[String]) -> Vec<usize> {
    use sha2::{Digest, Sha256};
    let Ok(bytes) = hex::decode(id) else { return Vec::new() };
    let mut scored: Vec<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let hash = Sha256::new().chain_update(&bytes).chain_update(node.as_bytes()).finalize();
            let mut top = [0u8; 8];
            top.copy_from_slice(&hash[..8]);
            (u64::from_be_bytes(top), i)
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| nodes[a.1].cmp(&nodes[b.1])));
    scored.into_iter().take(3).map(|(_, i)| i).collect()
}

pub async fn d1_leader(target: &Target, api: &Api) -> Option<usize> {
    for url in target.urls() {
        if let Ok(status) = api.d1_status(&url).await {
            if let Some(leader) = status["leader"].as_str() {
                return target.index_of(leader);
            }
        }
    }
    None
}

fn region_groups(target: &Target) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for i in 0..target.len() {
        let region = target.region(i);
        match groups.iter_mut().find(|(r, _)| *r == region) {
            Some((_, nodes)) => nodes.push(i),
            None => groups.push((region, vec![i])),
        }
    }
    groups
}

impl Nemesis {
    pub async fn inject(
        self,
        target: &mut Target,
        api: &Api,
        rng: &mut StdRng,
        knowledge: &Knowledge,
        history: &History,
    ) -> Result<Injected> {
        let now = history.now();
        let n = target.len();
        let mut injected = Injected::default();
        match self {
            Nemesis::KillRandom | Nemesis::KillD1Leader | Nemesis::KillDoOwner => {
                let victim = match self {
                    Nemesis::KillD1Leader => {
                        d1_leader(target, api).await.ok_or_else(|| anyhow!("no D1 leader is known"))?
                    }
                    Nemesis::KillDoOwner => {
                        knowledge.do_owner.ok_or_else(|| anyhow!("the object's owner is not known"))?
                    }
                    _ => rng.random_range(0..n),
                };
                target.kill(victim).await?;
                let how = if target.name() == "docker" { "docker kill -s KILL" } else { "SIGKILL" };
                injected.description = format!("{how} {}", target.node_name(victim));
                injected.killed.push(victim);
                injected.down.push((victim, now));
            }
            Nemesis::Pause => {
                let victim = rng.random_range(0..n);
                target.pause(victim).await?;
                let how = if target.name() == "docker" { "docker pause" } else { "SIGSTOP" };
                injected.description = format!("{how} {}", target.node_name(victim));
                injected.paused.push(victim);
                injected.down.push((victim, now));
            }
            Nemesis::PartitionOne => {
                let victim = rng.random_range(0..n);
                target.isolate(api, victim).await?;
                let how = if target.name() == "docker" { "docker network disconnect" } else { "isolate" };
                injected.description = format!("{how} {}", target.node_name(victim));
                injected.faults = true;
            }
            Nemesis::PartitionRegion => {
                let groups = region_groups(target);
                let (region, cut) = groups[rng.random_range(0..groups.len())].clone();
                let rest: Vec<usize> = (0..n).filter(|i| !cut.contains(i)).collect();
                target.split(api, &[cut, rest], json!({})).await?;
                injected.description = format!("cut region {region} off");
                injected.faults = true;
            }
            Nemesis::SplitMajority => {
                let leader = d1_leader(target, api).await.unwrap_or(0);
                let mut minority = vec![leader];
                while minority.len() < (n - 1) / 2 {
                    let pick = rng.random_range(0..n);
                    if !minority.contains(&pick) {
                        minority.push(pick);
                    }
                }
                let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
                let names: Vec<String> = minority.iter().map(|i| target.node_name(*i)).collect();
                target.split(api, &[minority, majority.clone()], json!({})).await?;
                // Writes at the cut-off leader: a build that acknowledges before a quorum
                // commits loses them, every time, once the majority has a leader of its own.
                knowledge.aim.set(Some(leader));
                injected.description = format!("minority {{{}}} (with the D1 leader) split off", names.join(", "));
                injected.faults = true;
                injected.await_new_leader = Some((leader, majority));
            }
            Nemesis::LatencySpike => {
                target.spike(api, json!({"delay_ms": 150.0, "jitter_ms": 50.0})).await?;
                injected.description = "+150 ms ± 50 ms on every peer link".into();
                injected.faults = true;
            }
            Nemesis::LossSpike => {
                target.spike(api, json!({"loss": 0.2})).await?;
                injected.description = "20 % loss on every peer link".into();
                injected.faults = true;
            }
            Nemesis::ControlPlaneDown => {
                target.control_plane_down().await?;
                injected.description = "control plane stopped".into();
                injected.control_plane = true;
            }
            Nemesis::RollingRestart => {
                let mut names = Vec::new();
                for i in 0..n {
                    let from = history.now();
                    target.restart(i).await?;
                    target.wait_healthy(api, i, Duration::from_secs(60)).await?;
                    injected.closed.push(Outage { node: i, from, to: history.now() });
                    names.push(target.node_name(i));
                }
                injected.description = format!("graceful restart of {}", names.join(", "));
            }
            Nemesis::RestartStorm => {
                let owner = knowledge.do_owner.ok_or_else(|| anyhow!("the object's owner is not known"))?;
                let names: Vec<String> = (0..n).map(|i| target.node_name(i)).collect();
                let id = knowledge.do_id.as_deref().unwrap_or_default();
                let successors: Vec<usize> = holders_of(id, &names).into_iter().filter(|h| *h != owner).collect();
                let holder = match successors.as_slice() {
                    [] => (0..n).find(|i| *i != owner).ok_or_else(|| anyhow!("one node: nothing to restart"))?,
                    list => list[rng.random_range(0..list.len())],
                };
                let how = if target.name() == "docker" { "docker kill -s KILL + start" } else { "SIGKILL + start" };
                for victim in [holder, owner] {
                    let from = history.now();
                    target.kill(victim).await?;
                    target.start(victim).await?;
                    // Requests at the node the moment it is back: the window before it knows
                    // the cluster is where a stale copy could answer.
                    knowledge.aim.set(Some(victim));
                    target.wait_healthy(api, victim, Duration::from_secs(60)).await?;
                    injected.closed.push(Outage { node: victim, from, to: history.now() });
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                knowledge.aim.set(None);
                injected.description = format!(
                    "{how} successor {} then owner {} of the counter",
                    target.node_name(holder),
                    target.node_name(owner)
                );
            }
        }
        Ok(injected)
    }

    /// Undoes what [`Nemesis::inject`] did; returns the outages it closed.
    pub async fn heal(
        self,
        target: &mut Target,
        api: &Api,
        injected: &Injected,
        history: &History,
    ) -> Result<Vec<Outage>> {
        if let Some((old, majority)) = &injected.await_new_leader {
            // Only a majority side that holds most of D1's voters can elect; heal either way.
            if !wait_for_new_leader(target, api, *old, majority).await {
                crate::scenario::progress(
                    "the majority side elected no D1 leader of its own (too few voters); healing",
                );
            }
        }
        for &node in &injected.paused {
            target.resume(node).await?;
        }
        for &node in &injected.killed {
            target.start(node).await?;
            target.wait_healthy(api, node, Duration::from_secs(60)).await?;
        }
        if injected.faults {
            target.heal(api).await?;
        }
        if injected.control_plane {
            target.control_plane_up().await?;
        }
        let now = history.now();
        let mut outages = injected.closed.clone();
        outages.extend(injected.down.iter().map(|&(node, from)| Outage { node, from, to: now }));
        Ok(outages)
    }
}

/// Waits (up to 20 s) until one of `nodes` reports a D1 leader other than `old`; false if
/// none did.
async fn wait_for_new_leader(target: &Target, api: &Api, old: usize, nodes: &[usize]) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let urls = target.urls();
    loop {
        for &node in nodes {
            let Some(url) = urls.get(node) else { continue };
            if let Ok(status) = api.d1_status(url).await {
                let leader = status["leader"].as_str().and_then(|l| target.index_of(l));
                if leader.is_some_and(|l| l != old) {
                    return true;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
