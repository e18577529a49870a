//! Queues and Cron Triggers on three real nodes: the seed's `env.EMAIL_QUEUE.send({ to,
//! template })` reaching a consumer worker, Cloudflare's delivery rules (batches, retries
//! with backoff, the dead-letter queue, ack / retry precedence, delays, limits), HTTP pull
//! consumers, the Rust SDK, and at-least-once delivery while the consumer's node is
//! SIGKILLed mid-batch, the Raft leader is SIGKILLed during sends and the consumer's node is
//! partitioned away; cron ticks run once each while the leader dies between them.

use super::js::cli_deploy;
use super::{deploy_example, ROLLOUT};
use nimbus_testkit::{Cluster, ClusterSpec};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Fast timings for tests: leases expire 8 s after a batch is handed out (workers run at
/// most 5 s), the dispatcher looks at least every 200 ms, and a cron minute lasts 2 s.
fn spec() -> ClusterSpec {
    let mut spec = ClusterSpec::local(3).expect("cluster spec");
    spec.node_env = [
        ("NIMBUS_QUEUES__LEASE_MS", "8000"),
        ("NIMBUS_QUEUES__POLL_MS", "200"),
        ("NIMBUS_QUEUES__CRON_MINUTE_MS", "2000"),
        ("NIMBUS_RUNTIME__WALL_MS", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    spec
}

const WORKER: &str = "js-queues";
const WAIT: Duration = Duration::from_secs(60);

async fn worker(cluster: &Cluster, node: usize, method: Method, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = cluster
        .request_worker(node, WORKER, method, path, body.to_string().into_bytes())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn api(cluster: &Cluster, node: usize, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = cluster.http().request(method, format!("{}{path}", cluster.nodes[node].api_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The deliveries recorded for messages whose body has `"tag": tag`, by body.
fn tagged<'a>(rows: &'a [Value], tag: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap_or("null")).is_ok_and(|b| b["tag"] == tag))
        .collect()
}

fn body_of(row: &Value) -> Value {
    serde_json::from_str(row["body"].as_str().unwrap_or("null")).expect("a recorded body is JSON")
}

async fn send(cluster: &Cluster, node: usize, messages: Value) -> (u16, Value) {
    worker(cluster, node, Method::POST, "/send", json!({ "messages": messages })).await
}

/// Polls `probe` until it yields a value; fails after [`WAIT`] with `what`.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the consumer has recorded what `done` asks, through node `node`.
async fn until_received(cluster: &Cluster, node: usize, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut rows = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let (200, Value::Array(now)) = worker(cluster, node, Method::GET, "/received", Value::Null).await {
            rows = now;
            if done(&rows) {
                return rows;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}: {what}; recorded: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_queues_deliver_retry_dead_letter_and_run_cron_once_per_tick() {
    let cluster = Cluster::start(spec()).await.expect("cluster starts");
    cli_deploy(&cluster, "examples/js-queues").await;

    // The seed: a signup through node 1 queues an email; the consumer records it.
    let (status, reply) =
        worker(&cluster, 0, Method::POST, "/signup", json!({ "to": "ada@example.com", "template": "welcome" })).await;
    assert_eq!(status, 202, "{reply}");
    let rows = until_received(&cluster, 1, "the signup's email", |rows| {
        rows.iter().any(|r| body_of(r) == json!({ "to": "ada@example.com", "template": "welcome" }))
    })
    .await;
    let email = rows.iter().find(|r| body_of(r)["to"] == "ada@example.com").expect("recorded");
    assert_eq!((email["queue"].as_str(), email["attempts"].as_i64()), (Some("emails"), Some(1)));

    // 25 messages in one sendBatch: each delivered once, in batches of at most 10.
    let many: Vec<Value> = (0..25).map(|n| json!({ "body": { "tag": "many", "n": n } })).collect();
    assert_eq!(send(&cluster, 2, Value::Array(many)).await.0, 202);
    let rows = until_received(&cluster, 0, "25 messages", |rows| tagged(rows, "many").len() >= 25).await;
    let many = tagged(&rows, "many");
    let numbers: BTreeSet<i64> = many.iter().map(|r| body_of(r)["n"].as_i64().expect("n")).collect();
    assert_eq!((many.len(), numbers.len()), (25, 25), "each once: {many:#?}");
    assert!(many.iter().all(|r| (1..=10).contains(&r["batch"].as_i64().unwrap_or(0))), "max_batch_size 10");

    // A batch that does not fill waits max_batch_timeout (1 s), then goes whole.
    let three: Vec<Value> = (0..3).map(|n| json!({ "body": { "tag": "timeout", "n": n } })).collect();
    assert_eq!(send(&cluster, 1, Value::Array(three)).await.0, 202);
    let rows = until_received(&cluster, 2, "the three", |rows| tagged(rows, "timeout").len() >= 3).await;
    let three = tagged(&rows, "timeout");
    assert!(three.iter().all(|r| r["batch"] == 3 && r["at_ms"] == three[0]["at_ms"]), "one batch of three: {three:#?}");
    let waited = three[0]["at_ms"].as_i64().unwrap_or(0) - three[0]["sent_ms"].as_i64().unwrap_or(0);
    assert!(waited >= 900, "a batch short of max_batch_size went after {waited} ms, before max_batch_timeout");

    // Retries back off from retry_delay (1 s, then 2 s); after max_retries (2) the message
    // goes to the dead-letter queue.
    assert_eq!(send(&cluster, 0, json!([{ "body": { "tag": "retry", "action": "retry" } }])).await.0, 202);
    let rows = until_received(&cluster, 1, "three deliveries", |rows| tagged(rows, "retry").len() >= 3).await;
    let retries = tagged(&rows, "retry");
    let attempts: Vec<i64> = retries.iter().map(|r| r["attempts"].as_i64().unwrap_or(0)).collect();
    assert_eq!(attempts, [1, 2, 3], "{retries:#?}");
    let at: Vec<i64> = retries.iter().map(|r| r["at_ms"].as_i64().unwrap_or(0)).collect();
    // Tolerance: never earlier than the backoff (less 100 ms of clock skew between nodes),
    // and well within a few seconds more.
    for (gap, backoff) in [(at[1] - at[0], 1000), (at[2] - at[1], 2000)] {
        assert!(gap >= backoff - 100 && gap < backoff + 5000, "retry after {gap} ms, backoff {backoff} ms: {at:?}");
    }
    let dlq_has =
        |messages: &Value| messages["messages"].as_array().into_iter().flatten().any(|m| m["body"]["tag"] == "retry");
    cluster
        .eventually(WAIT, "the retried message in emails-dlq", || async {
            let (status, messages) =
                api(&cluster, 2, Method::GET, "/v1/queues/emails-dlq/messages/peek?limit=100", None).await;
            Ok(status == 200 && dlq_has(&messages))
        })
        .await
        .expect("dead-lettered");
    // A few more deliveries could only come after a new lease: give the dispatcher a turn.
    let (_, info) = api(&cluster, 0, Method::GET, "/v1/queues/emails", None).await;
    assert!(info["dead_lettered"].as_u64() >= Some(1), "{info}");

    // Precedence: the first explicit call wins; a throw retries what was not acked, and
    // only that; a delay holds the first delivery back.
    let batch = json!([
        { "body": { "tag": "ack-then-retry", "action": "ack-then-retry" } },
        { "body": { "tag": "retry-then-ack", "action": "retry-then-ack" } },
        { "body": { "tag": "throw-once", "action": "throw-once" } },
        { "body": { "tag": "acked-beside-throw", "action": "ack" } },
        { "body": { "tag": "delayed" }, "delaySeconds": 3 },
    ]);
    assert_eq!(send(&cluster, 1, batch).await.0, 202);
    let rows = until_received(&cluster, 2, "the precedence batch", |rows| {
        tagged(rows, "retry-then-ack").len() >= 2
            && tagged(rows, "throw-once").len() >= 2
            && !tagged(rows, "delayed").is_empty()
    })
    .await;
    assert_eq!(tagged(&rows, "ack-then-retry").len(), 1, "the ack came first");
    assert_eq!(tagged(&rows, "acked-beside-throw").len(), 1, "acked explicitly before the throw");
    let delayed = tagged(&rows, "delayed")[0];
    let waited = delayed["at_ms"].as_i64().unwrap_or(0) - delayed["sent_ms"].as_i64().unwrap_or(0);
    assert!(waited >= 2900, "delivered {waited} ms after it was sent, asked 3 s later");

    // Limits: a clear error, nothing enqueued.
    let (_, before) = api(&cluster, 0, Method::GET, "/v1/queues/emails", None).await;
    let (status, reply) = send(&cluster, 0, json!([{ "body": "x".repeat(130 * 1024), "contentType": "text" }])).await;
    assert!(status == 400 && reply["error"].as_str().unwrap_or("").contains("128 KB"), "{status} {reply}");
    let too_many: Vec<Value> = (0..101).map(|n| json!({ "body": n })).collect();
    let (status, reply) = send(&cluster, 0, Value::Array(too_many)).await;
    assert!(status == 400 && reply["error"].as_str().unwrap_or("").contains("at most 100"), "{status} {reply}");
    let (status, reply) = send(&cluster, 0, json!([{ "body": 1, "delaySeconds": 50000 }])).await;
    assert!(status == 400 && reply["error"].as_str().unwrap_or("").contains("12 hours"), "{status} {reply}");
    let (_, after) = api(&cluster, 0, Method::GET, "/v1/queues/emails", None).await;
    assert_eq!(before["sent"], after["sent"], "refused sends stored nothing");
    // An unknown queue.
    let (status, reply) =
        api(&cluster, 1, Method::POST, "/v1/queues/nope/messages", Some(json!({ "messages": [{ "body": 1 }] }))).await;
    assert!(status == 404 && reply["error"].as_str().unwrap_or("").contains("no queue nope"), "{status} {reply}");

    // HTTP pull: lease, ack one, retry one; the retried one comes back.
    assert_eq!(api(&cluster, 0, Method::POST, "/v1/queues", Some(json!({ "name": "pulled" }))).await.0, 201);
    let (status, reply) =
        api(&cluster, 0, Method::PUT, "/v1/queues/pulled/consumer", Some(json!({ "type": "http_pull" }))).await;
    assert_eq!(status, 200, "{reply}");
    let three = json!({ "messages": [{ "body": "a", "content_type": "text" }, { "body": "b", "content_type": "text" }, { "body": "c", "content_type": "text" }] });
    assert_eq!(api(&cluster, 1, Method::POST, "/v1/queues/pulled/messages", Some(three)).await.0, 201);
    let (status, pulled) = api(
        &cluster,
        2,
        Method::POST,
        "/v1/queues/pulled/messages/pull",
        Some(json!({ "batch_size": 2, "visibility_timeout_ms": 60000 })),
    )
    .await;
    assert_eq!(status, 200, "{pulled}");
    let first = pulled["messages"].as_array().expect("messages").clone();
    assert_eq!(first.iter().map(|m| m["body"].clone()).collect::<Vec<_>>(), [json!("a"), json!("b")]);
    let ack = json!({ "acks": [{ "lease_id": first[0]["lease_id"] }], "retries": [{ "lease_id": first[1]["lease_id"], "delay_seconds": 0 }] });
    let (status, settled) = api(&cluster, 0, Method::POST, "/v1/queues/pulled/messages/ack", Some(ack)).await;
    assert_eq!((status, settled["settled"].as_u64()), (200, Some(2)), "{settled}");
    let (_, again) =
        api(&cluster, 1, Method::POST, "/v1/queues/pulled/messages/pull", Some(json!({ "batch_size": 10 }))).await;
    let bodies: BTreeSet<String> = again["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(String::from))
        .collect();
    assert_eq!(bodies, BTreeSet::from(["b".to_string(), "c".to_string()]), "{again}");

    // Cron: "* * * * *" with 2-second minutes; each tick recorded once, a minute apart in
    // schedule time, and `nimbus cron list` shows the runs.
    let ticks = |rows: &Value| rows.as_array().map(|r| r.len()).unwrap_or(0);
    cluster
        .eventually(WAIT, "three cron ticks", || async {
            Ok(ticks(&worker(&cluster, 0, Method::GET, "/ticks", Value::Null).await.1) >= 3)
        })
        .await
        .expect("ticks");
    let (_, rows) = worker(&cluster, 1, Method::GET, "/ticks", Value::Null).await;
    let scheduled: Vec<i64> =
        rows.as_array().expect("ticks").iter().map(|t| t["scheduled_ms"].as_i64().unwrap_or(0)).collect();
    let distinct: BTreeSet<i64> = scheduled.iter().copied().collect();
    assert_eq!(distinct.len(), scheduled.len(), "a tick ran twice: {scheduled:?}");
    assert!(scheduled.windows(2).all(|w| (w[1] - w[0]) % 60_000 == 0 && w[1] > w[0]), "{scheduled:?}");
    assert!(rows.as_array().expect("ticks").iter().all(|t| t["cron"] == "* * * * *"), "{rows}");
    let output = cluster.nimbus(&["cron", "list", WORKER, "--json"]).await.expect("nimbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let runs: Value = serde_json::from_slice(&output.stdout).expect("--json");
    assert!(runs["runs"].as_array().is_some_and(|r| r.iter().any(|run| run["status"] == "ok")), "{runs}");
    // Triggered by hand (wrangler's --test-scheduled).
    let output = cluster.nimbus(&["cron", "trigger", WORKER, "--cron", "* * * * *", "--json"]).await.expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // The CLI and the metrics see the queues.
    let output = cluster.nimbus(&["queues", "list", "--json"]).await.expect("nimbus runs");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("--json");
    let names: Vec<&str> =
        listed["queues"].as_array().into_iter().flatten().filter_map(|q| q["name"].as_str()).collect();
    assert!(names.contains(&"emails") && names.contains(&"emails-dlq") && names.contains(&"pulled"), "{listed}");
    let metrics = cluster.http().get(format!("{}/metrics", cluster.nodes[2].api_url())).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("nimbus_queue_backlog{queue=\"emails-dlq\"}"), "{metrics}");
    assert!(metrics.contains("nimbus_queue_acked_total{queue=\"emails\"}"), "{metrics}");
    cluster.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_produces_consumes_and_runs_cron() {
    let cluster = Cluster::start(spec()).await.expect("cluster starts");
    let manifest = json!({
        "bindings": [
            { "type": "queue", "name": "JOBS", "queue": "jobs" },
            { "type": "d1", "name": "DB", "database_name": "jobs" },
        ],
        "queue_consumers": [{ "queue": "jobs", "max_batch_size": 5, "max_batch_timeout": 1 }],
        "crons": ["*/2 * * * *"],
    });
    deploy_example(&cluster, "queue-worker", "queue_worker", manifest).await;
    for body in ["one", "two ?retry", "three"] {
        let (status, text) = cluster
            .request_worker(0, "queue-worker", Method::POST, "/jobs", body.as_bytes().to_vec())
            .await
            .expect("request");
        assert_eq!(status, 202, "{text}");
    }
    let seen = until("the Rust consumer saw every job, the retried one twice", || async {
        let seen = cluster.get_worker(1, "queue-worker", "/seen").await.ok()?.1;
        (seen.lines().count() >= 4).then_some(seen)
    })
    .await;
    let lines: Vec<Vec<&str>> = seen.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    let by_body: BTreeMap<&str, Vec<&str>> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        m.entry(l[3]).or_default().push(l[1]);
        m
    });
    assert_eq!(by_body.get("one"), Some(&vec!["1"]), "{seen}");
    assert_eq!(by_body.get("two ?retry"), Some(&vec!["1", "2"]), "{seen}");
    let ticks = until("two cron ticks of the Rust handler", || async {
        let ticks = cluster.get_worker(2, "queue-worker", "/ticks").await.ok()?.1;
        (ticks.lines().count() >= 2).then_some(ticks)
    })
    .await;
    for line in ticks.lines() {
        let (cron, at) = line.rsplit_once(' ').expect("cron and time");
        assert_eq!(cron, "*/2 * * * *");
        let at: u64 = at.parse().expect("a time");
        assert_eq!(at % 120_000, 0, "a */2 tick falls on an even minute: {ticks}");
    }
    cluster.stop().await.expect("stops");
}

/// The node holding a lease of `queue`, once one is out.
async fn holder(cluster: &Cluster, via: usize, queue: &str) -> usize {
    let id = until("a lease out", || async {
        let (_, info) = api(cluster, via, Method::GET, &format!("/v1/queues/{queue}"), None).await;
        info["leases"].as_array().and_then(|l| l.first()).and_then(|l| l["holder"].as_str()).map(String::from)
    })
    .await;
    cluster.nodes.iter().position(|n| n.id == id).unwrap_or_else(|| panic!("holder {id} is not a node"))
}

async fn leader(cluster: &Cluster) -> usize {
    for (at, node) in cluster.nodes.iter().enumerate().filter(|(_, n)| n.is_running()) {
        let status: Value = cluster
            .http()
            .get(format!("{}/v1/node/d1", node.api_url()))
            .send()
            .await
            .expect("d1 status")
            .json()
            .await
            .expect("json");
        if status["state"] == "Leader" {
            return at;
        }
    }
    panic!("no leader among the running nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_send_is_delivered_through_kills_and_a_partition() {
    let mut cluster = Cluster::start(spec()).await.expect("cluster starts");
    cli_deploy(&cluster, "examples/js-queues").await;
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let sent = |status: u16, tag: &str, acked: &mut BTreeSet<String>| {
        if status == 202 {
            acked.insert(tag.to_string());
        }
    };

    // 1. The consumer's node is SIGKILLed mid-batch: the batch is delivered again elsewhere.
    let slow = json!([{ "body": { "tag": "k0", "action": "sleep", "ms": 4000 } }]);
    let (status, _) = send(&cluster, 0, slow).await;
    sent(status, "k0", &mut acknowledged);
    let victim = holder(&cluster, 0, "emails").await;
    until_received(&cluster, (victim + 1) % 3, "the slow message's first delivery", |rows| {
        !tagged(rows, "k0").is_empty()
    })
    .await;
    cluster.kill_node(victim).await.expect("kill");
    let survivor = (victim + 1) % 3;
    until_received(&cluster, survivor, "the slow message delivered again", |rows| {
        tagged(rows, "k0").iter().any(|r| r["attempts"].as_i64() >= Some(2))
    })
    .await;
    cluster.restart_node(victim).await.expect("restart");
    cluster.wait_for_version(WORKER, 1, ROLLOUT).await.expect("the restarted node serves the worker");

    // 2. The Raft leader is SIGKILLed while sends go on through another node: whatever was
    //    acknowledged is delivered.
    let doomed = leader(&cluster).await;
    let via = (doomed + 1) % 3;
    for round in 0..30 {
        if round == 10 {
            cluster.kill_node(doomed).await.expect("kill the leader");
        }
        let tag = format!("s{round}");
        let (status, _) = send(&cluster, via, json!([{ "body": { "tag": tag } }])).await;
        sent(status, &tag, &mut acknowledged);
    }
    cluster.restart_node(doomed).await.expect("restart");

    // 3. The consumer's node is partitioned away mid-batch: its settle cannot commit, the
    //    lease expires, another node delivers the batch. (Once the sends so far are
    //    delivered, so the only lease out is this message's.)
    let sent_so_far = acknowledged.clone();
    until_received(&cluster, via, "the sends so far", |rows| {
        let delivered: BTreeSet<String> =
            rows.iter().filter_map(|r| body_of(r)["tag"].as_str().map(String::from)).collect();
        sent_so_far.is_subset(&delivered)
    })
    .await;
    until("no lease out", || async {
        let (_, info) = api(&cluster, via, Method::GET, "/v1/queues/emails", None).await;
        info["leases"].as_array().is_none_or(|l| l.is_empty()).then_some(())
    })
    .await;
    let slow = json!([{ "body": { "tag": "p0", "action": "sleep", "ms": 4000 } }]);
    let (status, _) = send(&cluster, via, slow).await;
    sent(status, "p0", &mut acknowledged);
    let cut = holder(&cluster, via, "emails").await;
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    cluster.set_faults(cut, &others, json!({})).await.expect("partition");
    for other in &others {
        cluster.set_faults(*other, &[cut], json!({})).await.expect("partition");
    }
    until_received(&cluster, others[0], "the partitioned batch delivered by another node", |rows| {
        tagged(rows, "p0").iter().any(|r| r["attempts"].as_i64() >= Some(2))
    })
    .await;
    for node in 0..3 {
        cluster.set_faults(node, &[], json!({})).await.expect("heal");
    }

    // Nothing acknowledged is lost; duplicates are counted.
    assert!(acknowledged.len() >= 12, "too few sends were acknowledged to mean anything: {acknowledged:?}");
    let rows = until_received(&cluster, others[1], "every acknowledged message", |rows| {
        let delivered: BTreeSet<String> =
            rows.iter().filter_map(|r| body_of(r)["tag"].as_str().map(String::from)).collect();
        acknowledged.is_subset(&delivered)
    })
    .await;
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        if let Some(tag) = body_of(row)["tag"].as_str() {
            *deliveries.entry(tag.to_string()).or_default() += 1;
        }
    }
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    println!(
        "at-least-once: {} acknowledged sends, {} delivered, {} duplicate deliveries, 0 lost",
        acknowledged.len(),
        deliveries.len(),
        duplicates
    );

    // The cron ticked throughout, leaders dying between ticks: every tick was claimed (no
    // gap), none ran twice, and each run recorded as ok ran.
    // The runs first, then the ticks: a run recorded ok has written its tick by then.
    let output = cluster.nimbus(&["cron", "list", WORKER, "--json"]).await.expect("nimbus runs");
    let runs: Value = serde_json::from_slice(&output.stdout).expect("--json");
    let runs = runs["runs"].as_array().expect("runs").clone();
    let (_, ticks) = worker(&cluster, 0, Method::GET, "/ticks", Value::Null).await;
    let scheduled: Vec<i64> =
        ticks.as_array().expect("ticks").iter().map(|t| t["scheduled_ms"].as_i64().unwrap_or(0)).collect();
    let ran: BTreeSet<i64> = scheduled.iter().copied().collect();
    assert!(scheduled.len() >= 5, "the cron kept ticking: {scheduled:?}");
    assert_eq!(ran.len(), scheduled.len(), "a tick ran twice: {scheduled:?}");
    let claimed: BTreeSet<i64> =
        runs.iter().filter(|r| r["status"] != "skipped").filter_map(|r| r["scheduled_ms"].as_i64()).collect();
    let ok: BTreeSet<i64> =
        runs.iter().filter(|r| r["status"] == "ok").filter_map(|r| r["scheduled_ms"].as_i64()).collect();
    let (first, last) = (*claimed.first().expect("runs"), *claimed.last().expect("runs"));
    let every: BTreeSet<i64> = (0..=(last - first) / 60_000).map(|i| first + i * 60_000).collect();
    assert_eq!(claimed, every, "a tick between the first and the last was never claimed: {runs:#?}");
    assert!(ok.is_subset(&ran), "a run recorded ok left no trace: {ok:?} vs {ran:?}");
    let in_window: BTreeSet<i64> = ran.range(first..=last).copied().collect();
    assert!(in_window.is_subset(&claimed), "a tick ran without a claim: {ran:?} vs {claimed:?}");
    println!("cron: {} ticks claimed, {} ran ok, none twice", claimed.len(), ok.len());
    cluster.stop().await.expect("stops");
}
