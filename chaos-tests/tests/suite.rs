//! The chaos suite on a process cluster: the short profile of every scenario must hold every
//! invariant, and a deliberately broken node (D1 acknowledging writes before they commit)
//! must be caught.

use nimbus_chaos::nemesis::{self, Nemesis};
use nimbus_chaos::scenario::{self, Timing};
use nimbus_chaos::target::Target;

const SEED: u64 = 20261128;

async fn stop(target: Target) {
    if let Target::Processes(cluster) = target {
        cluster.stop().await.expect("cluster stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_profile_holds_every_invariant() {
    let mut target = scenario::process_cluster(5, &[]).await.expect("cluster starts");
    let reports = scenario::run_all(&mut target, nemesis::ALL, Timing::short(), SEED).await.expect("suite runs");
    println!("{}", scenario::table(&reports));
    assert_eq!(reports.len(), nemesis::ALL.len());
    for report in &reports {
        assert!(report.acked > 0, "{}: no write was acknowledged at all", report.scenario);
        // Queues are at least once: what was delivered twice is reported, not failed.
        for check in report.checks.iter().filter(|c| c.name.starts_with("queues:")) {
            println!("{}: {}: {}", report.scenario, check.name, check.detail);
        }
    }
    let failures = scenario::failures(&reports);
    assert!(failures.is_empty(), "violations:\n{}", failures.join("\n"));
    stop(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledging_d1_writes_before_commit_is_caught() {
    let unsafe_ack = [("NIMBUS_ADMIN__UNSAFE_ACK_D1_BEFORE_COMMIT", "true")];
    let mut target = scenario::process_cluster(3, &unsafe_ack).await.expect("cluster starts");
    let reports =
        scenario::run_all(&mut target, &[Nemesis::SplitMajority], Timing::short(), SEED).await.expect("suite runs");
    stop(target).await;
    println!("{}", scenario::table(&reports));
    let durability = reports[0]
        .checks
        .iter()
        .find(|c| c.name == "d1: acknowledged writes on every replica")
        .expect("the durability check ran");
    assert!(
        !durability.passed,
        "the checker missed writes acknowledged by a leader cut off from its quorum: {}",
        durability.detail
    );
    // The nemesis aims writes at the cut-off leader and heals only once the majority has a
    // leader of its own, so the broken build loses acknowledged writes every time.
    assert!(reports[0].lost > 0, "no acknowledged write was lost: {}", durability.detail);
}
