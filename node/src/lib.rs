//! The Nimbus edge node: runs Workers on wasmtime and serves them over HTTP.
//!
//! [`run`] builds the node in stages, each layer given what it uses at construction:
//! storage → cluster (membership, peer transport) → stores (KV, D1, Durable Objects, and the
//! peer service that reaches them) → runtime (restoring the deployments an earlier run
//! persisted) → front ends (the HTTP edge, the control-plane watch). It then reports
//! readiness on stdout (one JSON line, for scripts and the testkit) and runs until the
//! shutdown future completes; every long-lived task goes through one [`tasks::Tasks`], so
//! shutdown waits for all of them.
//!
//! The layers are crates under `node/crates/` (see `ARCHITECTURE.md`): `nimbus-util`
//! ([`config`], [`metrics`], [`tasks`]), `nimbus-storage`, `nimbus-cluster`, `nimbus-kv`,
//! `nimbus-d1`, `nimbus-durable`, `nimbus-runtime`. This crate holds what sits on top.
//!
//! # Layout
//! - [`auth`]: the management tokens this node accepts (configured and pushed).
//! - [`deploy`]: persisted deployments (and the token set) from the control-plane watch.
//! - [`http`]: the public edge (workers, `/healthz`) and the management API (`/v1`,
//!   `/metrics`, behind tokens), on two listeners.
//! - [`pages`]: Pages sites on the edge, served from this node's copy of their blobs.
//! - [`rpc`]: the gRPC server peers call (KV replication, D1's Raft and forwarded writes,
//!   Durable Object events and replication, R2's chunks).
//! - [`s3`]: the S3 API on its own listener (R2's buckets and objects, signed requests only).
//! - [`stores`]: where sibling stores meet without depending on each other (R2's metadata in
//!   D1's Raft group).

pub mod auth;
pub mod deploy;
pub mod http;
pub mod pages;
pub mod rpc;
pub mod s3;
pub mod stores;

pub use nimbus_util::{config, metrics, tasks};

