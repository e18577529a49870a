//! Fault injection and network shaping in the peer transport: the one place that decides
//! what happens to a datagram or a gRPC call between two nodes.
//!
//! - **Partitions.** Traffic to and from blocked peers is dropped, both ways, gossip and gRPC.
//! - **Geo latency.** A latency matrix between regions (from `[network]` in the config) gives
//!   every link a one-way delay, jitter and loss. It stands in for `tc netem` on hosts whose
//!   kernel has none: a gossip datagram leaves after the delay (or is lost); a gRPC call waits
//!   one delay before it is sent and one after its response arrives, and a lost segment costs
//!   TCP's minimum retransmission timeout (200 ms). Streamed messages after the first are
//!   not delayed.
//! - **Spikes.** Tests add a delay, jitter and loss on top of the matrix at run time, for every
//!   peer, through the node's admin API.
//!
//! The sender applies the delay, so a round trip pays the one-way delay twice.

use nimbus_util::config::NetworkConfig;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// What a TCP segment lost on the way costs: Linux's minimum retransmission timeout.
const TCP_MIN_RTO: Duration = Duration::from_millis(200);

/// The shape of one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkShape {
    /// One-way delay, in milliseconds.
    #[serde(default)]
    pub delay_ms: f64,
    /// Up to this much more delay, uniformly random, in milliseconds.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Probability in [0, 1] that a datagram (or a TCP segment) is lost.
    #[serde(default)]
    pub loss: f64,
}

impl LinkShape {
    pub fn is_clear(&self) -> bool {
        self.delay_ms <= 0.0 && self.jitter_ms <= 0.0 && self.loss <= 0.0
    }

    fn plus(self, other: LinkShape) -> LinkShape {
        LinkShape {
            delay_ms: self.delay_ms + other.delay_ms,
            jitter_ms: self.jitter_ms + other.jitter_ms,
            loss: 1.0 - (1.0 - self.loss.clamp(0.0, 1.0)) * (1.0 - other.loss.clamp(0.0, 1.0)),
        }
    }

    /// One sample of this link's delay; `None` when a datagram is lost.
    pub fn sample_datagram(&self) -> Option<Duration> {
        let mut rng = rand::rng();
        if self.loss > 0.0 && rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            return None;
        }
        Some(self.sample_delay(&mut rng))
    }

    /// One sample of the time a message takes over TCP: lost segments are sent again.
    pub fn sample_stream(&self) -> Duration {
        let mut rng = rand::rng();
        let mut delay = self.sample_delay(&mut rng);
        // Bounded: a link with loss 1.0 is a partition, which blocking expresses better.
        for _ in 0..4 {
            if self.loss > 0.0 && rng.random_bool(self.loss.clamp(0.0, 1.0)) {
                delay += TCP_MIN_RTO;
            } else {
                break;
            }
        }
        delay
    }

    fn sample_delay(&self, rng: &mut impl Rng) -> Duration {
        let jitter = if self.jitter_ms > 0.0 { rng.random_range(0.0..self.jitter_ms) } else { 0.0 };
        Duration::from_secs_f64((self.delay_ms.max(0.0) + jitter) / 1000.0)
    }
}

#[derive(Debug, Default)]
pub struct Faults {
    blocked: RwLock<HashSet<SocketAddr>>,
    /// Added to every link at run time (admin API).
    spike: RwLock<LinkShape>,
    /// This node's region and the configured matrix.
    region: String,
    network: NetworkConfig,
    /// Each known peer's region, by gossip address (learnt from membership).
    regions: RwLock<HashMap<SocketAddr, String>>,
    stats: ShapingCounters,
}

#[derive(Debug, Default)]
struct ShapingCounters {
    datagrams_delayed: AtomicU64,
    datagrams_lost: AtomicU64,
    calls_delayed: AtomicU64,
    delay_us: AtomicU64,
}

/// What the simulated network has done so far on this node (`GET /v1/admin/faults`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShapingStats {
    pub datagrams_delayed: u64,
    pub datagrams_lost: u64,
    /// gRPC calls delayed (each pays two samples: request and response).
    pub calls_delayed: u64,
    /// The sum of every delay applied, in milliseconds.
    pub delay_ms: f64,
}

impl Faults {
    pub fn new(region: &str, network: NetworkConfig) -> Self {
        Faults { region: region.to_owned(), network, ..Faults::default() }
    }

    pub fn blocks(&self, peer: SocketAddr) -> bool {
        self.blocked.read().map(|b| b.contains(&peer)).unwrap_or(false)
    }

    /// Replaces the set of blocked peers.
    pub fn set_blocked(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        if let Ok(mut blocked) = self.blocked.write() {
            *blocked = peers.into_iter().collect();
        }
    }

    pub fn blocked(&self) -> Vec<SocketAddr> {
        let mut peers: Vec<SocketAddr> = self.blocked.read().map(|b| b.iter().copied().collect()).unwrap_or_default();
        peers.sort();
        peers
    }

    /// Replaces the run-time spike added to every link.
    pub fn set_spike(&self, spike: LinkShape) {
        if let Ok(mut current) = self.spike.write() {
            *current = spike;
        }
    }

