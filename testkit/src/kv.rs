//! KV through a node's REST API, for tests and benchmarks.

use crate::Cluster;
use anyhow::{anyhow, bail, Result};
pub use nimbus_api::kv::ReplicaSummary;

impl Cluster {
    /// Node `index`'s management API.
    pub(crate) fn node_url(&self, index: usize) -> Result<String> {
        Ok(self.nodes.get(index).ok_or_else(|| anyhow!("no node {index}"))?.api_url())
    }

    /// Declares a KV namespace through node `index`.
    pub async fn kv_declare(&self, index: usize, namespace: &str) -> Result<()> {
        let resp = self.http().put(format!("{}/v1/kv/namespaces/{namespace}", self.node_url(index)?)).send().await?;
        if !resp.status().is_success() {
            bail!("declaring {namespace}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// True when node `index` knows namespace `namespace`.
    pub async fn kv_namespace_exists(&self, index: usize, namespace: &str) -> Result<bool> {
        let url = format!("{}/v1/kv/{namespace}/keys?limit=1", self.node_url(index)?);
        Ok(self.http().get(url).send().await?.status().is_success())
    }

    /// Puts `value` at `namespace/key` on node `index`; returns the HTTP status and body.
    pub async fn kv_put(
        &self,
        index: usize,
        namespace: &str,
        key: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<(u16, String)> {
        let url = format!("{}/v1/kv/{namespace}/values/{key}", self.node_url(index)?);
        let resp = self.http().put(url).body(value.into()).send().await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// Deletes `namespace/key` on node `index`; returns the HTTP status.
    pub async fn kv_delete(&self, index: usize, namespace: &str, key: &str) -> Result<u16> {
        let url = format!("{}/v1/kv/{namespace}/values/{key}", self.node_url(index)?);
        Ok(self.http().delete(url).send().await?.status().as_u16())
    }

    /// The value of `namespace/key` on node `index`, `None` when it is absent.
    pub async fn kv_get(&self, index: usize, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/v1/kv/{namespace}/values/{key}", self.node_url(index)?);
        let resp = self.http().get(url).send().await?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.bytes().await?.to_vec())),
            404 => {
                let body = resp.text().await.unwrap_or_default();
                if body.contains("namespace") {
                    bail!("get {namespace}/{key} on node {index}: {body}");
                }
                Ok(None)
            }
            status => {
                bail!("get {namespace}/{key} on node {index}: {status} {}", resp.text().await.unwrap_or_default())
            }
        }
    }

    /// One page of `GET /v1/kv/{namespace}/keys` on node `index` with `query` (prefix, limit, cursor).
    pub async fn kv_list(&self, index: usize, namespace: &str, query: &[(&str, String)]) -> Result<serde_json::Value> {
        let url = format!("{}/v1/kv/{namespace}/keys", self.node_url(index)?);
        Ok(self.http().get(url).query(query).send().await?.json().await?)
    }

    /// Node `index`'s replica size and digest.
    pub async fn kv_summary(&self, index: usize) -> Result<ReplicaSummary> {
        let replica: nimbus_api::kv::Replica =
            self.http().get(format!("{}/v1/node/kv", self.node_url(index)?)).send().await?.json().await?;
        Ok(replica.summary)
    }

    /// True when every running node reports the same replica digest.
    pub async fn kv_converged(&self) -> Result<bool> {
        let mut first: Option<ReplicaSummary> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            let summary = self.kv_summary(index).await?;
            match &first {
                Some(first) if *first != summary => return Ok(false),
                Some(_) => {}
                None => first = Some(summary),
            }
        }
        Ok(true)
    }
}