use config::NodeConfig;
use nimbus_cluster as membership;
use nimbus_d1 as d1;
use nimbus_durable as durable;
use nimbus_kv as kv;
use nimbus_queues as queues;
use nimbus_r2 as r2;
use nimbus_runtime as runtime;
use nimbus_storage as storage;
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
    #[error("r2: {0}")]
    R2(#[from] r2::R2Error),
    #[error("queues: {0}")]
    Queues(#[from] queues::QueueError),
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

pub use nimbus_api::node::Ready;

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
    if config.queues.lease_ms <= config.runtime.wall_ms {
        return Err(NodeError::Config(format!(
            "queues.lease_ms ({}) must be longer than runtime.wall_ms ({}): a consumer that runs to its limit would lose its lease before it settles, and its batch would be delivered twice",
            config.queues.lease_ms, config.runtime.wall_ms
        )));
    }
    let tasks = tasks::Tasks::new();

    // 1. Storage, and the listeners whose addresses go into this node's member identity.
    let storage = storage::Storage::open(&config.data_dir.join("db"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (listener, http_addr) = bind(config.http.listen).await?;
    let (management_listener, management_addr) = bind(config.management.listen).await?;
    let tokens = auth::Tokens::load(&config.management, &storage).map_err(NodeError::Config)?;
    let (rpc_listener, rpc_addr) = bind(config.rpc.listen).await?;
    let (s3_listener, s3_addr) = bind(config.r2.s3.listen).await?;

    // 2. The cluster: membership (gossip carries KV's small writes, an upward call handed in
    //    as `Rumors`) and the peer transport.
    let (kv, kv_changes) = kv::KvStore::open(
        storage.clone(),
        &config.node_id,
        config.kv.min_ttl_secs,
        config.kv.max_clock_offset_ms,
        metrics.clone(),
    )?;
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
        membership::Membership::start(me, gossip_settings(&config).await?, rumors, metrics.clone(), &tasks).await?;
    let cluster_tls = config.tls.load("tls").map_err(|e| NodeError::Config(format!("tls: {e}")))?;
    let peers = membership::peers::PeerChannels::new(
        membership.me().gossip_addr,
        &config.node_id,
        membership.faults.clone(),
        cluster_tls.clone(),
    );
    {
        // Which node each gossip address belongs to, for checking who calls.
        let (peers, membership) = (peers.clone(), membership.clone());
        tasks.spawn("peer-identities", move |shutdown| async move {
            let events = membership.subscribe();
            if let Ok(members) = membership.members().await {
                for view in members {
                    peers.note(&view.member);
                }
            }
            peers.follow(events, shutdown).await
        });
    }

    // 3. The stores and their peer service: KV replication, D1's Raft member, Durable Objects (which run their
    //    classes through the runtime's worker table, an upward call handed in as `ClassHost`).
    let replicator =
        kv::replication::Replicator::new(kv.clone(), membership.clone(), peers.clone(), metrics.clone(), replication)?;
    {
        let spreader = replicator.clone();
        tasks.spawn("kv-spread", move |shutdown| spreader.spread_changes(kv_changes, shutdown));
    }
    tasks.spawn("kv-maintain", move |shutdown| replicator.maintain(shutdown));
    // R2's metadata is an application of D1's Raft group (see `stores`).
    let r2_metadata = r2::open_metadata(&config.data_dir)?;
    let queue_state = queues::open_state(&config.data_dir)?;
    let d1 = d1::D1::start(
        &config.d1,
        &config.region,
        config.admin.unsafe_ack_d1_before_commit,
        &config.data_dir,
        storage.clone(),
        d1::group::node_of(membership.me()),
        peers.clone(),
        stores::applications(r2_metadata.clone(), queue_state.clone()),
        &tasks,
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
    let workers = runtime::Workers::new(&config.http.worker_host_suffix);
    let durable = durable::Durable::new(
        membership.me(),
        storage.clone(),
        view_rx,
        peers.clone(),
        &config.durable,
        Arc::new(workers.clone()),
        tasks.clone(),
    );
    {
        let durable = durable.clone();
        tasks.spawn("durable-alarms", move |shutdown| durable::alarms::run(durable, shutdown));
    }
    let r2 = r2::R2::new(
        &config.r2,
        &config.data_dir,
        membership.clone(),
        peers.clone(),
        r2_metadata,
        Arc::new(stores::D1Log(d1.clone())),
    )?;
    {
        let r2 = r2.clone();
        tasks.spawn("r2-maintain", move |shutdown| r2::maintain::run(r2, shutdown));
    }
    // Queues run their consumers' and cron handlers through the worker table, like classes.
    let queues = queues::Queues::new(
        &config.queues,
        queue_state,
        Arc::new(stores::D1Log(d1.clone())),
        Arc::new(workers.clone()),
        membership.clone(),
    );
    {
        let queues = queues.clone();
        tasks.spawn("queues-dispatch", move |shutdown| queues.dispatch(shutdown));
    }
    {
        let queues = queues.clone();
        tasks.spawn("queues-run", move |shutdown| queues.run_held(shutdown));
    }
    // Peers reach the stores from here on (Raft, replication, object events, chunks).
    {
        let services = rpc::Services {
            kv: kv.clone(),
            d1: d1.clone(),
            durable: durable.clone(),
            chunks: r2.chunk_store(),
            peers: peers.clone(),
            metrics: metrics.clone(),
        };
        let tls = cluster_tls.clone();
        tasks.spawn("rpc", move |shutdown| rpc::serve(rpc_listener, tls, services, shutdown));
    }

    // 4. The runtime, with the stores its bindings reach, and the deployments an earlier run
    //    persisted.
    // Pages before the runtime: it answers Functions workers' `env.ASSETS`.
    let pages = pages::Pages::new(&config.pages, &config.data_dir);
    let stores = runtime::Stores {
        kv: kv.clone(),
        d1: d1.clone(),
        durable: durable.clone(),
        r2: r2.clone(),
        queues: queues.clone(),
        local: Some(Arc::new(pages.clone())),
    };
    let runtime = Arc::new(runtime::Runtime::new(&config, metrics.clone(), workers, stores)?);
    let workers_restored = deploy::restore(&runtime, &storage).await?;
    let projects_restored = deploy::restore_pages(&pages, &storage)?;
    if projects_restored > 0 {
        tracing::info!(projects = projects_restored, "restored Pages projects");
    }
    {
        let runtime = runtime.clone();
        tasks.spawn("instance-reaper", move |shutdown| runtime.reap_idle(shutdown));
    }
    {
        let pages = pages.clone();
        tasks.spawn("pages-blob-collector", move |shutdown| pages.collect_blobs_forever(shutdown));
    }

    // 5. Front ends: the HTTP edge and the control-plane watch.
    let edge = http::Edge::new(
        runtime.clone(),
        metrics.clone(),
        membership.clone(),
        http::Stores {
            kv: kv.clone(),
            d1: d1.clone(),
            durable: durable.clone(),
            r2: r2.clone(),
            queues: queues.clone(),
            pages: pages.clone(),
        },
        &config,
    );
    let ms = std::time::Duration::from_millis;
    let edge_bounds = nimbus_http::Bounds {
        max_connections: config.http.max_connections,
        header_read_timeout: ms(config.http.header_read_timeout_ms.max(1)),
        body_read_timeout: ms(config.http.body_read_timeout_ms.max(1)),
    };
    let https = |section: &nimbus_http::HttpsConfig, name: &str| {
        nimbus_http::load_tls(section, name).map_err(|e| NodeError::Config(e.to_string()))
    };
    let (edge_tls, management_tls) =
        (https(&config.http.tls, "http.tls")?, https(&config.management.tls, "management.tls")?);
    {
        let management = edge.clone().management_router(tokens.clone());
        let bounds = nimbus_http::Bounds { max_connections: config.management.max_connections, ..edge_bounds };
        let refused = metrics.http_connections_refused.clone();
        tasks.spawn("management", move |shutdown| {
            nimbus_http::serve("management", management_listener, management, bounds, management_tls, refused, shutdown)
        });
    }
    {
        let (router, refused) = (edge.router(), metrics.http_connections_refused.clone());
        tasks.spawn("http", move |shutdown| {
            nimbus_http::serve("edge", listener, router, edge_bounds, edge_tls, refused, shutdown)
        });
    }
    {
        let router = s3::S3::new(r2.clone(), &config.r2.s3.domain, &config.node_id).router();
        let bounds = nimbus_http::Bounds { max_connections: config.r2.s3.max_connections, ..edge_bounds };
        let s3_tls = https(&config.r2.s3.tls, "r2.s3.tls")?;
        let refused = metrics.http_connections_refused.clone();
        tasks.spawn("s3", move |shutdown| {
            nimbus_http::serve("s3", s3_listener, router, bounds, s3_tls, refused, shutdown)
        });
    }
    let watcher = deploy::Watcher::new(
        &config,
        http_addr.to_string(),
        runtime.clone(),
        storage.clone(),
        metrics.clone(),
        tokens,
        cluster_tls,
    )
    .with_pages(pages);
    tasks.spawn("deploy-watch", move |shutdown| watcher.run(shutdown));

    let ready = Ready {
        node_id: config.node_id.clone(),
        region: config.region.clone(),
        http: http_addr,
        management: management_addr,
        rpc: rpc_addr,
        gossip: membership.me().gossip_addr,
        s3: Some(s3_addr),
        workers_restored,
    };
    tracing::info!(node_id = %ready.node_id, http = %http_addr, management = %management_addr, workers_restored, "node ready");
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

/// Binds a TCP listener and says where it listens (port 0 becomes the port it got).
async fn bind(addr: std::net::SocketAddr) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), NodeError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Bind { addr, source })?;
    Ok((listener, bound))
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
        keyring: Arc::new(
            membership::keyring::Keyring::new(&config.gossip.keys).map_err(|e| NodeError::Config(e.to_string()))?,
        ),
        advertise: match &config.gossip.advertise {
            Some(_) => Some(advertised(&config.gossip.advertise, config.gossip.listen).await?),
            None => None,
        },
    })
}
