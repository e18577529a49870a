//! KV: the worker binding and the REST API on one node, then replication across five nodes —
//! spreading, concurrent writes, deletes, TTL, pagination, kill / restart, lost disks,
//! partitions — and bad input.

use super::{cluster, deploy_example};
use futures::{stream, StreamExt};
use nimbus_testkit::{Cluster, ClusterSpec};
use serde_json::json;
use std::time::Duration;

/// Bound for a write to reach every node in these tests: replication takes milliseconds, a
/// loaded 2-core machine running debug builds of ten processes can take seconds.
const SPREAD: Duration = Duration::from_secs(20);

/// A cluster whose nodes run anti-entropy often and accept 1 s TTLs.
async fn kv_cluster(nodes: usize) -> Cluster {
    let mut spec = ClusterSpec::local(nodes).expect("cluster spec");
    spec.node_env.push(("NIMBUS_KV__ANTI_ENTROPY_MS".into(), "300".into()));
    spec.node_env.push(("NIMBUS_KV__MIN_TTL_SECS".into(), "1".into()));
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    let all_alive: Vec<(String, String)> = (1..=nodes).map(|i| (format!("node-{i}"), "alive".to_string())).collect();
    for i in 0..nodes {
        cluster
            .eventually(SPREAD, "membership converges", || async { Ok(cluster.members_seen_by(i).await? == all_alive) })
            .await
            .expect("members");
    }
    cluster
}

/// Waits until `namespace/key` reads as `expected` (`None`: absent) on every running node.
async fn everywhere(cluster: &Cluster, namespace: &str, key: &str, expected: Option<&[u8]>, what: &str) {
    let running: Vec<usize> = (0..cluster.nodes.len()).filter(|i| cluster.nodes[*i].is_running()).collect();
    on_nodes(cluster, &running, namespace, key, expected, what).await;
}

/// Waits until the nodes `indices` read `namespace/key` as `expected`.
async fn on_nodes(
    cluster: &Cluster,
    indices: &[usize],
    namespace: &str,
    key: &str,
    expected: Option<&[u8]>,
    what: &str,
) {
    for &i in indices {
        cluster
            .eventually(SPREAD, what, || async { Ok(cluster.kv_get(i, namespace, key).await?.as_deref() == expected) })
            .await
            .unwrap_or_else(|e| panic!("node-{}: {e}", i + 1));
    }
}

