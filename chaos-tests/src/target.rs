//! The cluster under test and the faults it can be put through.
//!
//! - [`Target::Processes`]: a testkit cluster on loopback (the CI default, no Docker needed).
//!   Kill is SIGKILL, pause is SIGSTOP / SIGCONT, partitions use the nodes' fault hooks in
//!   the peer transport.
//! - [`Target::Docker`]: the docker-compose cluster of `deploy/` (`deploy/cluster up`). Kill
//!   is `docker kill -s KILL`, pause is `docker pause` (the cgroup freezer), isolating one
//!   node is `docker network disconnect`, splits between groups use the fault hooks (the
//!   compose enables them), the control plane is stopped with `docker stop`.
//!
//! Nodes are addressed by index (0-based) in both.

use crate::api::Api;
use anyhow::{anyhow, bail, Context, Result};
use nimbus_testkit::Cluster;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

pub enum Target {
    Processes(Box<Cluster>),
    Docker(Compose),
}

/// The docker-compose cluster: container names, their HTTP endpoints, regions.
pub struct Compose {
    pub project: String,
    pub network: String,
    pub nodes: Vec<DockerNode>,
    pub control_plane: String,
    pub api_url: String,
    pub token: String,
}

pub struct DockerNode {
    pub container: String,
    /// The node id (`node-1` …).
    pub id: String,
    pub region: String,
    /// Its fixed address on the compose network (reconnected with the same one).
    pub ip: String,
    /// The management API.
    pub url: String,
    /// The public edge.
    pub edge_url: String,
}

impl Compose {
    /// Finds the running compose cluster (project `nimbus`, as `deploy/cluster up` starts it).
    pub fn discover(project: &str, token: &str) -> Result<Compose> {
        let out = docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Names}}",
        ])?;
        let mut names: Vec<String> = out.lines().map(str::to_owned).filter(|n| !n.is_empty()).collect();
        names.sort();
        let control_plane = names
            .iter()
            .find(|n| n.contains("control-plane"))
            .cloned()
            .ok_or_else(|| anyhow!("no control-plane container in project {project}; run deploy/cluster up"))?;
        let network = format!("{project}_nimbus");
        let mut nodes = Vec::new();
        for name in names.iter().filter(|n| n.contains("node-")) {
            let label =
                |key: &str| docker(&["inspect", "-f", &format!("{{{{index .Config.Labels \"{key}\"}}}}"), name]);
            let ip = configured_ip(name, &network)?;
            nodes.push(DockerNode {
                container: name.clone(),
                id: label("nimbus.node")?.trim().to_owned(),
                region: label("nimbus.region")?.trim().to_owned(),
                url: format!("http://{ip}:8090"),
                edge_url: format!("http://{ip}:8080"),
                ip,
            });
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        if nodes.is_empty() {
            bail!("no node containers in project {project}");
        }
        let ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            &control_plane,
        ])?;
        Ok(Compose {
            project: project.to_owned(),
            network,
            nodes,
            api_url: format!("http://{}:9090", ip.trim()),
            control_plane,
            token: token.to_owned(),
        })
    }
}

