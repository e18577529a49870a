//! The clients: each runs until the stop token fires, sends every request to a node it picks
//! at random (from the run's seed), and records what it saw in the history.
//!
//! - D1: writes to three shared registers (each write also appends its value to a ledger in
//!   the same batch), `linearizable` reads of them, and per-client "write then `bookmark`
//!   read on another node" pairs.
//! - KV: puts and deletes, each key written by one client only, so the version order of its
//!   writes is the client's order.
//! - Durable Object: increments of one counter.
//! - R2: puts and gets of objects, each key written by one client only (so its writes are in
//!   the client's order); a body is made from its value (some span two chunks), so a read
//!   can tell a whole body from a torn one.
//!
//! A nemesis may aim the D1 and counter clients at one node ([`Aim`]): half their requests
//! then go there.
//! - Hello: requests to the hello worker, to measure availability.

use crate::api::{Answer, Api};
use crate::history::{History, Op, OpKind, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Registers shared by the D1 clients.
pub const REGISTERS: usize = 3;
/// KV keys each client owns.
pub const KV_KEYS_PER_CLIENT: usize = 4;
/// The pause between one client's operations, to keep the load within two cores.
const PACE: Duration = Duration::from_millis(15);

/// Names one scenario's data lives under, so scenarios on one cluster do not mix.
#[derive(Debug, Clone)]
pub struct Names {
    pub db: String,
    pub namespace: String,
    pub counter: String,
    pub bucket: String,
    pub queue: String,
}

/// A node the counter clients send half their requests to while it is set (a nemesis
/// aims them at a node it has just restarted).
#[derive(Debug, Clone, Default)]
pub struct Aim(Arc<std::sync::atomic::AtomicUsize>);

impl Aim {
    const NONE: usize = usize::MAX;

    pub fn new() -> Self {
        Aim(Arc::new(std::sync::atomic::AtomicUsize::new(Self::NONE)))
    }

    pub fn set(&self, node: Option<usize>) {
        self.0.store(node.unwrap_or(Self::NONE), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<usize> {
        Some(self.0.load(std::sync::atomic::Ordering::Relaxed)).filter(|n| *n != Self::NONE)
    }
}

/// What every client needs.
#[derive(Clone)]
pub struct Ctx {
    pub api: Api,
    /// Node endpoints (docker may readdress a container that restarts).
    pub urls: Arc<RwLock<Vec<String>>>,
    pub history: Arc<History>,
    pub stop: CancellationToken,
    pub names: Names,
    pub seed: u64,
    pub aim: Aim,
}

impl Ctx {
    fn pick(&self, rng: &mut StdRng) -> (usize, String) {
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        let index = rng.random_range(0..urls.len().max(1));
        (index, urls.get(index).cloned().unwrap_or_default())
    }

    /// As [`Ctx::pick`], but half the time the node a nemesis aims at, while it does.
    fn pick_aimed(&self, rng: &mut StdRng) -> (usize, String) {
        let picked = self.pick(rng);
        let Some(aimed) = self.aim.get().filter(|_| rng.random_bool(0.5)) else { return picked };
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        urls.get(aimed).map(|url| (aimed, url.clone())).unwrap_or(picked)
    }

    async fn pause(&self) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(PACE) => true,
        }
    }
}

/// Unique values: the client in the high digits, a counter below.
fn unique(client: usize, n: &mut i64) -> i64 {
    *n += 1;
    (client as i64 + 1) * 1_000_000 + *n
}

fn finish(op: &mut Op, history: &History, answer: &Answer) {
    op.end = history.now();
    op.outcome = answer.write_outcome();
    if op.outcome != Outcome::Ok {
        op.error = Some(answer.describe());
    }
}

pub async fn d1_client(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0xd1 + client as u64));
    let mut n = 0i64;
    let db = ctx.names.db.clone();
    while ctx.pause().await {
        let roll: f64 = rng.random();
        let (node, url) = ctx.pick_aimed(&mut rng);
        if roll < 0.8 {
            let key = format!("r{}", rng.random_range(0..REGISTERS));
            if roll < 0.4 {
                write_register(&ctx, client, node, &url, &db, &key, unique(client, &mut n)).await;
            } else {
                // Half `linearizable` (this replica after the read index), half without a
                // session (primary semantics, D1's default): both must linearize.
                let mut op = Op::new(client, node, OpKind::D1Read, key.clone(), ctx.history.now());
                let mut body = json!({"sql": "SELECT v FROM reg WHERE k = ?", "params": [key]});
                if roll < 0.6 {
                    body["consistency"] = json!("linearizable");
                }
                let answer = ctx.api.d1(&url, &db, body).await;
                finish(&mut op, &ctx.history, &answer);
                // A read that failed says nothing; only answered reads are checked.
                if op.outcome == Outcome::Ok {
                    op.result = answer.json().and_then(|v| v["results"][0]["rows"][0][0].as_i64());
                }
                ctx.history.record(op);
            }
        } else {
            // Read your own write on another node: with the write's bookmark, or without a
            // session at all (primary semantics must give read-your-writes by themselves).
            let key = format!("own-{client}");
            let value = unique(client, &mut n);
            let Some(bookmark) = write_register(&ctx, client, node, &url, &db, &key, value).await else { continue };
            let (node, url) = ctx.pick(&mut rng);
            let with_bookmark = roll < 0.9;
            let kind = if with_bookmark { OpKind::D1BookmarkRead } else { OpKind::D1PrimaryRead };
            let mut op = Op::new(client, node, kind, key.clone(), ctx.history.now());
            op.value = Some(value);
            op.bookmark = Some(bookmark);
            let mut body = json!({"sql": "SELECT v FROM reg WHERE k = ?", "params": [key]});
            if with_bookmark {
                body["consistency"] = json!("bookmark");
                body["bookmark"] = json!(bookmark.to_string());
            }
            let answer = ctx.api.d1(&url, &db, body).await;
            finish(&mut op, &ctx.history, &answer);
            if op.outcome == Outcome::Ok {
                op.result = answer.json().and_then(|v| v["results"][0]["rows"][0][0].as_i64());
            }
            ctx.history.record(op);
        }
    }
}

