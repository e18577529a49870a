//! The node's configuration: one serde tree, a documented sub-struct per subsystem.
//!
//! Loaded from a TOML file, then overridden by environment variables: `NIMBUS_<KEY>` for a
//! top-level key and `NIMBUS_<SECTION>__<KEY>` for a nested one (`NIMBUS_HTTP__LISTEN=…`).
//! Every default is a named `default_*` function; `node.example.toml` at the repository root
//! lists every key and is parsed by a test.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique within the cluster; names the node in logs, metrics and rollout state.
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Where the node runs, e.g. `us-east`; passed to workers and used for placement later.
    #[serde(default = "default_region")]
    pub region: String,
    /// RocksDB, the compiled-component cache and (later) SQLite files live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub management: ManagementConfig,
    #[serde(default)]
    pub rpc: RpcConfig,
    #[serde(default)]
    pub gossip: GossipConfig,
    #[serde(default)]
    pub control_plane: ControlPlaneConfig,
    #[serde(default)]
    pub d1: D1Config,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub kv: KvConfig,
    #[serde(default)]
    pub durable: DurableConfig,
    #[serde(default)]
    pub r2: R2Config,
    #[serde(default)]
    pub queues: QueuesConfig,
    #[serde(default)]
    pub pages: PagesConfig,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// Mutual TLS on the cluster plane (peer gRPC, the control-plane watch): the cluster CA
/// signs one certificate per node, issued for its node id (`nimbus certs create`).
pub use nimbus_proto::tls::{HttpsConfig, TlsConfig};

/// The simulated network between regions: a latency matrix the peer transport applies to
/// gossip and gRPC (see `membership::faults`). Empty by default: no delay is added. Use it
/// where `tc netem` is unavailable; where netem shapes the links, leave it empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// One-way delay to a node of the same region, in milliseconds.
    #[serde(default)]
    pub intra_region_ms: f64,
    /// Up to this much more delay on every link, uniformly random, in milliseconds.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Probability that a datagram or TCP segment is lost, on every link.
    #[serde(default)]
    pub loss: f64,
    /// One-way delay between two regions (both directions); pairs not listed get none.
    #[serde(default)]
    pub links: Vec<RegionLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionLink {
    pub a: String,
    pub b: String,
    pub one_way_ms: f64,
}

/// Durable Objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableConfig {
    /// An object with no event for this long is evicted (hibernates); the next event
    /// re-creates it. Cloudflare evicts after 70–140 s.
    #[serde(default = "default_idle_evict_ms")]
    pub idle_evict_ms: u64,
    /// How long a request may wait for the object's owner (moves, failover) and for its
    /// writes to reach the replicas before it fails with 503.
    #[serde(default = "default_durable_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First retry delay of a failed alarm; each retry doubles it (Cloudflare: 2 s, 6 retries).
    #[serde(default = "default_alarm_retry_ms")]
    pub alarm_retry_ms: u64,
    /// How often the node looks for due alarms.
    #[serde(default = "default_alarm_poll_ms")]
    pub alarm_poll_ms: u64,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            idle_evict_ms: default_idle_evict_ms(),
            request_timeout_ms: default_durable_timeout_ms(),
            alarm_retry_ms: default_alarm_retry_ms(),
            alarm_poll_ms: default_alarm_poll_ms(),
        }
    }
}

fn default_idle_evict_ms() -> u64 {
    70_000
}

fn default_durable_timeout_ms() -> u64 {
    10_000
}

fn default_alarm_retry_ms() -> u64 {
    2_000
}

fn default_alarm_poll_ms() -> u64 {
    100
}

/// R2: the S3 listener and the background work on chunks and uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R2Config {
    #[serde(default)]
    pub s3: S3Config,
    /// Unfinished multipart uploads are aborted this long after they were created (R2: 7 days).
    #[serde(default = "default_upload_expiry_secs")]
    pub upload_expiry_secs: u64,
    /// A chunk no object or part references is deleted once it is this old: longer than any
    /// PUT takes between writing its first chunk and committing its metadata.
    #[serde(default = "default_chunk_grace_secs")]
    pub chunk_grace_secs: u64,
    /// How often the node checks its chunks: restores missing copies (repair), deletes
    /// unreferenced ones (garbage), and (on the leader) expires old uploads.
    #[serde(default = "default_maintain_secs")]
    pub maintain_secs: u64,
    /// Chunk transfers (PUT copies and GET fetches) in flight per request.
    #[serde(default = "default_chunks_in_flight")]
    pub chunks_in_flight: usize,
    /// Object bodies (PUTs, parts, GETs) moving through this node at once, each holding up to
    /// `chunks_in_flight + 1` chunks of 4 MiB; one more is answered 503 `SlowDown`.
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
}

