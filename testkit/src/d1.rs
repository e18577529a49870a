//! D1 through a node's REST API, for tests and benchmarks: databases, queries with a
//! consistency level, each node's view of the Raft group, and replica checksums.

use crate::Cluster;
use anyhow::{anyhow, bail, Result};
pub use nimbus_api::node::D1Status;
use serde_json::{json, Value};

impl Cluster {
    fn d1_url(&self, index: usize, path: &str) -> Result<String> {
        Ok(format!("{}{path}", self.node_url(index)?))
    }

    /// Creates database `name` through node `index`.
    pub async fn d1_create(&self, index: usize, name: &str) -> Result<()> {
        let resp = self.http().put(self.d1_url(index, &format!("/v1/d1/databases/{name}"))?).send().await?;
        if !resp.status().is_success() {
            bail!("creating {name}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// `POST /v1/d1/{database}/query` on node `index` with `body`; the status and JSON reply.
    pub async fn d1_query(&self, index: usize, database: &str, body: Value) -> Result<(u16, Value)> {
        let resp =
            self.http().post(self.d1_url(index, &format!("/v1/d1/{database}/query"))?).json(&body).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Runs one statement on node `index` and insists it succeeds; the reply.
    pub async fn d1_ok(&self, index: usize, database: &str, sql: &str, params: Value) -> Result<Value> {
        let (status, reply) = self.d1_query(index, database, json!({ "sql": sql, "params": params })).await?;
        if status != 200 {
            bail!("`{sql}` on node {index}: {status} {reply}");
        }
        Ok(reply)
    }

    /// `POST /v1/d1/{database}/exec` on node `index`.
    pub async fn d1_exec(&self, index: usize, database: &str, sql: &str) -> Result<Value> {
        let resp = self
            .http()
            .post(self.d1_url(index, &format!("/v1/d1/{database}/exec"))?)
            .json(&json!({ "sql": sql }))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("exec on node {index}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn d1_status(&self, index: usize) -> Result<D1Status> {
        Ok(self.http().get(self.d1_url(index, "/v1/node/d1")?).send().await?.error_for_status()?.json().await?)
    }

    /// This replica's checksum of `database` and the index it has applied.
    pub async fn d1_checksum(&self, index: usize, database: &str) -> Result<(String, u64)> {
        let reply: Value = self
            .http()
            .get(self.d1_url(index, &format!("/v1/d1/{database}/checksum"))?)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let checksum = reply["checksum"].as_str().ok_or_else(|| anyhow!("no checksum in {reply}"))?;
        Ok((checksum.to_string(), reply["applied_index"].as_u64().unwrap_or(0)))
    }

    /// The index of the node that leads the Raft group, if a running node says it does.
    pub async fn d1_leader(&self) -> Option<usize> {
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            if let Ok(status) = self.d1_status(i).await {
                if status.state == "Leader" {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Waits until the group has a leader that every node in `indices` knows, with `voters`
    /// voters and `learners` learners.
    pub async fn d1_wait_formed(&self, indices: &[usize], voters: usize, learners: usize) -> Result<()> {
        self.eventually(std::time::Duration::from_secs(60), "the D1 group forms", || async {
            let mut leaders = Vec::new();
            for i in indices {
                let status = self.d1_status(*i).await?;
                if status.voters.len() != voters || status.learners.len() != learners {
                    return Ok(false);
                }
                leaders.push(status.leader);
            }
            Ok(leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]))
        })
        .await
    }
}
