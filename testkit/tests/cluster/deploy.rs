//! Deployments: rollout to every node, validation, rollback, durability without the control plane.

use super::{cluster, deploy_example, ROLLOUT};
use nimbus_testkit::examples;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_worker_answers_on_every_node() {
    let cluster = cluster(3).await;
    deploy_example(&cluster, "hello", "hello", json!({})).await;
    for i in 0..3 {
        let (status, body) = cluster.get_worker(i, "hello", "/").await.expect("request");
        assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"), "node {i}");
    }
    // A node serves a version a moment before its acknowledgement reaches the control plane.
    cluster
        .eventually(ROLLOUT, "every node reports the rollout current", || async {
            let detail = cluster.api_call(reqwest::Method::GET, "/v1/deployments/hello", None).await?;
            let rollout = detail.body["rollout"].as_array().cloned().unwrap_or_default();
            Ok(rollout.len() == 3 && rollout.iter().all(|r| r["state"] == "current"))
        })
        .await
        .expect("rollout reported");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_with_a_reason_and_the_previous_version_keeps_serving() {
    let cluster = cluster(1).await;
    deploy_example(&cluster, "hello", "hello", json!({})).await;
    let good = examples::wasm_bytes("hello").expect("hello");

    let truncated = &good[..good.len() / 2];
    let resp = cluster.deploy("hello", truncated, json!({})).await.expect("call");
    assert_eq!(resp.status, 400);
    assert!(resp.body["error"].as_str().unwrap_or("").starts_with("invalid component"), "{:?}", resp.body);

    let resp = cluster.deploy("hello", b"\0asm\x01\0\0\0", json!({})).await.expect("call");
    assert_eq!(resp.status, 400);
    assert!(resp.body["error"].as_str().unwrap_or("").contains("core WebAssembly module"), "{:?}", resp.body);

    let resp = cluster
        .deploy("hello", &good, json!({"bindings": [{"type": "r3", "name": "B", "bucket": "x"}]}))
        .await
        .expect("call");
    assert_eq!(resp.status, 400);
    assert!(resp.body["error"].as_str().unwrap_or("").contains("unknown variant `r3`"), "{:?}", resp.body);

    let resp = cluster.deploy("Bad_Name", &good, json!({})).await.expect("call");
    assert_eq!(resp.status, 400, "{:?}", resp.body);

    let detail = cluster.api_call(reqwest::Method::GET, "/v1/deployments/hello", None).await.expect("show");
    assert_eq!(detail.body["versions"].as_array().map(Vec::len), Some(1), "nothing stored: {:?}", detail.body);
    let (status, body) = cluster.get_worker(0, "hello", "/").await.expect("request");
    assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"));
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_requires_the_token() {
    let cluster = cluster(1).await;
    let resp = cluster.edge().get(format!("{}/v1/deployments", cluster.api_url())).send().await.expect("call");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = cluster
        .edge()
        .get(format!("{}/v1/deployments", cluster.api_url()))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status().as_u16(), 401);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_serves_the_older_version_again() {
    let cluster = cluster(2).await;
    let v1 = deploy_example(&cluster, "app", "echo", json!({})).await;
    let v2 = deploy_example(&cluster, "app", "hello", json!({})).await;
    assert_eq!((v1, v2), (1, 2));
    let (_, body) = cluster.get_worker(1, "app", "/").await.expect("request");
    assert_eq!(body, "Hello from Nimbus!\n");

    let resp = cluster.api_call(reqwest::Method::POST, "/v1/deployments/app/rollback", None).await.expect("rollback");
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(resp.body["version"], 1);
    cluster.wait_for_version("app", 1, ROLLOUT).await.expect("rollout");
    for i in 0..2 {
        let (status, body) = cluster.get_worker(i, "app", "/x").await.expect("request");
        assert_eq!(status, 200);
        assert!(body.starts_with("method: GET\npath: /x\n"), "node {i}: {body}");
    }

    let resp = cluster.api_call(reqwest::Method::DELETE, "/v1/deployments/app", None).await.expect("delete");
    assert_eq!(resp.status, 204);
    let node = &cluster.nodes[0];
    cluster
        .eventually(ROLLOUT, "delete reaches the node", || async {
            Ok(cluster.node_version(node, "app").await?.is_none())
        })
        .await
        .expect("delete never reached the node");
    let (status, body) = cluster.get_worker(0, "app", "/").await.expect("request");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no worker is deployed for host `app.workers.localhost`"), "{body}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_serving_without_the_control_plane_and_after_a_restart() {
    let mut cluster = cluster(2).await;
    deploy_example(&cluster, "hello", "hello", json!({})).await;
    cluster.kill_control_plane().await.expect("kill control plane");

    let (status, _) = cluster.get_worker(0, "hello", "/").await.expect("request");
    assert_eq!(status, 200, "serves with the control plane down");

    let compiled = compiled_components(&cluster.nodes[0].data_dir);
    assert_eq!(compiled.len(), 1, "one compiled component cached: {compiled:?}");

    cluster.restart_node(0).await.expect("restart node without control plane");
    assert_eq!(
        compiled_components(&cluster.nodes[0].data_dir),
        compiled,
        "the restart mapped the cache, it did not recompile"
    );
    let (status, body) = cluster.get_worker(0, "hello", "/").await.expect("request");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from Nimbus!\n"),
        "restarted node serves its persisted deployment"
    );

    // The control plane returns; a deploy made after that reaches the restarted node too.
    cluster.start_control_plane().await.expect("control plane back");
    deploy_example(&cluster, "echo", "echo", json!({})).await;
    let (status, _) = cluster.get_worker(0, "echo", "/").await.expect("request");
    assert_eq!(status, 200);
    cluster.stop().await.expect("stop");
}

/// (path, modification time) of every compiled component in a node's cache.
fn compiled_components(data_dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut found: Vec<_> = std::fs::read_dir(data_dir.join("components"))
        .expect("component cache exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .map(|p| {
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).expect("mtime");
            (p, modified)
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_belongs_to_one_worker_and_platform_paths_to_none() {
    let cluster = cluster(1).await;
    let wasm = nimbus_testkit::examples::wasm_bytes("hello").expect("example builds");
    let first = cluster.deploy("site", &wasm, json!({"routes": ["Example.com/*"]})).await.expect("deploy");
    assert_eq!(first.status, 201, "{:?}", first.body);
    let taken = cluster.deploy("other", &wasm, json!({"routes": ["example.com/*"]})).await.expect("deploy");
    assert_eq!(taken.status, 409, "{:?}", taken.body);
    assert!(
        taken.body["error"].as_str().is_some_and(|e| e.contains("already claimed by worker `site`")),
        "{:?}",
        taken.body
    );
    // The worker that holds a route may deploy it again.
    let again = cluster.deploy("site", &wasm, json!({"routes": ["example.com/*"]})).await.expect("deploy");
    assert_eq!(again.status, 201, "{:?}", again.body);
    for route in ["/*", "/healthz"] {
        let platform = cluster.deploy("greedy", &wasm, json!({"routes": [route]})).await.expect("deploy");
        assert_eq!(platform.status, 400, "{route}: {:?}", platform.body);
        assert!(platform.body["error"].as_str().is_some_and(|e| e.contains("/healthz")), "{:?}", platform.body);
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_the_operators_ceiling_is_refused_naming_the_limit() {
    let mut spec = nimbus_testkit::ClusterSpec::local(1).expect("spec");
    spec.control_plane_env.push(("NIMBUS_LIMITS__MEMORY_MB".into(), "256".into()));
    let cluster = nimbus_testkit::Cluster::start(spec).await.expect("cluster starts");
    let wasm = examples::wasm_bytes("hello").expect("example builds");
    let over = cluster.deploy("greedy", &wasm, json!({"limits": {"memory_mb": 512}})).await.expect("deploy");
    assert_eq!(over.status, 400, "{:?}", over.body);
    let error = over.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("limits.memory_mb = 512") && error.contains("ceiling of 256"), "{error}");
    let within = cluster.deploy("modest", &wasm, json!({"limits": {"memory_mb": 128}})).await.expect("deploy");
    assert_eq!(within.status, 201, "{:?}", within.body);
    cluster.stop().await.expect("stop");
}
