//! D1's consistency defaults, as Cloudflare's: without a session every read has primary
//! semantics, so a write through one region is seen at once through another; a session may
//! read its nearest replica and still sees its own writes once it carries their bookmark.
//! Three regions with the latency matrix of the peer transport (10 ms one way between any
//! two), through REST, a Rust worker and a JavaScript worker.

use nimbus_testkit::{Cluster, ClusterSpec};
use reqwest::Method;
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

async fn three_regions() -> Cluster {
    let mut spec = ClusterSpec::local(3).expect("cluster spec");
    spec.d1_voters = 3;
    spec.regions = REGIONS.iter().map(|r| r.to_string()).collect();
    spec.node_config = Some(
        "[network]\nlinks = [\n\
         { a = \"us-east\", b = \"eu-west\", one_way_ms = 10.0 },\n\
         { a = \"us-east\", b = \"ap-south\", one_way_ms = 10.0 },\n\
         { a = \"eu-west\", b = \"ap-south\", one_way_ms = 10.0 },\n]\n"
            .into(),
    );
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.d1_wait_formed(&[0, 1, 2], 3, 0).await.expect("group forms");
    cluster
}

fn first_value(reply: &Value) -> Option<i64> {
    reply["results"][0]["rows"][0][0].as_i64()
}

/// 200 times: a write through one region, then at once through another region a read
/// without a session (must see it, served by the primary), a session continued from the
/// write's bookmark (must see it, served by the reader's own replica), and a session that
/// starts `first-unconstrained` (may be stale; counted, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_without_a_session_sees_a_write_from_another_region_at_once() {
    let cluster = three_regions().await;
    cluster.d1_create(0, "geo").await.expect("create");
    cluster.d1_exec(0, "geo", "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)").await.expect("migrate");
    let leader = cluster.d1_status(0).await.expect("status").leader.expect("a leader");

    let (mut stale_unconstrained, mut served_by_first_leader) = (0, 0);
    for i in 0..200i64 {
        let (writer, reader) = ((i % 3) as usize, ((i + 1) % 3) as usize);
        let written =
            cluster.d1_ok(writer, "geo", "INSERT INTO t (id, v) VALUES (?1, ?1)", json!([i])).await.expect("insert");
        let bookmark = written["bookmark"].as_str().expect("bookmark").to_string();
        let read = json!({ "sql": "SELECT v FROM t WHERE id = ?1", "params": [i] });

        let (status, reply) = cluster.d1_query(reader, "geo", read.clone()).await.expect("read");
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            first_value(&reply),
            Some(i),
            "write {i} through {} was not seen at once through {} without a session: {reply}",
            REGIONS[writer],
            REGIONS[reader]
        );
        assert_eq!(written["served_by_primary"], true, "{written}");
        // Served by the leader of the moment (an election under load may have moved it).
        assert_eq!(reply["served_by_primary"], true, "{reply}");
        if reply["served_by"] == json!(leader) {
            served_by_first_leader += 1;
        }
        let region = &reply["results"][0]["meta"]["served_by_region"];
        assert!(REGIONS.iter().any(|r| region == r), "meta names the serving region: {reply}");

        let mut continued = read.clone();
        continued["session"] = json!(bookmark);
        let (status, reply) = cluster.d1_query(reader, "geo", continued).await.expect("session read");
        assert_eq!(status, 200, "{reply}");
        assert_eq!(first_value(&reply), Some(i), "a session continued from the write's bookmark: {reply}");
        assert_eq!(reply["served_by"], format!("node-{}", reader + 1), "a session reads its own replica: {reply}");
        let next: u64 = reply["bookmark"].as_str().and_then(|b| b.parse().ok()).expect("bookmark");
        assert!(next >= bookmark.parse::<u64>().expect("number"), "the session's bookmark never goes back: {reply}");

        let mut unconstrained = read;
        unconstrained["session"] = json!("first-unconstrained");
        let (status, reply) = cluster.d1_query(reader, "geo", unconstrained).await.expect("unconstrained read");
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["served_by"], format!("node-{}", reader + 1), "{reply}");
        if first_value(&reply) != Some(i) {
            stale_unconstrained += 1;
        }
    }
    eprintln!("first-unconstrained reads that were stale: {stale_unconstrained} of 200");
    assert!(served_by_first_leader > 0, "the primary reads named no leader at all");

    let (status, reply) =
        cluster.d1_query(1, "geo", json!({ "sql": "SELECT 1", "session": "first-sometime" })).await.expect("call");
    assert_eq!((status, reply["kind"].as_str()), (400, Some("invalid")), "{reply}");
    let (status, reply) =
        cluster.d1_query(1, "geo", json!({ "sql": "SELECT nope FROM t", "params": [] })).await.expect("call");
    assert_eq!(
        (status, reply["kind"].as_str()),
        (400, Some("sql")),
        "an SQL error read on the primary stays one: {reply}"
    );
}

