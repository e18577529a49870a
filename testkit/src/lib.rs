//! Start a real Nimbus cluster — one control plane and N node processes — on loopback.
//!
//! Used by the cluster tests (ports from 0, a temporary directory) and by `nimbus dev`
//! (fixed ports, `.nimbus/dev`). Every process prints one JSON line on stdout when it serves;
//! [`Cluster::start`] waits for those lines, so nothing is used before it is ready. Dropping
//! a [`Cluster`] kills its processes.
//!
//! # Layout
//! - [`Cluster`], [`ClusterSpec`]: start, stop, kill and restart processes; deploy workers.
//! - [`examples`]: build the guest examples once and find their `.wasm`.
//! - [`browser`]: headless Chromium over the DevTools Protocol (title, network log, links,
//!   screenshot).
//! - [`certs`]: the cluster CA and each process's certificate (mutual TLS on the cluster plane).
//! - `kv`: KV through a node's REST API, and whether the replicas have converged.
//! - `d1`: D1 through a node's REST API, the Raft group's state, replica checksums.
//! - `durable`: which Durable Objects each node runs.

pub mod browser;
pub mod certs;
mod d1;
mod durable;
pub mod examples;
pub use d1::D1Status;
pub use durable::{DurableStatus, LiveObject};
mod kv;
pub use kv::ReplicaSummary;
mod process;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use process::{Proc, Role};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    /// Where data and logs go; `None`: a temporary directory removed on drop.
    pub dir: Option<PathBuf>,
    /// API / gRPC addresses of the control plane (port 0: any free port).
    pub control_plane_api: SocketAddr,
    pub control_plane_grpc: SocketAddr,
    /// HTTP port of node 1 (node i gets base + i - 1); `None`: any free port.
    pub node_http_base_port: Option<u16>,
    /// UDP gossip port of node 1 (node i gets base + i - 1); `None`: any free port.
    pub node_gossip_base_port: Option<u16>,
    /// Management API port of node 1 (node i gets base + i - 1); `None`: any free port.
    pub node_management_base_port: Option<u16>,
    /// S3 API port of node 1 (node i gets base + i - 1); `None`: any free port.
    pub node_s3_base_port: Option<u16>,
    /// The bootstrap token: admin on the control plane and on every node.
    pub token: String,
    /// The gossip keys every node seals and opens datagrams with (base64, 32 bytes; the
    /// first seals); `ClusterSpec::local` makes a fresh one.
    pub gossip_keys: Vec<String>,
    /// Peer gRPC and the watch without TLS (`tls.insecure_plaintext`): only to measure what
    /// mutual TLS costs.
    pub insecure_plaintext: bool,
    /// Directory holding `nimbus-node` and `nimbus-control-plane`.
    pub bin_dir: PathBuf,
    /// Extra `NIMBUS_*` settings for every node.
    pub node_env: Vec<(String, String)>,
    /// Extra `NIMBUS_*` settings for the control plane.
    pub control_plane_env: Vec<(String, String)>,
    /// The first this many nodes vote in D1's Raft group (the rest are read replicas).
    pub d1_voters: usize,
    /// Node i (0-based) is in region `regions[i % len]`; empty: every node in `local`.
    pub regions: Vec<String>,
    /// A TOML configuration file every node reads (e.g. a `[network]` latency matrix);
    /// `NIMBUS_*` settings still override it.
    pub node_config: Option<String>,
}

/// The bootstrap token of a [`ClusterSpec::local`] cluster.
pub const TEST_TOKEN: &str = "test-token";

impl ClusterSpec {
    /// `nodes` nodes on free loopback ports in a temporary directory.
    pub fn local(nodes: usize) -> Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(ClusterSpec {
            nodes,
            dir: None,
            control_plane_api: any,
            control_plane_grpc: any,
            node_http_base_port: None,
            node_gossip_base_port: None,
            node_management_base_port: None,
            node_s3_base_port: None,
            token: TEST_TOKEN.into(),
            gossip_keys: vec![random_key()?],
            insecure_plaintext: false,
            bin_dir: bin_dir()?,
            node_env: Vec::new(),
            control_plane_env: Vec::new(),
            d1_voters: nodes.min(3),
            regions: Vec::new(),
            node_config: None,
        })
    }
}

