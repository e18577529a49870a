//! Prometheus metrics for `/metrics`.
//!
//! Per-worker handles are resolved once, when a worker is installed ([`WorkerMetrics`]), so
//! the request path only bumps atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub worker: String,
    /// `2xx`, `4xx`, `5xx` …
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub worker: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `alive`, `suspect` or `down`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabel {
    /// `up` or `down`.
    pub change: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// How a KV entry arrived: `gossip`, `push`, `anti_entropy` or `bulk`.
    pub path: String,
}

pub struct Metrics {
    registry: Registry,
    /// Bytes of gossip datagrams this node sent (membership and KV rumors).
    pub gossip_sent_bytes: Counter,
    /// Gossip datagrams dropped because they did not open under the cluster's keys.
    pub gossip_refused: Counter,
    /// HTTP connections closed on accept because a listener was at its connection cap.
    pub http_connections_refused: Counter,
    /// KV writes made on this node (puts and deletes through the API or a binding).
    pub kv_local_writes: Counter,
    /// Replicated KV entries that were newer than this node's copy, by how they arrived.
    kv_applied: Family<PathLabel, Counter>,
    /// Bytes of KV entries this node pushed over gRPC (large entries and anti-entropy repairs).
    pub kv_pushed_bytes: Counter,
    /// Anti-entropy rounds completed with a peer.
    pub kv_sync_rounds: Counter,
    /// Writes not handed to replication because its queue was full (anti-entropy repairs them).
    pub kv_outbox_dropped: Counter,
    /// From a write's version to the moment another node applied it.
    pub kv_replication_lag: Histogram,
    /// Members this node knows, by state (itself included, as alive).
    pub members: Family<StateLabel, Gauge>,
    /// Membership changes this node observed.
    pub member_changes: Family<ChangeLabel, Counter>,
    requests: Family<StatusLabels, Counter>,
    latency: Family<WorkerLabel, Histogram>,
    instantiation: Family<WorkerLabel, Histogram>,
    failures: Family<FailureLabels, Counter>,
    pub unrouted: Counter,
    pub workers: Gauge,
    pub deployments_applied: Counter,
    pub deployments_failed: Counter,
    /// D1's Raft group as this node sees it, refreshed on every scrape.
    pub d1: D1Gauges,
    /// This node's Durable Objects, refreshed on every scrape.
    pub durable: DurableGauges,
}

#[derive(Default)]
pub struct DurableGauges {
    pub live: Gauge,
    pub activations: Gauge,
    pub evictions: Gauge,
    pub websockets: Gauge,
}

/// D1 figures read from the Raft member when `/metrics` is scraped.
#[derive(Default)]
pub struct D1Gauges {
    pub term: Gauge,
    pub is_leader: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub snapshots_installed: Gauge,
}