/// Upserts `key` to `value` and appends `value` to the ledger, as one batch; the bookmark
/// when acknowledged.
async fn write_register(
    ctx: &Ctx,
    client: usize,
    node: usize,
    url: &str,
    db: &str,
    key: &str,
    value: i64,
) -> Option<u64> {
    let mut op = Op::new(client, node, OpKind::D1Write, key, ctx.history.now());
    op.value = Some(value);
    let body = json!({"batch": [
        {"sql": "INSERT INTO reg (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", "params": [key, value]},
        {"sql": "INSERT INTO ledger (v) VALUES (?)", "params": [value]},
    ]});
    let answer = ctx.api.d1(url, db, body).await;
    finish(&mut op, &ctx.history, &answer);
    if op.outcome == Outcome::Ok {
        op.bookmark = answer.json().and_then(|v| v["bookmark"].as_str().and_then(|b| b.parse().ok()));
    }
    let bookmark = op.bookmark;
    let acked = op.outcome == Outcome::Ok;
    ctx.history.record(op);
    if acked {
        bookmark
    } else {
        None
    }
}

pub async fn kv_client(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0xc0 + client as u64));
    let mut n = 0i64;
    let ns = ctx.names.namespace.clone();
    while ctx.pause().await {
        let key = format!("c{client}-k{}", rng.random_range(0..KV_KEYS_PER_CLIENT));
        let (node, url) = ctx.pick(&mut rng);
        let put = rng.random_bool(0.7);
        let mut op =
            Op::new(client, node, if put { OpKind::KvPut } else { OpKind::KvDelete }, key.clone(), ctx.history.now());
        let answer = if put {
            let value = unique(client, &mut n);
            op.value = Some(value);
            ctx.api.kv_put(&url, &ns, &key, &value.to_string()).await
        } else {
            ctx.api.kv_delete(&url, &ns, &key).await
        };
        finish(&mut op, &ctx.history, &answer);
        if op.outcome == Outcome::Ok {
            op.version = answer.json().and_then(|v| {
                let version = &v["version"];
                Some((version["hlc"].as_u64()?, version["node"].as_str()?.to_owned()))
            });
        }
        ctx.history.record(op);
    }
}

pub async fn counter_client(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0xd0 + client as u64));
    let path = format!("/{}", ctx.names.counter);
    while ctx.pause().await {
        let (node, url) = ctx.pick_aimed(&mut rng);
        let mut op = Op::new(client, node, OpKind::Increment, ctx.names.counter.clone(), ctx.history.now());
        let answer = ctx.api.worker(&url, "counter", &path).await;
        finish(&mut op, &ctx.history, &answer);
        if op.outcome == Outcome::Ok {
            match &answer {
                Answer::Reply { body, .. } => op.result = body.trim().parse().ok(),
                _ => op.outcome = Outcome::Unknown,
            }
            if op.result.is_none() {
                op.outcome = Outcome::Unknown;
                op.error = Some(format!("not a count: {}", answer.describe()));
            }
        }
        ctx.history.record(op);
    }
}

