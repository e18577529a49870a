//! The server half of the `DurablePeer` gRPC service (the client half is [`Durable::call`]'s
//! forwarding, the replicator and [`Durable::attach`]).
//!
//! Every call first passes fault injection ([`PeerChannels::admit`]). Payloads are postcard
//! [`Request`]s: an event forwarded to this node as an object's owner, a step of the
//! ownership protocol for a holder, or an attach to a socket of an object this node runs. A
//! payload that does not decode is `invalid-argument`, and nothing runs.

use crate::wire::Request;
use crate::Durable;
use nimbus_cluster::peers::{PeerChannels, MAX_MESSAGE_BYTES};
use nimbus_proto::peer::durable_peer_server::{DurablePeer, DurablePeerServer};
use nimbus_proto::peer::DurableMessage;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Response, Status};

/// The `DurablePeer` service of this node, ready to add to the node's gRPC router.
pub fn service(durable: Durable, peers: PeerChannels) -> DurablePeerServer<DurableService> {
    DurablePeerServer::new(DurableService { durable, peers })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub struct DurableService {
    durable: Durable,
    peers: PeerChannels,
}

fn decode(request: tonic::Request<DurableMessage>) -> Result<Request, Status> {
    postcard::from_bytes(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("bad Durable Object message: {e}")))
}

fn encode<T: serde::Serialize>(message: &T) -> Result<DurableMessage, Status> {
    postcard::to_allocvec(message)
        .map(|payload| DurableMessage { payload })
        .map_err(|e| Status::internal(e.to_string()))
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<DurableMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DurablePeer for DurableService {
    type DurableAttachStream = FrameStream;

    async fn durable_attach(&self, request: tonic::Request<DurableMessage>) -> Result<Response<FrameStream>, Status> {
        self.peers.admit(&request)?;
        let frames = self.durable.serve_attach(decode(request)?).map_err(|e| Status::not_found(e.to_string()))?;
        let stream =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(frames), |frame| encode(&frame));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn durable(&self, request: tonic::Request<DurableMessage>) -> Result<Response<DurableMessage>, Status> {
        self.peers.admit(&request)?;
        let reply = self.durable.serve_peer(decode(request)?).await;
        encode(&reply).map(Response::new)
    }
}