/// Waits until the wall clock has left the millisecond it is in now. Versions are hybrid
/// logical clocks with millisecond wall time: two writes on the two sides of a partition within
/// the same millisecond are concurrent, and last-writer-wins orders them by logical counter and
/// node id, not by which HTTP request returned first. A test that means "later" across a
/// partition must let the clock tick between the writes.
async fn next_millisecond() {
    let wall_ms = || std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.as_millis()).unwrap_or(0);
    let now = wall_ms();
    while wall_ms() <= now {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn converged(cluster: &Cluster, what: &str) {
    cluster.eventually(SPREAD, what, || cluster.kv_converged()).await.expect(what);
}

async fn metric(cluster: &Cluster, index: usize, line_prefix: &str) -> f64 {
    let text = cluster.http().get(format!("{}/metrics", cluster.nodes[index].api_url())).send().await.expect("metrics");
    let text = text.text().await.expect("metrics body");
    text.lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_counts_in_kv_and_rest_sees_the_same_values() {
    let mut cluster = cluster(1).await;
    let manifest = json!({"bindings": [{"type": "kv", "name": "COUNTERS", "namespace_id": "counters"}]});
    deploy_example(&cluster, "counter", "kv_counter", manifest).await;
    for expected in ["1\n", "2\n", "3\n"] {
        let (status, body) = cluster.get_worker(0, "counter", "/visits").await.expect("request");
        assert_eq!((status, body.as_str()), (200, expected));
    }
    let base = format!("{}/v1/kv/counters", cluster.nodes[0].api_url());
    assert_eq!(cluster.kv_get(0, "counters", "visits").await.expect("get").as_deref(), Some(&b"3"[..]));

    // Written over REST, read by the worker.
    let (status, _) = cluster.kv_put(0, "counters", "other", "41").await.expect("put");
    assert_eq!(status, 200);
    let (_, body) = cluster.get_worker(0, "counter", "/other").await.expect("request");
    assert_eq!(body, "42\n");

    let list: serde_json::Value =
        cluster.http().get(format!("{base}/keys?limit=10")).send().await.expect("list").json().await.expect("json");
    let names: Vec<&str> = list["keys"].as_array().expect("keys").iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["other", "visits"]);
    assert_eq!(list["list_complete"], true);

    assert_eq!(cluster.kv_delete(0, "counters", "other").await.expect("delete"), 200);
    assert_eq!(cluster.kv_get(0, "counters", "other").await.expect("get"), None);

    cluster.restart_node(0).await.expect("restart");
    let (_, body) = cluster.get_worker(0, "counter", "/visits").await.expect("request");
    assert_eq!(body, "4\n", "KV survives a restart");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let cluster = cluster(1).await;
    cluster.kv_declare(0, "ns").await.expect("declare");
    let before = cluster.kv_summary(0).await.expect("summary");
    let base = format!("{}/v1/kv/ns/values", cluster.nodes[0].api_url());
    let http = cluster.http();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("key over 512 bytes", http.put(format!("{base}/{}", "k".repeat(513))).body("x"), 400, "over the limit of 512"),
        (
            "value over 25 MiB",
            http.put(format!("{base}/big")).body(vec![0u8; 25 * 1024 * 1024 + 1]),
            413,
            "over the limit",
        ),
        (
            "metadata over 1 KiB",
            http.put(format!("{base}/m")).query(&[("metadata", format!("\"{}\"", "m".repeat(1024)))]).body("x"),
            400,
            "metadata is 1026 bytes",
        ),
        ("metadata not JSON", http.put(format!("{base}/m?metadata=not-json")).body("x"), 400, "not JSON"),
        (
            "TTL under the minimum",
            http.put(format!("{base}/t?expiration_ttl=5")).body("x"),
            400,
            "below the minimum of 60",
        ),
        ("key not UTF-8", http.put(format!("{base}/%FF%FE")).body("x"), 400, "UTF-8"),
        (
            "unknown namespace",
            http.put(format!("{}/v1/kv/nope/values/k", cluster.nodes[0].api_url())).body("x"),
            404,
            "does not exist",
        ),
        (
            "malformed namespace",
            http.put(format!("{}/v1/kv/na%20me/values/k", cluster.nodes[0].api_url())).body("x"),
            400,
            "must be 1-64",
        ),
        ("unknown query option", http.put(format!("{base}/q?expires=5")).body("x"), 400, "unknown field"),
    ];
    for (what, request, status, says) in cases {
        let resp = request.send().await.expect(what);
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body = resp.text().await.expect("body");
        assert!(body.contains(says), "{what}: `{body}` should say `{says}`");
    }
    assert_eq!(cluster.kv_summary(0).await.expect("summary"), before, "nothing was written");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_spread_to_all_five_nodes_and_concurrent_writes_agree() {
    let cluster = kv_cluster(5).await;
    cluster.kv_declare(0, "ns").await.expect("declare");
    // The declaration itself replicates: every node accepts writes to the namespace.
    for i in 0..5 {
        cluster
            .eventually(SPREAD, "namespace declared everywhere", || cluster.kv_namespace_exists(i, "ns"))
            .await
            .expect("namespace");
    }

    let (status, _) = cluster.kv_put(0, "ns", "greeting", "hello").await.expect("put");
    assert_eq!(status, 200);
    everywhere(&cluster, "ns", "greeting", Some(b"hello"), "a small put spreads by gossip").await;

    // Too large for a datagram: pushed over gRPC.
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(cluster.kv_put(2, "ns", "large", large.clone()).await.expect("put").0, 200);
    everywhere(&cluster, "ns", "large", Some(&large), "a large put spreads by push").await;

    // The same key written on every node at once: one winner, the same everywhere.
    let writes = (0..5).map(|i| {
        let cluster = &cluster;
        async move { cluster.kv_put(i, "ns", "contended", format!("from-node-{}", i + 1)).await }
    });
    for result in futures::future::join_all(writes).await {
        assert_eq!(result.expect("put").0, 200);
    }
    converged(&cluster, "replicas converge after concurrent writes").await;
    let winner = cluster.kv_get(0, "ns", "contended").await.expect("get").expect("present");
    for i in 1..5 {
        assert_eq!(cluster.kv_get(i, "ns", "contended").await.expect("get").as_ref(), Some(&winner));
    }

    assert_eq!(cluster.kv_delete(3, "ns", "greeting").await.expect("delete"), 200);
    everywhere(&cluster, "ns", "greeting", None, "a delete spreads").await;

    // 10k keys written on one node, listed page by page on another.
    let written = stream::iter(0..10_000)
        .map(|i| {
            let cluster = &cluster;
            async move { cluster.kv_put(0, "ns", &format!("item:{i:05}"), i.to_string()).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(written.iter().all(|w| matches!(w, Ok((200, _)))), "every put succeeds");
    converged(&cluster, "10k keys reach every node").await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("prefix", "item:".to_string()), ("limit", "1000".to_string())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page = cluster.kv_list(4, "ns", &query).await.expect("list");
        pages += 1;
        names
            .extend(page["keys"].as_array().expect("keys").iter().filter_map(|k| k["name"].as_str().map(String::from)));
        if page["list_complete"] == true {
            break;
        }
        cursor = page["cursor"].as_str().map(String::from);
        assert!(cursor.is_some(), "an incomplete page has a cursor");
    }
    assert_eq!(pages, 10);
    let expected: Vec<String> = (0..10_000).map(|i| format!("item:{i:05}")).collect();
    assert_eq!(names, expected);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_vanish_on_every_node() {
    let cluster = kv_cluster(3).await;
    cluster.kv_declare(0, "ns").await.expect("declare");
    let url = format!("{}/v1/kv/ns/values/short", cluster.nodes[0].api_url());
    let resp = cluster.http().put(url).query(&[("expiration_ttl", "4")]).body("brief").send().await.expect("put");
    assert_eq!(resp.status().as_u16(), 200);
    let kept = cluster.kv_put(0, "ns", "kept", "stays").await.expect("put");
    assert_eq!(kept.0, 200);
    everywhere(&cluster, "ns", "short", Some(b"brief"), "the entry spreads before it expires").await;
    everywhere(&cluster, "ns", "short", None, "the entry expires everywhere").await;
    everywhere(&cluster, "ns", "kept", Some(b"stays"), "other keys stay").await;
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_catches_up_and_a_wiped_one_is_refilled_by_bulk_copy() {
    let mut cluster = kv_cluster(3).await;
    cluster.kv_declare(0, "ns").await.expect("declare");
    for i in 0..50 {
        assert_eq!(cluster.kv_put(0, "ns", &format!("before:{i}"), "1").await.expect("put").0, 200);
    }
    converged(&cluster, "first writes spread").await;

    cluster.kill_node(2).await.expect("kill node-3");
    for i in 0..200 {
        assert_eq!(cluster.kv_put(1, "ns", &format!("while-down:{i}"), "2").await.expect("put").0, 200);
    }
    assert_eq!(cluster.kv_delete(0, "ns", "before:0").await.expect("delete"), 200);
    cluster.restart_node(2).await.expect("restart node-3");
    converged(&cluster, "the restarted node catches up").await;
    assert_eq!(cluster.kv_get(2, "ns", "while-down:199").await.expect("get").as_deref(), Some(&b"2"[..]));
    assert_eq!(cluster.kv_get(2, "ns", "before:0").await.expect("get"), None, "the delete reached it too");

    // A node that lost its disk starts empty and streams a full copy.
    cluster.kill_node(2).await.expect("kill node-3");
    std::fs::remove_dir_all(cluster.nodes[2].data_dir.join("db")).expect("wipe node-3's database");
    cluster.restart_node(2).await.expect("restart node-3");
    converged(&cluster, "the wiped node is refilled").await;
    // Anti-entropy runs beside the bulk copy and may repair some keys first; the bulk copy
    // must still have carried entries (convergence above proves the copy is complete).
    let bulk = metric(&cluster, 2, "nimbus_kv_replicated_applied_total{path=\"bulk\"}").await;
    assert!(bulk > 0.0, "the wiped node was refilled without the bulk copy ({bulk} entries by bulk)");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_with_writes_on_both_sides_heals_with_nothing_lost_or_resurrected() {
    let cluster = kv_cluster(5).await;
    cluster.kv_declare(0, "ns").await.expect("declare");
    assert_eq!(cluster.kv_put(0, "ns", "doomed", "old").await.expect("put").0, 200);
    everywhere(&cluster, "ns", "doomed", Some(b"old"), "written before the partition").await;

    // node-4 and node-5 are cut off from node-1..3 (gossip and gRPC, both ways).
    for minority in [3, 4] {
        cluster.partition(minority, &[0, 1, 2]).await.expect("partition");
    }
    // A put on the minority side, then (later, so with a higher version) a delete on the
    // majority side: after the heal the stale put must not bring the key back.
    assert_eq!(cluster.kv_put(3, "ns", "doomed", "stale").await.expect("put").0, 200);
    next_millisecond().await;
    assert_eq!(cluster.kv_delete(0, "ns", "doomed").await.expect("delete"), 200);
    for i in 0..100 {
        assert_eq!(cluster.kv_put(1, "ns", &format!("majority:{i}"), "a").await.expect("put").0, 200);
        assert_eq!(cluster.kv_put(4, "ns", &format!("minority:{i}"), "b").await.expect("put").0, 200);
    }
    assert_eq!(cluster.kv_put(3, "ns", "contested", "minority").await.expect("put").0, 200);
    next_millisecond().await;
    assert_eq!(cluster.kv_put(2, "ns", "contested", "majority").await.expect("put").0, 200);
    on_nodes(&cluster, &[3, 4], "ns", "minority:99", Some(b"b"), "spreads within the side").await;
    // during_partition: nothing crosses.
    assert_eq!(cluster.kv_get(0, "ns", "minority:0").await.expect("get"), None);
    assert_eq!(cluster.kv_get(4, "ns", "majority:0").await.expect("get"), None);
    assert_eq!(cluster.kv_get(3, "ns", "doomed").await.expect("get").as_deref(), Some(&b"stale"[..]));

    for minority in [3, 4] {
        cluster.partition(minority, &[]).await.expect("heal");
    }
    converged(&cluster, "replicas converge after the heal").await;
    for i in 0..5 {
        assert_eq!(cluster.kv_get(i, "ns", "doomed").await.expect("get"), None, "node-{}: resurrected", i + 1);
        assert_eq!(cluster.kv_get(i, "ns", "contested").await.expect("get").as_deref(), Some(&b"majority"[..]));
        let page = cluster.kv_list(i, "ns", &[]).await.expect("list");
        let keys = page["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 201, "node-{}: 100 + 100 + contested", i + 1);
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_longer_than_the_tombstone_grace_does_not_bring_deleted_keys_back() {
    let mut spec = ClusterSpec::local(3).expect("cluster spec");
    for (key, value) in [("ANTI_ENTROPY_MS", "300"), ("TOMBSTONE_GRACE_MS", "3000"), ("PURGE_MS", "200")] {
        spec.node_env.push((format!("NIMBUS_KV__{key}"), value.into()));
    }
    let mut cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.kv_declare(0, "ns").await.expect("declare");
    assert_eq!(cluster.kv_put(0, "ns", "deleted-while-away", "v").await.expect("put").0, 200);
    assert_eq!(cluster.kv_put(0, "ns", "kept", "v").await.expect("put").0, 200);
    converged(&cluster, "written everywhere").await;
    // Let node-3 record a completed exchange holding both keys, then take it away.
    let rounds = metric(&cluster, 2, "nimbus_kv_sync_rounds_total").await;
    cluster
        .eventually(SPREAD, "node-3 completes an exchange", || async {
            Ok(metric(&cluster, 2, "nimbus_kv_sync_rounds_total").await > rounds)
        })
        .await
        .expect("exchange");
    cluster.kill_node(2).await.expect("kill node-3");

    assert_eq!(cluster.kv_delete(1, "ns", "deleted-while-away").await.expect("delete"), 200);
    // The tombstone is purged on the remaining nodes once the grace has passed: their
    // replicas shrink back to the declaration and `kept`.
    for i in [0, 1] {
        cluster
            .eventually(SPREAD, "the tombstone is purged", || async { Ok(cluster.kv_summary(i).await?.entries == 2) })
            .await
            .expect("purge");
    }

    cluster.restart_node(2).await.expect("restart node-3");
    converged(&cluster, "node-3 rejoins").await;
    for i in 0..3 {
        assert_eq!(cluster.kv_get(i, "ns", "deleted-while-away").await.expect("get"), None, "node-{}", i + 1);
        assert_eq!(cluster.kv_get(i, "ns", "kept").await.expect("get").as_deref(), Some(&b"v"[..]));
    }
    cluster.stop().await.expect("stop");
}

/// Runs `nimbus --node <url> <args>`; returns (success, stdout, stderr).
async fn nimbus_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let binary = nimbus_testkit::bin_dir().expect("bin dir").join("nimbus");
    let out = tokio::process::Command::new(&binary)
        .arg("--node")
        .arg(url)
        .env("NIMBUS_API_TOKEN", nimbus_testkit::TEST_TOKEN)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_declares_writes_reads_lists_and_deletes_through_any_node() {
    let cluster = kv_cluster(2).await;
    let (one, two) = (cluster.nodes[0].api_url(), cluster.nodes[1].api_url());
    let (ok, out, _) = nimbus_cli(&one, &["kv", "namespace", "create", "cache"]).await;
    assert!(ok && out.contains("created namespace cache"), "{out}");
    let (ok, out, _) = nimbus_cli(&one, &["kv", "put", "cache", "a/b c", "hello", "--metadata", r#"{"n":1}"#]).await;
    assert!(ok && out.contains("wrote a/b c"), "{out}");

    // Written on node-1, read on node-2 once it has spread.
    cluster
        .eventually(SPREAD, "the CLI reads the value on node-2", || async {
            let (ok, out, _) = nimbus_cli(&two, &["kv", "get", "cache", "a/b c"]).await;
            Ok(ok && out == "hello")
        })
        .await
        .expect("spread");
    let (ok, out, _) = nimbus_cli(&two, &["--json", "kv", "get", "cache", "a/b c"]).await;
    let got: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(ok && got["value"] == "hello" && got["metadata"]["n"] == 1, "{out}");

    let (ok, out, _) = nimbus_cli(&two, &["--json", "kv", "list", "cache", "--prefix", "a/"]).await;
    let listed: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(ok && listed["keys"][0]["name"] == "a/b c" && listed["list_complete"] == true, "{out}");

    let (ok, _, _) = nimbus_cli(&two, &["kv", "delete", "cache", "a/b c"]).await;
    assert!(ok);
    let (ok, _, err) = nimbus_cli(&two, &["kv", "get", "cache", "a/b c"]).await;
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = nimbus_cli(&one, &["kv", "put", "missing", "k", "v"]).await;
    assert!(!ok && err.contains("namespace `missing` does not exist") && err.contains("HTTP 404"), "{err}");
    let (ok, _, err) = nimbus_cli(&one, &["kv", "put", "cache", "k", "v", "--ttl", "0"]).await;
    assert!(!ok && err.contains("below the minimum"), "{err}");
    cluster.stop().await.expect("stop");
}
