//! The REST calls the workloads and checkers make against a node, and how their answers map to
//! outcomes. Every call has a timeout, so a paused or cut-off node yields an unknown outcome
//! rather than a stuck client.
//!
//! A node is named by its management URL (REST, status, faults; the admin token rides every
//! call); [`Api::worker`] reaches the same node's public edge, where workers are.

use crate::history::Outcome;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::Duration;

/// Wait this long for any one answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(12);

#[derive(Clone)]
pub struct Api {
    /// Presents the admin token.
    http: reqwest::Client,
    /// No credentials: a client of the public edge.
    edge: reqwest::Client,
    /// Each node's management URL → its edge URL.
    edges: std::sync::Arc<std::collections::HashMap<String, String>>,
}

/// An answer: status and body, or why there was none.
#[derive(Debug)]
pub enum Answer {
    Reply {
        status: u16,
        body: String,
    },
    /// The connection was refused: the request never reached a node.
    Refused(String),
    /// Sent, no answer (timeout, reset): it may have taken effect.
    Lost(String),
}

impl Answer {
    /// The outcome of a write: acknowledged (2xx), refused (4xx, or never sent), or unknown.
    pub fn write_outcome(&self) -> Outcome {
        match self {
            Answer::Reply { status, .. } if (200..300).contains(status) => Outcome::Ok,
            Answer::Reply { status, .. } if (400..500).contains(status) => Outcome::Fail,
            Answer::Reply { .. } | Answer::Lost(_) => Outcome::Unknown,
            Answer::Refused(_) => Outcome::Fail,
        }
    }

