//! `nimbus`: deploy workers, manage deployments and KV, and run a local dev cluster.
//!
//! Output is for people (tables, colour on a terminal); `--json` prints what the API returned,
//! for scripts. The cluster comes from `--api-url`/`--token` (or `NIMBUS_API_URL`,
//! `NIMBUS_API_TOKEN`), else from `.nimbus/dev/cluster.json` written by `nimbus dev`.

mod bundle;
mod client;
mod d1;
mod dev;
mod kv;
mod manifest;
mod node;
mod output;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use output::{table, Style};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "nimbus", version, about = "Deploy and run Nimbus workers")]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Control-plane API URL (default: from the cluster file).
    #[arg(long, global = true, env = "NIMBUS_API_URL")]
    api_url: Option<String>,
    /// API token (default: from the cluster file).
    #[arg(long, global = true, env = "NIMBUS_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A node's HTTP URL, for `nimbus kv` (default: the first node of the cluster file).
    #[arg(long, global = true, env = "NIMBUS_NODE_URL")]
    node: Option<String>,
    /// The cluster file `nimbus dev` writes.
    #[arg(long, global = true, default_value = ".nimbus/dev/cluster.json")]
    cluster: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (if configured) and deploy the worker described by nimbus.toml.
    Deploy {
        /// Path of the nimbus.toml.
        #[arg(long, short, default_value = "nimbus.toml")]
        config: PathBuf,
        /// A note stored with the version.
        #[arg(long, short)]
        message: Option<String>,
        /// Deploy under this name instead of the one in nimbus.toml.
        #[arg(long)]
        name: Option<String>,
        /// Return once stored, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
    },
    /// List, inspect, roll back or delete deployments.
    Deployments {
        #[command(subcommand)]
        command: DeploymentsCommand,
    },
    /// Start a control plane and N nodes on this machine until Ctrl-C.
    Dev {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = ".nimbus/dev")]
        dir: PathBuf,
        #[arg(long, default_value_t = 9090)]
        api_port: u16,
        #[arg(long, default_value_t = 9091)]
        grpc_port: u16,
        /// HTTP port of node-1; node-i listens on this + i - 1.
        #[arg(long, default_value_t = 8081)]
        http_port: u16,
        /// UDP gossip port of node-1; node-i uses this + i - 1.
        #[arg(long, default_value_t = 7946)]
        gossip_port: u16,
        /// A node setting for every node, as `NIMBUS_<SECTION>__<KEY>=value`
        /// (e.g. `NIMBUS_GOSSIP__SUSPECT_TO_DOWN_MS=1000`); repeatable.
        #[arg(long = "node-env", value_name = "KEY=VALUE")]
        node_env: Vec<String>,
        /// Regions to spread the nodes over, round robin (e.g. `us-east,eu-west,ap-south`).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// A node configuration file every node reads, e.g. `deploy/regions.toml` for its
        /// latency matrix between regions (applied by the peer transport).
        #[arg(long, value_name = "FILE")]
        node_config: Option<PathBuf>,
    },
    /// Workers KV: namespaces and keys, through any node.
    Kv {
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// D1: SQLite databases, through any node.
    D1 {
        #[command(subcommand)]
        command: d1::D1Command,
    },
    /// Inspect the cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum DeploymentsCommand {
    List,
    Show {
        name: String,
    },
    /// Serve an earlier version again (default: the one before the active version).
    Rollback {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Nodes the control plane knows, and what each serves.
    Status,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let style = Style::detect();
    if let Err(e) = run(cli, &style).await {
        eprintln!("{} {e:#}", style.bad("error:"));
        std::process::exit(1);
    }
}

async fn run(cli: Cli, style: &Style) -> Result<()> {
    let connect = || client::connect(cli.api_url.clone(), cli.token.clone(), &cli.cluster);
    match cli.command {
        Command::Deploy { ref config, ref message, ref name, no_wait } => {
            let options = DeployOptions { config, message: message.as_deref(), name: name.as_deref(), no_wait };
            deploy(&connect()?, options, cli.json, style).await
        }
        Command::Deployments { ref command } => deployments(&connect()?, command, cli.json, style).await,
        Command::Kv { command } => {
            kv::run(command, kv::node_url(cli.node.clone(), &cli.cluster)?, cli.json, style).await
        }
        Command::D1 { command } => {
            d1::run(command, kv::node_url(cli.node.clone(), &cli.cluster)?, cli.json, style).await
        }
        Command::Cluster { command: ClusterCommand::Status } => cluster_status(&connect()?, cli.json, style).await,
        Command::Dev {
            nodes,
            ref dir,
            api_port,
            grpc_port,
            http_port,
            gossip_port,
            ref node_env,
            ref regions,
            ref node_config,
        } => {
            let node_env = dev::parse_node_env(node_env)?;
            let node_config = match node_config {
                Some(path) => {
                    Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
                }
                None => None,
            };
            let options = dev::DevOptions {
                nodes,
                dir: dir.clone(),
                api_port,
                grpc_port,
                http_port,
                gossip_port,
                node_env,
                regions: regions.clone(),
                node_config,
            };
            dev::run(options, style).await
        }
    }
}

struct DeployOptions<'a> {
    config: &'a PathBuf,
    message: Option<&'a str>,
    name: Option<&'a str>,
    no_wait: bool,
}

