//! Durable Objects: one counter incremented concurrently through every node, an owner killed
//! mid-stream (with an alarm pending), an owner partitioned away, a node joining, alarms
//! retried, hibernation, and bad input.
//!
//! A counter is the check for "one live instance": every acknowledged increment answers the
//! value it produced, so two owners serving the same object at once would hand out the same
//! value twice. Every test asserts the values are distinct and the final value counts them.

use super::deploy_example;
use futures::{stream, StreamExt};
use nimbus_testkit::{Cluster, ClusterSpec};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

/// A cluster with fast failure detection, do-counter deployed as `counter`, membership settled.
async fn do_cluster(nodes: usize, env: &[(&str, &str)]) -> Cluster {
    let mut spec = ClusterSpec::local(nodes).expect("cluster spec");
    spec.node_env.push(("NIMBUS_GOSSIP__PROBE_PERIOD_MS".into(), "200".into()));
    spec.node_env.push(("NIMBUS_GOSSIP__SUSPECT_TO_DOWN_MS".into(), "1000".into()));
    for (k, v) in env {
        spec.node_env.push((k.to_string(), v.to_string()));
    }
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.wait_membership(SETTLE).await.expect("membership settles");
    let manifest = json!({"bindings": [{"type": "durable_object", "name": "COUNTER", "class_name": "Counter"}]});
    deploy_example(&cluster, "counter", "do_counter", manifest).await;
    cluster
}

/// `GET /<path>` on node `index`: the status and trimmed body.
async fn get(cluster: &Cluster, index: usize, path: &str) -> (u16, String) {
    let (status, body) = cluster.get_worker(index, "counter", path).await.unwrap_or((0, "no response".into()));
    (status, body.trim().to_string())
}

async fn post(cluster: &Cluster, index: usize, path: &str) -> (u16, String) {
    let (status, body) = cluster
        .request_worker(index, "counter", reqwest::Method::POST, path, Vec::new())
        .await
        .unwrap_or((0, "no response".into()));
    (status, body.trim().to_string())
}

/// The id of counter `name` (the worker's hex id of it), read from the node that runs it.
async fn id_of(cluster: &Cluster, name: &str) -> String {
    let before: BTreeSet<String> = live_ids(cluster).await;
    assert_eq!(get(cluster, 0, &format!("/{name}/value")).await.0, 200);
    let after = live_ids(cluster).await;
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(new.len(), 1, "reading {name} activated exactly one object: {new:?}");
    new[0].clone()
}

async fn live_ids(cluster: &Cluster) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in (0..cluster.nodes.len()).filter(|i| cluster.nodes[*i].is_running()) {
        ids.extend(cluster.durable_status(i).await.expect("status").live.into_iter().map(|o| o.id));
    }
    ids
}

/// Increments `name` `count` times through `nodes` (round robin, `parallel` at once); the
/// values of the acknowledged increments.
async fn increments(cluster: &Cluster, nodes: &[usize], name: &str, count: usize, parallel: usize) -> Vec<u64> {
    stream::iter(0..count)
        .map(|i| {
            let node = nodes[i % nodes.len()];
            async move {
                match get(cluster, node, &format!("/{name}")).await {
                    (200, body) => Some(body.parse::<u64>().expect("a count")),
                    _ => None,
                }
            }
        })
        .buffer_unordered(parallel)
        .filter_map(|v| async move { v })
        .collect()
        .await
}