impl Default for R2Config {
    fn default() -> Self {
        R2Config {
            s3: S3Config::default(),
            upload_expiry_secs: default_upload_expiry_secs(),
            chunk_grace_secs: default_chunk_grace_secs(),
            maintain_secs: default_maintain_secs(),
            chunks_in_flight: default_chunks_in_flight(),
            max_transfers: default_max_transfers(),
        }
    }
}

/// Pages on the edge: the hosts sites answer on, and the memory hot files are kept in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    /// `<project>.<suffix>` is a project's production, `<id>.<project>.<suffix>` one
    /// deployment, `<branch>.<project>.<suffix>` a branch's latest.
    #[serde(default = "default_pages_suffix")]
    pub host_suffix: String,
    /// Files up to `cache_file_bytes` are kept in memory (with their compressed forms) up to
    /// this many bytes in all; larger ones are read from disk on every request.
    #[serde(default = "default_pages_cache_bytes")]
    pub cache_bytes: u64,
    #[serde(default = "default_pages_cache_file_bytes")]
    pub cache_file_bytes: u64,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            host_suffix: default_pages_suffix(),
            cache_bytes: default_pages_cache_bytes(),
            cache_file_bytes: default_pages_cache_file_bytes(),
        }
    }
}

fn default_pages_suffix() -> String {
    "pages.localhost".into()
}

fn default_pages_cache_bytes() -> u64 {
    128 * 1024 * 1024
}

fn default_pages_cache_file_bytes() -> u64 {
    2 * 1024 * 1024
}

/// Queues and Cron Triggers: leases, retention, and the cron clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    /// How long a consumer holds a batch before it is delivered again (the visibility
    /// timeout): longer than `runtime.wall_ms`, so a handler that runs to its limit still
    /// settles in time.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The longest the dispatcher and runner sleep between looks at the state (they also wake
    /// on every applied command and when the next message falls due).
    #[serde(default = "default_queue_poll_ms")]
    pub poll_ms: u64,
    /// Messages older than this are dropped (Cloudflare: 4 days).
    #[serde(default = "default_retention_secs")]
    pub retention_secs: u64,
    /// Batches and cron runs this node runs at once; more wait for a slot.
    #[serde(default = "default_max_batches_per_node")]
    pub max_batches_per_node: usize,
    /// The length of a cron minute in real milliseconds: 60,000. Tests shorten it to run
    /// many ticks quickly; `scheduledTime` stays in the schedule's own time.
    #[serde(default = "default_cron_minute_ms")]
    pub cron_minute_ms: u64,
    /// A tick missed (no leader could claim it) is run late up to this long after it was
    /// due; older ones are recorded as skipped (Kubernetes' `startingDeadlineSeconds`).
    #[serde(default = "default_cron_catchup_secs")]
    pub cron_catchup_secs: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            lease_ms: default_lease_ms(),
            poll_ms: default_queue_poll_ms(),
            retention_secs: default_retention_secs(),
            max_batches_per_node: default_max_batches_per_node(),
            cron_minute_ms: default_cron_minute_ms(),
            cron_catchup_secs: default_cron_catchup_secs(),
        }
    }
}

fn default_lease_ms() -> u64 {
    60_000
}
fn default_queue_poll_ms() -> u64 {
    1_000
}
fn default_retention_secs() -> u64 {
    4 * 24 * 3600
}
fn default_max_batches_per_node() -> usize {
    32
}
fn default_cron_minute_ms() -> u64 {
    60_000
}
fn default_cron_catchup_secs() -> u64 {
    300
}

/// The S3 API's listener: a public surface of its own that serves only S3 requests signed
/// with an access key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default = "default_s3_listen")]
    pub listen: SocketAddr,
    /// Virtual-host-style requests: `<bucket>.<domain>`. Empty: path-style only.
    #[serde(default)]
    pub domain: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTPS on the S3 listener (see `http.tls`).
    #[serde(default)]
    pub tls: HttpsConfig,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            listen: default_s3_listen(),
            domain: String::new(),
            max_connections: default_max_connections(),
            tls: HttpsConfig::default(),
        }
    }
}

