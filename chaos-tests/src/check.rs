//! The checkers: each reads the history and the healed cluster's final state and gives a
//! verdict. "Lost" counts acknowledged writes the final state does not show.

use crate::api::Api;
use crate::history::{Op, OpKind, Outcome};
use crate::linearizable::{self, Verdict};
use crate::nemesis::Outage;
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Availability below this on the surviving nodes is a violation.
pub const MIN_AVAILABILITY: f64 = 0.95;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
        Check { name, passed, detail: detail.into() }
    }
}

/// Polls `probe` until it yields a value, or fails after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// D1: every acknowledged write is in the ledger on every replica, the replicas agree, the
/// registers' `linearizable` reads linearize, and `bookmark` reads see the client's own write.
/// Returns the checks and the number of acknowledged writes lost.
pub async fn d1(api: &Api, urls: &[String], db: &str, ops: &[Op]) -> Result<(Vec<Check>, usize)> {
    let mut checks = Vec::new();
    // A barrier write through any node; its bookmark covers everything committed before it.
    let barrier = until(Duration::from_secs(60), "a D1 write after the heal", || async {
        let mut last = String::new();
        for url in urls {
            let answer = api.d1(url, db, json!({"sql": "INSERT INTO ledger (v) VALUES (-1)"})).await;
            if answer.status() == Some(200) {
                if let Some(b) = answer.json().and_then(|v| v["bookmark"].as_str().and_then(|b| b.parse::<u64>().ok()))
                {
                    return Ok(Some(b));
                }
            }
            last = format!("{url}: {}", answer.describe());
        }
        Err(anyhow!("the last answer: {last}"))
    })
    .await;
    let barrier = match barrier {
        Ok(barrier) => barrier,
        Err(e) => bail!("{e}; each node's view of the D1 group: {}", d1_views(api, urls).await),
    };
    let acked: BTreeSet<i64> =
        ops.iter().filter(|o| o.kind == OpKind::D1Write && o.outcome == Outcome::Ok).filter_map(|o| o.value).collect();
    let mut lost_anywhere: BTreeSet<i64> = BTreeSet::new();
    let mut checksums = BTreeSet::new();
    for url in urls {
        let ledger: BTreeSet<i64> = until(Duration::from_secs(30), "the ledger at the barrier", || async {
            let answer = api
                .d1(
                    url,
                    db,
                    json!({"sql": "SELECT v FROM ledger", "consistency": "bookmark", "bookmark": barrier.to_string()}),
                )
                .await;
            let Some(reply) = answer.json().filter(|_| answer.status() == Some(200)) else { return Ok(None) };
            let rows = reply["results"][0]["rows"].as_array().cloned().unwrap_or_default();
            Ok(Some(rows.iter().filter_map(|r| r[0].as_i64()).collect()))
        })
        .await?;
        lost_anywhere.extend(acked.difference(&ledger).copied());
        let checksum = api.d1_checksum(url, db).await?;
        if checksum["applied_index"].as_u64().unwrap_or(0) >= barrier {
            checksums.insert(checksum["checksum"].to_string());
        }
    }
    let lost = lost_anywhere.len();
    checks.push(Check::new(
        "d1: acknowledged writes on every replica",
        lost == 0,
        if lost == 0 {
            format!("{} acknowledged writes, all on {} replicas", acked.len(), urls.len())
        } else {
            format!(
                "{lost} of {} acknowledged writes missing, e.g. {:?}",
                acked.len(),
                lost_anywhere.iter().take(5).collect::<Vec<_>>()
            )
        },
    ));
    checks.push(Check::new(
        "d1: replicas identical",
        checksums.len() <= 1,
        format!("{} distinct checksum(s) at the barrier", checksums.len()),
    ));

    let verdicts = linearizable::check_history(ops);
    let bad: Vec<String> = verdicts
        .iter()
        .filter_map(|(key, v)| match v {
            Verdict::Violation(why) => Some(format!("{key}: {why}")),
            Verdict::Linearizable => None,
        })
        .collect();
    let reads = ops.iter().filter(|o| o.kind == OpKind::D1Read && o.outcome == Outcome::Ok).count();
    checks.push(Check::new(
        "d1: linearizable reads",
        bad.is_empty(),
        if bad.is_empty() {
            format!("{} registers, {reads} reads: linearizable", verdicts.len())
        } else {
            bad.join("; ")
        },
    ));

    checks.push(own_writes_check(ops, OpKind::D1BookmarkRead, "d1: bookmark reads see own writes", "bookmark"));
    checks.push(own_writes_check(
        ops,
        OpKind::D1PrimaryRead,
        "d1: reads without a session see own writes",
        "session-less",
    ));
    Ok((checks, lost))
}

