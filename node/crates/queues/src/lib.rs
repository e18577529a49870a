//! Queues and Cron Triggers with Cloudflare's behaviour. `QUEUES.md` (next to
//! `ARCHITECTURE.md`) is the design and its arguments.
//!
//! Owns `<data_dir>/queues/queues.sqlite`, an application of D1's Raft group reached through
//! the [`QueueLog`] trait the node hands in. Guarantees:
//! - a send returns only once its messages are committed by a quorum of the group, fsynced;
//! - every message sent is delivered at least once, until acknowledged, retried past
//!   `max_retries` (then to the dead-letter queue, or dropped and counted) or past retention:
//!   a lease whose holder dies or cannot settle expires, and its messages are leased again;
//! - a cron tick of a worker is claimed once in the log before it runs, so it runs at most
//!   once across the cluster; ticks missed for longer than the catch-up deadline are
//!   recorded as skipped, never run late;
//! - the limits (message 128 KB, batch 100 messages and 256 KB, delay 12 h) are checked
//!   before anything is proposed: a refused send stores nothing.
//!
//! Must never: depend on a sibling store or the runtime (handlers run through the
//! [`EventHost`] the node hands in); keep a timer per message (the dispatcher reads the
//! due-time index).
//!
//! # Layout
//! - [`state`]: the state machine (queues, consumers, messages, leases, cron runs) and its
//!   local reads.
//! - `dispatch`: the leader's dispatcher (leases, expiry, cron claims) and every node's
//!   runner of the leases and runs it holds.
//! - [`QueueError`]: every failure.

mod dispatch;
mod error;
pub mod state;

pub use error::QueueError;

use nimbus_cluster::Membership;
use nimbus_util::config::QueuesConfig;
use state::{Command, Consumer, ContentType, Decision, Message, NewMessage, QueueInfo, Reply, Run, State};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The largest message body (Cloudflare: 128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// The most messages one `sendBatch` carries.
pub const MAX_BATCH_MESSAGES: usize = 100;
/// The most bytes one `sendBatch` carries, bodies together.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The longest delivery delay a producer may ask (12 h).
pub use state::MAX_DELAY_SECS;
/// The largest `max_batch_size` of a consumer.
pub const MAX_BATCH_SIZE: u32 = 100;
/// The most messages one HTTP pull returns.
pub const MAX_PULL: u32 = 100;

/// How Queues reaches the Raft group that orders its state: handed in at construction (the
/// node adapts D1's group).
#[async_trait::async_trait]
pub trait QueueLog: Send + Sync + 'static {
    /// Commits an encoded [`Command`] through the leader; the encoded [`Reply`].
    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, QueueError>;
    /// Returns once this replica has applied every command committed before the call.
    async fn linearize(&self) -> Result<(), QueueError>;
    /// Whether this node leads the group now (its dispatcher is the one that acts).
    fn leads(&self) -> bool;
}

/// Runs workers' handlers for Queues: handed in at construction (the runtime's table of
/// installed workers implements it).
#[async_trait::async_trait]
pub trait EventHost: Send + Sync + 'static {
    /// Runs `worker`'s `queue` handler over a batch of `queue`; a decision for every
    /// message. `Err` (no handler, a trap, a limit) retries the whole batch.
    async fn queue(&self, worker: &str, queue: &str, messages: &[Message]) -> Result<Vec<Decision>, String>;
    /// Whether `worker` is installed on this node (the dispatcher leases only to those).
    fn has_worker(&self, worker: &str) -> bool;
    /// Runs `worker`'s `scheduled` handler for the tick `scheduled_ms` of `cron`.
    async fn scheduled(&self, worker: &str, cron: &str, scheduled_ms: u64) -> Result<(), String>;
    /// The cron triggers of the installed workers: (worker, expression).
    fn crons(&self) -> Vec<(String, String)>;
    /// The queues installed workers produce to or consume (created when missing) and the
    /// consumers they declare.
    fn declared(&self) -> Vec<(String, Option<Consumer>)>;
}

/// A message as a producer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub content_type: ContentType,
    pub delay_secs: Option<u32>,
}

/// Queue names as Cloudflare allows them (the manifest's rule): 1 to 63 of lowercase
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn check_queue_name(name: &str) -> Result<(), QueueError> {
    nimbus_proto::manifest::validate_queue_name(name).map_err(|_| QueueError::InvalidQueueName(name.to_owned()))
}

