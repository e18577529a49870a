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
    let metrics_url = format!("{}/metrics", cluster.nodes[0].url());
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