/// 32 random bytes, base64: a gossip key.
pub fn random_key() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Finds the directory of the Nimbus binaries: `$NIMBUS_BIN_DIR`, else the directory of the
/// current executable (or its parent, for test binaries under `target/<profile>/deps`).
pub fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("NIMBUS_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    for dir in exe.ancestors().skip(1).take(2) {
        if dir.join("nimbus-node").is_file() && dir.join("nimbus-control-plane").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "nimbus-node and nimbus-control-plane were not found next to {}; build them with `cargo build --bins` or set NIMBUS_BIN_DIR",
        exe.display()
    )
}

/// The body of `POST /v1/deployments/{name}`: the manifest and the component in base64.
pub fn deployment_body(component: &[u8], manifest: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "manifest": manifest,
        "component": base64::engine::general_purpose::STANDARD.encode(component),
    })
}

/// The version of `worker` in a node's `/v1/node` status, if it serves it.
pub fn served_version(status: &nimbus_api::node::NodeStatus, worker: &str) -> Option<u64> {
    status.workers.iter().find(|w| w.name == worker).map(|w| w.version)
}

/// One started node.
pub struct Node {
    pub id: String,
    pub region: String,
    /// The public edge (workers, `/healthz`).
    pub http: SocketAddr,
    /// The management API (REST, status, `/metrics`; tokens).
    pub management: SocketAddr,
    /// Peer gRPC (mutual TLS).
    pub rpc: SocketAddr,
    /// The S3 API (R2).
    pub s3: SocketAddr,
    /// UDP gossip address (for fault injection between nodes).
    pub gossip: SocketAddr,
    proc: Option<Proc>,
    /// The node's `data_dir` (RocksDB, component cache).
    pub data_dir: PathBuf,
}

impl Node {
    /// The public edge.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The management API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.management)
    }

    /// The S3 API.
    pub fn s3_url(&self) -> String {
        format!("http://{}", self.s3)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }
}

pub struct Cluster {
    spec: ClusterSpec,
    dir: PathBuf,
    /// Keeps a temporary directory alive as long as the cluster.
    _tempdir: Option<tempfile::TempDir>,
    control_plane: Option<Proc>,
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    pub nodes: Vec<Node>,
    /// Carries the bootstrap token on every request (management APIs, control plane).
    http: reqwest::Client,
    /// No credentials: what a client of the public edge sends.
    edge: reqwest::Client,
}

/// What `cluster.json` holds: every endpoint and the bootstrap (admin) token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub api_url: String,
    pub grpc_url: String,
    pub token: String,
    pub nodes: Vec<NodeEntry>,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: String,
    pub region: String,
    /// The public edge.
    pub http_url: String,
    /// The management API (bearer token).
    #[serde(default)]
    pub api_url: String,
    /// The S3 API (R2), for S3 clients.
    #[serde(default)]
    pub s3_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ControlPlaneReady {
    api: SocketAddr,
    grpc: SocketAddr,
}

#[derive(Debug, Deserialize)]
struct NodeReady {
    http: SocketAddr,
    management: SocketAddr,
    rpc: SocketAddr,
    gossip: SocketAddr,
    s3: Option<SocketAddr>,
}

/// The addresses a node listens on (port 0: any free port).
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: SocketAddr,
    management: SocketAddr,
    gossip: SocketAddr,
    s3: SocketAddr,
}

/// A client that sends `Authorization: Bearer <token>` on every request.
fn authed_client(token: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(60)).default_headers(headers).build()?)
}

