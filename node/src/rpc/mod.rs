//! The node's gRPC server for its peers (port 7070): routes to each subsystem's service.
//!
//! Internal only. Each subsystem owns its peer protocol, server and client halves together
//! ([`nimbus_kv::server`], [`nimbus_d1::server`], [`nimbus_durable::server`],
//! [`nimbus_r2::server`]); this module only puts the services on one listener and serves
//! them until shutdown.
//!
//! Over mutual TLS (unless the operator chose plaintext): the handshake refuses a caller
//! without a certificate from the cluster CA, and every request then passes
//! [`PeerChannels::authenticate`] before any service sees it.

use nimbus_cluster::peers::PeerChannels;
use nimbus_d1::D1;
use nimbus_durable::Durable;
use nimbus_kv::KvStore;
use nimbus_util::metrics::Metrics;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the peer services serve.
pub struct Services {
    pub kv: KvStore,
    pub d1: D1,
    pub durable: Durable,
    pub chunks: Arc<nimbus_r2::ChunkStore>,
    pub peers: PeerChannels,
    pub metrics: Arc<Metrics>,
}

/// Serves the peer services on `listener` until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<nimbus_cluster::tls::ClusterTls>,
    services: Services,
    shutdown: CancellationToken,
) {
    let Services { kv, d1, durable, chunks, peers, metrics } = services;
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
    let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
    if let Some(tls) = &tls {
        builder = match builder.tls_config(tls.server()) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::error!("peer gRPC server: TLS: {e}");
                return;
            }
        };
    }
    let guard = peers.clone();
    let authenticate = move |request: tonic::Request<()>| guard.authenticate(&request).map(|()| request);
    let served = builder
        .layer(tonic::service::InterceptorLayer::new(authenticate))
        .add_service(nimbus_kv::server::service(kv, peers.clone(), metrics))
        .add_service(nimbus_d1::server::service(d1, peers.clone()))
        .add_service(nimbus_durable::server::service(durable, peers.clone()))
        .add_service(nimbus_r2::server::service(chunks, peers))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!("peer gRPC server failed: {e}");
    }
}