fn default_s3_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9000))
}
fn default_upload_expiry_secs() -> u64 {
    7 * 24 * 3600
}
fn default_chunk_grace_secs() -> u64 {
    3600
}
fn default_maintain_secs() -> u64 {
    60
}
fn default_chunks_in_flight() -> usize {
    2
}
fn default_max_transfers() -> usize {
    32
}

/// Workers KV.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    /// Smallest `expirationTtl` accepted, in seconds (60 as in Cloudflare; lower it for tests).
    #[serde(default = "default_min_ttl_secs")]
    pub min_ttl_secs: u64,
    /// How often the node compares its replica with a random peer and repairs differences.
    #[serde(default = "default_anti_entropy_ms")]
    pub anti_entropy_ms: u64,
    /// How long a delete's tombstone is kept. Must far exceed `anti_entropy_ms` (at least
    /// 10×) so every replica has heard of the delete before it is forgotten.
    #[serde(default = "default_tombstone_grace_ms")]
    pub tombstone_grace_ms: u64,
    /// How often expired entries and old tombstones are purged.
    #[serde(default = "default_purge_ms")]
    pub purge_ms: u64,
    /// KV writes are not synced one by one; the WAL is synced this often (a write also
    /// survives a machine crash once it has spread to another node).
    #[serde(default = "default_wal_sync_ms")]
    pub wal_sync_ms: u64,
    /// How far ahead of this node's clock a peer's entry may be stamped, in milliseconds;
    /// a later one is refused (it would win every write after it).
    #[serde(default = "default_max_clock_offset_ms")]
    pub max_clock_offset_ms: u64,
}

/// The public HTTP edge: workers and `/healthz`, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// `host:port` peers and clients reach this listener at, when `listen` is a wildcard
    /// (in a container, say); resolved at start. Empty: the listener's own address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// A worker named `hello` answers for `Host: hello.<suffix>`.
    #[serde(default = "default_worker_host_suffix")]
    pub worker_host_suffix: String,
    /// Connections served at once; one past the cap is closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that does not complete a request head within this (its first, or the
    /// next on a kept-alive connection) is closed, in milliseconds.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A request body must arrive whole within this of the request's start, in milliseconds.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// HTTPS on the edge: a certificate chain and key (PEM). Without them, plain HTTP.
    #[serde(default)]
    pub tls: HttpsConfig,
}

/// The management API: the REST APIs (KV, D1, Durable Objects, cluster, faults) and
/// `/metrics`, on their own listener, behind bearer tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Loopback by default: publish it only where operators are.
    #[serde(default = "default_management_listen")]
    pub listen: SocketAddr,
    /// SHA-256 (lowercase hex) of tokens with the `admin` scope this node accepts before the
    /// control plane has sent its token set (and after, alongside it). `nimbus dev` and the
    /// testkit put the cluster's bootstrap token here.
    #[serde(default)]
    pub admin_token_sha256: Vec<String>,
    /// Connections served at once (header and body timeouts are the edge's).
    #[serde(default = "default_management_max_connections")]
    pub max_connections: usize,
    /// HTTPS on the management API (see `http.tls`).
    #[serde(default)]
    pub tls: HttpsConfig,
}

/// Peer-to-peer gRPC (Raft, Durable Object forwarding, KV bulk sync); used by later subsystems.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    #[serde(default = "default_rpc_listen")]
    pub listen: SocketAddr,
    /// `host:port` peers reach this listener at (see `http.advertise`).
    #[serde(default)]
    pub advertise: Option<String>,
}

/// SWIM membership over UDP; used by the membership subsystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipConfig {
    #[serde(default = "default_gossip_listen")]
    pub listen: SocketAddr,
    /// `host:port` peers send gossip to (see `http.advertise`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// `host:port` of nodes to join through.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// The cluster's gossip keys (32 bytes, base64; `nimbus keys gossip` makes one). Every
    /// datagram is sealed with the first and opened with any of them, so a key rotates
    /// without a split: add the new one second, then move it first, then drop the old one.
    #[serde(default)]
    pub keys: Vec<String>,
    /// How often a random member is probed, in milliseconds.
    #[serde(default = "default_probe_period_ms")]
    pub probe_period_ms: u64,
    /// How long a suspect member has to refute before it is declared down, in milliseconds.
    #[serde(default = "default_suspect_to_down_ms")]
    pub suspect_to_down_ms: u64,
    /// How long a down member stays listed (as `down`) before it is forgotten, in milliseconds.
    #[serde(default = "default_remove_down_after_ms")]
    pub remove_down_after_ms: u64,
}

