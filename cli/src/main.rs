//! `nimbus`: deploy workers, manage deployments and KV, and run a local dev cluster.
//!
//! Output is for people (tables, colour on a terminal); `--json` prints what the API returned,
//! for scripts. The cluster comes from `--api-url`/`--token` (or `NIMBUS_API_URL`,
//! `NIMBUS_API_TOKEN`), else from `.nimbus/dev/cluster.json` written by `nimbus dev`.

mod bundle;
mod client;
mod cluster;
mod d1;
mod deployments;
mod dev;
mod kv;
mod manifest;
mod node;
mod output;
mod pages;
mod queues;
mod r2;
mod tokens;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use output::Style;
use std::path::PathBuf;

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
    /// A node's management API URL, for `nimbus kv` and `nimbus d1` (default: the first node
    /// of the cluster file).
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
        /// Management API port of node-1 (127.0.0.1); node-i listens on this + i - 1.
        #[arg(long, default_value_t = 8091)]
        management_port: u16,
        /// UDP gossip port of node-1; node-i uses this + i - 1.
        #[arg(long, default_value_t = 7946)]
        gossip_port: u16,
        /// S3 API port of node-1; node-i listens on this + i - 1.
        #[arg(long, default_value_t = 9001)]
        s3_port: u16,
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
        /// Peer gRPC and the control-plane watch without TLS: only to measure what mutual
        /// TLS costs (`bench/d1/run --plaintext`), never on a network.
        #[arg(long)]
        insecure_plaintext: bool,
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
    /// R2: buckets, objects and S3 access keys, through any node.
    R2 {
        #[command(subcommand)]
        command: r2::R2Command,
    },
    /// Queues: create, consumers, send and peek, through any node.
    Queues {
        #[command(subcommand)]
        command: queues::QueuesCommand,
    },
    /// Cron Triggers: the recorded runs of a worker, or run its scheduled handler now.
    Cron {
        #[command(subcommand)]
        command: queues::CronCommand,
    },
    /// Pages: projects, deploy a directory of static files, deployments and rollback.
    Pages {
        #[command(subcommand)]
        command: pages::PagesCommand,
    },
    /// Management API tokens: create (the secret is shown once), list, revoke.
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// Certificates for mutual TLS between nodes and with the control plane.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Make cluster secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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
enum CertsCommand {
    /// Make the cluster CA (if the directory has none) and a certificate for each node id and
    /// for the control plane, as PEM files; existing ones are kept.
    Create {
        /// Where the files go (`ca.pem`, `ca.key`, `<name>.pem`, `<name>.key`).
        #[arg(long)]
        out: PathBuf,
        /// Node ids to issue certificates for, comma-separated (`node-1,node-2,node-3`).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random gossip key (32 bytes, base64) for `gossip.keys`.
    Gossip,
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
            let options =
                deployments::DeployOptions { config, message: message.as_deref(), name: name.as_deref(), no_wait };
            deployments::deploy(&connect()?, options, cli.json, style).await
        }
        Command::Deployments { ref command } => deployments::run(&connect()?, command, cli.json, style).await,
        Command::Kv { command } => {
            kv::run(command, client::node_target(cli.node.clone(), cli.token.clone(), &cli.cluster)?, cli.json, style)
                .await
        }
        Command::D1 { command } => {
            d1::run(command, client::node_target(cli.node.clone(), cli.token.clone(), &cli.cluster)?, cli.json, style)
                .await
        }
        Command::R2 { command } => {
            r2::run(command, client::node_target(cli.node.clone(), cli.token.clone(), &cli.cluster)?, cli.json, style)
                .await
        }
        Command::Queues { command } => {
            let target = client::node_target(cli.node.clone(), cli.token.clone(), &cli.cluster)?;
            queues::run(command, target, cli.json, style).await
        }
        Command::Cron { command } => {
            let target = client::node_target(cli.node.clone(), cli.token.clone(), &cli.cluster)?;
            queues::cron(command, target, cli.json, style).await
        }
        // The hook deploys with the connection `pages connect` saved, not the cluster file.
        Command::Pages { command: pages::PagesCommand::GitDeploy { repo } } => {
            pages::git_deploy(&repo, cli.json, style).await
        }
        Command::Pages { command } => pages::run(command, &connect()?, cli.json, style).await,
        Command::Tokens { ref command } => tokens::run(&connect()?, command, cli.json, style).await,
        Command::Certs { command: CertsCommand::Create { ref out, ref nodes } } => {
            let mut names = nodes.clone();
            names.push(nimbus_testkit::certs::CONTROL_PLANE_NAME.to_string());
            let made = nimbus_testkit::certs::create(out, &names)?;
            if cli.json {
                let files: Vec<serde_json::Value> = made
                    .iter()
                    .map(|(name, f)| serde_json::json!({ "name": name, "cert": f.cert, "key": f.key, "ca": f.ca }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&files)?);
            } else {
                for (name, files) in &made {
                    println!("{} {name:<14} {}", style.ok("✓"), files.cert.display());
                }
                println!(
                    "{}",
                    style.dim(&format!("CA: {} (keep ca.key private: it mints members)", out.join("ca.pem").display()))
                );
            }
            Ok(())
        }
        Command::Keys { command: KeysCommand::Gossip } => {
            println!("{}", nimbus_testkit::random_key()?);
            Ok(())
        }
        Command::Cluster { command: ClusterCommand::Status } => cluster::status(&connect()?, cli.json, style).await,
        Command::Dev {
            nodes,
            ref dir,
            api_port,
            grpc_port,
            http_port,
            management_port,
            gossip_port,
            s3_port,
            ref node_env,
            ref regions,
            ref node_config,
            insecure_plaintext,
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
                management_port,
                gossip_port,
                s3_port,
                node_env,
                regions: regions.clone(),
                node_config,
                insecure_plaintext,
            };
            dev::run(options, style).await
        }
    }
}