    pub fn json(&self) -> Option<Value> {
        match self {
            Answer::Reply { body, .. } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Reply { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Answer::Reply { status, body } => format!("{status} {}", body.trim().chars().take(160).collect::<String>()),
            Answer::Refused(e) => format!("refused: {e}"),
            Answer::Lost(e) => format!("no answer: {e}"),
        }
    }
}

impl Api {
    /// `token` on every management call; `edges` maps each node's management URL to its edge.
    pub fn new(token: &str, edges: std::collections::HashMap<String, String>) -> Result<Api> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .pool_idle_timeout(Duration::from_secs(5))
        };
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Ok(Api { http: builder().default_headers(headers).build()?, edge: builder().build()?, edges: edges.into() })
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.text().await {
                    Ok(body) => Answer::Reply { status, body },
                    Err(e) => Answer::Lost(e.to_string()),
                }
            }
            Err(e) if e.is_connect() => Answer::Refused(e.to_string()),
            Err(e) => Answer::Lost(e.to_string()),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST /v1/d1/{db}/query`.
    pub async fn d1(&self, node: &str, db: &str, body: Value) -> Answer {
        self.send(self.http.post(format!("{node}/v1/d1/{db}/query")).json(&body)).await
    }

    pub async fn d1_create(&self, node: &str, db: &str) -> Result<()> {
        let answer = self.send(self.http.put(format!("{node}/v1/d1/databases/{db}"))).await;
        match answer.status() {
            Some(200 | 201) => Ok(()),
            _ => bail!("creating database {db}: {}", answer.describe()),
        }
    }

    pub async fn d1_status(&self, node: &str) -> Result<Value> {
        Ok(self.http.get(format!("{node}/v1/node/d1")).send().await?.error_for_status()?.json().await?)
    }

    pub async fn d1_checksum(&self, node: &str, db: &str) -> Result<Value> {
        Ok(self.http.get(format!("{node}/v1/d1/{db}/checksum")).send().await?.error_for_status()?.json().await?)
    }

    pub async fn kv_declare(&self, node: &str, namespace: &str) -> Result<()> {
        let answer = self.send(self.http.put(format!("{node}/v1/kv/namespaces/{namespace}"))).await;
        match answer.status() {
            Some(200 | 201) => Ok(()),
            _ => bail!("declaring namespace {namespace}: {}", answer.describe()),
        }
    }

    pub async fn kv_put(&self, node: &str, namespace: &str, key: &str, value: &str) -> Answer {
        self.send(self.http.put(format!("{node}/v1/kv/{namespace}/values/{key}")).body(value.to_owned())).await
    }

    pub async fn kv_delete(&self, node: &str, namespace: &str, key: &str) -> Answer {
        self.send(self.http.delete(format!("{node}/v1/kv/{namespace}/values/{key}"))).await
    }

    /// The value of `key` on `node`'s own replica (`None`: absent).
    pub async fn kv_get(&self, node: &str, namespace: &str, key: &str) -> Result<Option<String>> {
        let resp = self.http.get(format!("{node}/v1/kv/{namespace}/values/{key}")).send().await?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.text().await?)),
            404 => Ok(None),
            status => bail!("kv get {key}: {status}"),
        }
    }

    /// `node`'s replica summary (entry count and digest), to compare replicas.
    pub async fn kv_summary(&self, node: &str) -> Result<nimbus_api::kv::ReplicaSummary> {
        let replica: nimbus_api::kv::Replica =
            self.http.get(format!("{node}/v1/node/kv")).send().await?.error_for_status()?.json().await?;
        Ok(replica.summary)
    }

    pub async fn r2_bucket(&self, node: &str, bucket: &str) -> Result<()> {
        let answer = self.send(self.http.post(format!("{node}/v1/r2/buckets")).json(&json!({ "name": bucket }))).await;
        match answer.status() {
            Some(201 | 409) => Ok(()),
            _ => bail!("creating bucket {bucket}: {}", answer.describe()),
        }
    }

    pub async fn r2_put(&self, node: &str, bucket: &str, key: &str, body: String) -> Answer {
        self.send(self.http.put(format!("{node}/v1/r2/buckets/{bucket}/objects/{key}")).body(body)).await
    }

    /// An object's body through `node` (404: absent).
    pub async fn r2_get(&self, node: &str, bucket: &str, key: &str) -> Answer {
        self.send(self.http.get(format!("{node}/v1/r2/buckets/{bucket}/objects/{key}"))).await
    }

    /// Creates queue `queue` with an HTTP pull consumer (both idempotent).
    pub async fn queue_create(&self, node: &str, queue: &str) -> Result<()> {
        let answer = self.send(self.http.post(format!("{node}/v1/queues")).json(&json!({ "name": queue }))).await;
        if !matches!(answer.status(), Some(201 | 409)) {
            bail!("creating queue {queue}: {}", answer.describe());
        }
        let consumer = json!({ "type": "http_pull" });
        let answer = self.send(self.http.put(format!("{node}/v1/queues/{queue}/consumer")).json(&consumer)).await;
        match answer.status() {
            Some(200) => Ok(()),
            _ => bail!("setting the pull consumer of {queue}: {}", answer.describe()),
        }
    }

    pub async fn queue_send(&self, node: &str, queue: &str, value: i64) -> Answer {
        let body = json!({ "messages": [{ "body": value }] });
        self.send(self.http.post(format!("{node}/v1/queues/{queue}/messages")).json(&body)).await
    }

    /// Leases up to `batch` messages for `visibility_ms`.
    pub async fn queue_pull(&self, node: &str, queue: &str, batch: u32, visibility_ms: u64) -> Answer {
        let body = json!({ "batch_size": batch, "visibility_timeout_ms": visibility_ms });
        self.send(self.http.post(format!("{node}/v1/queues/{queue}/messages/pull")).json(&body)).await
    }

    pub async fn queue_ack(&self, node: &str, queue: &str, lease_ids: &[String]) -> Answer {
        let acks: Vec<Value> = lease_ids.iter().map(|l| json!({ "lease_id": l })).collect();
        self.send(self.http.post(format!("{node}/v1/queues/{queue}/messages/ack")).json(&json!({ "acks": acks }))).await
    }

    /// Messages stored in `queue` (waiting or leased).
    pub async fn queue_backlog(&self, node: &str, queue: &str) -> Result<u64> {
        let info: Value =
            self.http.get(format!("{node}/v1/queues/{queue}")).send().await?.error_for_status()?.json().await?;
        info["backlog"].as_u64().ok_or_else(|| anyhow::anyhow!("queue info without a backlog: {info}"))
    }

    /// A request to worker `worker` through `node`'s public edge.
    pub async fn worker(&self, node: &str, worker: &str, path: &str) -> Answer {
        let Some(edge) = self.edges.get(node) else {
            return Answer::Refused(format!("no edge address known for {node}"));
        };
        let request = self.edge.get(format!("{edge}{path}")).header("host", format!("{worker}.workers.localhost"));
        self.send(request).await
    }

    pub async fn durable_status(&self, node: &str) -> Result<nimbus_api::node::DurableStatus> {
        Ok(self.http.get(format!("{node}/v1/node/durable")).send().await?.error_for_status()?.json().await?)
    }

    /// This node's own gossip address, from its membership view.
    pub async fn gossip_addr(&self, node: &str) -> Result<String> {
        let view: Value = self.http.get(format!("{node}/v1/cluster")).send().await?.error_for_status()?.json().await?;
        let me = view["members"].as_array().into_iter().flatten().find(|m| m["is_self"] == json!(true));
        match me.and_then(|m| m["gossip_addr"].as_str()) {
            Some(addr) => Ok(addr.to_owned()),
            None => bail!("{node} does not list itself"),
        }
    }

    /// Replaces `node`'s injected faults.
    pub async fn set_faults(&self, node: &str, blocked: &[String], spike: Value) -> Result<()> {
        let resp = self
            .http
            .post(format!("{node}/v1/admin/faults"))
            .json(&json!({ "blocked": blocked, "spike": spike }))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("fault injection refused by {node}: {}", resp.status());
        }
        Ok(())
    }

    /// Deploys a component with a manifest through the control plane.
    pub async fn deploy(&self, api: &str, token: &str, name: &str, component: &[u8], manifest: Value) -> Result<u64> {
        let body = nimbus_testkit::deployment_body(component, manifest);
        let resp = self.http.post(format!("{api}/v1/deployments/{name}")).bearer_auth(token).json(&body).send().await?;
        let status = resp.status().as_u16();
        let reply: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 201 {
            bail!("deploying {name}: {status} {reply}");
        }
        reply["version"].as_u64().ok_or_else(|| anyhow::anyhow!("deploy reply without a version: {reply}"))
    }

    /// The version of `worker` `node` serves.
    pub async fn serves(&self, node: &str, worker: &str) -> Result<Option<u64>> {
        let status: nimbus_api::node::NodeStatus =
            self.http.get(format!("{node}/v1/node")).send().await?.error_for_status()?.json().await?;
        Ok(nimbus_testkit::served_version(&status, worker))
    }
}