async fn send(cluster: &Cluster, node: usize, worker: &str, method: Method, path: &str, body: &str) -> (u16, String) {
    cluster.request_worker(node, worker, method, path, body.as_bytes().to_vec()).await.expect("request completes")
}

/// The same through the `d1` binding: the Rust `d1-notes` worker (`D1Database::new`, and
/// `with_session` from a header) and the JavaScript `js-d1` worker (`env.DB`, and
/// `env.DB.withSession(...)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_without_a_session_see_a_write_from_another_region_at_once() {
    let cluster = three_regions().await;
    let manifest = json!({"bindings": [{"type": "d1", "name": "DB", "database_name": "notes"}]});
    super::deploy_example(&cluster, "notes", "d1_notes", manifest).await;
    super::js::cli_deploy(&cluster, "examples/js-d1").await;
    let http = cluster.http();

    // Rust: POST through one region, GET through the next, no session.
    for i in 0..30usize {
        let (writer, reader) = (i % 3, (i + 1) % 3);
        let resp = http
            .post(format!("{}/notes", cluster.nodes[writer].url()))
            .header("host", "notes.workers.localhost")
            .body(format!("note {i}"))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 201);
        let bookmark = resp.headers()["x-d1-bookmark"].to_str().expect("bookmark").to_string();
        let id = resp.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
        let get = |session: Option<&str>| {
            let mut request = http
                .get(format!("{}/notes/{id}", cluster.nodes[reader].url()))
                .header("host", "notes.workers.localhost");
            if let Some(session) = session {
                request = request.header("x-d1-session", session);
            }
            request.send()
        };
        let resp = get(None).await.expect("get");
        assert_eq!(resp.status(), 200, "Rust worker: note {id} through another region, no session");
        let resp = get(Some(&bookmark)).await.expect("get in a session");
        assert_eq!(resp.status(), 200, "Rust worker: note {id} in a session from its bookmark");
        let returned = resp.headers()["x-d1-bookmark"].to_str().expect("bookmark").parse::<u64>().expect("number");
        assert!(returned >= bookmark.parse::<u64>().expect("number"), "the session advances");
    }

    // JavaScript: the same, through env.DB and env.DB.withSession(bookmark).
    let (status, text) = send(&cluster, 0, "js-d1", Method::POST, "/setup", "").await;
    assert_eq!(status, 200, "{text}");
    for i in 0..30usize {
        let (writer, reader) = (i % 3, (i + 1) % 3);
        let (status, text) =
            send(&cluster, writer, "js-d1", Method::POST, "/notes", &format!(r#"{{"title":"t{i}"}}"#)).await;
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).expect("json");
        let id = created["note"]["id"].as_i64().expect("id");
        assert_eq!(created["meta"]["served_by_primary"], true, "{created}");
        let bookmark = created["bookmark"].as_str().expect("bookmark").to_string();
        let resp = http
            .get(format!("{}/notes/{id}", cluster.nodes[reader].url()))
            .header("host", "js-d1.workers.localhost")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "JS worker: note {id} through another region, no session");
        assert_eq!(resp.headers()["x-d1-served-by-primary"], "true");
        let resp = http
            .get(format!("{}/notes/{id}?session={bookmark}", cluster.nodes[reader].url()))
            .header("host", "js-d1.workers.localhost")
            .send()
            .await
            .expect("get in a session");
        assert_eq!(resp.status(), 200, "JS worker: note {id} in a session from its bookmark");
        assert_eq!(resp.headers()["x-d1-served-by"], format!("node-{}", reader + 1), "a session reads its replica");
    }
    let (status, text) = send(&cluster, 1, "js-d1", Method::GET, "/notes/1?session=first-sometime", "").await;
    assert_eq!(status, 400, "a bad session constraint is an error: {text}");
}
