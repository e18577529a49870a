//! D1: writes through any node, bookmarks and linearizable reads on other replicas, equal
//! replicas after non-deterministic SQL, a leader killed mid-stream, a minority partition, a
//! replica restored from a snapshot, and bad input.

use nimbus_testkit::{Cluster, ClusterSpec};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

async fn d1_cluster(nodes: usize, voters: usize, env: &[(&str, &str)]) -> Cluster {
    let mut spec = ClusterSpec::local(nodes).expect("cluster spec");
    spec.d1_voters = voters;
    for (k, v) in env {
        spec.node_env.push((k.to_string(), v.to_string()));
    }
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    let all: Vec<usize> = (0..nodes).collect();
    cluster.d1_wait_formed(&all, voters, nodes - voters).await.expect("group forms");
    cluster
}

fn bookmark(reply: &Value) -> String {
    reply["bookmark"].as_str().expect("bookmark").to_string()
}

fn rows(reply: &Value) -> Vec<Value> {
    reply["results"][0]["rows"].as_array().cloned().unwrap_or_default()
}

/// Waits until every running node holds the same checksum of `database`.
async fn replicas_agree(cluster: &Cluster, database: &str) -> String {
    let running: Vec<usize> = (0..cluster.nodes.len()).filter(|i| cluster.nodes[*i].is_running()).collect();
    cluster
        .eventually(CONVERGE, "every replica has the same checksum", || {
            let running = running.clone();
            async move {
                let mut sums = BTreeSet::new();
                for i in &running {
                    sums.insert(cluster.d1_checksum(*i, database).await?.0);
                }
                Ok(sums.len() == 1)
            }
        })
        .await
        .expect("replicas converge");
    cluster.d1_checksum(running[0], database).await.expect("checksum").0
}

