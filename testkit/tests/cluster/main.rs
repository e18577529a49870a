//! Cluster tests: real control plane and node processes on loopback, started by the testkit.

mod d1;
mod d1_sessions;
mod deploy;
mod durable;
mod js;
mod kv;
mod membership;
mod pages;
mod queues;
mod r2;
mod r2_binding;
mod runtime;
mod trust;

use nimbus_testkit::{examples, Cluster, ClusterSpec};
use std::time::Duration;

/// Bound for a deployment to reach every node (the spine promises 2 s; debug builds compile
/// components slower, so tests allow more).
pub const ROLLOUT: Duration = Duration::from_secs(30);

pub async fn cluster(nodes: usize) -> Cluster {
    let spec = ClusterSpec::local(nodes).expect("cluster spec");
    Cluster::start(spec).await.expect("cluster starts")
}

/// Deploys example `example` as worker `name` and waits until every node serves it.
pub async fn deploy_example(cluster: &Cluster, name: &str, example: &str, manifest: serde_json::Value) -> u64 {
    let wasm = examples::wasm_bytes(example).expect("example builds");
    let resp = cluster.deploy(name, &wasm, manifest).await.expect("deploy call");
    assert_eq!(resp.status, 201, "deploy of {example} as {name}: {:?}", resp.body);
    let version = resp.body["version"].as_u64().expect("version in response");
    cluster.wait_for_version(name, version, ROLLOUT).await.expect("rollout");
    version
}
