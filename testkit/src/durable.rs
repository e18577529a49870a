//! Durable Objects seen from outside, for tests and benchmarks: which objects each node
//! runs (`/v1/node/durable`).

use crate::Cluster;
use anyhow::Result;
pub use nimbus_api::node::{DurableStatus, LiveObject};

impl Cluster {
    pub async fn durable_status(&self, index: usize) -> Result<DurableStatus> {
        let url = format!("{}/v1/node/durable", self.node_url(index)?);
        Ok(self.http().get(url).send().await?.error_for_status()?.json().await?)
    }

    /// The nodes (indices) on which object `id` is live now, each with its epoch.
    pub async fn durable_live_on(&self, id: &str) -> Result<Vec<(usize, String)>> {
        let mut out = Vec::new();
        for i in (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running()) {
            for object in self.durable_status(i).await?.live {
                if object.id == id {
                    out.push((i, object.epoch.unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }
}
