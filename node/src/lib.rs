//! The Nimbus edge node: runs Workers on wasmtime and serves them over HTTP.
//!
//! [`run`] opens the node's storage, restores the deployments persisted by an earlier run,
//! starts the HTTP edge, reports readiness on stdout (one JSON line, for scripts and the
//! testkit), then follows the control plane until the shutdown future completes.
//!
//! # Layout (modules depend downward only)
//! - [`storage`]: RocksDB, one column family per subsystem.
//! - [`membership`]: SWIM gossip (foca): who is in the cluster.
//! - [`kv`]: Workers KV: a full replica per node, spread by gossip, repaired by anti-entropy.
//! - [`d1`]: SQLite databases behind one Raft group, with a read replica on every node.
//! - [`durable`]: Durable Objects: placement, one live instance per id, replicated storage,
//!   ownership epochs, alarms.
//! - [`runtime`]: wasmtime engine, component cache, warm instance pools, limits, bindings.
//! - [`deploy`]: persisted deployments and the control-plane watch.
//! - [`http`]: the edge router (workers, `/healthz`, `/metrics`, `/v1`).
//! - [`rpc`]: the gRPC server peers call (KV replication, D1's Raft and forwarded writes,
//!   Durable Object events and replication).
//! - [`config`], [`metrics`], [`tasks`]: configuration tree, Prometheus registry, task
//!   spawning with shutdown.

pub mod config;
pub mod d1;
pub mod deploy;
pub mod durable;
pub mod http;
pub mod kv;
pub mod membership;
pub mod metrics;
pub mod rpc;
pub mod runtime;
pub mod storage;
pub mod tasks;

