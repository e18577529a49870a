//! The server half of the `KvPeer` gRPC service (the client half is [`crate::replication`]).
//!
//! Every call first passes fault injection ([`PeerChannels::admit`]), so a test partition
//! cuts it like gossip. Merges are idempotent, so a call that is retried or arrives twice does
//! no harm; blocking RocksDB work runs on the blocking pool. A replica that is catching up
//! after a long absence refuses to be read from.

use crate::replication::{apply_remote, bucket_versions, encode_digests, fetch, fetch_keys};
use crate::wire::to_wire;
use crate::{KvError, KvStore};
use nimbus_cluster::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use nimbus_proto::peer::kv_peer_server::{KvPeer, KvPeerServer};
use nimbus_proto::peer::{
    FetchKvRequest, KvBucketVersionsReply, KvBucketVersionsRequest, KvDigestsReply, KvDigestsRequest, KvEntry,
    KvSnapshotRequest, PushKvReply,
};
use nimbus_util::metrics::Metrics;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Bytes of entries per bulk-copy page read from RocksDB.
const SNAPSHOT_PAGE_BYTES: usize = 1024 * 1024;
/// Keys read from RocksDB at a time while a fetch is answered.
const FETCH_CHUNK: usize = 16;
/// Anti-entropy reads (bucket versions, fetches, bulk copies) served at once; a peer's request
/// past them is told to come back later rather than queued.
const MAX_CONCURRENT_READS: usize = 8;

/// The `KvPeer` service of this node's replica, ready to add to the node's gRPC router.
pub fn service(kv: KvStore, peers: PeerChannels, metrics: Arc<Metrics>) -> KvPeerServer<KvService> {
    let reads = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS));
    KvPeerServer::new(KvService { kv, peers, metrics, reads })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub struct KvService {
    kv: KvStore,
    peers: PeerChannels,
    metrics: Arc<Metrics>,
    /// Slots for anti-entropy reads ([`MAX_CONCURRENT_READS`]).
    reads: Arc<tokio::sync::Semaphore>,
}

/// The one mapping from KV errors to gRPC status.
pub fn status(error: KvError) -> Status {
    if error.is_client_error() {
        Status::invalid_argument(error.to_string())
    } else {
        Status::internal(error.to_string())
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, KvError> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Status::internal(e.to_string()))?.map_err(status)
}

impl KvService {
    /// Admits a peer's request, and for reads of the replica checks it may be copied from.
    fn admit_copy<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.peers.admit(request)?;
        if self.kv.is_catching_up() {
            return Err(Status::unavailable("this KV replica is catching up after a long absence"));
        }
        Ok(())
    }

    /// As [`KvService::admit_copy`], and takes one of the read slots, held until the answer
    /// is sent.
    fn admit_read<T>(&self, request: &Request<T>) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.admit_copy(request)?;
        self.reads
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("too many anti-entropy reads at once; try again later"))
    }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<KvEntry, Status>> + Send>>;

#[tonic::async_trait]
impl KvPeer for KvService {
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
        self.admit_copy(&request)?;
        let digests = self.kv.digests();
        Ok(Response::new(KvDigestsReply { digests: encode_digests(&digests.snapshot()), entries: digests.entries() }))
    }

    async fn kv_bucket_versions(
        &self,
        request: Request<KvBucketVersionsRequest>,
    ) -> Result<Response<KvBucketVersionsReply>, Status> {
        let _slot = self.admit_read(&request)?;
        let kv = self.kv.clone();
        let buckets = request.into_inner().buckets;
        let versions = blocking(move || bucket_versions(&kv, &buckets)).await?;
        Ok(Response::new(KvBucketVersionsReply { versions }))
    }

    type FetchKvStream = EntryStream;

    async fn fetch_kv(&self, request: Request<FetchKvRequest>) -> Result<Response<EntryStream>, Status> {
        let slot = self.admit_read(&request)?;
        let keys = fetch_keys(&request.into_inner().keys).map_err(status)?;
        let kv = self.kv.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(FETCH_CHUNK);
        // Entries are read a few keys at a time as the receiver keeps up, so a fetch of large
        // values never holds them all in memory.
        tokio::spawn(async move {
            let _slot = slot;
            for chunk in keys.chunks(FETCH_CHUNK) {
                let (kv, chunk) = (kv.clone(), chunk.to_vec());
                let entries = match blocking(move || fetch(&kv, &chunk)).await {
                    Ok(entries) => entries,
                    Err(e) => return drop(tx.send(Err(e)).await),
                };
                for entry in entries {
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type KvSnapshotStream = EntryStream;

    async fn kv_snapshot(&self, request: Request<KvSnapshotRequest>) -> Result<Response<EntryStream>, Status> {
        let slot = self.admit_read(&request)?;
        let start = request.into_inner();
        let kv = self.kv.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // Pages are read as the receiver keeps up, so a bulk copy never holds the replica in
        // memory. The task ends with the stream (the receiver dropping ends it too).
        tokio::spawn(async move {
            let _slot = slot;
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
}
