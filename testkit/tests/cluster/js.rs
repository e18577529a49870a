//! JavaScript workers: the examples and a Cloudflare-style worker deployed with the CLI to a
//! 3-node cluster, JS failures and limits, and scripts refused at deploy.

use super::{cluster, ROLLOUT};
use nimbus_testkit::{examples::repo_root, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// `nimbus deploy -c <dir>/nimbus.toml` (which bundles the modules and waits for rollout).
pub async fn cli_deploy(cluster: &Cluster, dir: &str) {
    let config = repo_root().join(dir).join("nimbus.toml");
    let config = config.to_string_lossy();
    let output = cluster.nimbus(&["deploy", "-c", &config, "--json"]).await.expect("nimbus runs");
    assert!(
        output.status.success(),
        "nimbus deploy -c {config}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json output");
    assert_eq!(report["deployment"]["runtime"], "js", "{report}");
}

async fn send(cluster: &Cluster, node: usize, worker: &str, method: Method, path: &str, body: &str) -> (u16, String) {
    cluster.request_worker(node, worker, method, path, body.as_bytes().to_vec()).await.expect("request completes")
}

async fn send_json(cluster: &Cluster, node: usize, worker: &str, method: Method, path: &str, body: &str) -> Value {
    let (status, text) = send(cluster, node, worker, method, path, body).await;
    assert!(status < 300, "{worker} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{worker} {path}: not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_examples_and_a_cloudflare_worker_run_on_every_node() {
    let cluster = cluster(3).await;
    for dir in ["examples/js-hello", "examples/js-kv", "examples/js-d1", "examples/js-do-counter"] {
        cli_deploy(&cluster, dir).await;
    }
    cli_deploy(&cluster, "testkit/tests/fixtures/cloudflare-compat").await;

    // js-hello: a relative import, a var, the edge's colo, on every node.
    for node in 0..3 {
        let (status, body) = send(&cluster, node, "js-hello", Method::GET, "/?name=Ada", "").await;
        assert_eq!((status, body.as_str()), (200, "Hello from Nimbus, Ada!\n"), "node {node}");
    }
    let hello = send_json(&cluster, 1, "js-hello", Method::GET, "/json", "").await;
    assert_eq!(hello, json!({"greeting": "Hello", "colo": "local", "method": "GET"}));

    // js-kv: put with metadata, get in several types, list; KV replicates to the other nodes.
    let (status, _) = send(&cluster, 0, "js-kv", Method::PUT, "/user%3A1", r#"{"name":"ada"}"#).await;
    assert_eq!(status, 204);
    let response = cluster
        .http()
        .put(format!("{}/user%3A2?ttl=3600", cluster.nodes[0].url()))
        .header("host", "js-kv.workers.localhost")
        .header("x-metadata", r#"{"role":"admin"}"#)
        .body("grace")
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(send_json(&cluster, 0, "js-kv", Method::GET, "/user%3A1?type=json", "").await, json!({"name": "ada"}));
    let with_meta = send_json(&cluster, 0, "js-kv", Method::GET, "/user%3A2?meta", "").await;
    assert_eq!(with_meta["value"], "grace");
    assert_eq!(with_meta["metadata"], json!({"role": "admin"}));
    let listing = send_json(&cluster, 0, "js-kv", Method::GET, "/?prefix=user%3A", "").await;
    let names: Vec<&str> =
        listing["keys"].as_array().expect("keys").iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["user:1", "user:2"], "{listing}");
    assert!(listing["keys"][1]["expiration"].as_f64().is_some(), "a TTL shows as an expiration: {listing}");
    assert_eq!(send(&cluster, 0, "js-kv", Method::GET, "/nobody", "").await.0, 404);
    cluster
        .eventually(ROLLOUT, "KV reaches node 3", || async {
            Ok(send(&cluster, 2, "js-kv", Method::GET, "/user%3A1", "").await == (200, r#"{"name":"ada"}"#.to_string()))
        })
        .await
        .expect("replicated");

    // js-d1: exec, insert with a bookmark, read it on another node in a session, batch
    // atomicity, first/raw.
    send_json(&cluster, 0, "js-d1", Method::POST, "/setup", "").await;
    let created = send_json(&cluster, 0, "js-d1", Method::POST, "/notes", r#"{"title":"first","body":"hi"}"#).await;
    assert_eq!(created["note"], json!({"id": 1, "title": "first", "body": "hi"}));
    let bookmark = created["bookmark"].as_str().expect("bookmark").to_string();
    let seen = send_json(&cluster, 2, "js-d1", Method::GET, &format!("/session?bookmark={bookmark}"), "").await;
    assert_eq!(seen, json!([{"id": 1, "title": "first"}]), "a session from the bookmark reads the write");
    let refused = send(&cluster, 1, "js-d1", Method::POST, "/batch", r#"[{"title":"ok"},{"title":null}]"#).await;
    assert_eq!(refused.0, 400, "{refused:?}");
    assert!(refused.1.contains("NOT NULL constraint failed"), "{refused:?}");
    assert_eq!(send_json(&cluster, 0, "js-d1", Method::GET, "/count", "").await, json!({"count": 1}), "all or nothing");
    send_json(&cluster, 1, "js-d1", Method::POST, "/batch", r#"[{"title":"two"},{"title":"three"}]"#).await;
    let raw = send_json(&cluster, 0, "js-d1", Method::GET, "/raw?", "").await;
    let linearizable_count = send_json(&cluster, 0, "js-d1", Method::GET, "/count", "").await;
    assert!(raw[0] == json!(["id", "title"]), "{raw}");
    assert!(linearizable_count["count"].as_u64().is_some_and(|n| n >= 1), "{linearizable_count}");
    assert_eq!(send(&cluster, 0, "js-d1", Method::GET, "/notes/99", "").await.0, 404);

    // js-do-counter: one object per name whichever node is asked, values distinct and in order.
    let mut values = Vec::new();
    for i in 0..9 {
        let counter = send_json(&cluster, i % 3, "js-do-counter", Method::POST, "/c1/increment", "").await;
        values.push(counter["value"].as_u64().expect("value"));
    }
    assert_eq!(values, (1..=9).collect::<Vec<u64>>());
    let other = send_json(&cluster, 1, "js-do-counter", Method::POST, "/c2/increment", "").await;
    assert_eq!(other["value"], 1, "another name is another object");
    let moved = send_json(&cluster, 2, "js-do-counter", Method::POST, "/c1/transfer?n=4", "").await;
    assert_eq!(moved, json!({"ok": true, "value": 5, "saved": 4}));
    let refused = send_json(&cluster, 0, "js-do-counter", Method::POST, "/c1/transfer?n=50", "").await;
    assert_eq!(refused, json!({"ok": false, "value": 5, "saved": 4}), "a rolled back transaction writes nothing");
    send_json(&cluster, 0, "js-do-counter", Method::POST, "/c1/alarm?ms=50", "").await;
    cluster
        .eventually(ROLLOUT, "the alarm fires", || async {
            Ok(send_json(&cluster, 1, "js-do-counter", Method::GET, "/c1/alarms", "").await["alarms"] == 1)
        })
        .await
        .expect("alarm");

    // The Cloudflare-style worker: KV, D1 and a `state`-style Durable Object class together.
    assert_eq!(send(&cluster, 0, "cloudflare-compat", Method::GET, "/setup", "").await, (200, "ready".to_string()));
    let mut last = Value::Null;
    for (node, who) in [(0, "ada"), (1, "grace"), (2, "linus")] {
        last = send_json(&cluster, node, "cloudflare-compat", Method::GET, &format!("/visit/home?who={who}"), "").await;
    }
    assert_eq!(last["count"], 3, "{last}");
    assert_eq!(last["history"], json!(["ada", "grace", "linus"]), "{last}");
    assert_eq!(last["lastVisitIsDate"], true, "a Date survives storage: {last}");
    assert_eq!(
        (last["app"].as_str(), last["greeting"].as_str(), last["logged"].as_bool()),
        (Some("visits"), Some("welcome"), Some(true))
    );
    // A request's body streams back out untouched, or is read twice through clone().
    let big = "0123456789abcdef".repeat(64 * 1024);
    assert_eq!(send(&cluster, 1, "cloudflare-compat", Method::POST, "/echo", &big).await, (200, big.clone()));
    let cloned = send_json(&cluster, 2, "cloudflare-compat", Method::POST, "/clone", r#"{"a":[1,2]}"#).await;
    assert_eq!(cloned, json!({"text": "{\"a\":[1,2]}", "parsed": {"a": [1, 2]}, "used": [true, true]}));

    let log = send_json(&cluster, 0, "cloudflare-compat", Method::GET, "/log", "").await;
    assert_eq!(log["results"], json!([{"page": "home", "visits": 3}]), "{log}");
    assert_eq!((log["first"].as_str(), log["total"].as_u64()), (Some("ada"), Some(3)), "{log}");
    assert_eq!(log["metadata"], json!({"version": 1}), "{log}");
    assert_eq!(log["keys"], json!(["config"]), "{log}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_errors_and_limits_end_only_their_request() {
    // The worker fetches from the node itself, so the operator opens loopback for it.
    let mut spec = nimbus_testkit::ClusterSpec::local(1).expect("spec");
    spec.node_env.push(("NIMBUS_RUNTIME__OUTBOUND_PRIVATE_ALLOWED".into(), r#"["127.0.0.1"]"#.into()));
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    let source =
        std::fs::read_to_string(repo_root().join("testkit/tests/fixtures/js-hostile/index.js")).expect("fixture");
    let manifest = json!({
        "limits": {"cpu_ms": 100, "memory_mb": 64},
        "bindings": [{"type": "kv", "name": "LOG", "namespace_id": "js-hostile-log"}],
        "allowed_outbound_hosts": [cluster.nodes[0].http.to_string()],
    });
    let deployed =
        cluster.deploy_script("js-hostile", &[("index.js", &source)], "index.js", manifest).await.expect("deploy");
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let version = deployed.body["version"].as_u64().expect("version");
    cluster.wait_for_version("js-hostile", version, ROLLOUT).await.expect("rollout");

    let cases: [(&str, u16, &str); 8] = [
        ("/throw", 500, "Error: boom from the worker"),
        ("/reject", 500, "TypeError: rejected on purpose"),
        ("/not-a-response", 500, "not a Response"),
        ("/never", 500, "can never settle"),
        ("/loop", 503, "exceeded its CPU limit of 100 ms"),
        // QuickJS survives the refused memory.grow as a JS error; the node retires the instance.
        ("/alloc", 500, "InternalError: out of memory"),
        ("/recursion", 500, ""),
        ("/unhandled", 200, "answered anyway"),
    ];
    for (path, status, needle) in cases {
        let (got, body) = hostile(&cluster, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
        let (ok, body) = hostile(&cluster, "/ok").await;
        assert_eq!(ok, 200, "the worker serves after {path}: {body}");
    }

    // Timers within the request, Web APIs, request bodies.
    let timer: Value = serde_json::from_str(&hostile(&cluster, "/timer").await.1).expect("json");
    assert!(timer["waited"].as_f64().is_some_and(|ms| ms >= 30.0), "{timer}");
    let apis = send_json(&cluster, 0, "js-hostile", Method::POST, "/apis", "posted").await;
    assert_eq!(
        apis,
        json!({
            "bytes": 6, "decoded": "héllo", "b64": "aGVsbG8=", "unb64": "hello", "all": ["1", "2"], "b": "x y",
            "uuid": true, "randomNonZero": true, "joined": "1, 2", "resolved": "https://example.com/a/b/c?x=1#h",
            "random": apis["random"], "echo": "posted",
        })
    );
    // Math.random is seeded per instance: two fresh instances do not repeat each other.
    let again = send_json(&cluster, 0, "js-hostile", Method::POST, "/apis", "").await;
    assert_ne!(apis["random"], again["random"]);

    // ctx.waitUntil work finishes after the response.
    assert_eq!(hostile(&cluster, "/wait-until?n=1").await.0, 202);
    let kv_url = format!("{}/v1/kv/js-hostile-log/values/wait-until", cluster.nodes[0].api_url());
    cluster
        .eventually(ROLLOUT, "the waitUntil write lands", || async {
            let response = cluster.http().get(&kv_url).send().await?;
            Ok(response.status().is_success() && response.text().await? == "done 1")
        })
        .await
        .expect("waitUntil");

    // Outbound fetch to an allowed host: the node's own edge.
    let target = format!("{}/healthz", cluster.nodes[0].url());
    let (status, body) = hostile(&cluster, &format!("/fetch?url={target}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("200 ok"), "{body}");

    // The node's log has each thrown error with its JS stack, and the unhandled rejection.
    let log = cluster.node_log(0).expect("log");
    assert!(log.contains("Uncaught Error: boom from the worker"), "{log}");
    assert!(log.contains("at fetch (index.js:"), "the stack names the module and line: {log}");
    assert!(log.contains("Uncaught (in promise) RangeError: nobody handles this"), "{log}");
    assert_eq!(
        log.matches("Uncaught (in promise) TypeError: rejected on purpose").count(),
        0,
        "handled rejections are not reported"
    );
    cluster.stop().await.expect("stop");
}

/// GET `path` of the hostile worker on the only node.
async fn hostile(cluster: &Cluster, path: &str) -> (u16, String) {
    send(cluster, 0, "js-hostile", Method::GET, path, "").await
}

/// ES modules as `(name, source)`.
type Modules<'a> = &'a [(&'a str, &'a str)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_scripts_are_refused_at_deploy_and_the_previous_version_keeps_serving() {
    let cluster = cluster(1).await;
    let good = "export default { fetch() { return new Response('v1'); } };";
    let deployed =
        cluster.deploy_script("app", &[("src/index.js", good)], "src/index.js", json!({})).await.expect("deploy");
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    cluster.wait_for_version("app", 1, ROLLOUT).await.expect("rollout");

    let helper_with_error = "export const x = 1;\n\nexport function f() {\n  return (1 + ;\n}\n";
    let cases: [(Modules<'_>, Value, &str); 7] = [
        (
            &[("src/index.js", "export default {\n  fetch() {\n    return new Response('x' +);\n  },\n};\n")],
            json!({}),
            "src/index.js:3:",
        ),
        (
            &[
                ("src/index.js", "import { f } from './helper.js';\nexport default { fetch: f };"),
                ("src/helper.js", helper_with_error),
            ],
            json!({}),
            "src/helper.js:4:",
        ),
        (&[("src/index.js", "throw new Error('top-level failure');")], json!({}), "top-level failure"),
        (&[("src/index.js", "export const x = 1;")], json!({}), "export default"),
        (&[("src/index.js", "while (true) {}\nexport default {};")], json!({}), "ran too long"),
        (&[("src/index.js", "import _ from 'lodash';\nexport default {};")], json!({}), "bundle npm packages first"),
        (
            &[("src/index.js", "export default { fetch() { return new Response('x'); } };")],
            json!({"bindings": [{"type": "durable_object", "name": "ROOMS", "class_name": "Room"}]}),
            "does not export",
        ),
    ];
    for (modules, manifest, needle) in cases {
        let response = cluster.deploy_script("app", modules, "src/index.js", manifest).await.expect("deploy call");
        assert_eq!(response.status, 400, "{needle}: {:?}", response.body);
        let error = response.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "expected `{needle}` in: {error}");
    }
    let (status, body) = cluster.get_worker(0, "app", "/").await.expect("request");
    assert_eq!((status, body.as_str()), (200, "v1"), "the previous version keeps serving");
    let versions = cluster.api_call(Method::GET, "/v1/deployments/app", None).await.expect("show");
    assert_eq!(versions.body["versions"].as_array().map(Vec::len), Some(1), "nothing was stored");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_fetch_reaches_no_private_address_even_when_the_manifest_allows_any_host() {
    let cluster = cluster(1).await;
    let source =
        std::fs::read_to_string(repo_root().join("testkit/tests/fixtures/js-hostile/index.js")).expect("fixture");
    let manifest = json!({
        "bindings": [{"type": "kv", "name": "LOG", "namespace_id": "js-hostile-log"}],
        "allowed_outbound_hosts": ["*"],
    });
    let deployed =
        cluster.deploy_script("js-hostile", &[("index.js", &source)], "index.js", manifest).await.expect("deploy");
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let version = deployed.body["version"].as_u64().expect("version");
    cluster.wait_for_version("js-hostile", version, ROLLOUT).await.expect("rollout");
    let edge = cluster.nodes[0].http;
    let management = cluster.nodes[0].management;
    for target in [
        format!("http://{edge}/healthz"),
        format!("http://{management}/healthz"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://localhost:{}/healthz", edge.port()),
        format!("http://[::1]:{}/healthz", edge.port()),
        "http://10.0.0.1/".to_string(),
    ] {
        let (status, body) = hostile(&cluster, &format!("/fetch?url={target}")).await;
        assert_eq!(status, 500, "{target}: {body}");
        assert!(body.contains("DestinationIpProhibited") || body.contains("HttpRequestDenied"), "{target}: {body}");
    }
    let log = cluster.node_log(0).expect("log");
    assert!(log.contains("outbound request refused: not a public address"), "the node says why");
    cluster.stop().await.expect("stop");
}
