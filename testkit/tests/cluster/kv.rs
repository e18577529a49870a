//! KV on one node: the worker binding, the REST API, limits, durability across a restart.
//! (Replication between nodes is not built yet.)

use super::{cluster, deploy_example};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_counts_in_kv_and_rest_sees_the_same_values() {
    let mut cluster = cluster(1).await;
    let manifest = json!({"bindings": [{"type": "kv", "name": "COUNTERS", "namespace_id": "counters"}]});
    deploy_example(&cluster, "counter", "kv_counter", manifest).await;
    for expected in ["1\n", "2\n", "3\n"] {
        let (status, body) = cluster.get_worker(0, "counter", "/visits").await.expect("request");
        assert_eq!((status, body.as_str()), (200, expected));
    }
    let base = format!("{}/v1/kv/counters", cluster.nodes[0].url());
    let value = cluster.http().get(format!("{base}/values/visits")).send().await.expect("get");
    assert_eq!(value.status().as_u16(), 200);
    assert_eq!(value.text().await.expect("body"), "3");

    // Written over REST, read by the worker.
    let put = cluster.http().put(format!("{base}/values/other")).body("41").send().await.expect("put");
    assert_eq!(put.status().as_u16(), 200);
    let (_, body) = cluster.get_worker(0, "counter", "/other").await.expect("request");
    assert_eq!(body, "42\n");

    // Refused input writes nothing.
    let long_key = "k".repeat(513);
    let resp = cluster.http().put(format!("{base}/values/{long_key}")).body("x").send().await.expect("put");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = cluster.http().put(format!("{base}/values/ttl?expiration_ttl=5")).body("x").send().await.expect("put");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.expect("body").contains("below the minimum of 60"));
    let resp = cluster.http().put(format!("{base}/values/meta?metadata=not-json")).body("x").send().await.expect("put");
    assert_eq!(resp.status().as_u16(), 400);

    let list: serde_json::Value =
        cluster.http().get(format!("{base}/keys?limit=10")).send().await.expect("list").json().await.expect("json");
    let names: Vec<&str> = list["keys"].as_array().expect("keys").iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["other", "visits"]);
    assert_eq!(list["list_complete"], true);

    let resp = cluster.http().delete(format!("{base}/values/other")).send().await.expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = cluster.http().get(format!("{base}/values/other")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 404);

    cluster.restart_node(0).await.expect("restart");
    let (_, body) = cluster.get_worker(0, "counter", "/visits").await.expect("request");
    assert_eq!(body, "4\n", "KV survives a restart");
    cluster.stop().await.expect("stop");
}
