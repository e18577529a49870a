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
}

/// Facts a nemesis may need to pick its victim.
pub struct Knowledge {
    /// The node that runs the scenario's Durable Object, if known.
    pub do_owner: Option<usize>,
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
                target.split(api, &[minority, majority], json!({})).await?;
                injected.description = format!("minority {{{}}} (with the D1 leader) split off", names.join(", "));
                injected.faults = true;
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