/// Asserts every acknowledged increment got its own value.
fn distinct(values: &[u64]) -> BTreeSet<u64> {
    let set: BTreeSet<u64> = values.iter().copied().collect();
    assert_eq!(set.len(), values.len(), "two increments answered the same value: two owners served the object");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_through_every_node_lose_nothing_and_activate_once() {
    let cluster = do_cluster(3, &[]).await;
    let id = id_of(&cluster, "shared").await;
    let values = increments(&cluster, &[0, 1, 2], "shared", 300, 12).await;
    assert_eq!(values.len(), 300, "every increment was acknowledged");
    let seen = distinct(&values);
    assert_eq!(seen, (1..=300).collect::<BTreeSet<u64>>(), "no lost update");
    assert_eq!(get(&cluster, 2, "/shared/value").await, (200, "300".to_string()));
    let live = cluster.durable_live_on(&id).await.expect("live");
    assert_eq!(live.len(), 1, "one live instance: {live:?}");
    let mut activations = 0;
    for i in 0..3 {
        activations += cluster.durable_status(i).await.expect("status").activations;
    }
    assert_eq!(activations, 1, "the object was activated once, on its owner");
    let owner = live[0].0;
    let metrics =
        cluster.http().get(format!("{}/metrics", cluster.nodes[owner].api_url())).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics body");
    assert!(metrics.lines().any(|l| l == "nimbus_durable_objects_live 1"), "{metrics}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_with_every_acknowledged_write_and_its_alarm_fires_once() {
    let mut cluster = do_cluster(4, &[]).await;
    let id = id_of(&cluster, "k").await;
    let owner = cluster.durable_live_on(&id).await.expect("live")[0].0;
    let others: Vec<usize> = (0..4).filter(|i| *i != owner).collect();
    let (status, _) = post(&cluster, others[0], "/k/alarm?in_ms=6000").await;
    assert_eq!(status, 200, "alarm set");

    let mut acked = increments(&cluster, &others, "k", 20, 4).await;
    assert_eq!(acked.len(), 20);
    // Kill the owner while increments stream in through the other nodes.
    let pid = cluster.nodes[owner].pid().expect("owner pid");
    let (during, ()) = tokio::join!(increments(&cluster, &others, "k", 60, 4), async {
        cluster
            .eventually(SETTLE, "the stream is under way", || async {
                Ok(get(&cluster, others[1], "/k/value").await.1.parse::<u64>().unwrap_or(0) >= 30)
            })
            .await
            .expect("stream");
        let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
        assert!(killed.success());
    });
    cluster.kill_node(owner).await.expect("reap the owner");
    acked.extend(during);
    acked.extend(increments(&cluster, &others, "k", 20, 4).await);
    assert!(acked.len() >= 60, "only {} of 100 increments were acknowledged", acked.len());
    distinct(&acked);
    let max = *acked.iter().max().expect("values");
    let (status, value) = get(&cluster, others[1], "/k/value").await;
    assert_eq!(status, 200, "{value}");
    let value: u64 = value.parse().expect("count");
    assert!(value >= max, "value {value} is below an acknowledged {max}: a write was lost");
    assert!(value <= 100, "value {value} counts more increments than were sent");
    let live = cluster.durable_live_on(&id).await.expect("live");
    assert_eq!(live.len(), 1, "live on exactly one survivor: {live:?}");
    assert_ne!(live[0].0, owner);

    cluster
        .eventually(SETTLE, "the alarm fires on the new owner", || async {
            Ok(get(&cluster, others[2], "/k/fired").await == (200, "1 none".to_string()))
        })
        .await
        .expect("alarm");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_stops_serving_and_the_majority_side_serves() {
    let cluster = do_cluster(3, &[("NIMBUS_DURABLE__REQUEST_TIMEOUT_MS", "3000")]).await;
    let id = id_of(&cluster, "p").await;
    let mut acked = increments(&cluster, &[0, 1, 2], "p", 15, 3).await;
    let owner = cluster.durable_live_on(&id).await.expect("live")[0].0;
    let majority: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    cluster.partition(owner, &majority).await.expect("cut the owner off");
    for &i in &majority {
        cluster.partition(i, &[owner]).await.expect("cut the owner off");
    }
    cluster
        .eventually(SETTLE, "the isolated owner sees it has no majority", || async {
            Ok(!cluster.durable_status(owner).await?.has_majority)
        })
        .await
        .expect("minority");
    cluster
        .eventually(SETTLE, "the isolated owner stops the object", || async {
            Ok(cluster.durable_status(owner).await?.live.is_empty())
        })
        .await
        .expect("stopped");
    let (status, body) = get(&cluster, owner, "/p").await;
    assert_eq!(status, 503, "the minority side refuses: {body}");

    acked.extend(increments(&cluster, &majority, "p", 30, 3).await);
    assert_eq!(acked.len(), 45, "the majority side serves every increment");
    let live = cluster.durable_live_on(&id).await.expect("live");
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(majority.contains(&live[0].0));

    for i in 0..3 {
        cluster.partition(i, &[]).await.expect("heal");
    }
    cluster.wait_membership(SETTLE).await.expect("healed");
    acked.extend(increments(&cluster, &[0, 1, 2], "p", 15, 3).await);
    assert_eq!(acked.len(), 60);
    let seen = distinct(&acked);
    assert_eq!(seen, (1..=60).collect::<BTreeSet<u64>>(), "no lost and no doubled update");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_over_objects_with_their_data() {
    let mut cluster = do_cluster(3, &[]).await;
    let names: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    for name in &names {
        for expected in 1..=2u64 {
            assert_eq!(get(&cluster, 0, &format!("/{name}")).await, (200, expected.to_string()));
        }
    }
    let joined = cluster.add_node().await.expect("node-4 joins");
    cluster.wait_membership(SETTLE).await.expect("everyone sees node-4");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(get(&cluster, i % 4, &format!("/{name}")).await, (200, "3".to_string()), "{name} kept counting");
    }
    let moved = cluster.durable_status(joined).await.expect("status").live.len();
    assert!(moved > 0, "node-4 now owns some of the 24 objects");
    cluster
        .eventually(SETTLE, "each object is live on one node only", || async {
            let mut live = 0;
            for i in 0..4 {
                live += cluster.durable_status(i).await?.live.len();
            }
            Ok(live == names.len())
        })
        .await
        .expect("one instance each");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_retry_with_backoff_and_idle_objects_hibernate() {
    let cluster =
        do_cluster(3, &[("NIMBUS_DURABLE__ALARM_RETRY_MS", "50"), ("NIMBUS_DURABLE__IDLE_EVICT_MS", "1500")]).await;
    assert_eq!(post(&cluster, 1, "/a/alarm?in_ms=100&fail=2").await.0, 200);
    cluster
        .eventually(SETTLE, "the alarm succeeds on its third attempt", || async {
            Ok(get(&cluster, 2, "/a/fired").await == (200, "1 none".to_string()))
        })
        .await
        .expect("alarm");

    for expected in 1..=3u64 {
        assert_eq!(get(&cluster, 0, "/h").await, (200, expected.to_string()));
    }
    cluster
        .eventually(SETTLE, "every idle object is evicted", || async { Ok(live_ids(&cluster).await.is_empty()) })
        .await
        .expect("hibernation");
    assert_eq!(get(&cluster, 1, "/h").await, (200, "4".to_string()), "re-created with its storage");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let cluster = do_cluster(3, &[]).await;
    assert_eq!(get(&cluster, 0, "/b").await, (200, "1".to_string()));

    let (status, body) = get(&cluster, 1, "/id/not-hex/value").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a Durable Object id"), "{body}");
    let (status, body) = get(&cluster, 1, &format!("/id/{}/value", "ab".repeat(32))).await;
    assert_eq!(status, 400, "an id from no namespace of ours: {body}");
    assert!(body.contains("does not belong"), "{body}");

    let (status, body) = post(&cluster, 2, "/b/big").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("over the limit"), "{body}");
    let (status, body) = post(&cluster, 0, "/b/txn-fail").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("gives up"), "{body}");
    assert_eq!(get(&cluster, 1, "/b/value").await, (200, "1".to_string()), "nothing was written");

    // A binding to a class the component does not define.
    let manifest = json!({"bindings": [{"type": "durable_object", "name": "COUNTER", "class_name": "Ghost"}]});
    deploy_example(&cluster, "ghost", "do_counter", manifest).await;
    let (status, body) = cluster.get_worker(0, "ghost", "/x").await.expect("request");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("no Durable Object class `Ghost`"), "{body}");

    // A manifest binding a class, with a component that exports no Durable Object handlers.
    let hello = nimbus_testkit::examples::wasm_bytes("hello").expect("hello");
    let resp = cluster.deploy("nodo", &hello, manifest_for("Counter")).await.expect("call");
    assert_eq!(resp.status, 400, "{:?}", resp.body);
    assert!(resp.body["error"].as_str().unwrap_or("").contains("does not export"), "{:?}", resp.body);
    cluster.stop().await.expect("stop");
}

fn manifest_for(class: &str) -> serde_json::Value {
    json!({"bindings": [{"type": "durable_object", "name": "COUNTER", "class_name": class}]})
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client for room `room` of the `chat` worker, connected through node `index`.
async fn join(cluster: &Cluster, index: usize, room: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/room/{room}", cluster.nodes[index].http);
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("host", "chat.workers.localhost".parse().expect("host"));
    let (client, response) = tokio_tungstenite::connect_async(request).await.expect("the upgrade succeeds");
    assert_eq!(response.status().as_u16(), 101);
    client
}

/// The next text frame a client receives.
async fn next_text(client: &mut Client) -> String {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(SETTLE, client.next()).await.expect("a message in time");
        match message.expect("the socket stays open").expect("a frame") {
            Message::Text(text) => return text.to_string(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_room_reaches_everyone_through_any_node_and_survives_hibernation() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut spec = ClusterSpec::local(3).expect("cluster spec");
    spec.node_env.push(("NIMBUS_DURABLE__IDLE_EVICT_MS".into(), "1000".into()));
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.wait_membership(SETTLE).await.expect("membership settles");
    let manifest = json!({"bindings": [{"type": "durable_object", "name": "ROOMS", "class_name": "Room"}]});
    deploy_example(&cluster, "chat", "do_chat", manifest).await;

    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(join(&cluster, i, "lobby").await);
    }
    let (status, members) = cluster.get_worker(1, "chat", "/room/lobby/members").await.expect("members");
    assert_eq!((status, members.trim()), (200, "3"));
    for i in 0..3 {
        clients[i].send(Message::Text(format!("hello from {i}").into())).await.expect("send");
        for client in clients.iter_mut() {
            assert_eq!(next_text(client).await, format!("hello from {i}"), "every client gets every message, in order");
        }
    }

    // Nobody speaks: the room is evicted, its sockets stay connected.
    cluster
        .eventually(SETTLE, "the idle room is evicted", || async { Ok(live_ids(&cluster).await.is_empty()) })
        .await
        .expect("hibernation");
    let mut sockets = 0;
    for i in 0..3 {
        sockets += cluster.durable_status(i).await.expect("status").websockets;
    }
    assert_eq!(sockets, 3, "the sockets outlive the instance");
    clients[2].send(Message::Text("wake up".into())).await.expect("send");
    for client in clients.iter_mut() {
        assert_eq!(next_text(client).await, "wake up");
    }
    let (_, history) = cluster.get_worker(0, "chat", "/room/lobby/history").await.expect("history");
    assert_eq!(history.lines().collect::<Vec<_>>(), ["hello from 0", "hello from 1", "hello from 2", "wake up"]);
    cluster.stop().await.expect("stop");
}

/// A successor killed, the object written on without it, then restarted with its first
/// membership view held back (a debug-build knob): requests sent to it in that window must
/// be refused (503) or forwarded to the owner, never answered from its stale copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_holder_answers_nothing_from_its_stale_copy_before_it_knows_the_cluster() {
    let mut cluster = do_cluster(3, &[]).await;
    let id = id_of(&cluster, "r").await;
    let owner = cluster.durable_live_on(&id).await.expect("live")[0].0;
    let successor = (0..3).find(|i| *i != owner).expect("a successor");
    let mut acked = increments(&cluster, &[owner], "r", 20, 2).await;
    assert_eq!(acked.len(), 20);
    cluster.kill_node(successor).await.expect("kill the successor");
    // Written on without it: its copy stays at 20 while the object moves past it.
    // (The first ones wait for the owner to see the successor gone and move its epoch.)
    for _ in 0..60 {
        if acked.iter().filter(|v| **v > 20).count() >= 20 {
            break;
        }
        acked.extend(increments(&cluster, &[owner], "r", 10, 2).await);
    }
    assert!(acked.iter().filter(|v| **v > 20).count() >= 20, "the object was not written on without its successor");
    cluster
        .restart_node_with(successor, &[("NIMBUS_ADMIN__UNSAFE_HOLD_DURABLE_VIEW_MS", "3000")])
        .await
        .expect("restart with the view held back");
    let mut refused = 0;
    for _ in 0..5 {
        match get(&cluster, successor, "/r").await {
            (200, body) => acked.push(body.parse::<u64>().expect("a count")),
            (503, _) => refused += 1,
            other => panic!("the restarted holder answered {other:?}"),
        }
    }
    acked.extend(increments(&cluster, &[owner, successor], "r", 10, 2).await);
    distinct(&acked);
    let max = *acked.iter().max().expect("values");
    let (status, value) = get(&cluster, owner, "/r/value").await;
    assert_eq!(status, 200, "{value}");
    assert!(value.parse::<u64>().expect("count") >= max, "value {value} is below an acknowledged {max}");
    println!("{} acknowledged, {refused} of 5 refused while the restarted holder had no view", acked.len());
    cluster.stop().await.expect("stop");
}
