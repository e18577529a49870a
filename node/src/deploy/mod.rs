//! Deployments: what the node serves, where it came from, and how it survives restarts.
//!
//! Owns the node's copy of the desired state. Guarantees: a deployment is persisted (RocksDB)
//! in the same batch as the watch sequence that delivered it, after its component compiled
//! and linked, so a node restarted without the control plane serves exactly what it last
//! acknowledged; a version that fails to compile or link is acknowledged as failed and the
//! previous version keeps serving; a lost connection resumes from the last applied sequence.
//! The management-token set rides the same stream and is persisted in the same batch, and so
//! do Pages projects: a project's new state is installed only once every blob of its
//! deployments is on this node, and persisted with the sequence that delivered it.
//!
//! # Layout
//! - [`restore`]: install every persisted deployment at boot, before the node reports ready.
//! - [`watch`]: the control-plane watch loop (reconnects with backoff, applies, acks).

mod error;

pub use error::DeployError;

use crate::pages::Pages;
use futures::StreamExt as _;
use nimbus_proto::deploy::deployments_client::DeploymentsClient;
use nimbus_proto::deploy::{
    AckRequest, GetAssetRequest, GetComponentRequest, PagesProject, WatchEvent, WatchRequest, WorkerDeployment,
};
use nimbus_runtime::{Runtime, WorkerSpec};
use nimbus_storage::{Batch, Storage, CF_DEPLOYMENTS, CF_META};
use nimbus_util::config::NodeConfig;
use nimbus_util::metrics::Metrics;
use prost::Message as _;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const WATCH_SEQ_KEY: &[u8] = b"watch_seq";
/// `pages/<project>` in `CF_META`: the project as last installed (its protobuf).
const PAGES_PREFIX: &str = "pages/";
/// Blobs one project's sync fetches at once.
const BLOB_FETCHES: usize = 8;
/// Components can be large; the default 4 MiB gRPC limit is too small.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Installs every deployment persisted by an earlier run. A deployment that no longer loads
/// is logged and skipped; the others still serve.
pub async fn restore(runtime: &Arc<Runtime>, storage: &Storage) -> Result<usize, DeployError> {
    let mut restored = 0;
    for (key, value) in storage.scan(CF_DEPLOYMENTS)? {
        let name = String::from_utf8_lossy(&key).into_owned();
        let spec: WorkerSpec = match serde_json::from_slice(&value) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(worker = %name, "persisted deployment is unreadable, skipped: {e}");
                continue;
            }
        };
        match runtime.prepare(spec).await {
            Ok(worker) => {
                tracing::info!(worker = %name, version = worker.spec.version, "restored deployment");
                runtime.install(worker);
                restored += 1;
            }
            Err(e) => tracing::error!(worker = %name, "persisted deployment does not load, skipped: {e}"),
        }
    }
    Ok(restored)
}

/// Serves every Pages project persisted by an earlier run (their blobs are on disk: a
/// project is persisted only after its blobs). One that no longer loads is logged and
/// skipped.
pub fn restore_pages(pages: &Pages, storage: &Storage) -> Result<usize, DeployError> {
    let mut restored = 0;
    for (key, value) in storage.scan_prefix(CF_META, PAGES_PREFIX.as_bytes(), None, usize::MAX)? {
        let name = String::from_utf8_lossy(&key[PAGES_PREFIX.len()..]).into_owned();
        let loaded = PagesProject::decode(value.as_slice()).map_err(|e| e.to_string());
        match loaded.and_then(|project| pages.install(&project).map_err(|e| e.to_string())) {
            Ok(()) => restored += 1,
            Err(e) => tracing::error!(project = %name, "persisted Pages project does not load, skipped: {e}"),
        }
    }
    Ok(restored)
}

/// The node's side of the control-plane watch stream.
pub struct Watcher {
    node_id: String,
    region: String,
    http_addr: String,
    url: String,
    reconnect_max: Duration,
    runtime: Arc<Runtime>,
    storage: Storage,
    metrics: Arc<Metrics>,
    tokens: crate::auth::Tokens,
    /// Mutual TLS to the control plane (`None`: plaintext).
    tls: Option<nimbus_cluster::tls::ClusterTls>,
    pages: Option<Pages>,
}

impl Watcher {
    pub fn new(
        config: &NodeConfig,
        http_addr: String,
        runtime: Arc<Runtime>,
        storage: Storage,
        metrics: Arc<Metrics>,
        tokens: crate::auth::Tokens,
        tls: Option<nimbus_cluster::tls::ClusterTls>,
    ) -> Self {
        Watcher {
            node_id: config.node_id.clone(),
            region: config.region.clone(),
            http_addr,
            // Over TLS the scheme is https whatever the configuration says.
            url: match (&tls, config.control_plane.url.strip_prefix("http://")) {
                (Some(_), Some(rest)) => format!("https://{rest}"),
                _ => config.control_plane.url.clone(),
            },
            reconnect_max: Duration::from_millis(config.control_plane.reconnect_max_ms.max(10)),
            runtime,
            storage,
            metrics,
            tokens,
            tls,
            pages: None,
        }
    }