/// The fixed address docker-compose.yml gives a container (it survives a disconnect).
fn configured_ip(container: &str, network: &str) -> Result<String> {
    let format =
        format!("{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAMConfig.IPv4Address}}}}{{{{end}}}}");
    let ip = docker(&["inspect", "-f", &format, container])?.trim().to_owned();
    if ip.is_empty() {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        return Ok(docker(&["inspect", "-f", &format, container])?.trim().to_owned());
    }
    Ok(ip)
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker").args(args).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Target {
    pub fn len(&self) -> usize {
        match self {
            Target::Processes(c) => c.nodes.len(),
            Target::Docker(d) => d.nodes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Processes(_) => "processes",
            Target::Docker(_) => "docker",
        }
    }

    /// Node `index`'s management API (how the suite names a node).
    pub fn url(&self, index: usize) -> String {
        match self {
            Target::Processes(c) => c.nodes.get(index).map(|n| n.api_url()).unwrap_or_default(),
            Target::Docker(d) => d.nodes.get(index).map(|n| n.url.clone()).unwrap_or_default(),
        }
    }

    /// Node `index`'s public edge, where workers answer.
    pub fn edge_url(&self, index: usize) -> String {
        match self {
            Target::Processes(c) => c.nodes.get(index).map(|n| n.url()).unwrap_or_default(),
            Target::Docker(d) => d.nodes.get(index).map(|n| n.edge_url.clone()).unwrap_or_default(),
        }
    }

    /// The client the suite talks to this cluster with: its token, and each node's edge.
    pub fn api(&self) -> Result<Api> {
        let edges = (0..self.len()).map(|i| (self.url(i), self.edge_url(i))).collect();
        Api::new(&self.token(), edges)
    }

    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    pub fn node_name(&self, index: usize) -> String {
        match self {
            Target::Processes(c) => c.nodes.get(index).map(|n| n.id.clone()).unwrap_or_default(),
            Target::Docker(d) => d.nodes.get(index).map(|n| n.id.clone()).unwrap_or_default(),
        }
    }

    /// Index of the node whose id (or container name) ends with `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        (0..self.len()).find(|i| self.node_name(*i) == id)
    }

    pub fn region(&self, index: usize) -> String {
        match self {
            Target::Processes(c) => c.nodes.get(index).map(|n| n.region.clone()).unwrap_or_default(),
            Target::Docker(d) => d.nodes.get(index).map(|n| n.region.clone()).unwrap_or_default(),
        }
    }

    pub fn api_url(&self) -> String {
        match self {
            Target::Processes(c) => c.api_url(),
            Target::Docker(d) => d.api_url.clone(),
        }
    }

    pub fn token(&self) -> String {
        match self {
            Target::Processes(c) => c.token().to_owned(),
            Target::Docker(d) => d.token.clone(),
        }
    }

    /// SIGKILL.
    pub async fn kill(&mut self, index: usize) -> Result<()> {
        match self {
            Target::Processes(c) => c.kill_node(index).await,
            Target::Docker(d) => docker(&["kill", "-s", "KILL", &d.nodes[index].container]).map(drop),
        }
    }

    /// Starts a killed or stopped node again on its data.
    pub async fn start(&mut self, index: usize) -> Result<()> {
        match self {
            Target::Processes(c) => c.restart_node(index).await,
            Target::Docker(d) => docker(&["start", &d.nodes[index].container]).map(drop),
        }
    }

    /// A graceful restart (SIGTERM, then start).
    pub async fn restart(&mut self, index: usize) -> Result<()> {
        match self {
            Target::Processes(c) => {
                c.terminate_node(index).await?;
                c.restart_node(index).await
            }
            Target::Docker(d) => docker(&["restart", "-t", "10", &d.nodes[index].container]).map(drop),
        }
    }

    pub async fn pause(&mut self, index: usize) -> Result<()> {
        match self {
            Target::Processes(c) => c.pause_node(index),
            Target::Docker(d) => docker(&["pause", &d.nodes[index].container]).map(drop),
        }
    }

    pub async fn resume(&mut self, index: usize) -> Result<()> {
        match self {
            Target::Processes(c) => c.resume_node(index),
            Target::Docker(d) => docker(&["unpause", &d.nodes[index].container]).map(drop),
        }
    }

    /// Cuts node `index` off from every other node (docker: from the network altogether).
    pub async fn isolate(&mut self, api: &Api, index: usize) -> Result<()> {
        match self {
            Target::Docker(d) => docker(&["network", "disconnect", &d.network, &d.nodes[index].container]).map(drop),
            Target::Processes(_) => {
                let others: Vec<usize> = (0..self.len()).filter(|i| *i != index).collect();
                self.split(api, &[vec![index], others], json!({})).await
            }
        }
    }

    /// Splits the nodes into groups that cannot reach each other (peer transport faults);
    /// `spike` is added to every link at the same time.
    pub async fn split(&self, api: &Api, groups: &[Vec<usize>], spike: Value) -> Result<()> {
        let mut gossip = Vec::new();
        for url in self.urls() {
            gossip.push(api.gossip_addr(&url).await.unwrap_or_default());
        }
        for group in groups {
            let blocked: Vec<String> =
                (0..self.len()).filter(|i| !group.contains(i)).map(|i| gossip[i].clone()).collect();
            for &member in group {
                api.set_faults(&self.url(member), &blocked, spike.clone()).await?;
            }
        }
        Ok(())
    }

    /// Adds `spike` (`{delay_ms, jitter_ms, loss}`) to every node's peer links.
    pub async fn spike(&self, api: &Api, spike: Value) -> Result<()> {
        for url in self.urls() {
            api.set_faults(&url, &[], spike.clone()).await?;
        }
        Ok(())
    }

    /// Clears every injected fault: reconnects isolated containers, empties the fault hooks.
    pub async fn heal(&mut self, api: &Api) -> Result<()> {
        if let Target::Docker(d) = self {
            for node in &d.nodes {
                // Fails harmlessly when the container is still connected.
                let _ = docker(&["network", "connect", "--ip", &node.ip, &d.network, &node.container]);
            }
        }
        for url in self.urls() {
            // A node that is down has no faults to clear.
            let _ = api.set_faults(&url, &[], json!({})).await;
        }
        Ok(())
    }

    pub async fn control_plane_down(&mut self) -> Result<()> {
        match self {
            Target::Processes(c) => c.kill_control_plane().await,
            Target::Docker(d) => docker(&["stop", "-t", "2", &d.control_plane]).map(drop),
        }
    }

    pub async fn control_plane_up(&mut self) -> Result<()> {
        match self {
            Target::Processes(c) => c.start_control_plane().await,
            Target::Docker(d) => docker(&["start", &d.control_plane]).map(drop),
        }
    }

    /// Waits until node `index` answers `/healthz`.
    pub async fn wait_healthy(&self, api: &Api, index: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let url = format!("{}/healthz", self.url(index));
        loop {
            if let Ok(resp) = api.http().get(&url).timeout(Duration::from_secs(1)).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} not healthy within {timeout:?}", self.node_name(index));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