/// 3 voters + 2 replicas: writes through every node, read back elsewhere with the bookmark;
/// a linearizable read right after a write on another node; equal checksums after SQL that
/// would differ per replica if it were re-run; every kind of bad input refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_are_read_back_with_bookmarks_and_linearizably() {
    let cluster = d1_cluster(5, 3, &[("NIMBUS_D1__READ_TIMEOUT_MS", "1000")]).await;
    let status = cluster.d1_status(4).await.expect("status");
    assert_eq!(status.voters.len(), 3, "{status:?}");
    assert!(status.learners.contains(&"node-5".to_string()), "{status:?}");

    // Created and migrated through replicas.
    cluster.d1_create(3, "notes").await.expect("create through a replica");
    cluster
        .d1_exec(
            4,
            "notes",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE, at TEXT, r INTEGER, b BLOB)",
        )
        .await
        .expect("migration through a replica");

    for writer in 0..5 {
        let reader = (writer + 1) % 5;
        let body = format!("from node-{}", writer + 1);
        let written = cluster
            .d1_ok(writer, "notes", "INSERT INTO notes (body) VALUES (?1)", json!([body]))
            .await
            .expect("insert");
        assert_eq!(written["results"][0]["meta"]["changes"], 1, "{written}");
        let (status, read) = cluster
            .d1_query(
                reader,
                "notes",
                json!({ "sql": "SELECT body FROM notes WHERE body = ?1", "params": [body], "consistency": "bookmark", "bookmark": bookmark(&written) }),
            )
            .await
            .expect("read");
        assert_eq!(status, 200, "{read}");
        assert_eq!(
            rows(&read),
            vec![json!([body])],
            "node-{} reads node-{}'s write with its bookmark",
            reader + 1,
            writer + 1
        );
        assert_eq!(read["served_by"], format!("node-{}", reader + 1));
    }

    // Linearizable: a write through one replica, read at once through another.
    cluster.d1_ok(3, "notes", "INSERT INTO notes (body) VALUES ('linear')", json!([])).await.expect("insert");
    let (status, read) = cluster
        .d1_query(
            4,
            "notes",
            json!({ "sql": "SELECT count(*) FROM notes WHERE body = 'linear'", "consistency": "linearizable" }),
        )
        .await
        .expect("linearizable read");
    assert_eq!(status, 200, "{read}");
    assert_eq!(rows(&read), vec![json!([1])]);

    // Non-deterministic SQL, applied on every replica, leaves them equal.
    for i in 0..5 {
        cluster
            .d1_ok(
                i,
                "notes",
                "INSERT INTO notes (body, at, r, b) VALUES ('noise ' || random(), datetime('now', 'subsec'), random(), randomblob(8))",
                json!([]),
            )
            .await
            .expect("noisy insert");
    }
    cluster
        .d1_query(
            2,
            "notes",
            json!({ "batch": [
                { "sql": "INSERT INTO notes (body, r) VALUES ('rowid', last_insert_rowid())" },
                { "sql": "UPDATE notes SET r = changes() + (SELECT max(id) FROM notes) WHERE body = 'rowid'" },
            ]}),
        )
        .await
        .expect("batch");
    let checksum = replicas_agree(&cluster, "notes").await;
    assert_eq!(checksum.len(), 64);

    // Bad input: refused with a clear error, nothing applied.
    let count = |reply: &Value| rows(reply)[0][0].as_i64().expect("count");
    let before = count(&cluster.d1_ok(0, "notes", "SELECT count(*) FROM notes", json!([])).await.expect("count"));
    let (status, reply) =
        cluster.d1_query(1, "notes", json!({ "sql": "INSERT INTO notes VALUE ('x')" })).await.expect("call");
    assert_eq!(status, 400, "syntax error: {reply}");
    assert_eq!(reply["kind"], "sql", "{reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("syntax"), "{reply}");
    let (status, reply) = cluster
        .d1_query(
            1,
            "notes",
            json!({ "batch": [
                { "sql": "INSERT INTO notes (body) VALUES ('batch-1')" },
                { "sql": "INSERT INTO notes (body) VALUES ('from node-1')" },
                { "sql": "INSERT INTO notes (body) VALUES ('batch-3')" },
            ]}),
        )
        .await
        .expect("call");
    assert_eq!(status, 400, "constraint violation mid-batch: {reply}");
    assert_eq!(reply["statement"], 1, "{reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("UNIQUE"), "{reply}");
    let (status, reply) = cluster.d1_query(1, "nope", json!({ "sql": "SELECT 1" })).await.expect("call");
    assert_eq!(status, 404, "unknown database: {reply}");
    let params: Vec<i64> = (0..101).collect();
    let placeholders = vec!["?"; 101].join(", ");
    let (status, reply) = cluster
        .d1_query(1, "notes", json!({ "sql": format!("SELECT {placeholders}"), "params": params }))
        .await
        .expect("call");
    assert_eq!(status, 400, "too many parameters: {reply}");
    let huge = format!("INSERT INTO notes (body) VALUES ('{}')", "x".repeat(100_001));
    let (status, reply) = cluster.d1_query(1, "notes", json!({ "sql": huge })).await.expect("call");
    assert_eq!(status, 400, "statement too large: {reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("over the limit"), "{reply}");
    let (status, reply) = cluster
        .d1_query(4, "notes", json!({ "sql": "SELECT 1", "consistency": "bookmark", "bookmark": "999999999" }))
        .await
        .expect("call");
    assert_eq!(
        (status, reply["kind"].as_str()),
        (503, Some("bookmark-timeout")),
        "a bookmark from the future: {reply}"
    );
    let (status, _) = cluster.d1_query(1, "notes", json!({ "sql": "BEGIN TRANSACTION" })).await.expect("call");
    assert_eq!(status, 400, "transactions are batches in D1");
    let after = count(
        &cluster
            .d1_query(0, "notes", json!({ "sql": "SELECT count(*) FROM notes", "consistency": "linearizable" }))
            .await
            .expect("count")
            .1,
    );
    assert_eq!(before, after, "no bad input applied anything");
}

/// The leader is SIGKILLed in the middle of a stream of writes: a new leader takes over, the
/// stream goes on, and afterwards every acknowledged write is on every replica, while every
/// unacknowledged one is there whole (both rows) or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_write() {
    let mut cluster = d1_cluster(3, 3, &[("NIMBUS_D1__WRITE_TIMEOUT_MS", "8000")]).await;
    cluster.d1_create(0, "ledger").await.expect("create");
    cluster
        .d1_exec(0, "ledger", "CREATE TABLE entries (n INTEGER, side TEXT, PRIMARY KEY (n, side))")
        .await
        .expect("schema");
    let leader = cluster.d1_leader().await.expect("a leader");

    let mut acknowledged = Vec::new();
    let mut unacknowledged = Vec::new();
    let mut killed = false;
    let mut last_bookmark = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for n in 0..240i64 {
        if n == 80 {
            cluster.kill_node(leader).await.expect("kill the leader");
            killed = true;
        }
        let through = (n as usize) % 3;
        if killed && through == leader {
            continue;
        }
        let batch = json!({ "batch": [
            { "sql": "INSERT INTO entries (n, side) VALUES (?1, 'debit')", "params": [n] },
            { "sql": "INSERT INTO entries (n, side) VALUES (?1, 'credit')", "params": [n] },
        ]});
        match cluster.d1_query(through, "ledger", batch).await {
            Ok((200, reply)) => {
                acknowledged.push(n);
                last_bookmark = last_bookmark.max(bookmark(&reply).parse().unwrap_or(0));
            }
            _ => unacknowledged.push(n),
        }
        assert!(tokio::time::Instant::now() < deadline, "the write stream is bounded in time");
    }
    let after_kill = acknowledged.iter().filter(|n| **n > 80).count();
    assert!(after_kill >= 50, "writes resumed under a new leader: {after_kill} acknowledged after the kill");
    let new_leader = cluster.d1_leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);

    cluster.restart_node(leader).await.expect("restart the old leader");
    for i in 0..3 {
        let (status, reply) = cluster
            .d1_query(i, "ledger", json!({ "sql": "SELECT n, count(*) FROM entries GROUP BY n", "consistency": "bookmark", "bookmark": last_bookmark }))
            .await
            .expect("read");
        assert_eq!(status, 200, "node-{} catches up: {reply}", i + 1);
        let counts: std::collections::BTreeMap<i64, i64> =
            rows(&reply).iter().map(|row| (row[0].as_i64().expect("n"), row[1].as_i64().expect("count"))).collect();
        for n in &acknowledged {
            assert_eq!(counts.get(n), Some(&2), "acknowledged write {n} is whole on node-{}", i + 1);
        }
        for n in &unacknowledged {
            assert!(matches!(counts.get(n), None | Some(2)), "unacknowledged write {n} is whole or absent");
        }
    }
    replicas_agree(&cluster, "ledger").await;
}