    /// Serves the Pages projects the stream carries through `pages`.
    pub fn with_pages(mut self, pages: Pages) -> Self {
        self.pages = Some(pages);
        self
    }

    /// Watches until `shutdown`, reconnecting with exponential backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.url.is_empty() {
            tracing::info!("no control plane configured; serving persisted deployments only");
            return;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = self.watch_once() => outcome,
            };
            match outcome {
                Ok(()) => {
                    tracing::warn!(url = %self.url, "control plane closed the watch stream");
                    backoff = Duration::from_millis(50);
                }
                Err(e) => tracing::warn!(url = %self.url, "watch failed, retrying in {backoff:?}: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.reconnect_max);
        }
    }

    async fn watch_once(&self) -> Result<(), DeployError> {
        let mut endpoint = Channel::from_shared(self.url.clone()).map_err(|e| DeployError::BadUrl(e.to_string()))?;
        if let Some(tls) = &self.tls {
            // The control plane must hold a certificate the cluster CA issued for it.
            endpoint = endpoint.tls_config(tls.client(nimbus_cluster::tls::CONTROL_PLANE_NAME))?;
        }
        let channel = endpoint.connect_timeout(Duration::from_secs(2)).connect().await?;
        let mut client = DeploymentsClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let from_seq = self.applied_seq()?;
        let mut stream = client
            .watch(WatchRequest {
                node_id: self.node_id.clone(),
                from_seq,
                region: self.region.clone(),
                http_addr: self.http_addr.clone(),
            })
            .await?
            .into_inner();
        tracing::info!(url = %self.url, from_seq, "watching the control plane");
        while let Some(event) = stream.message().await? {
            self.apply(&mut client, event).await?;
        }
        Ok(())
    }

    fn applied_seq(&self) -> Result<u64, DeployError> {
        Ok(self
            .storage
            .get(CF_META, WATCH_SEQ_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Applies one event. Returns an error only for what a retry can fix (the connection);
    /// a version that does not compile is acknowledged as failed instead.
    async fn apply(&self, client: &mut DeploymentsClient<Channel>, event: WatchEvent) -> Result<(), DeployError> {
        let mut batch = Batch::default();
        let mut removed: BTreeSet<String> = event.removed.iter().cloned().collect();
        if event.snapshot {
            let desired: BTreeSet<&str> = event.workers.iter().map(|w| w.name.as_str()).collect();
            removed
                .extend(self.runtime.workers().into_iter().map(|w| w.name).filter(|n| !desired.contains(n.as_str())));
        }
        for deployment in &event.workers {
            self.upsert(client, deployment).await?;
        }
        let mut removed_pages: BTreeSet<String> = event.removed_pages.iter().cloned().collect();
        if let Some(pages) = &self.pages {
            if event.snapshot {
                let desired: BTreeSet<&str> = event.pages.iter().map(|p| p.name.as_str()).collect();
                removed_pages.extend(pages.projects().into_iter().filter(|n| !desired.contains(n.as_str())));
            }
            for project in &event.pages {
                if self.sync_pages(client, pages, project).await? {
                    batch.put(CF_META, format!("{PAGES_PREFIX}{}", project.name).into_bytes(), project.encode_to_vec());
                }
            }
            for name in &removed_pages {
                batch.delete(CF_META, format!("{PAGES_PREFIX}{name}").into_bytes());
            }
        }
        for name in &removed {
            batch.delete(CF_DEPLOYMENTS, name.as_bytes().to_vec());
        }
        if let Some(tokens) = &event.tokens {
            crate::auth::Tokens::persist(tokens, &mut batch);
        }
        batch.put(CF_META, WATCH_SEQ_KEY, event.seq.to_be_bytes());
        self.storage.write(batch)?;
        if let Some(tokens) = &event.tokens {
            self.tokens.apply(tokens);
        }
        for name in &removed {
            self.runtime.remove(name);
            tracing::info!(worker = %name, "removed deployment");
        }
        if let Some(pages) = &self.pages {
            for name in &removed_pages {
                pages.remove(name);
                tracing::info!(project = %name, "removed Pages project");
            }
        }
        Ok(())
    }

    /// Fetches the blobs of `project` this node lacks, then serves its new state. `Ok(false)`:
    /// the project does not load (a blob the control plane lacks, a bad manifest), logged,
    /// and its previous state keeps serving. `Err` only for what a retry can fix.
    async fn sync_pages(
        &self,
        client: &mut DeploymentsClient<Channel>,
        pages: &Pages,
        project: &PagesProject,
    ) -> Result<bool, DeployError> {
        let manifests: Vec<String> = project.deployments.iter().map(|d| d.manifest_hash.clone()).collect();
        if !self.fetch_blobs(client, pages, manifests).await? {
            return Ok(false);
        }
        let mut files = BTreeSet::new();
        for deployment in &project.deployments {
            match pages.manifest(&project.name, &deployment.id, &deployment.manifest_hash) {
                Ok(manifest) => files.extend(manifest.files.into_values().map(|f| f.hash)),
                Err(e) => {
                    tracing::error!(project = %project.name, "Pages project not installed, the previous state keeps serving: {e}");
                    return Ok(false);
                }
            }
        }
        if !self.fetch_blobs(client, pages, files.into_iter().collect()).await? {
            return Ok(false);
        }
        match pages.install(project) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::error!(project = %project.name, "Pages project not installed, the previous state keeps serving: {e}");
                Ok(false)
            }
        }
    }

    /// Fetches the blobs among `hashes` this node lacks, a few at once; `Ok(false)` when the
    /// control plane lacks one or sends bytes of another hash.
    async fn fetch_blobs(
        &self,
        client: &mut DeploymentsClient<Channel>,
        pages: &Pages,
        hashes: Vec<String>,
    ) -> Result<bool, DeployError> {
        let missing: Vec<String> = hashes.into_iter().filter(|h| !pages.has_blob(h)).collect();
        if missing.is_empty() {
            return Ok(true);
        }
        tracing::info!(blobs = missing.len(), "fetching Pages blobs");
        let fetches = futures::stream::iter(missing).map(|hash| {
            let mut client = client.clone();
            let pages = pages.clone();
            async move {
                let bytes = match client.get_asset(GetAssetRequest { hash: hash.clone() }).await {
                    Ok(reply) => reply.into_inner().bytes,
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        tracing::error!(%hash, "the control plane has no such Pages blob");
                        return Ok(false);
                    }
                    Err(status) => return Err(DeployError::from(status)),
                };
                match tokio::task::spawn_blocking(move || pages.store_blob(&hash, &bytes)).await {
                    Ok(Ok(())) => Ok(true),
                    Ok(Err(e)) => {
                        tracing::error!("a Pages blob was refused: {e}");
                        Ok(false)
                    }
                    Err(e) => Err(DeployError::Internal(e.to_string())),
                }
            }
        });
        let mut fetches = fetches.buffer_unordered(BLOB_FETCHES);
        let mut complete = true;
        while let Some(fetched) = fetches.next().await {
            complete &= fetched?;
        }
        Ok(complete)
    }

    /// Installs one deployment (unless already serving), persisting it first, and acks it.
    async fn upsert(
        &self,
        client: &mut DeploymentsClient<Channel>,
        deployment: &WorkerDeployment,
    ) -> Result<(), DeployError> {
        let spec = WorkerSpec {
            name: deployment.name.clone(),
            version: deployment.version,
            component_hash: deployment.component_hash.clone(),
            manifest: serde_json::from_str(&deployment.manifest_json)?,
        };
        let current = self.runtime.worker(&spec.name);
        if current.as_ref().is_some_and(|w| w.spec == spec) {
            return self.ack(client, &spec, None).await;
        }
        if !self.runtime.has_component(&spec.component_hash) {
            let bytes = client
                .get_component(GetComponentRequest { hash: spec.component_hash.clone() })
                .await?
                .into_inner()
                .component;
            self.runtime.store_component(&spec.component_hash, &bytes)?;
        }
        match self.runtime.prepare(spec.clone()).await {
            Ok(worker) => {
                // Persisted before it serves: whatever a client has seen this node serve, the
                // node serves again after a crash, even one before the ack went out.
                let mut batch = Batch::default();
                batch.put(CF_DEPLOYMENTS, spec.name.as_bytes().to_vec(), serde_json::to_vec(&spec)?);
                self.storage.write(batch)?;
                self.runtime.install(worker);
                self.metrics.deployments_applied.inc();
                tracing::info!(worker = %spec.name, version = spec.version, "deployed");
                self.ack(client, &spec, None).await
            }
            Err(e) => {
                self.metrics.deployments_failed.inc();
                tracing::error!(worker = %spec.name, version = spec.version, "deployment failed, previous version keeps serving: {e}");
                self.ack(client, &spec, Some(e.to_string())).await
            }
        }
    }

    async fn ack(
        &self,
        client: &mut DeploymentsClient<Channel>,
        spec: &WorkerSpec,
        error: Option<String>,
    ) -> Result<(), DeployError> {
        client
            .ack(AckRequest {
                node_id: self.node_id.clone(),
                worker: spec.name.clone(),
                version: spec.version,
                ok: error.is_none(),
                error: error.unwrap_or_default(),
            })
            .await?;
        Ok(())
    }
}