    pub fn spike(&self) -> LinkShape {
        self.spike.read().map(|s| *s).unwrap_or_default()
    }

    /// Remembers which region the peer at `gossip_addr` is in.
    pub fn learn_region(&self, gossip_addr: SocketAddr, region: &str) {
        let known =
            self.regions.read().map(|r| r.get(&gossip_addr).map(String::as_str) == Some(region)).unwrap_or(true);
        if !known {
            if let Ok(mut regions) = self.regions.write() {
                regions.insert(gossip_addr, region.to_owned());
            }
        }
    }

    /// The shape of the link to the peer at `gossip_addr`: the matrix entry for its region
    /// (when known) plus the spike.
    pub fn link_to(&self, gossip_addr: SocketAddr) -> LinkShape {
        // Every peer call asks: without a matrix, only the spike counts.
        if self.network.is_clear() {
            return self.spike();
        }
        let base = self
            .regions
            .read()
            .ok()
            .and_then(|r| r.get(&gossip_addr).map(|region| self.link_between(region)))
            .unwrap_or_default();
        base.plus(self.spike())
    }

    /// The shape of the link to a peer in `region`, spike included.
    pub fn link_to_region(&self, region: &str) -> LinkShape {
        self.link_between(region).plus(self.spike())
    }

    /// A gossip datagram's fate on `link`: its delay, or `None` when it is lost.
    pub fn shape_datagram(&self, link: &LinkShape) -> Option<Duration> {
        let sampled = link.sample_datagram();
        match sampled {
            Some(delay) => {
                self.stats.datagrams_delayed.fetch_add(1, Ordering::Relaxed);
                self.stats.delay_us.fetch_add(delay.as_micros() as u64, Ordering::Relaxed);
            }
            None => {
                self.stats.datagrams_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        sampled
    }

    /// The delays of a gRPC call on `link`: before the request, after the response.
    pub fn shape_call(&self, link: &LinkShape) -> (Duration, Duration) {
        let (there, back) = (link.sample_stream(), link.sample_stream());
        self.stats.calls_delayed.fetch_add(1, Ordering::Relaxed);
        self.stats.delay_us.fetch_add((there + back).as_micros() as u64, Ordering::Relaxed);
        (there, back)
    }

    pub fn stats(&self) -> ShapingStats {
        let s = &self.stats;
        ShapingStats {
            datagrams_delayed: s.datagrams_delayed.load(Ordering::Relaxed),
            datagrams_lost: s.datagrams_lost.load(Ordering::Relaxed),
            calls_delayed: s.calls_delayed.load(Ordering::Relaxed),
            delay_ms: s.delay_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// The configured shape of the link from this node's region to `region`.
    pub fn link_between(&self, region: &str) -> LinkShape {
        let network = &self.network;
        if region == self.region {
            return LinkShape { delay_ms: network.intra_region_ms, jitter_ms: network.jitter_ms, loss: network.loss };
        }
        network
            .links
            .iter()
            .find(|l| (l.a == self.region && l.b == region) || (l.b == self.region && l.a == region))
            .map(|l| LinkShape { delay_ms: l.one_way_ms, jitter_ms: network.jitter_ms, loss: network.loss })
            .unwrap_or(LinkShape { delay_ms: 0.0, jitter_ms: network.jitter_ms, loss: network.loss })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_util::config::RegionLink;

    fn matrix() -> NetworkConfig {
        NetworkConfig {
            intra_region_ms: 0.5,
            jitter_ms: 0.0,
            loss: 0.0,
            links: vec![RegionLink { a: "us-east".into(), b: "eu-west".into(), one_way_ms: 40.0 }],
        }
    }

    #[test]
    fn the_matrix_is_symmetric_and_adds_the_spike() {
        let faults = Faults::new("eu-west", matrix());
        let us: SocketAddr = "10.0.0.1:7946".parse().expect("address");
        let eu: SocketAddr = "10.0.0.2:7946".parse().expect("address");
        let unknown: SocketAddr = "10.0.0.3:7946".parse().expect("address");
        faults.learn_region(us, "us-east");
        faults.learn_region(eu, "eu-west");
        assert_eq!(faults.link_to(us).delay_ms, 40.0);
        assert_eq!(faults.link_to(eu).delay_ms, 0.5);
        assert!(faults.link_to(unknown).is_clear());
        faults.set_spike(LinkShape { delay_ms: 10.0, jitter_ms: 0.0, loss: 0.5 });
        let shaped = faults.link_to(us);
        assert_eq!(shaped.delay_ms, 50.0);
        assert_eq!(shaped.loss, 0.5);
    }

    #[test]
    fn a_lossy_link_drops_datagrams_and_delays_streams() {
        let lossy = LinkShape { delay_ms: 1.0, jitter_ms: 0.0, loss: 1.0 };
        assert_eq!(lossy.sample_datagram(), None);
        assert!(lossy.sample_stream() >= TCP_MIN_RTO * 4);
        let clear = LinkShape { delay_ms: 2.0, jitter_ms: 1.0, loss: 0.0 };
        for _ in 0..100 {
            let delay = clear.sample_datagram().expect("no loss");
            assert!(delay >= Duration::from_millis(2) && delay < Duration::from_millis(3), "{delay:?}");
        }
    }
}
