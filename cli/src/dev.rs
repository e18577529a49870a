//! `nimbus dev`: a control plane and N nodes as local processes until Ctrl-C or SIGTERM.

use crate::output::Style;
use anyhow::{Context, Result};
use nimbus_testkit::{Cluster, ClusterSpec};
use std::net::SocketAddr;
use std::path::PathBuf;

pub struct DevOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    pub api_port: u16,
    pub grpc_port: u16,
    pub http_port: u16,
    pub management_port: u16,
    pub gossip_port: u16,
    pub s3_port: u16,
    /// Extra `NIMBUS_*` settings for every node.
    pub node_env: Vec<(String, String)>,
    /// Regions the nodes are spread over, round robin (empty: `local`).
    pub regions: Vec<String>,
    /// Configuration text every node reads (a latency matrix, say).
    pub node_config: Option<String>,
    /// Peer gRPC and the watch without TLS (to measure what it costs).
    pub insecure_plaintext: bool,
}

/// Parses `--node-env KEY=VALUE` settings; only `NIMBUS_*` keys are node settings.
pub fn parse_node_env(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if key.starts_with("NIMBUS_") => Ok((key.to_string(), value.to_string())),
            _ => anyhow::bail!("--node-env `{item}`: expected NIMBUS_<SECTION>__<KEY>=value"),
        })
        .collect()
}

pub async fn run(options: DevOptions, style: &Style) -> Result<()> {
    std::fs::create_dir_all(&options.dir).with_context(|| format!("creating {}", options.dir.display()))?;
    let dir = options.dir.canonicalize()?;
    let token_path = dir.join("api-token");
    // Reuse the token of an earlier run so scripts holding it keep working.
    let token = match std::fs::read_to_string(&token_path) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_string(),
        _ => {
            let token = random_token()?;
            std::fs::write(&token_path, &token)?;
            token
        }
    };
    // The gossip key, kept like the token so a restarted dev cluster keeps its data readable.
    let key_path = dir.join("gossip-key");
    let gossip_key = match std::fs::read_to_string(&key_path) {
        Ok(key) if !key.trim().is_empty() => key.trim().to_string(),
        _ => {
            let key = nimbus_testkit::random_key()?;
            std::fs::write(&key_path, &key)?;
            key
        }
    };
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let spec = ClusterSpec {
        nodes: options.nodes,
        dir: Some(dir.clone()),
        control_plane_api: loopback(options.api_port),
        control_plane_grpc: loopback(options.grpc_port),
        node_http_base_port: Some(options.http_port),
        node_gossip_base_port: Some(options.gossip_port),
        node_management_base_port: Some(options.management_port),
        node_s3_base_port: Some(options.s3_port),
        token,
        gossip_keys: vec![gossip_key],
        insecure_plaintext: options.insecure_plaintext,
        bin_dir: nimbus_testkit::bin_dir()?,
        node_env: options.node_env,
        control_plane_env: Vec::new(),
        // D1's Raft group: three voters (or every node, if fewer); the others are replicas.
        d1_voters: options.nodes.min(3),
        regions: options.regions,
        node_config: options.node_config,
    };
    eprintln!("Starting the control plane and {} nodes …", options.nodes);
    let cluster = Cluster::start(spec).await?;
    let file = cluster.cluster_file();
    let cluster_json = dir.join("cluster.json");
    std::fs::write(&cluster_json, serde_json::to_string_pretty(&file)?)?;

    println!("{} Nimbus dev cluster is up", style.ok("✓"));
    println!("  {:<14} {}", "control plane", file.api_url);
    for node in &file.nodes {
        let s3 = node.s3_url.as_deref().unwrap_or("-");
        println!(
            "  {:<14} {}   {}",
            node.id,
            node.http_url,
            style.dim(&format!("management {}   s3 {s3}", node.api_url))
        );
    }
    println!("  {:<14} {}", "endpoints", cluster_json.display());
    println!("  {:<14} {}", "logs", dir.join("logs").display());
    let first = file.nodes.first().map(|n| n.http_url.clone()).unwrap_or_default();
    println!();
    println!("Try:  nimbus deploy -c examples/hello/nimbus.toml");
    println!("      curl -H 'Host: hello.workers.localhost' {first}/");
    println!("      nimbus tokens create grafana --scope cluster:read");
    println!("      nimbus r2 keys create laptop   (then any S3 client at the s3 address, region auto)");
    println!("{}", style.dim("Ctrl-C stops every process."));

    wait_for_signal().await;
    eprintln!("Stopping …");
    let _ = std::fs::remove_file(&cluster_json);
    cluster.stop().await?;
    eprintln!("Stopped.");
    Ok(())
}

async fn wait_for_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}
