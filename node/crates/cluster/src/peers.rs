//! How to reach a member over gRPC: one lazily connected channel per peer address, and the
//! fault-injection rule applied on both ends, so a test partition cuts gRPC like gossip.
//!
//! Every request carries the caller's gossip address in `x-nimbus-from`; a server refuses
//! requests from a blocked peer, and a client refuses to call one. Every request also names
//! the node it is meant for (its gossip address, in `x-nimbus-to`), and a server refuses one
//! meant for another node: a caller with a stale address (the node restarted on new ports,
//! and another took the old one) must not get, say, a Raft vote from the wrong node. Calls
//! pass through a [`ShapedChannel`], which adds those headers and applies the simulated
//! network's delay and loss (see [`super::faults`]).
//!
//! With [`ClusterTls`] (the default; plaintext only where the operator asks for it), every
//! channel is mutual TLS: the server's certificate must name the node being called, and
//! [`PeerChannels::authenticate`] — run on every request a server receives — checks that the
//! caller's certificate was issued for the node id it claims (`x-nimbus-node`) and that the
//! gossip address it claims (`x-nimbus-from`) belongs to that node.

use super::faults::Faults;
use super::tls::{self, ClusterTls};
use super::{Member, MembershipEvent};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The metadata key naming the calling node's gossip address.
pub const FROM_HEADER: &str = "x-nimbus-from";
/// The metadata key naming the calling node's id (what its certificate is issued for).
pub const NODE_HEADER: &str = "x-nimbus-node";
/// The metadata key naming the gossip address of the node a request is meant for.
pub const TO_HEADER: &str = "x-nimbus-to";
/// Large enough for a 25 MiB KV value and its envelope.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {0} is cut off by fault injection")]
    Partitioned(String),
    #[error("peer {peer} has no usable gRPC address: {reason}")]
    BadAddress { peer: String, reason: String },
}

#[derive(Clone)]
pub struct PeerChannels {
    /// This node's gossip address, sent as `x-nimbus-from`.
    me: SocketAddr,
    /// This node's id, sent as `x-nimbus-node`.
    node_id: Arc<str>,
    channels: Arc<Mutex<HashMap<SocketAddr, Channel>>>,
    faults: Arc<Faults>,
    /// `None`: plaintext gRPC (`tls.insecure_plaintext`).
    tls: Option<ClusterTls>,
    /// Gossip address → node id of every member this node has seen.
    identities: Arc<RwLock<HashMap<SocketAddr, String>>>,
}

impl PeerChannels {
    pub fn new(me: SocketAddr, node_id: &str, faults: Arc<Faults>, tls: Option<ClusterTls>) -> Self {
        PeerChannels { me, node_id: node_id.into(), channels: Arc::default(), faults, tls, identities: Arc::default() }
    }

    /// Whether calls go over mutual TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Learns which node each member's gossip address belongs to, until `shutdown`.
    pub async fn follow(
        self,
        mut events: tokio::sync::broadcast::Receiver<MembershipEvent>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(MembershipEvent::Up(member)) => self.note(&member),
                Ok(MembershipEvent::Down(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Records that `member`'s gossip address belongs to its node id.
    pub fn note(&self, member: &Member) {
        let mut identities = self.identities.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        identities.insert(member.gossip_addr, member.node_id.clone());
    }

    /// Who sent `request`, checked: with TLS, the caller's certificate must be issued for the
    /// node id it names (`x-nimbus-node`); with or without, the gossip address it names
    /// (`x-nimbus-from`) must not belong to another node. Run on every request a peer
    /// server receives.
    pub fn authenticate<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let header = |key: &str| request.metadata().get(key).and_then(|v| v.to_str().ok());
        let Some(node) = header(NODE_HEADER) else {
            return Err(tonic::Status::unauthenticated("a peer request must name its node (x-nimbus-node)"));
        };
        if self.tls.is_some() {
            let certs = request.peer_certs();
            if !certs.as_deref().is_some_and(|certs| tls::caller_is(certs, node)) {
                return Err(tonic::Status::permission_denied(format!(
                    "the caller's certificate is not issued for node `{}`",
                    node.escape_debug()
                )));
            }
        }
        if let Some(from) = header(FROM_HEADER).and_then(|v| v.parse::<SocketAddr>().ok()) {
            let identities = self.identities.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(owner) = identities.get(&from) {
                if owner != node {
                    return Err(tonic::Status::permission_denied(format!(
                        "node `{}` claims the gossip address of `{owner}`",
                        node.escape_debug()
                    )));
                }
            }
        }
        Ok(())
    }

    /// True while fault injection cuts `peer` off.
    pub fn is_cut_off(&self, peer: &Member) -> bool {
        self.faults.blocks(peer.gossip_addr)
    }

    /// A channel to `peer`'s gRPC server (connected on first use, reconnected as needed).
    pub fn channel(&self, peer: &Member) -> Result<Channel, PeerError> {
        self.channel_to(&peer.node_id, peer.rpc_addr, peer.gossip_addr)
    }

    /// A channel to the gRPC server at `rpc_addr` of the node whose gossip address (what
    /// fault injection knows it by) is `gossip_addr`.
    pub fn channel_to(
        &self,
        node_id: &str,
        rpc_addr: SocketAddr,
        gossip_addr: SocketAddr,
    ) -> Result<Channel, PeerError> {
        if self.faults.blocks(gossip_addr) {
            return Err(PeerError::Partitioned(node_id.to_owned()));
        }
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(&rpc_addr) {
            return Ok(channel.clone());
        }
        let bad =
            |e: tonic::transport::Error| PeerError::BadAddress { peer: node_id.to_owned(), reason: e.to_string() };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{rpc_addr}")).map_err(bad)?;
        if let Some(tls) = &self.tls {
            // The server must hold a certificate issued for the node this call is meant for.
            endpoint = endpoint.tls_config(tls.client(node_id)).map_err(bad)?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(rpc_addr, channel.clone());
        Ok(channel)
    }

    /// A shaped channel to `peer`, for a subsystem's generated client (each subsystem's
    /// peer service has its own; set [`MAX_MESSAGE_BYTES`] on it).
    pub fn shaped(&self, peer: &Member) -> Result<ShapedChannel, PeerError> {
        self.shaped_to(&peer.node_id, peer.rpc_addr, peer.gossip_addr)
    }

    /// As [`PeerChannels::shaped`], for a node known by its addresses.
    pub fn shaped_to(
        &self,
        node_id: &str,
        rpc_addr: SocketAddr,
        gossip_addr: SocketAddr,
    ) -> Result<ShapedChannel, PeerError> {
        Ok(ShapedChannel {
            inner: self.channel_to(node_id, rpc_addr, gossip_addr)?,
            faults: self.faults.clone(),
            peer: gossip_addr,
            me: self.me,
            node_id: self.node_id.clone(),
        })
    }

    /// Wraps a message (or a stream) in a request that names this node.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(from) = self.me.to_string().parse() {
            request.metadata_mut().insert(FROM_HEADER, from);
        }
        request
    }

    /// Refuses a request from a peer that fault injection cuts off, and one meant for another
    /// node (the caller's address for it is stale).
    pub fn admit<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let address = |key: &str| -> Option<SocketAddr> {
            request.metadata().get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
        };
        if let Some(to) = address(TO_HEADER) {
            if to != self.me {
                return Err(tonic::Status::unavailable(format!(
                    "this request is meant for the node at {to}, and this node is at {}: the caller's address is stale",
                    self.me
                )));
            }
        }
        match address(FROM_HEADER) {
            Some(addr) if self.faults.blocks(addr) => Err(tonic::Status::unavailable("cut off by fault injection")),
            _ => Ok(()),
        }
    }
}