pub async fn hello_client(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x4e + client as u64));
    while ctx.pause().await {
        let (node, url) = ctx.pick(&mut rng);
        let mut op = Op::new(client, node, OpKind::Hello, "/", ctx.history.now());
        let answer = ctx.api.worker(&url, "hello", "/").await;
        finish(&mut op, &ctx.history, &answer);
        ctx.history.record(op);
    }
}

/// Objects each R2 client owns.
pub const R2_KEYS_PER_CLIENT: usize = 3;
/// What a read records for a body that is not the whole body of any write.
pub const TORN: i64 = -1;

/// The body of an R2 write of `value`: the value, then filler derived from it; one in eight
/// is 5 MiB (two chunks), the rest small.
pub fn r2_body(value: i64) -> String {
    let size = if value % 8 == 0 { 5 << 20 } else { 200 };
    let mut body = format!("{value}\n");
    let filler = format!("{:x}", value.wrapping_mul(0x9E37_79B9));
    while body.len() < size {
        body.push_str(&filler);
    }
    body.truncate(size);
    body
}

/// The value a body was made from, if it is whole.
pub fn r2_value(body: &str) -> i64 {
    let parsed = body.split('\n').next().and_then(|v| v.parse::<i64>().ok());
    match parsed {
        Some(value) if r2_body(value) == body => value,
        _ => TORN,
    }
}

pub async fn r2_client(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x42 + client as u64));
    let mut n = 0i64;
    let bucket = ctx.names.bucket.clone();
    while ctx.pause().await {
        let key = format!("c{client}-o{}", rng.random_range(0..R2_KEYS_PER_CLIENT));
        let (node, url) = ctx.pick(&mut rng);
        if rng.random_bool(0.5) {
            let value = unique(client, &mut n);
            let mut op = Op::new(client, node, OpKind::R2Put, key.clone(), ctx.history.now());
            op.value = Some(value);
            let answer = ctx.api.r2_put(&url, &bucket, &key, r2_body(value)).await;
            finish(&mut op, &ctx.history, &answer);
            ctx.history.record(op);
        } else {
            let mut op = Op::new(client, node, OpKind::R2Get, key.clone(), ctx.history.now());
            let answer = ctx.api.r2_get(&url, &bucket, &key).await;
            op.end = ctx.history.now();
            match &answer {
                Answer::Reply { status: 200, body } => {
                    op.outcome = Outcome::Ok;
                    op.result = Some(r2_value(body));
                }
                Answer::Reply { status: 404, .. } => op.outcome = Outcome::Ok,
                other => {
                    op.outcome = Outcome::Fail;
                    op.error = Some(other.describe());
                }
            }
            ctx.history.record(op);
        }
    }
}

/// The visibility timeout of the queue workload's pulls: a pull whose answer was lost gives
/// its messages back this long after.
pub const PULL_VISIBILITY_MS: u64 = 5_000;

/// Sends messages with unique bodies to the scenario's queue through random nodes.
pub async fn queue_sender(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x9e + client as u64));
    let mut n = 0i64;
    let queue = ctx.names.queue.clone();
    while ctx.pause().await {
        let (node, url) = ctx.pick(&mut rng);
        let value = unique(client, &mut n);
        let mut op = Op::new(client, node, OpKind::QueueSend, queue.clone(), ctx.history.now());
        op.value = Some(value);
        let answer = ctx.api.queue_send(&url, &queue, value).await;
        finish(&mut op, &ctx.history, &answer);
        ctx.history.record(op);
    }
}

/// Pulls batches through random nodes, records every message received and acknowledges it.
pub async fn queue_puller(ctx: Ctx, client: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x9f + client as u64));
    let queue = ctx.names.queue.clone();
    while ctx.pause().await {
        let (node, url) = ctx.pick(&mut rng);
        let start = ctx.history.now();
        let Some(pulled) = ctx.api.queue_pull(&url, &queue, 10, PULL_VISIBILITY_MS).await.json() else { continue };
        let mut leases = Vec::new();
        for message in pulled["messages"].as_array().into_iter().flatten() {
            let mut op = Op::new(client, node, OpKind::QueueReceive, queue.clone(), start);
            op.value = message["body"].as_i64();
            op.outcome = Outcome::Ok;
            op.end = ctx.history.now();
            ctx.history.record(op);
            if let Some(lease) = message["lease_id"].as_str() {
                leases.push(lease.to_string());
            }
        }
        if !leases.is_empty() {
            // An ack that is lost only means a redelivery: the checker counts duplicates.
            let _ = ctx.api.queue_ack(&url, &queue, &leases).await;
        }
    }
}
