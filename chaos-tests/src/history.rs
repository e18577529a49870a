//! Operations as the clients saw them: who asked what of which node, when the call started and
//! ended (relative to the run's start), and how it came out.
//!
//! An outcome is one of three: **ok** (acknowledged), **fail** (definitely not applied: refused
//! with a 4xx, or the node could not be reached at all) and **unknown** (a timeout or a 5xx
//! after the request was sent: it may or may not apply). Checkers treat unknown writes as
//! possibly applied at any time after they started.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// D1: upsert the register `key` to `value` and record `value` in the ledger.
    D1Write,
    /// D1: a `linearizable` or session-less (primary) read of the register `key`.
    D1Read,
    /// D1: a `bookmark` read of the client's own register right after writing it.
    D1BookmarkRead,
    /// D1: a read without a session of the client's own register right after writing it.
    D1PrimaryRead,
    KvPut,
    KvDelete,
    /// Durable Object counter increment; `result` is the value it answered.
    Increment,
    /// R2: put the object `key` with a body made from `value`.
    R2Put,
    /// R2: get the object `key`; `result` is the value its body was made from (`None`:
    /// absent; [`crate::workload::TORN`]: a body that is not whole).
    R2Get,
    /// Queues: send a message whose body is `value`.
    QueueSend,
    /// Queues: a message an HTTP pull received (`value`: its body).
    QueueReceive,
    /// Hello worker request.
    Hello,
}

#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub client: usize,
    /// Index of the node the request went to.
    pub node: usize,
    pub kind: OpKind,
    pub key: String,
    /// What was written.
    pub value: Option<i64>,
    /// What was read (`None`: absent).
    pub result: Option<i64>,
    /// KV: the version the node gave the write (`hlc`, node id), which orders writes.
    pub version: Option<(u64, String)>,
    /// D1: the write's bookmark (commit index).
    pub bookmark: Option<u64>,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl Op {
    pub fn new(client: usize, node: usize, kind: OpKind, key: impl Into<String>, start: Duration) -> Op {
        Op {
            client,
            node,
            kind,
            key: key.into(),
            value: None,
            result: None,
            version: None,
            bookmark: None,
            start,
            end: start,
            outcome: Outcome::Unknown,
            error: None,
        }
    }
}

/// Every operation of one run, in completion order.
pub struct History {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new(t0: Instant) -> History {
        History { t0, ops: Mutex::new(Vec::new()) }
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn of_kind(&self, kinds: &[OpKind]) -> Vec<Op> {
        self.ops().into_iter().filter(|op| kinds.contains(&op.kind)).collect()
    }
}