/// A channel to one peer that applies the simulated link: the call waits one sampled delay
/// before it is sent and another once its response has arrived. A clear link adds nothing.
#[derive(Clone)]
pub struct ShapedChannel {
    inner: Channel,
    faults: Arc<Faults>,
    /// The peer's gossip address, which the link is looked up by.
    peer: SocketAddr,
    /// This node's gossip address and id, named on every request.
    me: SocketAddr,
    node_id: Arc<str>,
}

impl tower::Service<http::Request<tonic::body::Body>> for ShapedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let headers = request.headers_mut();
        if let Ok(to) = http::HeaderValue::from_str(&self.peer.to_string()) {
            headers.insert(TO_HEADER, to);
        }
        if let Ok(from) = http::HeaderValue::from_str(&self.me.to_string()) {
            headers.insert(FROM_HEADER, from);
        }
        if let Ok(node) = http::HeaderValue::from_str(&self.node_id) {
            headers.insert(NODE_HEADER, node);
        }
        let link = self.faults.link_to(self.peer);
        if link.is_clear() {
            return Box::pin(tower::Service::call(&mut self.inner, request));
        }
        // The ready channel goes with the call; a clone takes its place (tower's pattern).
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let (there, back) = self.faults.shape_call(&link);
        Box::pin(async move {
            tokio::time::sleep(there).await;
            let response = tower::Service::call(&mut ready, request).await;
            tokio::time::sleep(back).await;
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(me: &str) -> PeerChannels {
        PeerChannels::new(me.parse().expect("address"), "node", Arc::new(Faults::default()), None)
    }

    fn request(to: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(to) = to {
            request.metadata_mut().insert(TO_HEADER, to.parse().expect("header"));
        }
        request
    }

    /// node-2 restarted on the ports node-4 had: a caller that still has node-4's address
    /// reaches node-2, which must refuse to answer for node-4.
    #[test]
    fn a_request_meant_for_another_node_is_refused() {
        let node_2 = channels("127.0.0.1:7002");
        let status = node_2.admit(&request(Some("127.0.0.1:7004"))).expect_err("meant for node-4");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("stale"), "{}", status.message());
        assert!(node_2.admit(&request(Some("127.0.0.1:7002"))).is_ok(), "meant for node-2");
        assert!(node_2.admit(&request(None)).is_ok(), "a caller that names no node");
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn member(node_id: &str, gossip: &str) -> Member {
        Member {
            node_id: node_id.into(),
            region: "local".into(),
            http_addr: "127.0.0.1:1".parse().expect("addr"),
            rpc_addr: "127.0.0.1:2".parse().expect("addr"),
            gossip_addr: gossip.parse().expect("addr"),
            d1_voter: false,
            bump: 1,
        }
    }

    fn request(node: Option<&str>, from: &str) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(node) = node {
            request.metadata_mut().insert(NODE_HEADER, node.parse().expect("header"));
        }
        request.metadata_mut().insert(FROM_HEADER, from.parse().expect("header"));
        request
    }

    #[test]
    fn a_caller_cannot_claim_another_members_gossip_address() {
        let peers = PeerChannels::new("127.0.0.1:7001".parse().expect("addr"), "node-1", Arc::default(), None);
        peers.note(&member("node-2", "127.0.0.1:7002"));
        assert!(peers.authenticate(&request(Some("node-2"), "127.0.0.1:7002")).is_ok());
        let forged = peers.authenticate(&request(Some("node-3"), "127.0.0.1:7002")).expect_err("forged");
        assert_eq!(forged.code(), tonic::Code::PermissionDenied);
        let nameless = peers.authenticate(&request(None, "127.0.0.1:7002")).expect_err("no node named");
        assert_eq!(nameless.code(), tonic::Code::Unauthenticated);
    }
}
