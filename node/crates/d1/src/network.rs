//! Raft RPCs over the peer gRPC service (port 7070, internal only).
//!
//! Requests and replies are openraft's own types encoded with postcard inside a `D1Message`.
//! A peer is addressed by its cluster node id: the [`AddressBook`], fed by gossip, gives its
//! current gRPC and gossip addresses (a restarted node may come back on new ports), and the
//! gossip address is what fault injection cuts.

use super::types::{D1Node, TypeConfig};
use nimbus_cluster::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use nimbus_proto::peer::d1_peer_client::D1PeerClient;
use nimbus_proto::peer::D1Message;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// Current addresses of every node gossip knows: node id → (gRPC, gossip).
#[derive(Clone, Default)]
pub struct AddressBook {
    entries: Arc<RwLock<HashMap<String, (SocketAddr, SocketAddr)>>>,
}

impl AddressBook {
    pub fn set(&self, node_id: &str, rpc: SocketAddr, gossip: SocketAddr) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).insert(node_id.to_owned(), (rpc, gossip));
    }

    /// Where to reach `node`: its gossiped addresses, else those Raft recorded.
    pub fn resolve(&self, node: &D1Node) -> Option<(SocketAddr, SocketAddr)> {
        if let Some(found) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(&node.name) {
            return Some(*found);
        }
        Some((node.rpc_addr.parse().ok()?, node.gossip_addr.parse().ok()?))
    }
}

/// Metadata on an append: how long ago (ms) a quorum last acknowledged the sending leader.
/// The follower dates its freshness from that instant, so the replicas of a leader that is
/// cut off from the majority report growing staleness even while it still reaches them.
pub const QUORUM_AGE_HEADER: &str = "x-nimbus-quorum-age-ms";

#[derive(Debug, Clone, Copy)]
pub enum Method {
    Append,
    Vote,
    Snapshot,
    Propose,
    ReadIndex,
    Read,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("bad message: {0}")]
    Encoding(String),
}

impl<E: std::error::Error> From<CallError> for RPCError<u64, D1Node, RaftError<u64, E>> {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Unreachable(reason) => RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason))),
            CallError::Encoding(reason) => RPCError::Network(NetworkError::new(&std::io::Error::other(reason))),
        }
    }
}

/// Makes one [`Connection`] per target for openraft.
#[derive(Clone)]
pub struct Network {
    pub peers: PeerChannels,
    pub book: AddressBook,
    /// This node's Raft metrics, once Raft has started (the network is built before it).
    pub metrics: Arc<OnceLock<tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, D1Node>>>>,
    /// When each peer last accepted an append from this node (as leader).
    pub acks: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Network {
    /// Calls `node`'s `D1Peer` service (the client half; [`crate::server`] is the other) with a postcard payload and decodes the postcard reply.
    /// An append carries this node's quorum age (see [`QUORUM_AGE_HEADER`]).
    pub async fn call<Req: Serialize, Reply: DeserializeOwned>(
        &self,
        node: &D1Node,
        method: Method,
        request: &Req,
        timeout: Option<std::time::Duration>,
    ) -> Result<Reply, CallError> {
        let (rpc, gossip) =
            self.book.resolve(node).ok_or_else(|| CallError::Unreachable(format!("no address for {node}")))?;
        let channel =
            self.peers.shaped_to(&node.name, rpc, gossip).map_err(|e| CallError::Unreachable(e.to_string()))?;
        let mut client = D1PeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let payload = postcard::to_allocvec(request).map_err(|e| CallError::Encoding(e.to_string()))?;
        let mut request = self.peers.request(D1Message { payload });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        if matches!(method, Method::Append) {
            let age = self.quorum_age_ms().unwrap_or(u64::MAX);
            request.metadata_mut().insert(QUORUM_AGE_HEADER, age.into());
        }
        let reply = match method {
            Method::Append => client.raft_append(request).await,
            Method::Vote => client.raft_vote(request).await,
            Method::Snapshot => client.raft_snapshot(request).await,
            Method::Propose => client.d1_propose(request).await,
            Method::ReadIndex => client.d1_read_index(request).await,
            Method::Read => client.d1_read(request).await,
        }
        .map_err(|status| CallError::Unreachable(format!("{node}: {}", status.message())))?;
        postcard::from_bytes(&reply.into_inner().payload).map_err(|e| CallError::Encoding(e.to_string()))
    }

    /// While this node leads: how long ago a quorum of voters last accepted its appends
    /// (openraft's own figure is only refreshed when its metrics change).
    pub fn quorum_age_ms(&self) -> Option<u64> {
        let now = Instant::now();
        let mut times: Vec<Option<Instant>> = {
            let metrics = self.metrics.get()?.borrow();
            let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
            metrics
                .membership_config
                .membership()
                .voter_ids()
                .map(|id| if id == metrics.id { Some(now) } else { acks.get(&id).copied() })
                .collect()
        };
        let quorum = times.len() / 2 + 1;
        times.sort_by(|a, b| b.cmp(a));
        let at = times.get(quorum.checked_sub(1)?).copied().flatten()?;
        Some(now.saturating_duration_since(at).as_millis() as u64)
    }
}

pub struct Connection {
    network: Network,
    target: u64,
    node: D1Node,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &D1Node) -> Connection {
        Connection { network: self.clone(), target, node: node.clone() }
    }
}

impl Connection {
    async fn send<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, D1Node, RaftError<u64, E>>> {
        let reply: Result<Resp, RaftError<u64, E>> =
            self.network.call(&self.node, method, request, Some(option.hard_ttl())).await?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, D1Node, RaftError<u64>>> {
        let sent = Instant::now();
        let reply: AppendEntriesResponse<u64> = self.send(Method::Append, &rpc, &option).await?;
        if reply.is_success() {
            self.network.acks.lock().unwrap_or_else(|p| p.into_inner()).insert(self.target, sent);
        }
        Ok(reply)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, D1Node, RaftError<u64, InstallSnapshotError>>> {
        self.send(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, D1Node, RaftError<u64>>> {
        self.send(Method::Vote, &rpc, &option).await
    }
}