/// Each node's view of the D1 group in one line, for a report that D1 made no progress.
async fn d1_views(api: &Api, urls: &[String]) -> String {
    let mut views = Vec::new();
    for url in urls {
        views.push(match api.d1_status(url).await {
            Ok(v) => format!(
                "{url}: {} term {} leader {} commit {} applied {} voters {}",
                v["state"], v["term"], v["leader"], v["commit_index"], v["applied_index"], v["voters"]
            ),
            Err(e) => format!("{url}: {e}"),
        });
    }
    views.join("; ")
}

/// Read-your-writes: every answered read of `kind` returned the value its client had just
/// written (and seen acknowledged) on another node.
fn own_writes_check(ops: &[Op], kind: OpKind, name: &'static str, what: &str) -> Check {
    let reads: Vec<&Op> = ops.iter().filter(|o| o.kind == kind && o.outcome == Outcome::Ok).collect();
    let stale: Vec<String> = reads
        .iter()
        .filter(|o| o.result != o.value)
        .map(|o| format!("{} wrote {:?}, read {:?} (write's bookmark {:?})", o.key, o.value, o.result, o.bookmark))
        .collect();
    let detail = if stale.is_empty() { format!("{} {what} reads", reads.len()) } else { stale.join("; ") };
    Check::new(name, stale.is_empty(), detail)
}

/// KV: after the heal the replicas converge (the time it took is returned); then every key
/// holds the value of its highest-versioned acknowledged write (a delete: absent) on every
/// node, unless a write of unknown outcome may have overtaken it.
pub async fn kv(api: &Api, urls: &[String], namespace: &str, ops: &[Op]) -> Result<(Vec<Check>, usize, Duration)> {
    let started = Instant::now();
    let converged = until(Duration::from_secs(90), "KV replicas converge", || async {
        let mut summaries = BTreeSet::new();
        for url in urls {
            let summary = api.kv_summary(url).await?;
            summaries.insert((summary.entries, summary.digest));
        }
        Ok((summaries.len() == 1).then_some(()))
    })
    .await;
    let took = started.elapsed();
    let mut checks = vec![Check::new(
        "kv: replicas converge after the heal",
        converged.is_ok(),
        match &converged {
            Ok(()) => format!("identical digests on {} nodes after {:.1} s", urls.len(), took.as_secs_f64()),
            Err(e) => e.to_string(),
        },
    )];

    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| matches!(o.kind, OpKind::KvPut | OpKind::KvDelete)) {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut wrong = Vec::new();
    let mut lost = 0;
    for (key, ops) in &by_key {
        let winner = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.version.is_some())
            .max_by(|a, b| a.version.cmp(&b.version));
        let Some(winner) = winner else { continue };
        let expected = match winner.kind {
            OpKind::KvPut => winner.value.map(|v| v.to_string()),
            _ => None,
        };
        // A write of unknown outcome may carry a higher version than every acknowledged one.
        let mut allowed: Vec<Option<String>> = vec![expected.clone()];
        for op in ops.iter().filter(|o| o.outcome == Outcome::Unknown) {
            allowed.push(if op.kind == OpKind::KvPut { op.value.map(|v| v.to_string()) } else { None });
        }
        for url in urls {
            let actual = api.kv_get(url, namespace, key).await?;
            if !allowed.contains(&actual) {
                lost += 1;
                let what = if expected.is_none() { "deleted key came back" } else { "acknowledged write lost" };
                wrong.push(format!("{key} on {url}: {what}: {actual:?}, expected {expected:?}"));
            }
        }
    }
    checks.push(Check::new(
        "kv: last acknowledged write wins, nothing deleted returns",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{} keys checked on {} nodes", by_key.len(), urls.len())
        } else {
            wrong.join("; ")
        },
    ));
    Ok((checks, lost, took))
}