/// Checks a consumer's settings against Cloudflare's bounds.
pub fn check_consumer(consumer: &Consumer) -> Result<(), QueueError> {
    let s = &consumer.settings;
    let bad = |what: String| Err(QueueError::InvalidInput(what));
    if !(1..=MAX_BATCH_SIZE).contains(&s.max_batch_size) {
        return bad(format!("max_batch_size is 1 to {MAX_BATCH_SIZE}; got {}", s.max_batch_size));
    }
    if s.max_batch_timeout_secs > 60 {
        return bad(format!("max_batch_timeout is 0 to 60 seconds; got {}", s.max_batch_timeout_secs));
    }
    if s.max_retries > 100 {
        return bad(format!("max_retries is 0 to 100; got {}", s.max_retries));
    }
    if s.retry_delay_secs > MAX_DELAY_SECS {
        return bad(format!("retry_delay is 0 to {MAX_DELAY_SECS} seconds; got {}", s.retry_delay_secs));
    }
    if !(1..=250).contains(&s.max_concurrency) {
        return bad(format!("max_concurrency is 1 to 250; got {}", s.max_concurrency));
    }
    if let Some(dlq) = &s.dead_letter_queue {
        check_queue_name(dlq)?;
    }
    Ok(())
}

/// Checks a batch against the limits: refused whole, before anything is proposed.
pub fn check_batch(messages: &[Outgoing]) -> Result<(), QueueError> {
    if messages.is_empty() {
        return Err(QueueError::InvalidInput("a batch holds at least one message".into()));
    }
    if messages.len() > MAX_BATCH_MESSAGES {
        return Err(QueueError::TooLarge(format!(
            "a batch holds at most {MAX_BATCH_MESSAGES} messages; this has {}",
            messages.len()
        )));
    }
    let mut total = 0;
    for (at, message) in messages.iter().enumerate() {
        if message.body.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge(format!(
                "message {at} is {} bytes; a message is at most {MAX_MESSAGE_BYTES} bytes (128 KB)",
                message.body.len()
            )));
        }
        if message.delay_secs.is_some_and(|d| d > MAX_DELAY_SECS) {
            return Err(QueueError::InvalidInput(format!(
                "message {at}: delaySeconds is at most {MAX_DELAY_SECS} (12 hours)"
            )));
        }
        total += message.body.len();
    }
    if total > MAX_BATCH_BYTES {
        return Err(QueueError::TooLarge(format!(
            "the batch is {total} bytes; a batch is at most {MAX_BATCH_BYTES} bytes (256 KB)"
        )));
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new message or lease id: 32 hex digits, as Cloudflare's message ids.
fn fresh_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Opens this node's state file (before the Raft group starts, which feeds it).
pub fn open_state(data_dir: &Path) -> Result<Arc<State>, QueueError> {
    State::open(&data_dir.join("queues").join("queues.sqlite")).map(Arc::new)
}

/// The Queues handle every front end (bindings, the management API) uses.
#[derive(Clone)]
pub struct Queues {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    log: Arc<dyn QueueLog>,
    host: Arc<dyn EventHost>,
    membership: Membership,
    config: QueuesConfig,
    /// Leases and cron runs this node's runner has started.
    started: dispatch::Started,
    /// Bounds the batches and cron runs this node runs at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// When this process started: a run it holds that was claimed before is from a previous
    /// life of the node, and is never run again (at most once).
    started_ms: u64,
    /// When this process first saw each (worker, cron), in schedule time.
    first_seen: std::sync::Mutex<HashMap<(String, String), u64>>,
}

/// A metric of every queue: name, type, help, and its value for a queue at a time.
type MetricFamily = (&'static str, &'static str, &'static str, fn(&QueueInfo, u64) -> f64);

/// A message as an HTTP pull client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub message: Message,
    /// What the client acknowledges or retries it by: `<lease>.<message id>`.
    pub lease_id: String,
}

impl Queues {
    pub fn new(
        config: &QueuesConfig,
        state: Arc<State>,
        log: Arc<dyn QueueLog>,
        host: Arc<dyn EventHost>,
        membership: Membership,
    ) -> Self {
        Queues {
            inner: Arc::new(Inner {
                state,
                log,
                host,
                membership,
                config: config.clone(),
                started: Default::default(),
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_batches_per_node.max(1))),
                started_ms: now_ms(),
                first_seen: Default::default(),
            }),
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.inner.state
    }

    pub fn config(&self) -> &QueuesConfig {
        &self.inner.config
    }

    async fn propose(&self, command: Command) -> Result<Reply, QueueError> {
        let bytes = postcard::to_allocvec(&command).map_err(|e| QueueError::Internal(e.to_string()))?;
        let reply = self.inner.log.propose(bytes).await?;
        match postcard::from_bytes::<Reply>(&reply) {
            Ok(Reply::Refused(refusal)) => Err(refusal.into()),
            Ok(reply) => Ok(reply),
            Err(e) => Err(QueueError::Internal(format!("a queues reply did not decode: {e}"))),
        }
    }

    /// Creates `name`; `Ok(false)` if it existed.
    pub async fn create_queue(&self, name: &str) -> Result<bool, QueueError> {
        check_queue_name(name)?;
        match self.propose(Command::CreateQueue { name: name.to_owned(), time_ms: now_ms() }).await? {
            Reply::Created(created) => Ok(created),
            other => Err(QueueError::Internal(format!("create answered {other:?}"))),
        }
    }

    /// Deletes `name` with every message in it.
    pub async fn delete_queue(&self, name: &str) -> Result<(), QueueError> {
        check_queue_name(name)?;
        self.propose(Command::DeleteQueue { name: name.to_owned() }).await.map(|_| ())
    }

    pub async fn put_consumer(&self, queue: &str, consumer: Consumer) -> Result<(), QueueError> {
        check_queue_name(queue)?;
        check_consumer(&consumer)?;
        self.propose(Command::PutConsumer { queue: queue.to_owned(), consumer, time_ms: now_ms() }).await.map(|_| ())
    }

    pub async fn delete_consumer(&self, queue: &str) -> Result<(), QueueError> {
        check_queue_name(queue)?;
        self.propose(Command::DeleteConsumer { queue: queue.to_owned() }).await.map(|_| ())
    }

    /// Sends a batch; returns once it is committed (quorum, fsynced), with the messages' ids.
    pub async fn send(&self, queue: &str, messages: Vec<Outgoing>) -> Result<Vec<String>, QueueError> {
        check_queue_name(queue)?;
        check_batch(&messages)?;
        let messages: Vec<NewMessage> = messages
            .into_iter()
            .map(|m| NewMessage {
                id: fresh_id(),
                body: m.body,
                content_type: m.content_type,
                delay_secs: m.delay_secs.unwrap_or(0),
            })
            .collect();
        let ids = messages.iter().map(|m| m.id.clone()).collect();
        self.propose(Command::Send { queue: queue.to_owned(), messages, time_ms: now_ms() }).await?;
        Ok(ids)
    }

    /// Every queue with its counts, as of the leader's latest commit.
    pub async fn list(&self) -> Result<Vec<QueueInfo>, QueueError> {
        self.inner.log.linearize().await?;
        self.inner.state.queues()
    }

    pub async fn info(&self, name: &str) -> Result<QueueInfo, QueueError> {
        check_queue_name(name)?;
        self.inner.log.linearize().await?;
        self.inner.state.queue(name)?.ok_or_else(|| QueueError::NoSuchQueue(name.to_owned()))
    }

    /// Up to `max` messages waiting in `queue`, next first, left where they are.
    pub async fn peek(&self, queue: &str, max: u32) -> Result<Vec<Message>, QueueError> {
        self.info(queue).await?;
        self.inner.state.peek(queue, max.min(MAX_PULL))
    }

    /// HTTP pull: leases up to `batch_size` due messages for `visibility_ms`.
    pub async fn pull(&self, queue: &str, batch_size: u32, visibility_ms: u64) -> Result<Vec<Pulled>, QueueError> {
        check_queue_name(queue)?;
        match self.inner.state.consumer(queue)? {
            Some(consumer) if !matches!(consumer.as_ref().map(|c| &c.kind), Some(state::ConsumerKind::HttpPull)) => {
                return Err(QueueError::WrongConsumer(
                    queue.to_owned(),
                    "it has no HTTP pull consumer (`nimbus queues consumer add --http-pull`)".into(),
                ))
            }
            _ => {}
        }
        let lease = fresh_id();
        let now = now_ms();
        let visibility_ms = visibility_ms.clamp(1_000, 12 * 3600 * 1000);
        let command = Command::Lease {
            queue: queue.to_owned(),
            lease: lease.clone(),
            holder: "http".into(),
            max: batch_size.clamp(1, MAX_PULL),
            time_ms: now,
            until_ms: now + visibility_ms,
        };
        match self.propose(command).await? {
            Reply::Leased(messages) => Ok(messages
                .into_iter()
                .map(|message| Pulled { lease_id: format!("{lease}.{}", message.id), message })
                .collect()),
            other => Err(QueueError::Internal(format!("pull answered {other:?}"))),
        }
    }

    /// HTTP pull: acknowledges and retries messages by their lease ids. Returns how many
    /// were settled; one whose lease expired meanwhile is not (it will be delivered again).
    pub async fn settle(&self, queue: &str, decisions: Vec<(String, Decision)>) -> Result<u64, QueueError> {
        check_queue_name(queue)?;
        let mut by_lease: std::collections::BTreeMap<String, Vec<(String, Decision)>> = Default::default();
        for (lease_id, decision) in decisions {
            let Some((lease, id)) = lease_id.split_once('.') else {
                return Err(QueueError::InvalidInput(format!("{lease_id:?} is not a lease id from a pull")));
            };
            by_lease.entry(lease.to_owned()).or_default().push((id.to_owned(), decision));
        }
        let mut settled = 0;
        for (lease, decisions) in by_lease {
            match self.inner.state.lease(&lease)? {
                Some(found) if found.queue != queue => {
                    return Err(QueueError::InvalidInput(format!("lease {lease} is not of queue {queue}")))
                }
                _ => {}
            }
            match self.propose(Command::Settle { lease, decisions, time_ms: now_ms() }).await {
                Ok(Reply::Settled(s)) => settled += s.acked + s.retried + s.dead_lettered + s.dropped,
                Ok(_) | Err(QueueError::NoSuchLease(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(settled)
    }

    /// The recorded cron runs of `worker`, newest first.
    pub async fn runs(&self, worker: &str) -> Result<Vec<Run>, QueueError> {
        self.inner.log.linearize().await?;
        self.inner.state.runs(worker, state::RUNS_KEPT as u32)
    }

    /// Runs `worker`'s scheduled handler for `cron` now, outside the schedule (wrangler's
    /// `--test-scheduled`): nothing is claimed or recorded.
    pub async fn trigger(&self, worker: &str, cron: &str) -> Result<(), String> {
        let scheduled = now_ms() / 60_000 * 60_000;
        self.inner.host.scheduled(worker, cron, scheduled).await
    }

    /// Prometheus text for every queue: backlog, in flight, the age of the oldest message and
    /// the counters (the replicated state's, the same on every node).
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let queues = match self.inner.state.queues() {
            Ok(queues) => queues,
            Err(e) => {
                tracing::warn!("queue metrics: {e}");
                return String::new();
            }
        };
        let now = now_ms();
        let mut out = String::new();
        let families: [MetricFamily; 8] = [
            ("backlog", "gauge", "Messages stored in the queue (waiting, delayed or in flight).", |q, _| {
                q.backlog as f64
            }),
            ("in_flight", "gauge", "Messages leased to a consumer now.", |q, _| q.in_flight as f64),
            ("oldest_message_age_seconds", "gauge", "Age of the oldest message stored.", |q, now| {
                q.oldest_sent_ms.map(|t| now.saturating_sub(t) as f64 / 1000.0).unwrap_or(0.0)
            }),
            ("sent", "counter", "Messages sent to the queue.", |q, _| q.sent as f64),
            ("acked", "counter", "Messages acknowledged.", |q, _| q.acked as f64),
            ("retried", "counter", "Deliveries retried.", |q, _| q.retried as f64),
            ("dead_lettered", "counter", "Messages moved to the dead-letter queue.", |q, _| q.dead_lettered as f64),
            ("dropped", "counter", "Messages dropped (retries exhausted without a DLQ, or retention).", |q, _| {
                q.dropped as f64
            }),
        ];
        for (name, kind, help, value) in families {
            // OpenMetrics: a counter's samples end in `_total`, its family name does not.
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "# HELP nimbus_queue_{name} {help}");
            let _ = writeln!(out, "# TYPE nimbus_queue_{name} {kind}");
            for queue in &queues {
                // Queue names are checked: no quotes or backslashes to escape.
                let _ = writeln!(out, "nimbus_queue_{name}{suffix}{{queue=\"{}\"}} {}", queue.name, value(queue, now));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
