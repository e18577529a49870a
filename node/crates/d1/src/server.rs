//! The server half of the `D1Peer` gRPC service (the client half is [`crate::network`]).
//!
//! Every call first passes fault injection ([`PeerChannels::admit`]). Payloads are postcard:
//! Raft RPCs go to this node's Raft member; forwarded writes, read-index requests and primary
//! reads go to [`D1`], which answers `ForwardToLeader` if this node no longer leads. A payload
//! that does not decode is `invalid-argument`, and nothing runs.

use crate::network::QUORUM_AGE_HEADER;
use crate::types::TypeConfig;
use crate::{PrimaryRead, Proposal, RemoteError, D1};
use nimbus_cluster::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use nimbus_proto::peer::d1_peer_server::{D1Peer, D1PeerServer};
use nimbus_proto::peer::D1Message;
use tonic::{Request, Response, Status};

/// The `D1Peer` service of this node's Raft member, ready to add to the node's gRPC router.
pub fn service(d1: D1, peers: PeerChannels) -> D1PeerServer<D1Service> {
    D1PeerServer::new(D1Service { d1, peers })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub struct D1Service {
    d1: D1,
    peers: PeerChannels,
}

fn decode<T: serde::de::DeserializeOwned>(request: Request<D1Message>) -> Result<T, Status> {
    postcard::from_bytes(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("bad D1 message: {e}")))
}

fn encode<T: serde::Serialize>(reply: &T) -> Result<Response<D1Message>, Status> {
    postcard::to_allocvec(reply)
        .map(|payload| Response::new(D1Message { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl D1Peer for D1Service {
    async fn raft_append(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let quorum_age_ms = request
            .metadata()
            .get(QUORUM_AGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let append: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(request)?;
        let reply = self.d1.raft().append_entries(append).await;
        if reply.as_ref().is_ok_and(|r| r.is_success()) {
            self.d1.heard_from_leader(quorum_age_ms);
        }
        encode(&reply)
    }

    async fn raft_vote(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let vote: openraft::raft::VoteRequest<u64> = decode(request)?;
        encode(&self.d1.raft().vote(vote).await)
    }

    async fn raft_snapshot(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let chunk: openraft::raft::InstallSnapshotRequest<TypeConfig> = decode(request)?;
        encode(&self.d1.raft().install_snapshot(chunk).await)
    }

    async fn d1_propose(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let proposal: Proposal = decode(request)?;
        encode(&self.d1.propose_here(proposal).await.map_err(RemoteError::from))
    }

    async fn d1_read_index(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        encode(&self.d1.read_index_here().await.map_err(RemoteError::from))
    }

    async fn d1_read(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let read: PrimaryRead = decode(request)?;
        encode(&self.d1.read_as_primary(&read).await.map_err(RemoteError::from))
    }
}