fn latency_histogram() -> Histogram {
    // 10 µs … ~38 s
    Histogram::new(exponential_buckets(0.000_01, 2.5, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nimbus");
        let requests = Family::<StatusLabels, Counter>::default();
        let latency = Family::<WorkerLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let instantiation =
            Family::<WorkerLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let failures = Family::<FailureLabels, Counter>::default();
        let unrouted = Counter::default();
        let workers = Gauge::default();
        let deployments_applied = Counter::default();
        let deployments_failed = Counter::default();
        let members = Family::<StateLabel, Gauge>::default();
        let member_changes = Family::<ChangeLabel, Counter>::default();
        let gossip_sent_bytes = Counter::default();
        let gossip_refused = Counter::default();
        let http_connections_refused = Counter::default();
        let kv_local_writes = Counter::default();
        let kv_applied = Family::<PathLabel, Counter>::default();
        let kv_pushed_bytes = Counter::default();
        let kv_sync_rounds = Counter::default();
        let kv_outbox_dropped = Counter::default();
        let kv_replication_lag = latency_histogram();
        let durable = DurableGauges::default();
        registry.register(
            "durable_objects_live",
            "Durable Objects live (activated) on this node",
            durable.live.clone(),
        );
        registry.register(
            "durable_objects_activations",
            "Durable Object activations on this node since start",
            durable.activations.clone(),
        );
        registry.register(
            "durable_objects_evictions",
            "Durable Objects evicted for idleness on this node since start",
            durable.evictions.clone(),
        );
        registry.register(
            "durable_objects_websockets",
            "WebSockets held by Durable Objects this node owns",
            durable.websockets.clone(),
        );
        let d1 = D1Gauges::default();
        registry.register("d1_raft_term", "The D1 Raft term this node is in", d1.term.clone());
        registry.register("d1_raft_is_leader", "1 while this node leads the D1 group", d1.is_leader.clone());
        registry.register("d1_raft_commit_index", "Highest D1 log index known committed", d1.commit_index.clone());
        registry.register("d1_raft_applied_index", "Highest D1 log index applied here", d1.applied_index.clone());
        registry.register(
            "d1_snapshots_installed",
            "D1 snapshots installed since start",
            d1.snapshots_installed.clone(),
        );
        registry.register("gossip_sent_bytes", "Bytes of gossip datagrams sent", gossip_sent_bytes.clone());
        registry.register(
            "gossip_refused_datagrams",
            "Gossip datagrams dropped: not sealed under a key of this node's keyring (or forged)",
            gossip_refused.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed on accept: the listener was at its connection cap",
            http_connections_refused.clone(),
        );
        registry.register("kv_local_writes", "KV puts and deletes made on this node", kv_local_writes.clone());
        registry.register(
            "kv_replicated_applied",
            "Replicated KV entries newer than the local copy",
            kv_applied.clone(),
        );
        registry.register("kv_pushed_bytes", "Bytes of KV entries pushed to peers over gRPC", kv_pushed_bytes.clone());
        registry.register("kv_sync_rounds", "Anti-entropy rounds completed", kv_sync_rounds.clone());
        registry.register(
            "kv_outbox_dropped",
            "KV writes left to anti-entropy because the queue was full",
            kv_outbox_dropped.clone(),
        );
        registry.register(
            "kv_replication_lag_seconds",
            "From a KV write on its node to its application here",
            kv_replication_lag.clone(),
        );
        registry.register("members", "Cluster members this node knows, by state", members.clone());
        registry.register("member_changes", "Members seen going up or down", member_changes.clone());
        registry.register("worker_requests", "Requests served by a worker, by status class", requests.clone());
        registry.register("worker_request_duration_seconds", "Time to the response head", latency.clone());
        registry.register(
            "worker_instantiation_duration_seconds",
            "Time to create a worker instance",
            instantiation.clone(),
        );
        registry.register("worker_failures", "Requests ended by a trap, a limit or a bad response", failures.clone());
        registry.register("unrouted_requests", "Requests no worker answered for", unrouted.clone());
        registry.register("workers_deployed", "Workers this node serves", workers.clone());
        registry.register(
            "deployments_applied",
            "Deployments applied from the control plane",
            deployments_applied.clone(),
        );
        registry.register("deployments_failed", "Deployments this node could not apply", deployments_failed.clone());
        Metrics {
            registry,
            gossip_sent_bytes,
            gossip_refused,
            http_connections_refused,
            kv_local_writes,
            kv_applied,
            kv_pushed_bytes,
            kv_sync_rounds,
            kv_outbox_dropped,
            kv_replication_lag,
            members,
            member_changes,
            requests,
            latency,
            instantiation,
            failures,
            unrouted,
            workers,
            deployments_applied,
            deployments_failed,
            d1,
            durable,
        }
    }

    /// The counter of replicated KV entries applied that arrived by `path`.
    pub fn kv_applied(&self, path: &str) -> Counter {
        self.kv_applied.get_or_create(&PathLabel { path: path.to_string() }).clone()
    }

    pub fn worker(&self, worker: &str) -> WorkerMetrics {
        let label = WorkerLabel { worker: worker.to_string() };
        let status = |class: &str| {
            self.requests.get_or_create(&StatusLabels { worker: worker.to_string(), status: class.to_string() }).clone()
        };
        WorkerMetrics {
            name: worker.to_string(),
            by_class: [status("1xx"), status("2xx"), status("3xx"), status("4xx"), status("5xx")],
            latency: self.latency.get_or_create(&label).clone(),
            instantiation: self.instantiation.get_or_create(&label).clone(),
            failures: self.failures.clone(),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One worker's metric handles.
#[derive(Clone)]
pub struct WorkerMetrics {
    name: String,
    by_class: [Counter; 5],
    pub latency: Histogram,
    pub instantiation: Histogram,
    failures: Family<FailureLabels, Counter>,
}

impl WorkerMetrics {
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }

    pub fn failure(&self, kind: &str) {
        self.failures.get_or_create(&FailureLabels { worker: self.name.clone(), kind: kind.to_string() }).inc();
    }
}
