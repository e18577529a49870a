//! `nimbus-chaos`: runs the fault scenarios against a process cluster it starts (default) or
//! against the running docker-compose cluster (`--docker`), prints the report, and exits
//! non-zero on any violated invariant.

use anyhow::{bail, Result};
use clap::Parser;
use nimbus_chaos::nemesis::{self, Nemesis};
use nimbus_chaos::scenario::{self, Timing};
use nimbus_chaos::target::{Compose, Target};
use rand::{Rng, SeedableRng};
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Nimbus chaos suite: faults, histories, invariant checkers")]
struct Args {
    /// Run against the docker-compose cluster of `deploy/` (start it with `deploy/cluster up`).
    #[arg(long)]
    docker: bool,
    /// Compose project of the docker cluster.
    #[arg(long, default_value = "nimbus")]
    project: String,
    /// The control plane's API token (docker).
    #[arg(long, env = "NIMBUS_API_TOKEN", default_value = "nimbus-dev-token")]
    token: String,
    /// Nodes of the process cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// `short` (CI: a few seconds per fault) or `long` (each fault held for --duration).
    #[arg(long, default_value = "short")]
    profile: String,
    /// How long the long profile holds each fault, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seed for every random choice (victims, client operations).
    #[arg(long)]
    seed: Option<u64>,
    /// Only these scenarios (comma-separated names; default: all).
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the report as Markdown to this file (e.g. under bench/results/).
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// When a check fails, copy the process cluster's logs (every node's and the control
    /// plane's) into this folder before the cluster's temporary directory goes.
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut nemeses = Vec::new();
    for name in &args.scenario {
        match Nemesis::parse(name) {
            Some(n) => nemeses.push(n),
            None => bail!(
                "unknown scenario `{name}`; known: {}",
                nemesis::ALL.iter().map(|n| n.name()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    if nemeses.is_empty() {
        nemeses = nemesis::ALL.to_vec();
    }
    let timing = match args.profile.as_str() {
        "short" => Timing::short(),
        "long" => Timing::long(Duration::from_secs(args.duration)),
        other => bail!("unknown profile `{other}` (short or long)"),
    };
    let seed = args.seed.unwrap_or_else(|| rand::rngs::StdRng::from_os_rng().random());
    scenario::progress(&format!("seed {seed} (rerun with --seed {seed})"));
    let mut target = if args.docker {
        Target::Docker(Compose::discover(&args.project, &args.token)?)
    } else {
        scenario::process_cluster(args.nodes, &[]).await?
    };
    let reports = scenario::run_all(&mut target, &nemeses, timing, seed).await?;
    if let Target::Processes(cluster) = target {
        if let Some(dir) = args.keep_logs.as_deref().filter(|_| !scenario::failures(&reports).is_empty()) {
            keep_logs(&cluster.logs_dir(), dir)?;
        }
        cluster.stop().await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!("{}", scenario::table(&reports));
    }
    if let Some(path) = &args.report {
        let target = if args.docker { "the docker-compose cluster (deploy/cluster up)" } else { "a process cluster" };
        let text = format!(
            "# nimbus-chaos, {} profile\n\nTarget: {target}; seed {seed}; each fault held {:.0} s. Writes are D1 register/ledger writes, KV puts and deletes and Durable Object increments; `lost` counts acknowledged writes missing at the end.\n\n{}\n{}",
            args.profile,
            timing.hold.as_secs_f64(),
            scenario::table(&reports),
            scenario::failures(&reports).iter().map(|f| format!("- violation: {f}\n")).collect::<String>()
        );
        std::fs::write(path, text)?;
    }
    let failures = scenario::failures(&reports);
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("violation: {failure}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// Copies every log in `from` into `to` (created), so a failed run can be read afterwards.
fn keep_logs(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    scenario::progress(&format!("logs of the failed run kept in {}", to.display()));
    Ok(())
}