/// A control-plane response: status and JSON body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Cluster {
    pub async fn start(spec: ClusterSpec) -> Result<Cluster> {
        let (dir, tempdir) = match &spec.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let t = tempfile::Builder::new().prefix("nimbus-cluster-").tempdir()?;
                if std::env::var_os("NIMBUS_TEST_KEEP").is_some() {
                    // Keep data and logs for a post-mortem.
                    let kept = t.keep();
                    eprintln!("cluster directory kept: {}", kept.display());
                    (kept, None)
                } else {
                    (t.path().to_path_buf(), Some(t))
                }
            }
        };
        std::fs::create_dir_all(dir.join("logs"))?;
        let spec_token = spec.token.clone();
        if let Some(config) = &spec.node_config {
            std::fs::write(dir.join("node.toml"), config)?;
        }
        let mut cluster = Cluster {
            api: spec.control_plane_api,
            grpc: spec.control_plane_grpc,
            spec,
            dir,
            _tempdir: tempdir,
            control_plane: None,
            nodes: Vec::new(),
            http: authed_client(&spec_token)?,
            edge: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
        };
        cluster.start_control_plane().await?;
        for i in 1..=cluster.spec.nodes {
            let http_port = cluster.spec.node_http_base_port.map_or(0, |base| base + i as u16 - 1);
            let gossip_port = cluster.spec.node_gossip_base_port.map_or(0, |base| base + i as u16 - 1);
            let management_port = cluster.spec.node_management_base_port.map_or(0, |base| base + i as u16 - 1);
            let s3_port = cluster.spec.node_s3_base_port.map_or(0, |base| base + i as u16 - 1);
            let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
            let ports = Ports {
                http: loopback(http_port),
                management: loopback(management_port),
                gossip: loopback(gossip_port),
                s3: loopback(s3_port),
            };
            let node = cluster.launch_node(&format!("node-{i}"), ports, &[]).await?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn token(&self) -> &str {
        &self.spec.token
    }

    pub fn cluster_file(&self) -> ClusterFile {
        ClusterFile {
            api_url: self.api_url(),
            grpc_url: format!("http://{}", self.grpc),
            token: self.spec.token.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeEntry {
                    id: n.id.clone(),
                    region: n.region.clone(),
                    http_url: n.url(),
                    api_url: n.api_url(),
                    s3_url: Some(n.s3_url()),
                })
                .collect(),
            data_dir: self.dir.clone(),
        }
    }

    /// Starts (or restarts, on the same ports and data) the control plane.
    pub async fn start_control_plane(&mut self) -> Result<()> {
        let tls = self.certs(certs::CONTROL_PLANE_NAME)?;
        let plaintext = self.spec.insecure_plaintext.to_string();
        let mut env = vec![
            ("NIMBUS_GRPC__TLS__CA_FILE".to_string(), tls.ca.display().to_string()),
            ("NIMBUS_GRPC__TLS__CERT_FILE".to_string(), tls.cert.display().to_string()),
            ("NIMBUS_GRPC__TLS__KEY_FILE".to_string(), tls.key.display().to_string()),
            ("NIMBUS_GRPC__TLS__INSECURE_PLAINTEXT".to_string(), plaintext),
            ("NIMBUS_DATA_DIR".to_string(), self.dir.join("control-plane").display().to_string()),
            ("NIMBUS_API__LISTEN".to_string(), self.api.to_string()),
            ("NIMBUS_GRPC__LISTEN".to_string(), self.grpc.to_string()),
            ("NIMBUS_API__TOKEN".to_string(), self.spec.token.clone()),
        ];
        env.extend(self.spec.control_plane_env.iter().cloned());
        let log = self.dir.join("logs/control-plane.log");
        let (proc, line) = Proc::start(Role::ControlPlane, &self.spec.bin_dir, env, &log).await?;
        let ready: ControlPlaneReady =
            serde_json::from_str(&line).with_context(|| format!("control plane ready line: {line}"))?;
        self.api = ready.api;
        self.grpc = ready.grpc;
        self.control_plane = Some(proc);
        Ok(())
    }

    /// The certificate and key of `name` (made on first use), signed by the cluster's CA.
    pub fn certs(&self, name: &str) -> Result<certs::CertFiles> {
        let made = certs::create(&self.dir.join("tls"), &[name.to_string()])?;
        made.into_iter().next().map(|(_, files)| files).ok_or_else(|| anyhow!("no certificate made for {name}"))
    }

    async fn launch_node(&self, id: &str, ports: Ports, extra_env: &[(&str, &str)]) -> Result<Node> {
        let Ports { http, management, gossip, s3 } = ports;
        let tls = self.certs(id)?;
        let data_dir = self.dir.join(id);
        let ordinal: usize = id.strip_prefix("node-").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        let region = match self.spec.regions.len() {
            0 => "local".to_string(),
            n => self.spec.regions[ordinal.saturating_sub(1) % n].clone(),
        };
        let mut env = vec![
            ("NIMBUS_NODE_ID".to_string(), id.to_string()),
            ("NIMBUS_REGION".to_string(), region.clone()),
            ("NIMBUS_DATA_DIR".to_string(), data_dir.display().to_string()),
            ("NIMBUS_HTTP__LISTEN".to_string(), http.to_string()),
            ("NIMBUS_MANAGEMENT__LISTEN".to_string(), management.to_string()),
            ("NIMBUS_R2__S3__LISTEN".to_string(), s3.to_string()),
            (
                "NIMBUS_MANAGEMENT__ADMIN_TOKEN_SHA256".to_string(),
                format!("[\"{}\"]", nimbus_proto::auth::token_hash(&self.spec.token)),
            ),
            ("NIMBUS_CONTROL_PLANE__URL".to_string(), format!("http://{}", self.grpc)),
            ("NIMBUS_CONTROL_PLANE__RECONNECT_MAX_MS".to_string(), "500".to_string()),
            ("NIMBUS_GOSSIP__LISTEN".to_string(), gossip.to_string()),
            ("NIMBUS_GOSSIP__KEYS".to_string(), serde_json::to_string(&self.spec.gossip_keys)?),
            ("NIMBUS_TLS__CA_FILE".to_string(), tls.ca.display().to_string()),
            ("NIMBUS_TLS__CERT_FILE".to_string(), tls.cert.display().to_string()),
            ("NIMBUS_TLS__KEY_FILE".to_string(), tls.key.display().to_string()),
            ("NIMBUS_TLS__INSECURE_PLAINTEXT".to_string(), self.spec.insecure_plaintext.to_string()),
            ("NIMBUS_RPC__LISTEN".to_string(), "127.0.0.1:0".to_string()),
            ("NIMBUS_ADMIN__FAULT_INJECTION".to_string(), "true".to_string()),
            ("NIMBUS_D1__BOOTSTRAP_EXPECT".to_string(), self.spec.d1_voters.max(1).to_string()),
        ];
        if self.spec.node_config.is_some() {
            env.push(("NIMBUS_CONFIG".to_string(), self.dir.join("node.toml").display().to_string()));
        }
        if ordinal <= self.spec.d1_voters {
            env.push(("NIMBUS_D1__ROLE".to_string(), "voter".to_string()));
        }
        // Every node joins through the first one (and the first through any other running node).
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != id && n.is_running())
            .take(2)
            .map(|n| format!("\"{}\"", n.gossip))
            .collect();
        if !seeds.is_empty() {
            env.push(("NIMBUS_GOSSIP__SEEDS".to_string(), format!("[{}]", seeds.join(","))));
        }
        env.extend(self.spec.node_env.iter().cloned());
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = self.dir.join(format!("logs/{id}.log"));
        let (proc, line) = Proc::start(Role::Node, &self.spec.bin_dir, env, &log).await?;
        let ready: NodeReady = serde_json::from_str(&line).with_context(|| format!("{id} ready line: {line}"))?;
        Ok(Node {
            id: id.to_string(),
            region,
            http: ready.http,
            management: ready.management,
            rpc: ready.rpc,
            gossip: ready.gossip,
            s3: ready.s3.ok_or_else(|| anyhow!("{id} reported no S3 address"))?,
            proc: Some(proc),
            data_dir,
        })
    }

    /// Starts one more node (`node-<n+1>`), joining through the running ones.
    pub async fn add_node(&mut self) -> Result<usize> {
        self.add_node_with(&[]).await
    }

    /// As [`Cluster::add_node`], with extra environment (another gossip key, say).
    pub async fn add_node_with(&mut self, extra_env: &[(&str, &str)]) -> Result<usize> {
        let id = format!("node-{}", self.nodes.len() + 1);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let node = self.launch_node(&id, Ports { http: any, management: any, gossip: any, s3: any }, extra_env).await?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Waits until every running node sees every running node alive (and no other member).
    pub async fn wait_membership(&self, timeout: Duration) -> Result<()> {
        let mut expected: Vec<(String, String)> =
            self.nodes.iter().filter(|n| n.is_running()).map(|n| (n.id.clone(), "alive".to_string())).collect();
        expected.sort();
        for i in (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running()) {
            let what = format!("{} sees every node alive", self.nodes[i].id);
            let expected = &expected;
            self.eventually(timeout, &what, || async move { Ok(self.members_seen_by(i).await? == *expected) }).await?;
        }
        Ok(())
    }

    /// SIGKILLs the control plane.
    pub async fn kill_control_plane(&mut self) -> Result<()> {
        match self.control_plane.take() {
            Some(proc) => proc.kill().await,
            None => Ok(()),
        }
    }

    /// SIGKILLs node `index` (0-based).
    pub async fn kill_node(&mut self, index: usize) -> Result<()> {
        let node = self.nodes.get_mut(index).ok_or_else(|| anyhow!("no node {index}"))?;
        match node.proc.take() {
            Some(proc) => proc.kill().await,
            None => Ok(()),
        }
    }

    /// Stops node `index` with SIGTERM (a graceful shutdown) and waits for it.
    pub async fn terminate_node(&mut self, index: usize) -> Result<()> {
        let node = self.nodes.get_mut(index).ok_or_else(|| anyhow!("no node {index}"))?;
        match node.proc.take() {
            Some(proc) => proc.terminate().await,
            None => Ok(()),
        }
    }

    /// Freezes node `index` with SIGSTOP (its sockets stay open; peers see it go silent).
    pub fn pause_node(&self, index: usize) -> Result<()> {
        self.signal_node(index, libc::SIGSTOP)
    }

    /// Lets a paused node run on (SIGCONT).
    pub fn resume_node(&self, index: usize) -> Result<()> {
        self.signal_node(index, libc::SIGCONT)
    }

    fn signal_node(&self, index: usize, signal: libc::c_int) -> Result<()> {
        let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
        let pid = node.pid().ok_or_else(|| anyhow!("{} is not running", node.id))?;
        process::signal(pid, signal);
        Ok(())
    }

    /// Starts node `index` again on its old HTTP port and data directory.
    pub async fn restart_node(&mut self, index: usize) -> Result<()> {
        self.restart_node_with(index, &[]).await
    }

    /// As [`Cluster::restart_node`], with extra environment for this start only.
    pub async fn restart_node_with(&mut self, index: usize, extra_env: &[(&str, &str)]) -> Result<()> {
        self.kill_node(index).await?;
        let (id, ports) = {
            let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
            (node.id.clone(), Ports { http: node.http, management: node.management, gossip: node.gossip, s3: node.s3 })
        };
        let node = self.launch_node(&id, ports, extra_env).await?;
        debug_assert_eq!(node.data_dir, self.nodes[index].data_dir);
        self.nodes[index] = node;
        Ok(())
    }

    /// Stops every process with SIGTERM and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        for node in &mut self.nodes {
            if let Some(proc) = node.proc.take() {
                proc.terminate().await?;
            }
        }
        if let Some(proc) = self.control_plane.take() {
            proc.terminate().await?;
        }
        Ok(())
    }

    /// Deploys a component with a manifest (JSON, as the API takes it).
    pub async fn deploy(&self, name: &str, component: &[u8], manifest: serde_json::Value) -> Result<ApiResponse> {
        self.api_call(
            reqwest::Method::POST,
            &format!("/v1/deployments/{name}"),
            Some(deployment_body(component, manifest)),
        )
        .await
    }

    /// Deploys a JavaScript worker through the API: ES modules `(name, source)`, `main` first
    /// among them or not, and a manifest (JSON, as the API takes it).
    pub async fn deploy_script(
        &self,
        name: &str,
        modules: &[(&str, &str)],
        main: &str,
        manifest: serde_json::Value,
    ) -> Result<ApiResponse> {
        let modules: Vec<serde_json::Value> =
            modules.iter().map(|(name, source)| serde_json::json!({ "name": name, "source": source })).collect();
        let body = serde_json::json!({ "manifest": manifest, "script": { "main": main, "modules": modules } });
        self.api_call(reqwest::Method::POST, &format!("/v1/deployments/{name}"), Some(body)).await
    }

    /// Runs the `nimbus` CLI against this cluster: API URL and token in its environment, and
    /// a `cluster.json` (where each node's management API is) written for it.
    pub async fn nimbus(&self, args: &[&str]) -> Result<std::process::Output> {
        let file = self.dir.join("cluster.json");
        std::fs::write(&file, serde_json::to_string_pretty(&self.cluster_file())?)?;
        let output = tokio::process::Command::new(self.spec.bin_dir.join("nimbus"))
            .arg("--cluster")
            .arg(&file)
            .args(args)
            .env("NIMBUS_API_URL", self.api_url())
            .env("NIMBUS_API_TOKEN", &self.spec.token)
            .env_remove("NIMBUS_CLUSTER")
            .output()
            .await
            .context("running the nimbus CLI")?;
        Ok(output)
    }

    /// The folder holding every process's log (`<node id>.log`, `control-plane.log`).
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log of node `index` so far.
    pub fn node_log(&self, index: usize) -> Result<String> {
        let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
        Ok(std::fs::read_to_string(self.dir.join(format!("logs/{}.log", node.id)))?)
    }

    pub async fn api_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ApiResponse> {
        let mut req = self.http.request(method, format!("{}{path}", self.api_url())).bearer_auth(&self.spec.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok(ApiResponse { status, body })
    }

    /// Waits until every running node serves `version` of `worker`, as each node itself reports
    /// on `/v1/node`. Polls: a node offers no push notification to a client.
    pub async fn wait_for_version(&self, worker: &str, version: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let what = format!("{} serves {worker} v{version}", node.id);
            self.eventually(left, &what, || async { Ok(self.node_version(node, worker).await? == Some(version)) })
                .await?;
        }
        Ok(())
    }

    /// The version of `worker` that `node` serves, if any.
    pub async fn node_version(&self, node: &Node, worker: &str) -> Result<Option<u64>> {
        let status: nimbus_api::node::NodeStatus =
            self.http.get(format!("{}/v1/node", node.api_url())).send().await?.json().await?;
        Ok(served_version(&status, worker))
    }

    /// GET `path` on node `index` with `Host: <worker>.workers.localhost`.
    pub async fn get_worker(&self, index: usize, worker: &str, path: &str) -> Result<(u16, String)> {
        self.request_worker(index, worker, reqwest::Method::GET, path, Vec::new()).await
    }

    pub async fn request_worker(
        &self,
        index: usize,
        worker: &str,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String)> {
        let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
        let resp = self
            .edge
            .request(method, format!("{}{path}", node.url()))
            .header("host", format!("{worker}.workers.localhost"))
            .body(body)
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// A client that presents the bootstrap (admin) token: for management APIs.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A client without credentials: for workers on the public edge.
    pub fn edge(&self) -> &reqwest::Client {
        &self.edge
    }

    /// Node `index`'s view of the cluster: (node id, state) of every member it lists.
    pub async fn members_seen_by(&self, index: usize) -> Result<Vec<(String, String)>> {
        let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
        let view: serde_json::Value =
            self.http.get(format!("{}/v1/cluster", node.api_url())).send().await?.json().await?;
        let mut members: Vec<(String, String)> = view["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["node_id"].as_str().unwrap_or("").to_string(), m["state"].as_str().unwrap_or("").to_string()))
            .collect();
        members.sort();
        Ok(members)
    }

    /// Makes node `index` drop all gossip to and from `peers` (indices), or heals it (empty).
    pub async fn partition(&self, index: usize, peers: &[usize]) -> Result<()> {
        self.set_faults(index, peers, serde_json::json!({})).await
    }

    /// Replaces node `index`'s faults: traffic to and from `blocked` (indices) is dropped,
    /// and `spike` (`{delay_ms, jitter_ms, loss}`) is added to every outgoing peer link.
    pub async fn set_faults(&self, index: usize, blocked: &[usize], spike: serde_json::Value) -> Result<()> {
        let node = self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?;
        let blocked: Vec<String> =
            blocked.iter().filter_map(|i| self.nodes.get(*i)).map(|n| n.gossip.to_string()).collect();
        let resp = self
            .http
            .post(format!("{}/v1/admin/faults", node.api_url()))
            .json(&serde_json::json!({ "blocked": blocked, "spike": spike }))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("fault injection refused by {}: {}", node.id, resp.status());
        }
        Ok(())
    }

    /// Polls until `check` holds, failing after `timeout` with `what`.
    pub async fn eventually<F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check().await.unwrap_or(false) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("not within {timeout:?}: {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
