//! Gossip membership: join, failure detection, rejoin, partitions, graceful leave.

use super::cluster;
use nimbus_testkit::Cluster;
use std::time::Duration;

/// Failure detection bound: probe period 500 ms, suspicion 3 s, plus slack for a loaded machine.
const DETECT: Duration = Duration::from_secs(30);

fn states(view: &[(String, String)]) -> Vec<String> {
    view.iter().map(|(id, state)| format!("{id}:{state}")).collect()
}

/// Waits until node `index` lists exactly `expected` (`node-1:alive` …); on timeout the panic
/// shows the last view.
async fn sees_exactly(cluster: &Cluster, index: usize, expected: &[String], what: &str) {
    let last = std::sync::Mutex::new(Vec::new());
    let seen = cluster
        .eventually(DETECT, what, || async {
            let view = states(&cluster.members_seen_by(index).await?);
            let ok = view == expected;
            *last.lock().expect("lock") = view;
            Ok(ok)
        })
        .await;
    if let Err(e) = seen {
        panic!("node-{}: {e}; last view {:?}", index + 1, last.lock().expect("lock"));
    }
}

/// Waits until node `index` lists `node` as down.
async fn sees_down(cluster: &Cluster, index: usize, node: &str, what: &str) {
    cluster
        .eventually(DETECT, what, || async {
            let view = cluster.members_seen_by(index).await?;
            Ok(view.iter().any(|(id, state)| id == node && state == "down"))
        })
        .await
        .expect(what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_find_each_other_and_detect_a_killed_node() {
    let mut cluster = cluster(5).await;
    let all_alive: Vec<String> = (1..=5).map(|i| format!("node-{i}:alive")).collect();
    for i in 0..5 {
        sees_exactly(&cluster, i, &all_alive, "membership converges").await;
    }

    cluster.kill_node(2).await.expect("kill node-3");
    for i in [0, 1, 3, 4] {
        sees_down(&cluster, i, "node-3", "failure detected").await;
    }

    cluster.restart_node(2).await.expect("restart node-3");
    for i in 0..5 {
        sees_exactly(&cluster, i, &all_alive, "node-3 rejoins").await;
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_seen_down_and_comes_back_after_heal() {
    let cluster = cluster(3).await;
    let all_alive: Vec<String> = (1..=3).map(|i| format!("node-{i}:alive")).collect();
    sees_exactly(&cluster, 0, &all_alive, "all alive").await;

    // Cut node-3 off from both others, in both directions.
    cluster.partition(2, &[0, 1]).await.expect("partition");
    cluster.partition(0, &[2]).await.expect("partition");
    cluster.partition(1, &[2]).await.expect("partition");
    for i in [0, 1] {
        sees_down(&cluster, i, "node-3", "majority sees node-3 down").await;
    }

    for i in 0..3 {
        cluster.partition(i, &[]).await.expect("heal");
    }
    for i in 0..3 {
        sees_exactly(&cluster, i, &all_alive, "all alive after heal").await;
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_is_marked_down_counted_and_then_forgotten() {
    let mut spec = nimbus_testkit::ClusterSpec::local(3).expect("spec");
    spec.node_env.push(("NIMBUS_GOSSIP__REMOVE_DOWN_AFTER_MS".into(), "2000".into()));
    let mut cluster = Cluster::start(spec).await.expect("cluster starts");
    let all_alive: Vec<String> = (1..=3).map(|i| format!("node-{i}:alive")).collect();
    sees_exactly(&cluster, 0, &all_alive, "all alive").await;

    cluster.kill_node(2).await.expect("kill node-3");
    let metrics_url = format!("{}/metrics", cluster.nodes[0].api_url());
    cluster
        .eventually(DETECT, "node-1 counts node-3 down", || async {
            let text = cluster.http().get(&metrics_url).send().await?.text().await?;
            Ok(text.contains(r#"nimbus_member_changes_total{change="down"} 1"#))
        })
        .await
        .expect("down counted");
    let survivors = ["node-1:alive".to_string(), "node-2:alive".to_string()];
    sees_exactly(&cluster, 0, &survivors, "node-3 is removed from the member list").await;
    let text = cluster.http().get(&metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains(r#"nimbus_members{state="alive"} 2"#), "{text}");
    assert!(text.contains(r#"nimbus_members{state="down"} 0"#), "{text}");
    cluster.stop().await.expect("stop");
}

/// `GET /v1/admin/faults` on node `index`.
async fn faults_of(cluster: &Cluster, index: usize) -> serde_json::Value {
    let url = format!("{}/v1/admin/faults", cluster.nodes[index].api_url());
    cluster.http().get(url).send().await.expect("faults").json().await.expect("faults json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_matrix_shapes_only_links_between_regions() {
    let mut spec = nimbus_testkit::ClusterSpec::local(3).expect("spec");
    spec.regions = vec!["near".into(), "near".into(), "far".into()];
    spec.node_config = Some("[network]\nlinks = [{ a = \"near\", b = \"far\", one_way_ms = 25.0 }]\n".into());
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.wait_membership(DETECT).await.expect("membership settles across the delay");

    // node-3 is alone in `far`: every datagram it sends crosses the matrix, at 25 ms each.
    let what = "node-3 delays its gossip and Raft calls";
    cluster
        .eventually(DETECT, what, || async {
            let shaped = &faults_of(&cluster, 2).await["shaped"];
            let datagrams = shaped["datagrams_delayed"].as_u64().unwrap_or(0);
            let calls = shaped["calls_delayed"].as_u64().unwrap_or(0);
            let delay = shaped["delay_ms"].as_f64().unwrap_or(0.0);
            assert!(delay + 1e-6 >= 25.0 * (datagrams + 2 * calls) as f64, "every sample is ≥ 25 ms: {shaped}");
            Ok(datagrams > 0)
        })
        .await
        .expect("node-3 shapes");
    // Raft traffic between the regions goes through shaped gRPC channels on some node.
    cluster
        .eventually(DETECT, "a Raft call crosses the matrix", || async {
            let mut calls = 0;
            for i in 0..3 {
                calls += faults_of(&cluster, i).await["shaped"]["calls_delayed"].as_u64().unwrap_or(0);
            }
            Ok(calls > 0)
        })
        .await
        .expect("gRPC shaped");
    // node-1 shapes what it sends to node-3 (its link to node-2 is clear: the unit tests of
    // `membership::faults` pin down which links the matrix covers).
    let before = faults_of(&cluster, 0).await["shaped"]["datagrams_delayed"].as_u64().unwrap_or(0);
    assert!(before > 0, "node-1 sends to node-3 through the matrix");

    // A loss spike on node-1: its datagrams are dropped and counted.
    cluster.set_faults(0, &[], serde_json::json!({"loss": 1.0})).await.expect("spike");
    cluster
        .eventually(DETECT, "node-1 loses datagrams", || async {
            Ok(faults_of(&cluster, 0).await["shaped"]["datagrams_lost"].as_u64().unwrap_or(0) > 0)
        })
        .await
        .expect("loss");
    let refused = cluster
        .http()
        .post(format!("{}/v1/admin/faults", cluster.nodes[0].api_url()))
        .json(&serde_json::json!({"spike": {"loss": 2.0}}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 400, "a loss over 1 is refused");
    cluster.set_faults(0, &[], serde_json::json!({})).await.expect("clear");
    cluster.wait_membership(DETECT).await.expect("membership after the spike");
    cluster.stop().await.expect("stop");
}
