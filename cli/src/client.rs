//! The control-plane API as the CLI uses it, and how the CLI finds the cluster.

use anyhow::{anyhow, bail, Context, Result};
use nimbus_api::control::NodeInfo;
use nimbus_testkit::ClusterFile;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

pub struct Client {
    pub api_url: String,
    token: String,
    http: reqwest::Client,
    /// The cluster file, when there is one: where each node's management API is.
    file: Option<ClusterFile>,
}

/// Where to connect, from flags and environment, else the dev cluster's `cluster.json`.
pub fn connect(api_url: Option<String>, token: Option<String>, cluster_file: &Path) -> Result<Client> {
    let (api_url, token, file) = match (api_url, token) {
        (Some(url), Some(token)) => (url, token, read_cluster_file(cluster_file, "").ok()),
        (url, token) => {
            let file = read_cluster_file(cluster_file, "--api-url and --token (NIMBUS_API_URL, NIMBUS_API_TOKEN)")?;
            (url.unwrap_or_else(|| file.api_url.clone()), token.unwrap_or_else(|| file.token.clone()), Some(file))
        }
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    Ok(Client { api_url: api_url.trim_end_matches('/').to_string(), token, http, file })
}

/// A node's management API and the token to present: `--node` (and `--token`), else the
/// first node of the cluster file and its token.
pub fn node_target(node: Option<String>, token: Option<String>, cluster_file: &Path) -> Result<(String, String)> {
    let flags = "--node http://host:port and --token (NIMBUS_NODE_URL, NIMBUS_API_TOKEN)";
    match (node, token) {
        (Some(url), Some(token)) => Ok((url.trim_end_matches('/').to_string(), token)),
        (node, token) => {
            let file = read_cluster_file(cluster_file, flags)?;
            let url = match node {
                Some(url) => url,
                None => {
                    let first =
                        file.nodes.first().ok_or_else(|| anyhow!("{} lists no nodes", cluster_file.display()))?;
                    first.api_url.clone()
                }
            };
            if url.is_empty() {
                bail!(
                    "{} has no management URL for its nodes (written by an older nimbus dev?); pass {flags}",
                    cluster_file.display()
                );
            }
            Ok((url.trim_end_matches('/').to_string(), token.unwrap_or(file.token)))
        }
    }
}

/// The dev cluster's `cluster.json`; when it is missing, the error names `flags` as the
/// other way to say where the cluster is.
pub fn read_cluster_file(path: &Path, flags: &str) -> Result<ClusterFile> {
    let text = std::fs::read_to_string(path).map_err(|_| {
        anyhow!(
            "no cluster to talk to: {} does not exist. Start one with `nimbus dev`, or pass {flags}",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

impl Client {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.api_url)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach the control plane at {}", self.api_url))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !status.is_success() {
            let message = value["error"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(value)
    }

    /// [`Client::call`], its answer read as `T` (a type of `nimbus_api::control`).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let value = self.call(method, path, body).await?;
        serde_json::from_value(value).with_context(|| format!("reading the control plane's answer to {path}"))
    }

    /// The nodes the control plane knows (`/v1/cluster`).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.call_as(reqwest::Method::GET, "/v1/cluster", None).await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Node `node_id`'s management API, from the cluster file.
    pub fn management_url(&self, node_id: &str) -> Option<String> {
        let file = self.file.as_ref()?;
        let node = file.nodes.iter().find(|n| n.id == node_id)?;
        (!node.api_url.is_empty()).then(|| node.api_url.trim_end_matches('/').to_string())
    }
}