/// The leader and a replica are cut off from the rest: the old leader cannot commit (a clear
/// 503, no split brain), the majority elects a leader and goes on, the cut-off replica still
/// serves `local` reads and reports growing staleness; after the heal it catches up, and the
/// write the minority refused is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_partition_cannot_commit_and_catches_up_after_the_heal() {
    let cluster = d1_cluster(5, 3, &[("NIMBUS_D1__WRITE_TIMEOUT_MS", "3000")]).await;
    cluster.d1_create(0, "split").await.expect("create");
    cluster.d1_exec(0, "split", "CREATE TABLE t (k TEXT PRIMARY KEY)").await.expect("schema");
    let before = cluster.d1_ok(0, "split", "INSERT INTO t VALUES ('before')", json!([])).await.expect("insert");
    let leader = cluster.d1_leader().await.expect("leader");
    let replica = 4; // node-5, a learner
    let minority = [leader, replica];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    // The replica has the first write before the cut.
    let (status, _) = cluster
        .d1_query(
            replica,
            "split",
            json!({ "sql": "SELECT 1", "consistency": "bookmark", "bookmark": bookmark(&before) }),
        )
        .await
        .expect("catch up");
    assert_eq!(status, 200);
    for i in minority {
        cluster.partition(i, &majority).await.expect("cut");
    }
    for i in &majority {
        cluster.partition(*i, &minority).await.expect("cut");
    }

    let (status, reply) =
        cluster.d1_query(leader, "split", json!({ "sql": "INSERT INTO t VALUES ('minority')" })).await.expect("call");
    assert_eq!(status, 503, "the minority cannot commit: {reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("quorum") || reply["kind"] == "unavailable", "{reply}");

    let through = majority[0];
    let majority_write = json!({ "sql": "INSERT OR IGNORE INTO t VALUES ('majority')" });
    cluster
        .eventually(CONVERGE, "the majority elects a leader and commits", || async {
            Ok(cluster.d1_query(through, "split", majority_write.clone()).await?.0 == 200)
        })
        .await
        .expect("majority writes");
    let (status, after) = cluster.d1_query(through, "split", majority_write.clone()).await.expect("write");
    assert_eq!(status, 200, "{after}");
    cluster
        .eventually(CONVERGE, "the cut-off replica reports its staleness", || async {
            let (status, reply) = cluster
                .d1_query(replica, "split", json!({ "sql": "SELECT k FROM t ORDER BY k", "consistency": "local" }))
                .await?;
            Ok(status == 200
                && rows(&reply) == vec![json!(["before"])]
                && reply["staleness_ms"].as_u64().is_some_and(|ms| ms >= 2_000))
        })
        .await
        .expect("local reads on the minority");
    // Without a session a read needs the primary, which the minority cannot reach.
    let (status, reply) =
        cluster.d1_query(replica, "split", json!({ "sql": "SELECT k FROM t ORDER BY k" })).await.expect("call");
    assert_eq!((status, reply["kind"].as_str()), (503, Some("unavailable")), "{reply}");

    for i in 0..5 {
        cluster.partition(i, &[]).await.expect("heal");
    }
    for i in 0..5 {
        let (status, reply) = cluster
            .d1_query(
                i,
                "split",
                json!({ "sql": "SELECT k FROM t ORDER BY k", "consistency": "bookmark", "bookmark": bookmark(&after) }),
            )
            .await
            .expect("read");
        assert_eq!(status, 200, "node-{} catches up: {reply}", i + 1);
        assert_eq!(rows(&reply), vec![json!(["before"]), json!(["majority"])], "no split brain on node-{}", i + 1);
    }
    replicas_agree(&cluster, "split").await;
}

