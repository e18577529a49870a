//! `nimbus cluster status`: every node the control plane knows, its health, gossip state and
//! workers, its view of D1's Raft group and its Durable Objects.

use crate::client;
use crate::output::{table, Style};
use anyhow::Result;
use nimbus_api::control::NodeInfo;
use nimbus_api::node::{D1Status, DurableStatus, NodeStatus};
use serde_json::{json, Value};
use std::time::Duration;

/// What one node answered (`None` where it did not).
struct NodeReport {
    /// The control plane's entry for the node (`/v1/cluster`).
    node: NodeInfo,
    status: Option<NodeStatus>,
    d1: Option<D1Status>,
    durable: Option<DurableStatus>,
}

/// One row per node of its view of D1's Raft group.
fn raft_rows(report: &[NodeReport], style: &Style) -> Vec<Vec<String>> {
    report
        .iter()
        .map(|r| {
            let id = r.node.node_id.clone();
            let Some(d1) = &r.d1 else {
                let mut row = vec![String::new(); 8];
                row[0] = id;
                row[2] = style.bad("unreachable");
                return row;
            };
            let state = match d1.state.as_str() {
                "Leader" => style.ok("leader"),
                "Follower" => "follower".to_string(),
                "Learner" => "learner".to_string(),
                "Candidate" => style.warn("candidate"),
                other => style.dim(&other.to_lowercase()),
            };
            vec![
                id,
                d1.role.clone(),
                state,
                d1.term.to_string(),
                d1.leader.clone().unwrap_or_else(|| style.warn("none")),
                d1.commit_index.to_string(),
                d1.applied_index.to_string(),
                if d1.lag > 0 { style.warn(&d1.lag.to_string()) } else { d1.lag.to_string() },
            ]
        })
        .collect()
}

/// A node endpoint's JSON, or `None` when it does not answer in time or answers otherwise.
async fn fetch<T: serde::de::DeserializeOwned>(client: &client::Client, base: &str, path: &str) -> Option<T> {
    let request = client.http().get(format!("{base}{path}")).bearer_auth(client.token());
    let response = request.timeout(Duration::from_secs(2)).send().await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

pub async fn status(client: &client::Client, json_out: bool, style: &Style) -> Result<()> {
    let nodes = client.nodes().await?;
    let mut report = Vec::new();
    // The gossip view, as the first node that answers sees it.
    let mut gossip: Option<Value> = None;
    for node in nodes {
        // The management API is on loopback by default; the cluster file says where.
        let Some(base) = client.management_url(&node.node_id) else {
            report.push(NodeReport { node, status: None, d1: None, durable: None });
            continue;
        };
        let status: Option<NodeStatus> = fetch(client, &base, "/v1/node").await;
        let d1 = fetch(client, &base, "/v1/node/d1").await;
        let durable = fetch(client, &base, "/v1/node/durable").await;
        if gossip.is_none() && status.is_some() {
            gossip = fetch(client, &base, "/v1/cluster").await;
        }
        report.push(NodeReport { node, status, d1, durable });
    }
    if json_out {
        let nodes: Vec<Value> = report
            .iter()
            .map(|r| json!({ "node": r.node, "status": r.status, "d1": r.d1, "durable": r.durable }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "nodes": nodes, "gossip": gossip }))?);
        return Ok(());
    }
    let gossip_state = |id: &str| -> String {
        let member =
            gossip.as_ref().and_then(|g| g["members"].as_array()).and_then(|m| m.iter().find(|m| m["node_id"] == id));
        match member.and_then(|m| m["state"].as_str()) {
            Some("alive") => style.ok("alive"),
            Some("suspect") => style.warn("suspect"),
            Some(other) => style.bad(other),
            None => style.dim("unknown"),
        }
    };
    let rows: Vec<Vec<String>> = report
        .iter()
        .map(|r| {
            let node = &r.node;
            let id = node.node_id.as_str();
            let watching = if node.connected { style.ok("connected") } else { style.warn("disconnected") };
            let (health, workers) = match &r.status {
                Some(status) => {
                    let workers: Vec<String> =
                        status.workers.iter().map(|w| format!("{}@v{}", w.name, w.version)).collect();
                    (style.ok("up"), workers.join(" "))
                }
                None => (style.bad("unreachable"), String::new()),
            };
            vec![
                id.to_string(),
                node.region.clone(),
                node.http_addr.clone(),
                health,
                gossip_state(id),
                watching,
                workers,
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No node has connected to the control plane yet.");
    } else {
        table(style, &["NODE", "REGION", "HTTP", "HEALTH", "GOSSIP", "CONTROL PLANE", "WORKERS"], &rows);
        if let Some(seen_by) = gossip.as_ref().and_then(|g| g["node_id"].as_str()) {
            println!("{}", style.dim(&format!("gossip states as {seen_by} sees them")));
        }
        println!();
        table(
            style,
            &["NODE", "D1 ROLE", "RAFT STATE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG"],
            &raft_rows(&report, style),
        );
        println!();
        table(
            style,
            &["NODE", "LIVE OBJECTS", "ACTIVATIONS", "EVICTIONS", "WEBSOCKETS", "VIEW"],
            &durable_rows(&report, style),
        );
    }
    Ok(())
}

/// One row per node: its Durable Objects and the membership view placement runs on.
fn durable_rows(report: &[NodeReport], style: &Style) -> Vec<Vec<String>> {
    report
        .iter()
        .map(|r| {
            let id = r.node.node_id.clone();
            let Some(d) = &r.durable else {
                return vec![id, style.dim("unknown"), String::new(), String::new(), String::new(), String::new()];
            };
            let view = format!("{}/{} members", d.members_live, d.members_known);
            let view = if d.has_majority { view } else { style.bad(&format!("{view}, minority")) };
            vec![
                id,
                d.live.len().to_string(),
                d.activations.to_string(),
                d.evictions.to_string(),
                d.websockets.to_string(),
                view,
            ]
        })
        .collect()
}