/// Operator-only endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve `POST /v1/admin/faults`, which drops peer traffic to cut partitions in tests
    /// and adds latency and loss spikes.
    #[serde(default)]
    pub fault_injection: bool,
    /// Testing only, refused by release builds: a D1 write is acknowledged as soon as the
    /// leader has appended it, before a quorum commits it. It breaks durability on purpose,
    /// so the chaos suite can show its checkers catch a lost acknowledged write.
    #[serde(default)]
    pub unsafe_ack_d1_before_commit: bool,
    /// Testing only, refused by release builds: hold back the node's first Durable Objects
    /// membership view for this many milliseconds after start, so a test can aim requests
    /// at a restarted node in the window before it knows the cluster. 0: off.
    #[serde(default)]
    pub unsafe_hold_durable_view_ms: u64,
}

/// Where deployments come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// gRPC endpoint of the control plane's watch service. Empty: run only what is persisted.
    #[serde(default = "default_control_plane_url")]
    pub url: String,
    /// Longest wait between reconnection attempts, in milliseconds (backoff doubles up to it).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

/// The node's part in D1's Raft group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct D1Config {
    #[serde(default)]
    pub role: D1Role,
    /// How many voters must be up before the group forms (rqlite's `-bootstrap-expect`):
    /// the voter with the lowest node id among them then initialises it.
    #[serde(default = "default_bootstrap_expect")]
    pub bootstrap_expect: usize,
    /// The leader's heartbeat, in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for this long (randomised up to twice it) starts an
    /// election, in milliseconds.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Take a snapshot after this many log entries since the last one.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot, for followers that are only a little behind.
    #[serde(default = "default_keep_logs")]
    pub keep_logs: u64,
    /// How long a write may wait for a leader and a quorum before it fails, in milliseconds.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// The work one statement may do, in SQLite virtual-machine steps: deterministic, so a
    /// write that runs out fails the same way on every replica (the leader's value travels in
    /// the log entry). About a second of one core in a release build.
    #[serde(default = "default_max_vm_steps")]
    pub max_vm_steps: u64,
    /// The most bytes of rows one query may answer with.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: u64,
    /// How long a `bookmark` or `linearizable` read may wait for this replica, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum D1Role {
    /// Votes in the Raft group.
    Voter,
    /// Learner: a read replica.
    #[default]
    Replica,
}

/// Defaults for running workers; a worker's manifest may lower or raise the per-request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// CPU time per request, in milliseconds (epoch interruption).
    #[serde(default = "default_cpu_ms")]
    pub cpu_ms: u64,
    /// Linear memory per instance, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock bound on a request, in milliseconds, including time awaiting I/O.
    #[serde(default = "default_wall_ms")]
    pub wall_ms: u64,
    #[serde(default = "default_max_request_body")]
    pub max_request_body: u64,
    #[serde(default = "default_max_response_body")]
    pub max_response_body: u64,
    /// Instances alive at once across all workers (the pooling allocator's slots).
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Requests one worker may serve at once on this node; the next is answered 503 at
    /// once, so slow clients of one worker cannot take the instances of the others.
    #[serde(default = "default_max_concurrent_per_worker")]
    pub max_concurrent_per_worker: usize,
    /// Addresses (CIDR ranges or single IPs) outbound fetch may reach although they are not
    /// public: loopback, private, link-local and this node's own addresses are refused
    /// otherwise, whatever a manifest's `allowed_outbound_hosts` says.
    #[serde(default)]
    pub outbound_private_allowed: Vec<String>,
    /// Linear memory all idle instances of the node may hold, in MiB; past it the instances
    /// idle the longest (of any worker) are dropped.
    #[serde(default = "default_idle_memory_mb")]
    pub idle_memory_mb: u64,
    #[serde(default)]
    pub pool: PoolConfig,
}