async fn deploy(client: &client::Client, options: DeployOptions<'_>, json_out: bool, style: &Style) -> Result<()> {
    let DeployOptions { config, message, name, no_wait } = options;
    let mut project = manifest::load(config)?;
    if let Some(name) = name {
        nimbus_proto::manifest::validate_worker_name(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
        project.name = name.to_string();
    }
    if let Some((command, cwd)) = &project.build {
        eprintln!("{} {command}", style.dim("building:"));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            .status()
            .with_context(|| format!("running the build command `{command}`"))?;
        if !status.success() {
            bail!("{}: build command `{command}` failed ({status})", config.display());
        }
    }
    let body = if bundle::is_script(&project.main) {
        let script = bundle::collect(&project.root, &project.main)
            .with_context(|| format!("{}: field `main`", config.display()))?;
        let size: usize = script.modules.iter().map(|m| m.source.len()).sum();
        eprintln!(
            "{} {} ({} module{}, {}) to {}; the control plane pre-initialises it",
            style.dim("uploading:"),
            project.name,
            script.modules.len(),
            if script.modules.len() == 1 { "" } else { "s" },
            output::bytes(size as u64),
            client.api_url
        );
        json!({ "manifest": project.manifest, "script": script, "message": message })
    } else {
        let component = std::fs::read(&project.main)
            .with_context(|| format!("{}: field `main`: cannot read {}", config.display(), project.main.display()))?;
        eprintln!(
            "{} {} ({}) to {}",
            style.dim("uploading:"),
            project.name,
            output::bytes(component.len() as u64),
            client.api_url
        );
        json!({
            "manifest": project.manifest,
            "component": base64::engine::general_purpose::STANDARD.encode(&component),
            "message": message,
        })
    };
    let deployed =
        client.call(reqwest::Method::POST, &format!("/v1/deployments/{}", project.name), Some(&body)).await?;
    let version = deployed["version"].as_u64().unwrap_or(0);
    let hash = deployed["component_hash"].as_str().unwrap_or("");
    if !json_out {
        println!(
            "{} Deployed {} version {} {}",
            style.ok("✓"),
            style.bold(&project.name),
            version,
            style.dim(&format!("(sha256 {}…)", &hash[..hash.len().min(12)]))
        );
    }
    let rollout =
        if no_wait { Value::Null } else { wait_for_rollout(client, &project.name, version, json_out, style).await? };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({ "deployment": deployed, "rollout": rollout }))?);
    }
    Ok(())
}