use config::NodeConfig;
use std::future::Future;
use std::sync::Arc;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("kv: {0}")]
    Kv(#[from] kv::KvError),
    #[error("d1: {0}")]
    D1(#[from] d1::D1Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("deployments: {0}")]
    Deploy(#[from] deploy::DeployError),
    #[error("membership: {0}")]
    Membership(#[from] membership::MembershipError),
    #[error("gossip seed `{seed}` does not resolve: {reason}")]
    Seed { seed: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}

/// The line a node prints on stdout once it serves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    pub node_id: String,
    pub region: String,
    pub http: std::net::SocketAddr,
    pub rpc: std::net::SocketAddr,
    pub gossip: std::net::SocketAddr,
    pub workers_restored: usize,
}

pub async fn run(mut config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    for change in config.fit_to_network() {
        tracing::info!("latency matrix: raised {change}");
    }
    let replication = replication_settings(&config)?;
    if config.admin.unsafe_ack_d1_before_commit && !cfg!(debug_assertions) {
        return Err(NodeError::Config(
            "admin.unsafe_ack_d1_before_commit loses acknowledged writes on purpose; only debug (test) builds accept it"
                .into(),
        ));
    }
    if config.admin.unsafe_hold_durable_view_ms > 0 && !cfg!(debug_assertions) {
        return Err(NodeError::Config(
            "admin.unsafe_hold_durable_view_ms is a test knob; only debug (test) builds accept it".into(),
        ));
    }
    let storage = storage::Storage::open(&config.data_dir.join("db"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (kv, kv_changes) =
        kv::KvStore::open(storage.clone(), &config.node_id, config.kv.min_ttl_secs, metrics.clone())?;
    let runtime = Arc::new(runtime::Runtime::new(&config, metrics.clone(), Some(kv.clone()))?);
    let workers_restored = deploy::restore(&runtime, &storage).await?;

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| NodeError::Bind { addr: config.http.listen, source })?;
    let http_addr = listener.local_addr().map_err(|source| NodeError::Bind { addr: config.http.listen, source })?;
    let rpc_listener = tokio::net::TcpListener::bind(config.rpc.listen)
        .await
        .map_err(|source| NodeError::Bind { addr: config.rpc.listen, source })?;
    let rpc_addr = rpc_listener.local_addr().map_err(|source| NodeError::Bind { addr: config.rpc.listen, source })?;

    let tasks = tasks::Tasks::new();
    let me = membership::Member {
        node_id: config.node_id.clone(),
        region: config.region.clone(),
        http_addr: advertised(&config.http.advertise, http_addr).await?,
        rpc_addr: advertised(&config.rpc.advertise, rpc_addr).await?,
        gossip_addr: config.gossip.listen,
        d1_voter: config.d1.role == config::D1Role::Voter,
        bump: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let rumors = Arc::new(kv::replication::KvRumors { kv: kv.clone(), metrics: metrics.clone() });
    let membership =
        membership::Membership::start(me, gossip_settings(&config).await?, rumors, metrics.clone(), tasks.token())
            .await?;
    let peers = membership::peers::PeerChannels::new(membership.me().gossip_addr, membership.faults.clone());
    let d1 = d1::D1::start(
        &config.d1,
        &config.region,
        config.admin.unsafe_ack_d1_before_commit,
        &config.data_dir,
        storage.clone(),
        d1::group::node_of(membership.me()),
        peers.clone(),
        tasks.token(),
    )
    .await?;
    {
        let (d1, membership) = (d1.clone(), membership.clone());
        tasks.spawn("d1-group", move |shutdown| d1::group::run(d1, membership, shutdown));
    }
    let (view, view_rx) = durable::view::channel(membership.me().clone());
    {
        let (membership, storage) = (membership.clone(), storage.clone());
        let hold = std::time::Duration::from_millis(config.admin.unsafe_hold_durable_view_ms);
        let seeded = !config.gossip.seeds.is_empty();
        tasks.spawn("durable-view", move |shutdown| {
            durable::view::follow(membership, storage, view, seeded, hold, shutdown)
        });
    }
    let durable = durable::Durable::new(membership.me(), storage.clone(), view_rx, peers.clone(), &config.durable);
    runtime.set_durable(durable.clone());
    {
        let durable = durable.clone();
        tasks.spawn("durable-alarms", move |shutdown| durable::alarms::run(durable, shutdown));
    }
    {
        let (kv, d1, durable, peers, metrics) =
            (kv.clone(), d1.clone(), durable.clone(), peers.clone(), metrics.clone());
        tasks.spawn("rpc", move |shutdown| rpc::serve(rpc_listener, kv, d1, durable, peers, metrics, shutdown));
    }
    let replicator =
        kv::replication::Replicator::new(kv.clone(), membership.clone(), peers, metrics.clone(), replication)?;
    let spreader = replicator.clone();
    tasks.spawn("kv-spread", move |shutdown| spreader.spread_changes(kv_changes, shutdown));
    tasks.spawn("kv-maintain", move |shutdown| replicator.maintain(shutdown));
    runtime.set_d1(d1.clone());
    let edge = http::Edge::new(
        runtime.clone(),
        metrics.clone(),
        membership.clone(),
        kv.clone(),
        d1.clone(),
        durable.clone(),
        &config,
    );
    tasks.spawn("http", move |shutdown| async move {
        // Without TCP_NODELAY a response whose head and body are written separately waits for
        // the client's delayed ACK (~40 ms) on a keep-alive connection.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        });
        let served = axum::serve(listener, edge.router()).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!("http server failed: {e}");
        }
    });
    let watcher =
        deploy::Watcher::new(&config, http_addr.to_string(), runtime.clone(), storage.clone(), metrics.clone());
    tasks.spawn("deploy-watch", move |shutdown| watcher.run(shutdown));

    let ready = Ready {
        node_id: config.node_id.clone(),
        region: config.region.clone(),
        http: http_addr,
        rpc: rpc_addr,
        gossip: membership.me().gossip_addr,
        workers_restored,
    };
    tracing::info!(node_id = %ready.node_id, http = %http_addr, workers_restored, "node ready");
    println!("{}", serde_json::to_string(&ready).unwrap_or_default());

    shutdown.await;
    tracing::info!("shutting down");
    // Leave first, so peers mark this node down at once instead of suspecting it.
    if tokio::time::timeout(std::time::Duration::from_secs(2), membership.leave()).await.is_err() {
        tracing::warn!("leaving the cluster timed out");
    }
    d1.shutdown().await;
    tasks.shutdown().await;
    Ok(())
}

fn replication_settings(config: &NodeConfig) -> Result<kv::replication::ReplicationSettings, NodeError> {
    let kv = &config.kv;
    if kv.tombstone_grace_ms < kv.anti_entropy_ms.saturating_mul(10) {
        return Err(NodeError::Config(format!(
            "kv.tombstone_grace_ms ({}) must be at least 10 × kv.anti_entropy_ms ({}), or a replica that missed a delete could bring the key back",
            kv.tombstone_grace_ms, kv.anti_entropy_ms
        )));
    }
    let ms = std::time::Duration::from_millis;
    Ok(kv::replication::ReplicationSettings {
        anti_entropy_every: ms(kv.anti_entropy_ms.max(10)),
        tombstone_grace: ms(kv.tombstone_grace_ms),
        purge_every: ms(kv.purge_ms.max(10)),
        wal_sync_every: ms(kv.wal_sync_ms.max(1)),
    })
}

/// The address peers reach a listener at: `advertise` resolved, else the listener's own.
async fn advertised(
    advertise: &Option<String>,
    bound: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, NodeError> {
    let Some(advertise) = advertise.as_deref().filter(|a| !a.is_empty()) else { return Ok(bound) };
    let mut resolved = tokio::net::lookup_host(advertise)
        .await
        .map_err(|e| NodeError::Config(format!("advertised address `{advertise}` does not resolve: {e}")))?;
    resolved.next().ok_or_else(|| NodeError::Config(format!("advertised address `{advertise}` resolves to nothing")))
}

async fn gossip_settings(config: &NodeConfig) -> Result<membership::GossipSettings, NodeError> {
    let mut seeds = Vec::new();
    for seed in &config.gossip.seeds {
        let resolved = tokio::net::lookup_host(seed.as_str())
            .await
            .map_err(|e| NodeError::Seed { seed: seed.clone(), reason: e.to_string() })?;
        seeds.extend(resolved);
    }
    let ms = std::time::Duration::from_millis;
    Ok(membership::GossipSettings {
        listen: config.gossip.listen,
        seeds,
        probe_period: ms(config.gossip.probe_period_ms.max(10)),
        suspect_to_down: ms(config.gossip.suspect_to_down_ms.max(10)),
        remove_down_after: ms(config.gossip.remove_down_after_ms.max(10)),
        network: config.network.clone(),
        advertise: match &config.gossip.advertise {
            Some(_) => Some(advertised(&config.gossip.advertise, config.gossip.listen).await?),
            None => None,
        },
    })
}