/// When a warm instance is kept for the next request and when it is retired.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Idle instances kept per worker.
    #[serde(default = "default_max_idle")]
    pub max_idle: usize,
    /// Retire an instance after this many requests.
    #[serde(default = "default_max_requests")]
    pub max_requests: u64,
    /// Retire an instance after this many seconds.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Retire an instance whose memory has grown past this many MiB.
    #[serde(default = "default_retire_memory_mb")]
    pub retire_memory_mb: u64,
    /// Drop an instance that has waited this long for a request, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// KiB at the start of each memory slot an instance returns that stay resident for the
    /// next instance (wasmtime's `linear_memory_keep_resident`). 0 gives every page back; 64
    /// makes a fresh instance ~20 µs faster but keeps 64 KiB of every slot ever used.
    #[serde(default)]
    pub keep_resident_kb: u64,
}

fn default_node_id() -> String {
    "node-1".into()
}
fn default_region() -> String {
    "local".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data/node")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_management_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}
fn default_max_connections() -> usize {
    10_000
}
fn default_management_max_connections() -> usize {
    256
}
fn default_header_read_timeout_ms() -> u64 {
    15_000
}
fn default_body_read_timeout_ms() -> u64 {
    60_000
}
fn default_worker_host_suffix() -> String {
    "workers.localhost".into()
}
fn default_rpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7070))
}
fn default_gossip_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7946))
}
fn default_min_ttl_secs() -> u64 {
    60
}
fn default_anti_entropy_ms() -> u64 {
    2_000
}
fn default_tombstone_grace_ms() -> u64 {
    3_600_000
}
fn default_purge_ms() -> u64 {
    30_000
}
fn default_wal_sync_ms() -> u64 {
    100
}
fn default_max_clock_offset_ms() -> u64 {
    500
}
fn default_bootstrap_expect() -> usize {
    3
}
fn default_heartbeat_ms() -> u64 {
    100
}
fn default_election_timeout_ms() -> u64 {
    1_000
}
fn default_snapshot_logs() -> u64 {
    10_000
}
fn default_keep_logs() -> u64 {
    1_000
}
fn default_write_timeout_ms() -> u64 {
    10_000
}
fn default_read_timeout_ms() -> u64 {
    5_000
}
fn default_max_vm_steps() -> u64 {
    500_000_000
}
fn default_max_result_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_probe_period_ms() -> u64 {
    500
}
fn default_suspect_to_down_ms() -> u64 {
    3_000
}
fn default_remove_down_after_ms() -> u64 {
    60_000
}
fn default_control_plane_url() -> String {
    "http://127.0.0.1:9091".into()
}
fn default_reconnect_max_ms() -> u64 {
    2_000
}
fn default_cpu_ms() -> u64 {
    50
}
fn default_memory_mb() -> u64 {
    128
}
fn default_wall_ms() -> u64 {
    30_000
}
fn default_max_request_body() -> u64 {
    100 * 1024 * 1024
}
fn default_max_response_body() -> u64 {
    100 * 1024 * 1024
}
fn default_max_instances() -> u32 {
    1_000
}
fn default_max_concurrent_per_worker() -> usize {
    256
}
fn default_idle_memory_mb() -> u64 {
    32
}
fn default_idle_timeout_ms() -> u64 {
    30_000
}
fn default_max_idle() -> usize {
    16
}
fn default_max_requests() -> u64 {
    1_000_000
}
fn default_max_age_secs() -> u64 {
    600
}
fn default_retire_memory_mb() -> u64 {
    64
}

/// `NIMBUS_*` variables that are not configuration keys: the log filter, the config path, and
/// what the CLI and the testkit read.
const NOT_CONFIG: &[&str] = &["log", "config", "api_url", "api_token", "node_url", "bin_dir", "test_keep"];

macro_rules! default_from_serde {
    ($($ty:ty),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                toml::from_str("").expect("every field has a default")
            }
        }
    )*};
}
default_from_serde!(
    NodeConfig,
    HttpConfig,
    ManagementConfig,
    RpcConfig,
    GossipConfig,
    AdminConfig,
    KvConfig,
    ControlPlaneConfig,
    D1Config,
    RuntimeConfig,
    PoolConfig
);

impl NetworkConfig {
    /// True when the matrix adds nothing to any link.
    pub fn is_clear(&self) -> bool {
        self.links.iter().all(|l| l.one_way_ms <= 0.0)
            && self.intra_region_ms <= 0.0
            && self.jitter_ms <= 0.0
            && self.loss <= 0.0
    }

    /// The slowest round trip the matrix puts between two nodes, in milliseconds.
    pub fn max_rtt_ms(&self) -> f64 {
        let slowest = self.links.iter().map(|l| l.one_way_ms).fold(self.intra_region_ms, f64::max);
        2.0 * (slowest + self.jitter_ms)
    }
}

