//! The node's gRPC server for its peers (port 7070): the `Peer` service.
//!
//! Internal only. Every call first passes fault injection ([`PeerChannels::admit`]) so a test
//! partition cuts it like gossip; KV calls then go to the replica ([`crate::kv`]) — merges
//! are idempotent, so a call that is retried or arrives twice does no harm. Blocking
//! RocksDB work runs on the blocking pool. D1 calls carry postcard payloads: Raft RPCs go to
//! this node's Raft member, forwarded writes and read-index requests to [`crate::d1::D1`]
//! (which answers `ForwardToLeader` if this node no longer leads). Durable Object events and
//! the ownership protocol go to [`crate::durable::Durable`].

use crate::d1::{PrimaryRead, Proposal, RemoteError, D1};
use crate::durable::Durable;
use crate::kv::replication::{apply_remote, bucket_versions, encode_digests, fetch};
use crate::kv::wire::to_wire;
use crate::kv::{KvError, KvStore};
use crate::membership::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use crate::metrics::Metrics;
use nimbus_proto::peer::peer_server::{Peer, PeerServer};
use nimbus_proto::peer::{
    D1Message, DurableMessage, FetchKvRequest, KvBucketVersionsReply, KvBucketVersionsRequest, KvDigestsReply,
    KvDigestsRequest, KvEntry, KvSnapshotRequest, PushKvReply,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Bytes of entries per bulk-copy page read from RocksDB.
const SNAPSHOT_PAGE_BYTES: usize = 1024 * 1024;

pub struct PeerService {
    kv: KvStore,
    d1: D1,
    durable: Durable,
    peers: PeerChannels,
    metrics: Arc<Metrics>,
}

/// The one mapping from KV errors to gRPC status for peers.
fn status(error: KvError) -> Status {
    if error.is_client_error() {
        Status::invalid_argument(error.to_string())
    } else {
        Status::internal(error.to_string())
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, KvError> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Status::internal(e.to_string()))?.map_err(status)
}

impl PeerService {
    /// Admits a peer's request, and for reads of the replica checks it may be copied from.
    fn admit_read<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.peers.admit(request)?;
        if self.kv.is_catching_up() {
            return Err(Status::unavailable("this KV replica is catching up after a long absence"));
        }
        Ok(())
    }
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

type EntryStream = Pin<Box<dyn Stream<Item = Result<KvEntry, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for PeerService {
    async fn push_kv(&self, request: Request<Streaming<KvEntry>>) -> Result<Response<PushKvReply>, Status> {
        self.peers.admit(&request)?;
        let mut stream = request.into_inner();
        let mut applied = 0;
        while let Some(wire) = stream.message().await? {
            if apply_remote(&self.kv, &self.metrics, wire, "push").map_err(status)? {
                applied += 1;
            }
        }
        Ok(Response::new(PushKvReply { applied }))
    }

    async fn kv_digests(&self, request: Request<KvDigestsRequest>) -> Result<Response<KvDigestsReply>, Status> {
        self.admit_read(&request)?;
        let digests = self.kv.digests();
        Ok(Response::new(KvDigestsReply { digests: encode_digests(&digests.snapshot()), entries: digests.entries() }))
    }

    async fn kv_bucket_versions(
        &self,
        request: Request<KvBucketVersionsRequest>,
    ) -> Result<Response<KvBucketVersionsReply>, Status> {
        self.admit_read(&request)?;
        let kv = self.kv.clone();
        let buckets = request.into_inner().buckets;
        let versions = blocking(move || bucket_versions(&kv, &buckets)).await?;
        Ok(Response::new(KvBucketVersionsReply { versions }))
    }

    type FetchKvStream = EntryStream;

    async fn fetch_kv(&self, request: Request<FetchKvRequest>) -> Result<Response<EntryStream>, Status> {
        self.admit_read(&request)?;
        let kv = self.kv.clone();
        let keys = request.into_inner().keys;
        let entries = blocking(move || fetch(&kv, &keys)).await?;
        Ok(Response::new(Box::pin(tokio_stream::iter(entries.into_iter().map(Ok)))))
    }

    type KvSnapshotStream = EntryStream;

    async fn kv_snapshot(&self, request: Request<KvSnapshotRequest>) -> Result<Response<EntryStream>, Status> {
        self.admit_read(&request)?;
        let start = request.into_inner();
        let kv = self.kv.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // Pages are read as the receiver keeps up, so a bulk copy never holds the replica in memory.
        tokio::spawn(async move {
            let mut after = (!start.after_namespace.is_empty()).then_some((start.after_namespace, start.after_key));
            loop {
                let kv = kv.clone();
                let from = after.clone();
                let page = tokio::task::spawn_blocking(move || {
                    kv.snapshot_page(from.as_ref().map(|(n, k)| (n.as_str(), k.as_str())), SNAPSHOT_PAGE_BYTES)
                })
                .await;
                let page = match page {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => return drop(tx.send(Err(status(e))).await),
                    Err(e) => return drop(tx.send(Err(Status::internal(e.to_string()))).await),
                };
                let Some((namespace, key, _)) = page.last() else { return };
                after = Some((namespace.clone(), key.clone()));
                for (namespace, key, entry) in &page {
                    if tx.send(Ok(to_wire(namespace, key, entry))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn raft_append(&self, request: Request<D1Message>) -> Result<Response<D1Message>, Status> {
        self.peers.admit(&request)?;
        let quorum_age_ms = request
            .metadata()
            .get(crate::d1::network::QUORUM_AGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let append: openraft::raft::AppendEntriesRequest<crate::d1::types::TypeConfig> = decode(request)?;
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
        let chunk: openraft::raft::InstallSnapshotRequest<crate::d1::types::TypeConfig> = decode(request)?;
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

    type DurableAttachStream = Pin<Box<dyn Stream<Item = Result<DurableMessage, Status>> + Send>>;

    async fn durable_attach(
        &self,
        request: Request<DurableMessage>,
    ) -> Result<Response<Self::DurableAttachStream>, Status> {
        self.peers.admit(&request)?;
        let request: crate::durable::wire::Request = postcard::from_bytes(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(format!("bad Durable Object message: {e}")))?;
        let frames = self.durable.serve_attach(request).map_err(|e| Status::not_found(e.to_string()))?;
        let stream =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::UnboundedReceiverStream::new(frames), |frame| {
                postcard::to_allocvec(&frame)
                    .map(|payload| DurableMessage { payload })
                    .map_err(|e| Status::internal(e.to_string()))
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn durable(&self, request: Request<DurableMessage>) -> Result<Response<DurableMessage>, Status> {
        self.peers.admit(&request)?;
        let request: crate::durable::wire::Request = postcard::from_bytes(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(format!("bad Durable Object message: {e}")))?;
        let reply = self.durable.serve_peer(request).await;
        postcard::to_allocvec(&reply)
            .map(|payload| Response::new(DurableMessage { payload }))
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Serves the peer service on `listener` until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    kv: KvStore,
    d1: D1,
    durable: Durable,
    peers: PeerChannels,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let service = PeerServer::new(PeerService { kv, d1, durable, peers, metrics })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The builder's `tcp_nodelay` only covers listeners tonic binds itself. Without it, a
    // reply's trailers wait behind Nagle for the caller's delayed ACK (~40 ms): Raft acks and
    // forwarded writes would stall.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |tcp| {
        if let Ok(stream) = &tcp {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a peer connection: {e}");
            }
        }
        tcp
    });
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!("peer gRPC server failed: {e}");
    }
}
