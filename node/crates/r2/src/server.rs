//! The server half of the `R2Peer` gRPC service (the client half is [`crate::peer`]).
//!
//! Every call first passes fault injection ([`PeerChannels::admit`]). A chunk id that is not
//! 32 bytes, or bytes that do not hash to their id, are `invalid-argument` and nothing is
//! written. At most [`MAX_CHUNK_CALLS`] chunk transfers run at once on this node; more wait.

use crate::{ChunkId, ChunkStore, R2Error};
use nimbus_cluster::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use nimbus_proto::peer::r2_peer_server::{R2Peer, R2PeerServer};
use nimbus_proto::peer::{R2Chunk, R2ChunkRequest, R2Message};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

/// Chunk reads and writes served at once (each holds a chunk, up to 4 MiB, in memory).
pub const MAX_CHUNK_CALLS: usize = 16;

/// The `R2Peer` service over this node's chunk store.
pub fn service(chunks: Arc<ChunkStore>, peers: PeerChannels) -> R2PeerServer<R2Service> {
    R2PeerServer::new(R2Service { chunks, peers, transfers: Arc::new(Semaphore::new(MAX_CHUNK_CALLS)) })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub struct R2Service {
    chunks: Arc<ChunkStore>,
    peers: PeerChannels,
    transfers: Arc<Semaphore>,
}

fn status(error: R2Error) -> Status {
    match error {
        R2Error::ChunkMissing(_) => Status::not_found(error.to_string()),
        R2Error::InvalidChunkId => Status::invalid_argument(error.to_string()),
        R2Error::ChunkCorrupt { .. } => Status::data_loss(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

impl R2Service {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ChunkStore) -> Result<T, R2Error> + Send + 'static,
    ) -> Result<T, Status> {
        let _permit = self.transfers.acquire().await.map_err(|_| Status::unavailable("shutting down"))?;
        let chunks = self.chunks.clone();
        tokio::task::spawn_blocking(move || work(&chunks))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)
    }
}

#[tonic::async_trait]
impl R2Peer for R2Service {
    async fn r2_put_chunk(&self, request: Request<R2Chunk>) -> Result<Response<R2Message>, Status> {
        self.peers.admit(&request)?;
        let chunk = request.into_inner();
        let id = ChunkId::from_bytes(&chunk.id).map_err(status)?;
        // `put_as` hashes the bytes (off the runtime) and refuses them unless they are `id`.
        self.blocking(move |chunks| chunks.put_as(&id, &chunk.data)).await?;
        Ok(Response::new(R2Message { payload: Vec::new() }))
    }

    async fn r2_get_chunk(&self, request: Request<R2ChunkRequest>) -> Result<Response<R2Chunk>, Status> {
        self.peers.admit(&request)?;
        let id = ChunkId::from_bytes(&request.into_inner().id).map_err(status)?;
        let data = self.blocking(move |chunks| chunks.get(&id)).await?;
        Ok(Response::new(R2Chunk { id: id.as_bytes().to_vec(), data: data.into() }))
    }
}