impl NodeConfig {
    /// Raises timeouts that the latency matrix would make fire on every round trip: D1's
    /// heartbeat (openraft's append timeout) to 1.5 × the slowest round trip and its election
    /// timeout to 10 × the heartbeat, and the gossip probe period to 4 × the round trip (a
    /// probe waits half a period). Returns what changed, for the log.
    pub fn fit_to_network(&mut self) -> Vec<String> {
        let rtt = self.network.max_rtt_ms();
        let mut changed = Vec::new();
        if rtt <= 0.0 {
            return changed;
        }
        let heartbeat = (rtt * 1.5).ceil() as u64;
        if self.d1.heartbeat_ms < heartbeat {
            changed.push(format!("d1.heartbeat_ms {} -> {heartbeat}", self.d1.heartbeat_ms));
            self.d1.heartbeat_ms = heartbeat;
        }
        if self.d1.election_timeout_ms < self.d1.heartbeat_ms * 10 {
            changed.push(format!(
                "d1.election_timeout_ms {} -> {}",
                self.d1.election_timeout_ms,
                self.d1.heartbeat_ms * 10
            ));
            self.d1.election_timeout_ms = self.d1.heartbeat_ms * 10;
        }
        let probe = (rtt * 4.0).ceil() as u64;
        if self.gossip.probe_period_ms < probe {
            changed.push(format!("gossip.probe_period_ms {} -> {probe}", self.gossip.probe_period_ms));
            self.gossip.probe_period_ms = probe;
        }
        if self.gossip.suspect_to_down_ms < self.gossip.probe_period_ms * 3 {
            changed.push(format!(
                "gossip.suspect_to_down_ms {} -> {}",
                self.gossip.suspect_to_down_ms,
                self.gossip.probe_period_ms * 3
            ));
            self.gossip.suspect_to_down_ms = self.gossip.probe_period_ms * 3;
        }
        changed
    }

    /// Reads `path` (if given) and applies `NIMBUS_*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::prefixed("NIMBUS_").ignore(NOT_CONFIG).split("__")).extract().map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_sets_every_section() {
        let path = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
            .join("../../../node.example.toml");
        let text = std::fs::read_to_string(&path).expect("node.example.toml exists");
        let config: NodeConfig = toml::from_str(&text).expect("node.example.toml parses");
        assert_eq!(config.region, "us-east");
        assert_eq!(config.d1.role, D1Role::Voter);
        assert_eq!(config.http.worker_host_suffix, "workers.localhost");
        assert_eq!(config.runtime.cpu_ms, 50);
        assert_eq!(config.runtime.pool.keep_resident_kb, 0);
        assert_eq!(config.r2.s3.listen.port(), 9000);
        assert_eq!(config.r2.upload_expiry_secs, 7 * 24 * 3600);
        assert_eq!(config.queues.lease_ms, 60_000);
        assert_eq!(config.queues.retention_secs, 4 * 24 * 3600);
        assert_eq!(config.queues.cron_minute_ms, 60_000);
        assert_eq!(config.pages.host_suffix, "pages.localhost");
        assert_eq!(config.pages.cache_bytes, 128 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<NodeConfig>("[http]\nlisten = \"0.0.0.0:1\"\nlisen = 1\n")
            .expect_err("typo must not pass");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn timeouts_are_raised_to_fit_the_latency_matrix() {
        let mut config = NodeConfig::default();
        assert!(config.fit_to_network().is_empty(), "no matrix, nothing changes");
        config.network.links.push(RegionLink { a: "a".into(), b: "b".into(), one_way_ms: 90.0 });
        let changed = config.fit_to_network();
        assert_eq!(config.d1.heartbeat_ms, 270);
        assert_eq!(config.d1.election_timeout_ms, 2700);
        assert_eq!(config.gossip.probe_period_ms, 720);
        assert_eq!(config.gossip.suspect_to_down_ms, 3000, "already long enough");
        assert_eq!(changed.len(), 3, "{changed:?}");
    }

    #[test]
    fn defaults_match_the_design() {
        let config = NodeConfig::default();
        assert_eq!(config.http.listen.port(), 8080);
        assert!(config.management.listen.ip().is_loopback(), "management stays on loopback by default");
        assert_eq!(config.rpc.listen.port(), 7070);
        assert_eq!(config.gossip.listen.port(), 7946);
        assert_eq!(config.runtime.memory_mb, 128);
    }
}
