//! The worker runtime seen from outside: limits, isolation, reuse, routing, metrics.

use super::{cluster, deploy_example};
use futures::future::join_all;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_worker_ends_only_its_own_request() {
    let cluster = cluster(1).await;
    deploy_example(&cluster, "hello", "hello", json!({})).await;
    deploy_example(&cluster, "hostile", "hostile", json!({"limits": {"memory_mb": 32}})).await;

    let cases: [(&str, u16, &str); 6] = [
        ("/loop", 503, "exceeded its CPU limit of 50 ms"),
        ("/alloc", 503, "exceeded its memory limit of 32 MiB"),
        ("/trap", 500, "trapped"),
        ("/panic", 500, "trapped"),
        ("/fs", 403, "denied"),
        ("/binding", 424, "UnknownBinding"),
    ];
    let hostile = cases.iter().map(|(path, _, _)| cluster.get_worker(0, "hostile", path));
    let friendly = (0..cases.len()).map(|_| cluster.get_worker(0, "hello", "/"));
    let (hostile, friendly) = tokio::join!(join_all(hostile), join_all(friendly));

    for ((path, status, needle), result) in cases.iter().zip(hostile) {
        let (got, body) = result.expect("request completes");
        assert_eq!(got, *status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    for result in friendly {
        let (status, body) = result.expect("hello completes");
        assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"));
    }
    let (status, body) = cluster.get_worker(0, "hostile", "/env").await.expect("request");
    assert_eq!((status, body.as_str()), (200, "env: []\n"), "no host environment");
    let (status, _) = cluster.get_worker(0, "hostile", "/").await.expect("request");
    assert_eq!(status, 200, "the worker itself recovers on a fresh instance");

    let metrics = cluster.http().get(format!("{}/metrics", cluster.nodes[0].api_url())).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains(r#"nimbus_worker_failures_total{worker="hostile",kind="cpu_limit"} 1"#), "{text}");
    assert!(text.contains(r#"nimbus_worker_failures_total{worker="hostile",kind="memory_limit"} 1"#), "{text}");
    assert!(text.contains(r#"nimbus_worker_requests_total{worker="hello",status="2xx"} 6"#), "{text}");
    assert!(text.contains(r#"nimbus_worker_requests_total{worker="hostile",status="5xx"} 4"#), "{text}");
    assert!(text.contains(r#"nimbus_worker_requests_total{worker="hostile",status="4xx"} 2"#), "{text}");
    assert!(text.contains("nimbus_worker_instantiation_duration_seconds_bucket"), "{text}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_keep_globals_and_request_isolation_does_not() {
    let cluster = cluster(1).await;
    deploy_example(&cluster, "pooled", "hostile", json!({})).await;
    deploy_example(&cluster, "fresh", "hostile", json!({"isolation": "request"})).await;
    let mut pooled = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..3 {
        pooled.push(cluster.get_worker(0, "pooled", "/count").await.expect("request").1);
        fresh.push(cluster.get_worker(0, "fresh", "/count").await.expect("request").1);
    }
    assert_eq!(pooled, ["1\n", "2\n", "3\n"], "one warm instance serves sequential requests");
    assert_eq!(fresh, ["1\n", "1\n", "1\n"], "every request gets a new instance");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_and_routes() {
    let cluster = cluster(1).await;
    deploy_example(
        &cluster,
        "echo",
        "echo",
        json!({"routes": ["example.com/api/*"], "limits": {"max_request_body": 1024, "max_response_body": 4096}}),
    )
    .await;
    deploy_example(&cluster, "big", "hostile", json!({"limits": {"max_response_body": 4096}})).await;

    let (status, body) =
        cluster.request_worker(0, "echo", reqwest::Method::POST, "/", vec![b'a'; 2048]).await.expect("request");
    assert_eq!(status, 413, "{body}");
    let (status, body) =
        cluster.request_worker(0, "echo", reqwest::Method::POST, "/p?q=1", b"hi".to_vec()).await.expect("request");
    assert_eq!(status, 200);
    assert!(body.contains("method: POST\npath: /p?q=1\n") && body.ends_with("body: hi"), "{body}");

    let (status, body) = cluster.get_worker(0, "big", "/big?n=100000").await.expect("request");
    assert_eq!(status, 502, "response over the limit: {body}");
    let (status, body) = cluster.get_worker(0, "big", "/big?n=100").await.expect("request");
    assert_eq!((status, body.len()), (200, 100));

    let url = format!("{}/api/users", cluster.nodes[0].url());
    // The edge tells the worker where the request entered (like `request.cf.colo`); a
    // client cannot claim another region.
    let resp = cluster
        .http()
        .get(&url)
        .header("host", "example.com")
        .header("x-nimbus-colo", "mars")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.contains("path: /api/users"), "{body}");
    assert!(body.contains("header: x-nimbus-colo: local\n"), "{body}");
    assert!(body.contains("header: x-nimbus-node: node-1\n") && !body.contains("mars"), "{body}");
    let resp = cluster
        .http()
        .get(format!("{}/other", cluster.nodes[0].url()))
        .header("host", "example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 404);
    let resp = cluster.http().get(format!("{}/healthz", cluster.nodes[0].url())).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    cluster.stop().await.expect("stop");
}

/// How long a node may take to compile and serve the Python component.
const PYTHON_ROLLOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_runs() {
    let Some(wasm) = nimbus_testkit::examples::python_hello().expect("python example builds") else {
        eprintln!("componentize-py is not installed (scripts/setup installs it); skipping");
        return;
    };
    let cluster = cluster(1).await;
    let resp = cluster.deploy("python-hello", &wasm, json!({})).await.expect("deploy call");
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    // The component carries CPython (tens of MB of wasm): compiling it takes ~25 s on two idle
    // cores and over a minute on a loaded machine, so this rollout has its own, wider bound.
    cluster.wait_for_version("python-hello", 1, PYTHON_ROLLOUT).await.expect("rollout");
    let (status, body) = cluster.get_worker(0, "python-hello", "/").await.expect("request");
    assert_eq!((status, body.as_str()), (200, "Hello from Nimbus, in Python!\n"));
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_fetch_reaches_only_allowed_hosts() {
    // The target is the node itself, on loopback: the operator opens it (public addresses only
    // otherwise; see js::outbound_fetch_reaches_no_private_address…).
    let mut spec = nimbus_testkit::ClusterSpec::local(1).expect("spec");
    spec.node_env.push(("NIMBUS_RUNTIME__OUTBOUND_PRIVATE_ALLOWED".into(), r#"["127.0.0.1/32"]"#.into()));
    let cluster = nimbus_testkit::Cluster::start(spec).await.expect("cluster starts");
    let node = cluster.nodes[0].http;
    deploy_example(&cluster, "allowed", "hostile", json!({"allowed_outbound_hosts": [node.to_string()]})).await;
    deploy_example(&cluster, "denied", "hostile", json!({"allowed_outbound_hosts": ["example.com"]})).await;
    let path = format!("/fetch?url=http://{node}/healthz");
    let (status, body) = cluster.get_worker(0, "allowed", &path).await.expect("request");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = cluster.get_worker(0, "denied", &path).await.expect("request");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    cluster.stop().await.expect("stop");
}
