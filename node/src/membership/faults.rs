//! Fault injection in the peer transport: datagrams to and from blocked addresses are
//! dropped, as a partition would. Tests drive it through the node's admin API.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Faults {
    blocked: RwLock<HashSet<SocketAddr>>,
}

impl Faults {
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
}
