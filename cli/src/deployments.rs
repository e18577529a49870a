//! `nimbus deploy` and `nimbus deployments list / show / rollback / delete`: versions through
//! the control plane's API, and the rollout of a new version to the nodes.

use crate::output::{self, table, Style};
use crate::{bundle, client, manifest, DeploymentsCommand};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use nimbus_api::control::{Deployed, NodeRollout, RolledBack, RolloutState, WorkerDetail, WorkerSummary};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct DeployOptions<'a> {
    pub config: &'a PathBuf,
    pub message: Option<&'a str>,
    pub name: Option<&'a str>,
    pub no_wait: bool,
}

pub async fn deploy(client: &client::Client, options: DeployOptions<'_>, json_out: bool, style: &Style) -> Result<()> {
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
    let deployed: Deployed =
        client.call_as(reqwest::Method::POST, &format!("/v1/deployments/{}", project.name), Some(&body)).await?;
    let (version, hash) = (deployed.version, deployed.component_hash.as_str());
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
        if no_wait { None } else { Some(wait_for_rollout(client, &project.name, version, json_out, style).await?) };
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
) -> Result<Vec<NodeRollout>> {
    let started = Instant::now();
    let timeout = Duration::from_secs(60);
    let repaint = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_shown = None;
    loop {
        let connected: Vec<String> =
            client.nodes().await?.into_iter().filter(|n| n.connected).map(|n| n.node_id).collect();
        let detail: WorkerDetail =
            client.call_as(reqwest::Method::GET, &format!("/v1/deployments/{name}"), None).await?;
        let rollout = detail.rollout;
        let on = |node: &str, state: RolloutState| {
            rollout.iter().any(|r| r.ack.node_id == node && r.ack.version == version && r.state == state)
        };
        let current = connected.iter().filter(|n| on(n, RolloutState::Current)).count();
        let failed: Vec<&String> = connected.iter().filter(|n| on(n, RolloutState::Failed)).collect();
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
                        .find(|r| r.ack.node_id == node.as_str())
                        .and_then(|r| r.ack.error.as_deref())
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
            return Ok(rollout);
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

pub async fn run(client: &client::Client, command: &DeploymentsCommand, json_out: bool, style: &Style) -> Result<()> {
    match command {
        DeploymentsCommand::List => {
            let list: Vec<WorkerSummary> = client.call_as(reqwest::Method::GET, "/v1/deployments", None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|w| {
                    vec![
                        w.name.clone(),
                        format!("v{}", w.active_version),
                        format!("v{}", w.latest_version),
                        output::ago(w.updated_at),
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
            let detail: WorkerDetail =
                client.call_as(reqwest::Method::GET, &format!("/v1/deployments/{name}"), None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&detail)?);
                return Ok(());
            }
            let active = detail.active_version;
            println!("{} {}", style.bold(name), style.dim(&format!("(active: v{active})")));
            let versions: Vec<Vec<String>> = detail
                .versions
                .iter()
                .map(|v| {
                    let marker = if v.version == active { style.ok("●") } else { " ".into() };
                    vec![
                        format!("{marker} v{}", v.version),
                        v.component_hash.chars().take(12).collect(),
                        output::bytes(v.component_size),
                        output::ago(v.created_at),
                        v.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(style, &["VERSION", "SHA256", "SIZE", "CREATED", "MESSAGE"], &versions);
            println!();
            let rollout: Vec<Vec<String>> = detail
                .rollout
                .iter()
                .map(|r| {
                    let painted = match r.state {
                        RolloutState::Current => style.ok("current"),
                        RolloutState::Failed => style.bad("failed"),
                        RolloutState::Behind => style.warn("behind"),
                    };
                    vec![
                        r.ack.node_id.clone(),
                        format!("v{}", r.ack.version),
                        painted,
                        r.ack.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(style, &["NODE", "SERVES", "STATE", "ERROR"], &rollout);
        }
        DeploymentsCommand::Rollback { name, version } => {
            let body = json!({ "version": version });
            let result: RolledBack =
                client.call_as(reqwest::Method::POST, &format!("/v1/deployments/{name}/rollback"), Some(&body)).await?;
            let target = result.version;
            if !json_out {
                println!("{} {name}: v{} → v{target}", style.ok("✓ Rolled back"), result.previous_version);
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
