//! How to reach a member over gRPC: one lazily connected channel per peer address, and the
//! fault-injection rule applied on both ends, so a test partition cuts gRPC like gossip.
//!
//! Every request carries the caller's gossip address in `x-nimbus-from`; a server refuses
//! requests from a blocked peer, and a client refuses to call one. Every request also names
//! the node it is meant for (its gossip address, in `x-nimbus-to`), and a server refuses one
//! meant for another node: a caller with a stale address (the node restarted on new ports,
//! and another took the old one) must not get, say, a Raft vote from the wrong node. Calls
//! pass through a [`ShapedChannel`], which adds that header and applies the simulated
//! network's delay and loss (see [`super::faults`]).

use super::faults::Faults;
use super::Member;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The metadata key naming the calling node's gossip address.
pub const FROM_HEADER: &str = "x-nimbus-from";
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
    channels: Arc<Mutex<HashMap<SocketAddr, Channel>>>,
    faults: Arc<Faults>,
}

impl PeerChannels {
    pub fn new(me: SocketAddr, faults: Arc<Faults>) -> Self {
        PeerChannels { me, channels: Arc::default(), faults }
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
        let endpoint = Endpoint::from_shared(format!("http://{rpc_addr}"))
            .map_err(|e| PeerError::BadAddress { peer: node_id.to_owned(), reason: e.to_string() })?
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
}

impl tower::Service<http::Request<tonic::body::Body>> for ShapedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Ok(to) = http::HeaderValue::from_str(&self.peer.to_string()) {
            request.headers_mut().insert(TO_HEADER, to);
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
        PeerChannels::new(me.parse().expect("address"), Arc::new(Faults::default()))
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