/// A replica that was down while the log moved far past it (and was compacted) gets a
/// snapshot on its return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_behind_installs_a_snapshot() {
    let mut cluster = d1_cluster(4, 3, &[("NIMBUS_D1__SNAPSHOT_LOGS", "20"), ("NIMBUS_D1__KEEP_LOGS", "0")]).await;
    cluster.d1_create(0, "big").await.expect("create");
    cluster.d1_exec(0, "big", "CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)").await.expect("schema");
    let replica = 3;
    cluster.kill_node(replica).await.expect("kill the replica");
    let mut last = Value::Null;
    for n in 0..120 {
        last = cluster
            .d1_ok(n % 3, "big", "INSERT INTO t VALUES (?1, hex(randomblob(64)))", json!([n]))
            .await
            .expect("insert");
    }
    let leader = cluster.d1_leader().await.expect("leader");
    cluster
        .eventually(CONVERGE, "the leader compacts its log", || async {
            let status = cluster.d1_status(leader).await?;
            Ok(status.purged_index.is_some_and(|p| p > 60))
        })
        .await
        .expect("compaction");

    cluster.restart_node(replica).await.expect("restart");
    let (status, reply) = cluster
        .d1_query(
            replica,
            "big",
            json!({ "sql": "SELECT count(*) FROM t", "consistency": "bookmark", "bookmark": bookmark(&last) }),
        )
        .await
        .expect("read");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(rows(&reply), vec![json!([120])]);
    let status = cluster.d1_status(replica).await.expect("status");
    assert!(status.snapshots_installed >= 1, "the replica was restored from a snapshot: {status:?}");
    let metrics = cluster
        .http()
        .get(format!("{}/metrics", cluster.nodes[replica].api_url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let installed = metrics
        .lines()
        .find(|l| l.starts_with("nimbus_d1_snapshots_installed "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(installed.is_some_and(|n| n >= 1), "/metrics reports the install: {metrics}");
    replicas_agree(&cluster, "big").await;
}

/// A node restarted on a new RPC port: the leader records the new address in the group's
/// membership once, and then stops writing membership entries (before the fix it re-added
/// the node every group tick, which changed nothing and grew the log for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_s_new_address_is_recorded_once() {
    let mut cluster = d1_cluster(3, 3, &[]).await;
    let leader = cluster.d1_leader().await.expect("leader");
    let follower = (leader + 1) % 3;
    let name = cluster.nodes[follower].id.clone();
    let rpc_seen_by_leader = |cluster: &Cluster| {
        let url = cluster.nodes[leader].api_url();
        let name = name.clone();
        let http = cluster.http().clone();
        async move {
            let view: Value = http.get(format!("{url}/v1/cluster")).send().await?.json().await?;
            let rpc = view["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["node_id"] == name.as_str() && m["state"] == "alive")
                .and_then(|m| m["rpc_addr"].as_str().map(str::to_owned));
            anyhow::Ok(rpc)
        }
    };
    let old = rpc_seen_by_leader(&cluster).await.expect("members").expect("the follower is alive");
    let recorded = cluster.d1_status(leader).await.expect("status").addresses.get(&name).cloned();
    assert_eq!(recorded.as_deref(), Some(old.as_str()), "the group records the follower's first address");

    cluster.restart_node(follower).await.expect("restart the follower");
    cluster
        .eventually(CONVERGE, "gossip carries the follower's new RPC address", || async {
            Ok(rpc_seen_by_leader(&cluster).await?.is_some_and(|rpc| rpc != old))
        })
        .await
        .expect("new address gossiped");
    let new = rpc_seen_by_leader(&cluster).await.expect("members").expect("the follower is alive");
    cluster
        .eventually(CONVERGE, "the group records the follower's new RPC address", || async {
            let status = cluster.d1_status(leader).await?;
            Ok(status.addresses.get(&name) == Some(&new))
        })
        .await
        .expect("new address recorded");

    // Once recorded, the leader's log holds still with no writes: a write lands right after it.
    let before = cluster.d1_status(leader).await.expect("status").last_log_index;
    cluster.d1_create(leader, "after_restart").await.expect("create");
    cluster
        .eventually(CONVERGE, "the leader's metrics show the create", || async {
            Ok(cluster.d1_status(leader).await?.last_log_index > before)
        })
        .await
        .expect("create appended");
    let after = cluster.d1_status(leader).await.expect("status").last_log_index;
    assert_eq!(after, before + 1, "only the create was appended ({before} -> {after})");
}

/// The `d1-notes` worker: the `d1` binding creates its database on first use, writes go
/// through the leader from any node, the session bookmark a reply carries makes a read on
/// another node see the write, and a batch with a bad row adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_uses_d1_through_its_binding_with_sessions() {
    let cluster = d1_cluster(3, 3, &[]).await;
    let manifest = json!({"bindings": [{"type": "d1", "name": "DB", "database_name": "notes"}]});
    super::deploy_example(&cluster, "notes", "d1_notes", manifest).await;
    let http = cluster.http();
    let post = |i: usize, path: &str, body: &str| {
        http.post(format!("{}{path}", cluster.nodes[i].url()))
            .header("host", "notes.workers.localhost")
            .body(body.to_string())
            .send()
    };
    let resp = post(1, "/notes", "first note").await.expect("post");
    assert_eq!(resp.status(), 201);
    let bookmark = resp.headers()["x-d1-bookmark"].to_str().expect("bookmark").to_string();
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["id"], 1, "{created}");

    let resp = http
        .get(format!("{}/notes/1", cluster.nodes[2].url()))
        .header("host", "notes.workers.localhost")
        .header("x-d1-bookmark", &bookmark)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let note: Value = resp.json().await.expect("json");
    assert_eq!(note["body"], "first note");
    assert!(note["created_at"].as_str().is_some_and(|t| t.len() == 19), "{note}");

    let resp = post(0, "/batch", "a\n\nc").await.expect("batch");
    assert_eq!(resp.status(), 400, "an empty line fails the CHECK");
    let resp = http
        .get(format!("{}/notes?consistency=linearizable", cluster.nodes[2].url()))
        .header("host", "notes.workers.localhost")
        .send()
        .await
        .expect("list");
    let notes: Value = resp.json().await.expect("json");
    assert_eq!(notes.as_array().map(Vec::len), Some(1), "the failed batch added nothing: {notes}");
    let (status, reply) = cluster
        .d1_query(0, "notes", json!({ "sql": "SELECT body FROM notes", "consistency": "linearizable" }))
        .await
        .expect("rest");
    assert_eq!((status, rows(&reply)), (200, vec![json!(["first note"])]), "REST sees the worker's rows");
}

/// Runs `nimbus --node <url> <args>` with `stdin`; returns (success, stdout, stderr).
async fn nimbus_cli(url: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let binary = nimbus_testkit::bin_dir().expect("bin dir").join("nimbus");
    let mut child = tokio::process::Command::new(&binary)
        .arg("--node")
        .arg(url)
        .env("NIMBUS_API_TOKEN", nimbus_testkit::TEST_TOKEN)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await.expect("stdin");
    }
    let out = child.wait_with_output().await.expect("cli exits");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_migrates_queries_and_runs_a_shell() {
    let cluster = d1_cluster(3, 3, &[]).await;
    let (one, three) = (cluster.nodes[0].api_url(), cluster.nodes[2].api_url());
    let (ok, out, err) = nimbus_cli(&one, &["d1", "create", "shop"], "").await;
    assert!(ok && out.contains("created database shop"), "{out}{err}");
    let schema = cluster.dir().join("schema.sql");
    std::fs::write(
        &schema,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\nINSERT INTO items (name) VALUES ('apple');",
    )
    .expect("schema file");
    let (ok, out, err) =
        nimbus_cli(&three, &["d1", "execute", "shop", "--file", &schema.display().to_string()], "").await;
    assert!(ok && out.contains("ran 2 statement(s)"), "{out}{err}");
    let (ok, out, err) = nimbus_cli(
        &three,
        &["d1", "execute", "shop", "-c", "INSERT INTO items (name) VALUES (?1)", "--param", "pear"],
        "",
    )
    .await;
    assert!(ok && out.contains("1 change(s)"), "{out}{err}");
    let (ok, out, err) = nimbus_cli(
        &one,
        &[
            "--json",
            "d1",
            "execute",
            "shop",
            "-c",
            "SELECT name FROM items ORDER BY id",
            "--consistency",
            "linearizable",
        ],
        "",
    )
    .await;
    let reply: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert!(ok && rows(&reply) == vec![json!(["apple"]), json!(["pear"])], "{out}{err}");
    let (ok, out, _) = nimbus_cli(&one, &["--json", "d1", "list"], "").await;
    assert!(ok && out.contains("\"shop\""), "{out}");

    let (ok, out, err) = nimbus_cli(
        &three,
        &["d1", "shell", "shop"],
        "INSERT INTO items (name)\n VALUES ('plum');\nSELECT count(*) AS n FROM items;\nSELECT nope;\n.quit\n",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("3"), "the shell reads its own write: {out}");
    assert!(err.contains("no such column"), "an error in the shell is reported and the shell goes on: {err}");
    let (ok, _, err) = nimbus_cli(&one, &["d1", "execute", "nope", "-c", "SELECT 1"], "").await;
    assert!(!ok && err.contains("HTTP 404"), "{err}");

    // `cluster status` shows each node's part in the Raft group.
    let out = cluster.nimbus(&["--json", "cluster", "status"]).await.expect("cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let status: Value = serde_json::from_str(&out).expect("json");
    let states: Vec<&str> =
        status["nodes"].as_array().into_iter().flatten().filter_map(|n| n["d1"]["state"].as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "Leader").count(), 1, "{out}");
    assert_eq!(states.len(), 3, "{out}");
    assert!(
        status["nodes"].as_array().into_iter().flatten().all(|n| n["d1"]["commit_index"].as_u64() > Some(0)),
        "{out}"
    );
    let out = cluster.nimbus(&["cluster", "status"]).await.expect("cli");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("RAFT STATE") && out.contains("leader") && out.contains("LAG"), "{out}");
}