/// Durable Object counter: the acknowledged values are distinct (two live instances would hand
/// one out twice), the final count lies between the acknowledged increments and those plus
/// the unknown ones, and the object ends up live on exactly one node.
pub async fn counter(api: &Api, urls: &[String], name: &str, id: &str, ops: &[Op]) -> Result<(Vec<Check>, usize)> {
    let incs: Vec<&Op> = ops.iter().filter(|o| o.kind == OpKind::Increment).collect();
    let acked: Vec<i64> = incs.iter().filter(|o| o.outcome == Outcome::Ok).filter_map(|o| o.result).collect();
    let unknown = incs.iter().filter(|o| o.outcome == Outcome::Unknown).count() as i64;
    let distinct: BTreeSet<i64> = acked.iter().copied().collect();
    let mut checks = vec![Check::new(
        "do: every acknowledged increment got its own value",
        distinct.len() == acked.len(),
        format!("{} acknowledged, {} distinct values", acked.len(), distinct.len()),
    )];
    let final_value: i64 = until(Duration::from_secs(60), "the counter's value", || async {
        for url in urls {
            let answer = api.worker(url, "counter", &format!("/{name}/value")).await;
            if answer.status() == Some(200) {
                if let crate::api::Answer::Reply { body, .. } = &answer {
                    return Ok(body.trim().parse().ok());
                }
            }
        }
        Ok(None)
    })
    .await?;
    let n = acked.len() as i64;
    let max = acked.iter().copied().max().unwrap_or(0);
    let lost = (n - final_value).max(0) as usize;
    checks.push(Check::new(
        "do: count = acknowledged increments",
        final_value >= n && final_value <= n + unknown && final_value >= max,
        format!("final {final_value}; acknowledged {n}, unknown {unknown}, largest value handed out {max}"),
    ));
    let live = until(Duration::from_secs(30), "one live instance", || async {
        let mut holders = Vec::new();
        for url in urls {
            let status = api.durable_status(url).await?;
            if status.live.iter().any(|o| o.id == id) {
                holders.push(url.clone());
            }
        }
        Ok((holders.len() == 1).then_some(holders))
    })
    .await;
    checks.push(Check::new(
        "do: one live instance",
        live.is_ok(),
        match live {
            Ok(holders) => format!("live on {}", holders.join(", ")),
            Err(e) => e.to_string(),
        },
    ));
    Ok((checks, lost))
}

/// Workers: the share of hello requests answered by nodes the nemesis had not taken out.
pub fn availability(ops: &[Op], outages: &[Outage]) -> (Check, f64) {
    let served_by_survivor =
        |op: &&Op| !outages.iter().any(|o| o.node == op.node && op.start >= o.from && op.start <= o.to);
    let hello: Vec<&Op> = ops.iter().filter(|o| o.kind == OpKind::Hello).filter(served_by_survivor).collect();
    let ok = hello.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let share = if hello.is_empty() { 1.0 } else { ok as f64 / hello.len() as f64 };
    let check = Check::new(
        "workers: served by the survivors",
        share >= MIN_AVAILABILITY,
        format!("{ok} of {} hello requests to surviving nodes answered ({:.1} %)", hello.len(), share * 100.0),
    );
    (check, share)
}

/// Finds the id of the counter object `name`: activates it and looks for the new live id.
pub async fn counter_id(api: &Api, urls: &[String], name: &str) -> Result<(String, usize)> {
    let live = |api: Api, urls: Vec<String>| async move {
        let mut ids = BTreeSet::new();
        for (i, url) in urls.iter().enumerate() {
            for object in api.durable_status(url).await?.live {
                ids.insert((object.id, i));
            }
        }
        anyhow::Ok(ids)
    };
    let before = live(api.clone(), urls.to_vec()).await?;
    let url = urls.first().ok_or_else(|| anyhow!("no nodes"))?;
    let answer = api.worker(url, "counter", &format!("/{name}/value")).await;
    if answer.status() != Some(200) {
        bail!("activating counter {name}: {}", answer.describe());
    }
    let after = live(api.clone(), urls.to_vec()).await?;
    let new: Vec<&(String, usize)> = after.difference(&before).collect();
    match new.as_slice() {
        [(id, node)] => Ok((id.clone(), *node)),
        other => bail!("activating {name} made {} objects live: {other:?}", other.len()),
    }
}

