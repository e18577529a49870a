//! A node's Queues and Cron Triggers management API (`/v1/queues/…`, `/v1/cron/…`): queues,
//! consumers, sends and peeks, HTTP pull consumers (Cloudflare's pull, ack and retry), and
//! the cron runs of a worker.

use serde::{Deserialize, Serialize};

/// A consumer's settings, with Cloudflare's names (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// `worker` or `http_pull`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The consuming worker, for `worker` consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub max_batch_size: u32,
    pub max_batch_timeout: u32,
    pub max_retries: u32,
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    pub retry_delay: u32,
    pub max_concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub created_ms: u64,
    pub consumer: Option<ConsumerInfo>,
    /// Messages stored: waiting, delayed or in flight.
    pub backlog: u64,
    pub in_flight: u64,
    pub oldest_message_age_secs: Option<f64>,
    pub sent: u64,
    pub acked: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    /// The batches in flight (`GET /v1/queues/{queue}` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseInfo>,
}

/// A batch in flight: which node (or `http` for a pull) holds it, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: String,
    pub holder: String,
    pub until_ms: u64,
    pub messages: u64,
}

/// `GET /v1/queues`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queues {
    pub queues: Vec<QueueInfo>,
}

/// `POST /v1/queues`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateQueue {
    pub name: String,
}

/// `PUT /v1/queues/{queue}/consumer`: every field but `type` optional (Cloudflare's defaults).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConsumer {
    /// `worker` (the default when `script` is given) or `http_pull`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub max_batch_size: Option<u32>,
    #[serde(default)]
    pub max_batch_timeout: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    #[serde(default)]
    pub retry_delay: Option<u32>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// One message of `POST /v1/queues/{queue}/messages` (a body of `{"messages": [...]}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// JSON for `json` and `v8`, a string for `text`, base64 for `bytes`.
    pub body: serde_json::Value,
    /// `json` (default), `text`, `bytes` or `v8`.
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub delay_seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessages {
    pub messages: Vec<SendMessage>,
}

/// The answer to a send: the messages' ids, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub ids: Vec<String>,
}

/// A message as a peek or a pull shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageInfo {
    pub id: String,
    pub timestamp_ms: u64,
    /// As sent: JSON for `json` and `v8`, a string for `text`, base64 for `bytes`.
    pub body: serde_json::Value,
    pub content_type: String,
    pub attempts: u32,
    /// Pulls only: what `ack` and `retry` name it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Messages {
    pub messages: Vec<MessageInfo>,
}

/// `POST /v1/queues/{queue}/messages/pull` (Cloudflare's body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pull {
    #[serde(default)]
    pub batch_size: Option<u32>,
    #[serde(default)]
    pub visibility_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    pub lease_id: String,
    #[serde(default)]
    pub delay_seconds: Option<u32>,
}

/// `POST /v1/queues/{queue}/messages/ack` (Cloudflare's body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    #[serde(default)]
    pub acks: Vec<LeaseRef>,
    #[serde(default)]
    pub retries: Vec<LeaseRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acked {
    /// Messages settled; one whose lease expired meanwhile is not (it is delivered again).
    pub settled: u64,
}

/// A cron run as `GET /v1/cron/{worker}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronRun {
    pub cron: String,
    pub scheduled_ms: u64,
    /// The node that ran it.
    pub node: String,
    /// `running`, `ok`, `error` or `skipped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CronRuns {
    pub worker: String,
    /// The worker's cron triggers as installed on the node asked.
    pub crons: Vec<String>,
    pub runs: Vec<CronRun>,
}

/// `POST /v1/cron/{worker}/trigger`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub cron: String,
}
