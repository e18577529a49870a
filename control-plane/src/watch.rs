//! The gRPC service nodes watch: desired state, component and Pages blob bytes,
//! acknowledgements.
//!
//! A node that connects gets a snapshot of the whole desired state (workers, management
//! tokens, Pages projects), then every change in order; a node already at that sequence skips nothing but
//! re-applies nothing either (an unchanged worker is only acknowledged). Each watcher subscribes to the change signal before it reads the database, so no
//! change committed meanwhile is missed; a watcher that lags behind the signal re-reads.

use crate::store::{Change, Store};
use nimbus_proto::deploy::deployments_server::Deployments;
use nimbus_proto::deploy::{
    AckRequest, AckResponse, ApiToken, GetAssetRequest, GetAssetResponse, GetComponentRequest, GetComponentResponse,
    TokenSet, WatchEvent, WatchRequest,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub struct WatchService {
    store: Arc<Store>,
    /// Carries the seq of every committed change; a wake-up for watchers, not the data.
    changes: broadcast::Sender<u64>,
    /// The bootstrap token, always in the token set nodes get.
    bootstrap: ApiToken,
    /// Over mutual TLS: a node must present a certificate issued for the node id it names.
    tls: bool,
    shutdown: CancellationToken,
}

impl WatchService {
    pub fn new(
        store: Arc<Store>,
        changes: broadcast::Sender<u64>,
        token: &str,
        tls: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let bootstrap = ApiToken {
            id: "bootstrap".into(),
            sha256: nimbus_proto::auth::token_hash(token),
            scopes: vec!["admin".into()],
        };
        WatchService { store, changes, bootstrap, tls, shutdown }
    }
}

impl WatchService {
    /// Over TLS, refuses a caller whose certificate is not issued for `node_id`.
    fn check_node<T>(&self, request: &Request<T>, node_id: &str) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let certs = request.peer_certs();
        if certs.as_deref().is_some_and(|certs| nimbus_proto::tls::caller_is(certs, node_id)) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the caller's certificate is not issued for node `{}`",
                node_id.escape_debug()
            )))
        }
    }
}

fn internal(e: crate::error::ControlPlaneError) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl Deployments for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        if request.get_ref().node_id.is_empty() {
            return Err(Status::invalid_argument("node_id is required"));
        }
        self.check_node(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        let mut wake = self.changes.subscribe();
        self.store.record_node(&req.node_id, &req.region, &req.http_addr, true).map_err(internal)?;
        tracing::info!(node = %req.node_id, from_seq = req.from_seq, "node watching");
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        let bootstrap = self.bootstrap.clone();
        tokio::spawn(async move {
            let result = stream_changes(&store, &tx, &mut wake, &bootstrap, shutdown).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
            tracing::info!(node = %req.node_id, "node stopped watching");
            if let Err(e) = store.record_node(&req.node_id, &req.region, &req.http_addr, false) {
                tracing::warn!("recording node disconnect: {e}");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_component(
        &self,
        request: Request<GetComponentRequest>,
    ) -> Result<Response<GetComponentResponse>, Status> {
        let hash = request.into_inner().hash;
        match self.store.component(&hash).map_err(internal)? {
            Some(component) => Ok(Response::new(GetComponentResponse { component })),
            None => Err(Status::not_found(format!("no component with hash {hash}"))),
        }
    }

    async fn get_asset(&self, request: Request<GetAssetRequest>) -> Result<Response<GetAssetResponse>, Status> {
        let hash = request.into_inner().hash;
        let store = self.store.clone();
        let blob = tokio::task::spawn_blocking(move || store.blob(&hash).map(|b| (hash, b)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match blob.map_err(internal)? {
            (_, Some(bytes)) => Ok(Response::new(GetAssetResponse { bytes })),
            (hash, None) => Err(Status::not_found(format!("no Pages blob with hash {hash}"))),
        }
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        self.check_node(&request, &request.get_ref().node_id)?;
        let ack = request.into_inner();
        let error = (!ack.ok).then_some(ack.error.as_str());
        if let Some(error) = error {
            tracing::warn!(node = %ack.node_id, worker = %ack.worker, version = ack.version, "node failed to apply: {error}");
        }
        self.store.record_ack(&ack.node_id, &ack.worker, ack.version, ack.ok, error).map_err(internal)?;
        Ok(Response::new(AckResponse {}))
    }
}

type Outbox = mpsc::Sender<Result<WatchEvent, Status>>;

async fn stream_changes(
    store: &Store,
    tx: &Outbox,
    wake: &mut broadcast::Receiver<u64>,
    bootstrap: &ApiToken,
    shutdown: CancellationToken,
) -> Result<(), Status> {
    let with_bootstrap = |mut set: TokenSet| {
        set.tokens.push(bootstrap.clone());
        set
    };
    // Always a snapshot first: it carries the token set, which the node may lack even when
    // it is up to date with the workers (a node whose bootstrap token changed, say).
    let crate::store::Snapshot { seq, workers, pages } = store.snapshot().map_err(internal)?;
    let tokens = Some(with_bootstrap(store.token_set().map_err(internal)?));
    let snapshot = WatchEvent { seq, snapshot: true, workers, tokens, pages, ..WatchEvent::default() };
    if tx.send(Ok(snapshot)).await.is_err() {
        return Ok(());
    }
    let mut sent = seq;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tx.closed() => return Ok(()),
            signal = wake.recv() => match signal {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
        for (seq, change) in store.changes_after(sent).map_err(internal)? {
            let event = match change {
                Change::Upsert(deployment) => WatchEvent { seq, workers: vec![deployment], ..WatchEvent::default() },
                Change::Removed(name) => WatchEvent { seq, removed: vec![name], ..WatchEvent::default() },
                Change::Tokens(set) => WatchEvent { seq, tokens: Some(with_bootstrap(set)), ..WatchEvent::default() },
                Change::Pages(project) => WatchEvent { seq, pages: vec![project], ..WatchEvent::default() },
                Change::PagesRemoved(name) => WatchEvent { seq, removed_pages: vec![name], ..WatchEvent::default() },
            };
            if tx.send(Ok(event)).await.is_err() {
                return Ok(());
            }
            sent = seq;
        }
    }
}