/// R2: every answered read is whole and linearizes against its key's writes (one writer per
/// key, so the writes are in its order: a read returns the last write acknowledged before it
/// began, or one that overlapped it), and after the heal every node serves each key's last
/// acknowledged write (or a later one of unknown outcome).
pub async fn r2(api: &Api, urls: &[String], bucket: &str, ops: &[Op]) -> Result<(Vec<Check>, usize)> {
    let mut by_key: BTreeMap<&str, (Vec<&Op>, Vec<&Op>)> = BTreeMap::new();
    for op in ops {
        match op.kind {
            OpKind::R2Put => by_key.entry(op.key.as_str()).or_default().0.push(op),
            OpKind::R2Get if op.outcome == Outcome::Ok => by_key.entry(op.key.as_str()).or_default().1.push(op),
            _ => {}
        }
    }
    let (mut torn, mut stale, mut reads) = (Vec::new(), Vec::new(), 0);
    let mut lost = 0;
    let mut final_wrong = Vec::new();
    for (key, (writes, gets)) in &by_key {
        let mut writes = writes.clone();
        writes.sort_by_key(|w| w.start);
        for read in gets {
            reads += 1;
            if read.result == Some(crate::workload::TORN) {
                torn.push(format!("{key} read through node {} at {:?}", read.node, read.start));
                continue;
            }
            // The latest write acknowledged before the read began: the read may return it, a
            // later write that started before the read ended, or any write of unknown outcome
            // (it may take effect at any time after it started).
            let floor = writes.iter().rposition(|w| w.outcome == Outcome::Ok && w.end < read.start);
            let mut allowed: Vec<Option<i64>> = writes
                .iter()
                .enumerate()
                .filter(|(i, w)| {
                    w.start < read.end
                        && match w.outcome {
                            Outcome::Unknown => true,
                            Outcome::Ok => floor.is_none_or(|floor| *i >= floor),
                            Outcome::Fail => false,
                        }
                })
                .map(|(_, w)| w.value)
                .collect();
            if floor.is_none() {
                allowed.push(None);
            }
            if !allowed.contains(&read.result) {
                stale.push(format!("{key} through node {}: {:?}, allowed {:?}", read.node, read.result, allowed));
            }
        }
        let last_acked = writes.iter().rposition(|w| w.outcome == Outcome::Ok);
        let Some(last) = last_acked else { continue };
        let mut allowed: Vec<Option<i64>> = vec![writes[last].value];
        allowed.extend(writes.iter().filter(|w| w.outcome == Outcome::Unknown).map(|w| w.value));
        for url in urls {
            let answer = until(Duration::from_secs(30), "an R2 read after the heal", || async {
                match api.r2_get(url, bucket, key).await {
                    crate::api::Answer::Reply { status: 200, body } => Ok(Some(Some(crate::workload::r2_value(&body)))),
                    crate::api::Answer::Reply { status: 404, .. } => Ok(Some(None)),
                    other => Err(anyhow!(other.describe())),
                }
            })
            .await?;
            if !allowed.contains(&answer) {
                lost += 1;
                final_wrong.push(format!("{key} on {url}: {answer:?}, expected one of {allowed:?}"));
            }
        }
    }
    let checks = vec![
        Check::new(
            "r2: every body read is whole",
            torn.is_empty(),
            if torn.is_empty() { format!("{reads} reads") } else { torn.join("; ") },
        ),
        Check::new(
            "r2: reads linearize (read-after-write and overwrite-after-write from any node)",
            stale.is_empty(),
            if stale.is_empty() { format!("{reads} reads of {} keys", by_key.len()) } else { stale.join("; ") },
        ),
        Check::new(
            "r2: every node serves each key's last acknowledged write after the heal",
            final_wrong.is_empty(),
            if final_wrong.is_empty() {
                format!("{} keys on {} nodes", by_key.len(), urls.len())
            } else {
                final_wrong.join("; ")
            },
        ),
    ];
    Ok((checks, lost))
}

/// Queues: every acknowledged send is delivered at least once. After the heal the queue is
/// drained by pulls (messages whose pull answer was lost come back after the visibility
/// timeout) until nothing is stored; an acknowledged value never received is lost.
/// Duplicates are counted and reported, not failed: delivery is at least once.
pub async fn queues(api: &Api, urls: &[String], queue: &str, ops: &[Op]) -> Result<(Vec<Check>, usize)> {
    let acked: BTreeSet<i64> = ops
        .iter()
        .filter(|o| o.kind == OpKind::QueueSend && o.outcome == Outcome::Ok)
        .filter_map(|o| o.value)
        .collect();
    let mut received: BTreeMap<i64, usize> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == OpKind::QueueReceive) {
        if let Some(value) = op.value {
            *received.entry(value).or_default() += 1;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut turn = 0;
    loop {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let pulled = api.queue_pull(url, queue, 100, crate::workload::PULL_VISIBILITY_MS).await.json();
        let messages: Vec<Value> = pulled.and_then(|p| p["messages"].as_array().cloned()).unwrap_or_default();
        let leases: Vec<String> = messages.iter().filter_map(|m| m["lease_id"].as_str().map(String::from)).collect();
        for message in &messages {
            if let Some(value) = message["body"].as_i64() {
                *received.entry(value).or_default() += 1;
            }
        }
        if !leases.is_empty() {
            let _ = api.queue_ack(url, queue, &leases).await;
            continue;
        }
        if api.queue_backlog(url, queue).await.is_ok_and(|b| b == 0) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lost: Vec<i64> = acked.iter().filter(|v| !received.contains_key(v)).copied().collect();
    let duplicates: usize = received.values().map(|n| n - 1).sum();
    let checks = vec![Check::new(
        "queues: every acknowledged send is delivered at least once",
        lost.is_empty(),
        if lost.is_empty() {
            format!(
                "{} acknowledged sends, {} delivered, {duplicates} duplicate deliveries",
                acked.len(),
                received.len()
            )
        } else {
            format!("lost {} of {}: {:?}", lost.len(), acked.len(), &lost[..lost.len().min(20)])
        },
    )];
    Ok((checks, lost.len()))
}