/// Waits until every connected node reports `version` (or a failure), printing progress.
async fn wait_for_rollout(
    client: &client::Client,
    name: &str,
    version: u64,
    quiet: bool,
    style: &Style,
) -> Result<Value> {
    let started = Instant::now();
    let timeout = Duration::from_secs(60);
    let repaint = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_shown = None;
    loop {
        let nodes = client.call(reqwest::Method::GET, "/v1/cluster", None).await?;
        let connected: Vec<String> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["connected"].as_bool() == Some(true))
            .filter_map(|n| n["node_id"].as_str().map(str::to_string))
            .collect();
        let detail = client.call(reqwest::Method::GET, &format!("/v1/deployments/{name}"), None).await?;
        let rollout = detail["rollout"].as_array().cloned().unwrap_or_default();
        let on = |node: &str, state: &str| {
            rollout
                .iter()
                .any(|r| r["node_id"] == node && r["version"].as_u64() == Some(version) && r["state"] == state)
        };
        let current = connected.iter().filter(|n| on(n, "current")).count();
        let failed: Vec<&String> = connected.iter().filter(|n| on(n, "failed")).collect();
        let done = current + failed.len() == connected.len();
        if !quiet && (repaint || done || last_shown != Some(current)) {
            let line = format!(
                "{} {current}/{} nodes serve version {version} ({:.1} s)",
                style.dim("rolling out:"),
                connected.len(),
                started.elapsed().as_secs_f64()
            );
            if repaint {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            last_shown = Some(current);
        }
        if done {
            if !quiet && repaint {
                eprintln!();
                for node in &failed {
                    let error = rollout
                        .iter()
                        .find(|r| r["node_id"] == node.as_str())
                        .and_then(|r| r["error"].as_str())
                        .unwrap_or("");
                    eprintln!("  {} {node}: {error}", style.bad("✗"));
                }
            }
            if !failed.is_empty() {
                bail!(
                    "{} of {} nodes could not apply version {version}; they keep serving the previous one",
                    failed.len(),
                    connected.len()
                );
            }
            return Ok(Value::Array(rollout));
        }
        if started.elapsed() > timeout {
            if !quiet && repaint {
                eprintln!();
            }
            bail!("rollout incomplete after {timeout:?}: {current}/{} nodes serve version {version}", connected.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deployments(
    client: &client::Client,
    command: &DeploymentsCommand,
    json_out: bool,
    style: &Style,
) -> Result<()> {
    match command {
        DeploymentsCommand::List => {
            let list = client.call(reqwest::Method::GET, "/v1/deployments", None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    vec![
                        w["name"].as_str().unwrap_or("").to_string(),
                        format!("v{}", w["active_version"]),
                        format!("v{}", w["latest_version"]),
                        output::ago(w["updated_at"].as_i64().unwrap_or(0)),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No workers deployed.");
            } else {
                table(style, &["NAME", "ACTIVE", "LATEST", "UPDATED"], &rows);
            }
        }
        DeploymentsCommand::Show { name } => {
            let detail = client.call(reqwest::Method::GET, &format!("/v1/deployments/{name}"), None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&detail)?);
                return Ok(());
            }
            let active = detail["active_version"].as_u64().unwrap_or(0);
            println!("{} {}", style.bold(name), style.dim(&format!("(active: v{active})")));
            let versions: Vec<Vec<String>> = detail["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let n = v["version"].as_u64().unwrap_or(0);
                    let marker = if n == active { style.ok("●") } else { " ".into() };
                    vec![
                        format!("{marker} v{n}"),
                        v["component_hash"].as_str().unwrap_or("").chars().take(12).collect(),
                        output::bytes(v["component_size"].as_u64().unwrap_or(0)),
                        output::ago(v["created_at"].as_i64().unwrap_or(0)),
                        v["message"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            table(style, &["VERSION", "SHA256", "SIZE", "CREATED", "MESSAGE"], &versions);
            println!();
            let rollout: Vec<Vec<String>> = detail["rollout"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let state = r["state"].as_str().unwrap_or("");
                    let painted = match state {
                        "current" => style.ok(state),
                        "failed" => style.bad(state),
                        _ => style.warn(state),
                    };
                    vec![
                        r["node_id"].as_str().unwrap_or("").to_string(),
                        format!("v{}", r["version"]),
                        painted,
                        r["error"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            table(style, &["NODE", "SERVES", "STATE", "ERROR"], &rollout);
        }
        DeploymentsCommand::Rollback { name, version } => {
            let body = json!({ "version": version });
            let result =
                client.call(reqwest::Method::POST, &format!("/v1/deployments/{name}/rollback"), Some(&body)).await?;
            let target = result["version"].as_u64().unwrap_or(0);
            if !json_out {
                println!("{} {name}: v{} → v{target}", style.ok("✓ Rolled back"), result["previous_version"]);
            }
            let rollout = wait_for_rollout(client, name, target, json_out, style).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&json!({ "rollback": result, "rollout": rollout }))?);
            }
        }
        DeploymentsCommand::Delete { name } => {
            client.call(reqwest::Method::DELETE, &format!("/v1/deployments/{name}"), None).await?;
            if json_out {
                println!("{}", json!({ "deleted": name }));
            } else {
                println!("{} {name}", style.ok("✓ Deleted"));
            }
        }
    }
    Ok(())
}

/// One row per node of its view of D1's Raft group.
fn raft_rows(report: &[Value], style: &Style) -> Vec<Vec<String>> {
    report
        .iter()
        .map(|r| {
            let id = r["node"]["node_id"].as_str().unwrap_or("").to_string();
            let d1 = &r["d1"];
            if d1.is_null() {
                return vec![
                    id,
                    String::new(),
                    style.bad("unreachable"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ];
            }
            let state = match d1["state"].as_str().unwrap_or("") {
                "Leader" => style.ok("leader"),
                "Follower" => "follower".to_string(),
                "Learner" => "learner".to_string(),
                "Candidate" => style.warn("candidate"),
                other => style.dim(&other.to_lowercase()),
            };
            let lag = d1["lag"].as_u64().unwrap_or(0);
            vec![
                id,
                d1["role"].as_str().unwrap_or("").to_string(),
                state,
                d1["term"].to_string(),
                d1["leader"].as_str().map_or_else(|| style.warn("none"), str::to_string),
                d1["commit_index"].to_string(),
                d1["applied_index"].to_string(),
                if lag > 0 { style.warn(&lag.to_string()) } else { lag.to_string() },
            ]
        })
        .collect()
}

async fn cluster_status(client: &client::Client, json_out: bool, style: &Style) -> Result<()> {
    let nodes = client.call(reqwest::Method::GET, "/v1/cluster", None).await?;
    let mut report = Vec::new();
    // The gossip view, as the first node that answers sees it.
    let mut gossip: Option<Value> = None;
    for node in nodes.as_array().into_iter().flatten() {
        let base = format!("http://{}", node["http_addr"].as_str().unwrap_or(""));
        let get = |path: &str| client.http().get(format!("{base}{path}")).timeout(Duration::from_secs(2)).send();
        let status: Option<Value> = match get("/v1/node").await {
            Ok(resp) => resp.json().await.ok(),
            Err(_) => None,
        };
        let raft: Option<Value> = match get("/v1/node/d1").await {
            Ok(resp) => resp.json().await.ok(),
            Err(_) => None,
        };
        let durable: Option<Value> = match get("/v1/node/durable").await {
            Ok(resp) => resp.json().await.ok(),
            Err(_) => None,
        };
        if gossip.is_none() && status.is_some() {
            gossip = match get("/v1/cluster").await {
                Ok(resp) => resp.json().await.ok(),
                Err(_) => None,
            };
        }
        report.push(json!({ "node": node, "status": status, "d1": raft, "durable": durable }));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({ "nodes": report, "gossip": gossip }))?);
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
            let node = &r["node"];
            let id = node["node_id"].as_str().unwrap_or("");
            let watching = if node["connected"].as_bool() == Some(true) {
                style.ok("connected")
            } else {
                style.warn("disconnected")
            };
            let (health, workers) = match r["status"].as_object() {
                Some(status) => {
                    let workers: Vec<String> = status["workers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|w| format!("{}@v{}", w["name"].as_str().unwrap_or(""), w["version"]))
                        .collect();
                    (style.ok("up"), workers.join(" "))
                }
                None => (style.bad("unreachable"), String::new()),
            };
            vec![
                id.to_string(),
                node["region"].as_str().unwrap_or("").to_string(),
                node["http_addr"].as_str().unwrap_or("").to_string(),
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
fn durable_rows(report: &[Value], style: &Style) -> Vec<Vec<String>> {
    report
        .iter()
        .map(|r| {
            let id = r["node"]["node_id"].as_str().unwrap_or("").to_string();
            let d = &r["durable"];
            if d.is_null() {
                return vec![id, style.dim("unknown"), String::new(), String::new(), String::new(), String::new()];
            }
            let view = format!("{}/{} members", d["members_live"], d["members_known"]);
            let view =
                if d["has_majority"].as_bool() == Some(true) { view } else { style.bad(&format!("{view}, minority")) };
            vec![
                id,
                d["live"].as_array().map_or(0, Vec::len).to_string(),
                d["activations"].to_string(),
                d["evictions"].to_string(),
                d["websockets"].to_string(),
                view,
            ]
        })
        .collect()
}
