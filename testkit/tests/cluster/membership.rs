//! Gossip membership: join, failure detection, rejoin, partitions, graceful leave.

use super::cluster;
use std::time::Duration;

/// Failure detection bound: probe period 500 ms, suspicion 3 s, plus slack for a loaded machine.
const DETECT: Duration = Duration::from_secs(30);

fn states(view: &[(String, String)]) -> Vec<String> {
    view.iter().map(|(id, state)| format!("{id}:{state}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_find_each_other_and_detect_a_killed_node() {
    let mut cluster = cluster(5).await;
    let all_alive: Vec<String> = (1..=5).map(|i| format!("node-{i}:alive")).collect();
    for i in 0..5 {
        cluster
            .eventually(DETECT, &format!("node-{} sees all five alive", i + 1), || async {
                Ok(states(&cluster.members_seen_by(i).await?) == all_alive)
            })
            .await
            .expect("membership converges");
    }

    cluster.kill_node(2).await.expect("kill node-3");
    for i in [0, 1, 3, 4] {
        cluster
            .eventually(DETECT, "node-3 is marked down", || async {
                let view = cluster.members_seen_by(i).await?;
                Ok(view.iter().any(|(id, state)| id == "node-3" && state == "down"))
            })
            .await
            .expect("failure detected");
    }

    cluster.restart_node(2).await.expect("restart node-3");
    for i in 0..5 {
        cluster
            .eventually(DETECT, "node-3 rejoins", || async {
                Ok(states(&cluster.members_seen_by(i).await?) == all_alive)
            })
            .await
            .expect("rejoin");
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_seen_down_and_comes_back_after_heal() {
    let cluster = cluster(3).await;
    let all_alive: Vec<String> = (1..=3).map(|i| format!("node-{i}:alive")).collect();
    cluster
        .eventually(DETECT, "all alive", || async { Ok(states(&cluster.members_seen_by(0).await?) == all_alive) })
        .await
        .expect("converges");

    // Cut node-3 off from both others, in both directions.
    cluster.partition(2, &[0, 1]).await.expect("partition");
    cluster.partition(0, &[2]).await.expect("partition");
    cluster.partition(1, &[2]).await.expect("partition");
    for i in [0, 1] {
        cluster
            .eventually(DETECT, "majority sees node-3 down", || async {
                let view = cluster.members_seen_by(i).await?;
                Ok(view.iter().any(|(id, state)| id == "node-3" && state == "down"))
            })
            .await
            .expect("partition detected");
    }

    for i in 0..3 {
        cluster.partition(i, &[]).await.expect("heal");
    }
    for i in 0..3 {
        let last = std::sync::Mutex::new(Vec::new());
        let healed = cluster
            .eventually(DETECT, "all alive after heal", || async {
                let view = states(&cluster.members_seen_by(i).await?);
                let ok = view == all_alive;
                *last.lock().expect("lock") = view;
                Ok(ok)
            })
            .await;
        if let Err(e) = healed {
            panic!("node-{} after heal: {e}; last view {:?}", i + 1, last.lock().expect("lock"));
        }
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_is_marked_down_counted_and_then_forgotten() {
    let mut spec = nimbus_testkit::ClusterSpec::local(3).expect("spec");
    spec.node_env.push(("NIMBUS_GOSSIP__REMOVE_DOWN_AFTER_MS".into(), "2000".into()));
    let mut cluster = nimbus_testkit::Cluster::start(spec).await.expect("cluster starts");
    let all_alive: Vec<String> = (1..=3).map(|i| format!("node-{i}:alive")).collect();
    cluster
        .eventually(DETECT, "all alive", || async { Ok(states(&cluster.members_seen_by(0).await?) == all_alive) })
        .await
        .expect("converges");

    cluster.kill_node(2).await.expect("kill node-3");
    let metrics_url = format!("{}/metrics", cluster.nodes[0].url());
    cluster
        .eventually(DETECT, "node-1 counts node-3 down", || async {
            let text = cluster.http().get(&metrics_url).send().await?.text().await?;
            Ok(text.contains(r#"nimbus_member_changes_total{change="down"} 1"#))
        })
        .await
        .expect("down counted");
    cluster
        .eventually(DETECT, "node-3 is forgotten", || async {
            Ok(states(&cluster.members_seen_by(0).await?) == ["node-1:alive", "node-2:alive"])
        })
        .await
        .expect("removed from the member list");
    let text = cluster.http().get(&metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains(r#"nimbus_members{state="alive"} 2"#), "{text}");
    assert!(text.contains(r#"nimbus_members{state="down"} 0"#), "{text}");
    cluster.stop().await.expect("stop");
}
