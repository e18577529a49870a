//! One scenario from setup to verdicts, the profiles that list them, and the report.
//!
//! A scenario: create its own D1 database, KV namespace and counter object; start the
//! clients; after a warm-up inject the nemesis, hold it, heal it, let the clients run on for
//! a while; stop them; wait for the cluster to converge; run every checker.

use crate::api::Api;
use crate::check::{self, Check};
use crate::history::{History, OpKind, Outcome};
use crate::nemesis::{Knowledge, Nemesis};
use crate::target::Target;
use crate::workload::{self, Ctx, Names};
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long each phase lasts.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub hold: Duration,
    pub recovery: Duration,
}

impl Timing {
    /// The CI profile: a few minutes for every nemesis.
    pub fn short() -> Timing {
        Timing { warmup: Duration::from_secs(2), hold: Duration::from_secs(5), recovery: Duration::from_secs(3) }
    }

    /// On demand: each fault held for `hold`.
    pub fn long(hold: Duration) -> Timing {
        Timing { warmup: Duration::from_secs(5), hold, recovery: hold.max(Duration::from_secs(10)) / 2 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub target: &'static str,
    pub seed: u64,
    pub faults: String,
    /// Writes attempted / acknowledged / of unknown outcome / acknowledged but lost.
    pub attempted: usize,
    pub acked: usize,
    pub unknown: usize,
    pub lost: usize,
    /// Share of hello requests the surviving nodes answered.
    pub availability: f64,
    /// From the end of the workload (after the heal) until KV replicas were identical.
    pub converge_secs: f64,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The hello and counter workers every scenario uses; deployed once per cluster.
pub async fn prepare(target: &Target, api: &Api) -> Result<()> {
    let hello = nimbus_testkit::examples::wasm_bytes("hello")?;
    let counter = nimbus_testkit::examples::wasm_bytes("do_counter")?;
    let (url, token) = (target.api_url(), target.token());
    let hello_version = api.deploy(&url, &token, "hello", &hello, json!({})).await?;
    let manifest = json!({"bindings": [{"type": "durable_object", "name": "COUNTER", "class_name": "Counter"}]});
    let counter_version = api.deploy(&url, &token, "counter", &counter, manifest).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in target.urls() {
        for (worker, version) in [("hello", hello_version), ("counter", counter_version)] {
            while api.serves(&node, worker).await.ok().flatten() != Some(version) {
                if Instant::now() > deadline {
                    bail!("{node} does not serve {worker} v{version} within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

async fn create_data(api: &Api, urls: &[String], names: &Names) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = &urls[0];
        let created = async {
            api.d1_create(url, &names.db).await?;
            let answer = api
                .send(api.http().post(format!("{url}/v1/d1/{}/exec", names.db)).json(&json!({
                    "sql": "CREATE TABLE IF NOT EXISTS reg (k TEXT PRIMARY KEY, v INTEGER); CREATE TABLE IF NOT EXISTS ledger (v INTEGER)"
                })))
                .await;
            if answer.status() != Some(200) {
                bail!("creating tables: {}", answer.describe());
            }
            api.kv_declare(url, &names.namespace).await?;
            api.queue_create(url, &names.queue).await?;
            api.r2_bucket(url, &names.bucket).await
        }
        .await;
        match created {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs one scenario on `target`; `index` keeps its data apart from other scenarios'.
pub async fn run(target: &mut Target, nemesis: Nemesis, timing: Timing, seed: u64, index: usize) -> Result<Report> {
    let api = target.api()?;
    let names = Names {
        db: format!("chaos_{index}_{seed}"),
        namespace: format!("chaos-{index}-{seed}"),
        counter: format!("c{index}-{seed}"),
        bucket: format!("chaos-{index}-{seed}"),
        queue: format!("chaos-{index}-{seed}"),
    };
    let urls = Arc::new(RwLock::new(target.urls()));
    create_data(&api, &target.urls(), &names).await.context("creating the scenario's data")?;
    let (object, owner) = check::counter_id(&api, &target.urls(), &names.counter).await?;

    let history = Arc::new(History::new(Instant::now()));
    let stop = CancellationToken::new();
    let ctx = Ctx {
        api: api.clone(),
        urls: urls.clone(),
        history: history.clone(),
        stop: stop.clone(),
        names: names.clone(),
        seed,
        aim: workload::Aim::new(),
    };
    let mut clients = Vec::new();
    for c in 0..3 {
        clients.push(tokio::spawn(workload::d1_client(ctx.clone(), c)));
        clients.push(tokio::spawn(workload::counter_client(ctx.clone(), c)));
    }
    for c in 0..2 {
        clients.push(tokio::spawn(workload::kv_client(ctx.clone(), c)));
        clients.push(tokio::spawn(workload::hello_client(ctx.clone(), c)));
        clients.push(tokio::spawn(workload::r2_client(ctx.clone(), c)));
        clients.push(tokio::spawn(workload::queue_sender(ctx.clone(), c)));
    }
    clients.push(tokio::spawn(workload::queue_puller(ctx.clone(), 0)));

    let mut rng = StdRng::seed_from_u64(seed ^ index as u64);
    tokio::time::sleep(timing.warmup).await;
    let knowledge = Knowledge { do_owner: Some(owner), do_id: Some(object.clone()), aim: ctx.aim.clone() };
    let injected = nemesis.inject(target, &api, &mut rng, &knowledge, &history).await;
    let injected = match injected {
        Ok(injected) => injected,
        Err(e) => {
            stop.cancel();
            return Err(e.context(format!("injecting {}", nemesis.name())));
        }
    };
    progress(&format!("{}: {}", nemesis.name(), injected.description));
    *urls.write().unwrap_or_else(|p| p.into_inner()) = target.urls();
    tokio::time::sleep(timing.hold).await;
    let outages = nemesis.heal(target, &api, &injected, &history).await.context("healing")?;
    ctx.aim.set(None);
    *urls.write().unwrap_or_else(|p| p.into_inner()) = target.urls();
    tokio::time::sleep(timing.recovery).await;
    stop.cancel();
    for client in clients {
        let _ = client.await;
    }

    let ops = history.ops();
    let urls = target.urls();
    let (mut checks, d1_lost) = check::d1(&api, &urls, &names.db, &ops).await?;
    let (kv_checks, kv_lost, converge) = check::kv(&api, &urls, &names.namespace, &ops).await?;
    checks.extend(kv_checks);
    let (do_checks, do_lost) = check::counter(&api, &urls, &names.counter, &object, &ops).await?;
    checks.extend(do_checks);
    let (r2_checks, r2_lost) = check::r2(&api, &urls, &names.bucket, &ops).await?;
    checks.extend(r2_checks);
    let (queue_checks, queue_lost) = check::queues(&api, &urls, &names.queue, &ops).await?;
    checks.extend(queue_checks);
    let (availability_check, availability) = check::availability(&ops, &outages);
    checks.push(availability_check);

    let writes: Vec<_> = ops
        .iter()
        .filter(|o| {
            matches!(
                o.kind,
                OpKind::D1Write
                    | OpKind::KvPut
                    | OpKind::KvDelete
                    | OpKind::Increment
                    | OpKind::R2Put
                    | OpKind::QueueSend
            )
        })
        .collect();
    Ok(Report {
        scenario: nemesis.name(),
        target: target.name(),
        seed,
        faults: injected.description,
        attempted: writes.len(),
        acked: writes.iter().filter(|o| o.outcome == Outcome::Ok).count(),
        unknown: writes.iter().filter(|o| o.outcome == Outcome::Unknown).count(),
        lost: d1_lost + kv_lost + do_lost + r2_lost + queue_lost,
        availability,
        converge_secs: converge.as_secs_f64(),
        checks,
    })
}

/// Progress on stderr, so a long run shows what it is doing.
pub fn progress(line: &str) {
    eprintln!("[chaos] {line}");
}

/// The reports as a table for people.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | faults | writes | acked | unknown | lost | availability | KV converged after writes stop | verdict |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        let failed: Vec<&str> = r.checks.iter().filter(|c| !c.passed).map(|c| c.name).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} % | {:.1} s | {} |\n",
            r.scenario,
            r.faults,
            r.attempted,
            r.acked,
            r.unknown,
            r.lost,
            r.availability * 100.0,
            r.converge_secs,
            if failed.is_empty() { "pass".to_string() } else { format!("FAIL: {}", failed.join(", ")) }
        ));
    }
    out
}

/// The failed checks of every report, with their details.
pub fn failures(reports: &[Report]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| {
            r.checks.iter().filter(|c| !c.passed).map(move |c| format!("{}: {}: {}", r.scenario, c.name, c.detail))
        })
        .collect()
}

/// Runs `nemeses` one after another on one cluster. A scenario that cannot run to the end
/// (a fault that could not be injected or healed) is reported as failed, and the run goes on.
pub async fn run_all(target: &mut Target, nemeses: &[Nemesis], timing: Timing, seed: u64) -> Result<Vec<Report>> {
    let api = target.api()?;
    progress(&format!("deploying hello and counter to {} {} nodes", target.len(), target.name()));
    prepare(target, &api).await?;
    let mut reports = Vec::new();
    for (index, nemesis) in nemeses.iter().enumerate() {
        progress(&format!("scenario {}/{}: {}", index + 1, nemeses.len(), nemesis.name()));
        let report = match run(target, *nemesis, timing, seed, index).await {
            Ok(report) => report,
            Err(e) => Report {
                scenario: nemesis.name(),
                target: target.name(),
                seed,
                faults: String::new(),
                attempted: 0,
                acked: 0,
                unknown: 0,
                lost: 0,
                availability: 0.0,
                converge_secs: 0.0,
                checks: vec![Check { name: "scenario ran to the end", passed: false, detail: format!("{e:#}") }],
            },
        };
        progress(&format!(
            "{}: {}",
            report.scenario,
            if report.passed() { "pass".to_string() } else { failures(std::slice::from_ref(&report)).join("; ") }
        ));
        reports.push(report);
    }
    Ok(reports)
}

/// A process cluster for the suite: `nodes` nodes over three regions (D1's three voters one
/// per region), a small latency matrix in the peer transport, fast failure detection.
pub async fn process_cluster(nodes: usize, extra_env: &[(&str, &str)]) -> Result<Target> {
    let mut spec = nimbus_testkit::ClusterSpec::local(nodes)?;
    spec.regions = vec!["us-east".into(), "eu-west".into(), "ap-south".into()];
    spec.node_config = Some(PROCESS_MATRIX.into());
    for (key, value) in [
        ("NIMBUS_GOSSIP__PROBE_PERIOD_MS", "200"),
        ("NIMBUS_GOSSIP__SUSPECT_TO_DOWN_MS", "1000"),
        ("NIMBUS_KV__ANTI_ENTROPY_MS", "500"),
    ]
    .into_iter()
    .chain(extra_env.iter().copied())
    {
        spec.node_env.push((key.into(), value.into()));
    }
    let cluster = nimbus_testkit::Cluster::start(spec).await?;
    cluster.wait_membership(Duration::from_secs(30)).await?;
    Ok(Target::Processes(Box::new(cluster)))
}

/// One-way delays between the process cluster's regions: small, so a short run still does
/// many operations, but enough that cross-region calls are not free.
const PROCESS_MATRIX: &str = r#"
[network]
intra_region_ms = 0.0
links = [
  { a = "us-east", b = "eu-west", one_way_ms = 4.0 },
  { a = "us-east", b = "ap-south", one_way_ms = 9.0 },
  { a = "eu-west", b = "ap-south", one_way_ms = 7.0 },
]
"#;
