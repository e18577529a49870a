//! Queues' and Cron Triggers' management API on every node. Scope `queues`:
//! `/v1/queues` (GET lists, POST creates), `/v1/queues/{queue}` (GET info, DELETE),
//! `/v1/queues/{queue}/consumer` (PUT sets, DELETE removes), `/v1/queues/{queue}/messages`
//! (POST sends), `…/messages/peek?limit=`, and Cloudflare's HTTP pull consumer:
//! `…/messages/pull` and `…/messages/ack`. Scope `workers`: `/v1/cron/{worker}` (the recorded
//! runs) and `/v1/cron/{worker}/trigger` (runs the scheduled handler now, like wrangler's
//! `--test-scheduled`). [`queue_response`] maps Queues' errors to HTTP, the one place for
//! this API.

use super::Edge;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use nimbus_api::control::ApiError;
use nimbus_api::queues::{
    Ack, Acked, ConsumerInfo, CreateQueue, CronRun, CronRuns, LeaseInfo, MessageInfo, Messages, Pull, PutConsumer,
    QueueInfo, Queues, SendMessages, Sent, Trigger,
};
use nimbus_queues::state::{self, Consumer, ConsumerKind, ConsumerSettings, ContentType, Decision, RunStatus};
use nimbus_queues::{Outgoing, QueueError};
use serde::Deserialize;

pub fn routes() -> Router<Edge> {
    Router::new()
        .route("/v1/queues", get(list).post(create))
        .route("/v1/queues/{queue}", get(info).delete(remove))
        .route("/v1/queues/{queue}/consumer", put(put_consumer).delete(delete_consumer))
        .route("/v1/queues/{queue}/messages", post(send))
        .route("/v1/queues/{queue}/messages/peek", get(peek))
        .route("/v1/queues/{queue}/messages/pull", post(pull))
        .route("/v1/queues/{queue}/messages/ack", post(ack))
        .route("/v1/cron/{worker}", get(cron_runs))
        .route("/v1/cron/{worker}/trigger", post(trigger))
}

fn queue_response(error: QueueError) -> Response {
    let status = match &error {
        QueueError::NoSuchQueue(_) | QueueError::NoConsumer(_) | QueueError::NoSuchLease(_) => StatusCode::NOT_FOUND,
        QueueError::QueueExists(_) | QueueError::Claimed | QueueError::WrongConsumer(..) => StatusCode::CONFLICT,
        QueueError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        QueueError::InvalidQueueName(_) | QueueError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        QueueError::Busy => StatusCode::TOO_MANY_REQUESTS,
        QueueError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        QueueError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!("queues: {error}");
    }
    (status, Json(ApiError { error: error.to_string() })).into_response()
}

fn bad_request(message: String) -> Response {
    queue_response(QueueError::InvalidInput(message))
}

fn consumer_info(consumer: Consumer) -> ConsumerInfo {
    let s = consumer.settings;
    let (kind, script) = match consumer.kind {
        ConsumerKind::Worker(worker) => ("worker", Some(worker)),
        ConsumerKind::HttpPull => ("http_pull", None),
    };
    ConsumerInfo {
        kind: kind.into(),
        script,
        max_batch_size: s.max_batch_size,
        max_batch_timeout: s.max_batch_timeout_secs,
        max_retries: s.max_retries,
        dead_letter_queue: s.dead_letter_queue,
        retry_delay: s.retry_delay_secs,
        max_concurrency: s.max_concurrency,
    }
}

fn queue_info(info: state::QueueInfo) -> QueueInfo {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    QueueInfo {
        name: info.name,
        created_ms: info.created_ms,
        consumer: info.consumer.map(consumer_info),
        backlog: info.backlog,
        in_flight: info.in_flight,
        oldest_message_age_secs: info.oldest_sent_ms.map(|t| now.saturating_sub(t) as f64 / 1000.0),
        sent: info.sent,
        acked: info.acked,
        retried: info.retried,
        dead_lettered: info.dead_lettered,
        dropped: info.dropped,
        leases: Vec::new(),
    }
}

/// A message's body as JSON: parsed for `json` / `v8`, a string for `text`, base64 for
/// `bytes` (and for a `json` body that does not parse, which no producer of ours sends).
fn body_value(body: &[u8], content_type: ContentType) -> serde_json::Value {
    let base64 = || serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(body));
    match content_type {
        ContentType::Json | ContentType::V8 => serde_json::from_slice(body).unwrap_or_else(|_| base64()),
        ContentType::Text => {
            std::str::from_utf8(body).map(|s| serde_json::Value::String(s.into())).unwrap_or_else(|_| base64())
        }
        ContentType::Bytes => base64(),
    }
}

fn message_info(message: state::Message, lease_id: Option<String>) -> MessageInfo {
    MessageInfo {
        body: body_value(&message.body, message.content_type),
        id: message.id,
        timestamp_ms: message.sent_ms,
        content_type: message.content_type.as_str().into(),
        attempts: message.attempts,
        lease_id,
    }
}

async fn list(State(edge): State<Edge>) -> Response {
    match edge.queues.list().await {
        Ok(queues) => Json(Queues { queues: queues.into_iter().map(queue_info).collect() }).into_response(),
        Err(e) => queue_response(e),
    }
}

async fn create(State(edge): State<Edge>, Json(request): Json<CreateQueue>) -> Response {
    match edge.queues.create_queue(&request.name).await {
        Ok(true) => (StatusCode::CREATED, Json(request)).into_response(),
        Ok(false) => queue_response(QueueError::QueueExists(request.name)),
        Err(e) => queue_response(e),
    }
}

async fn info(State(edge): State<Edge>, Path(queue): Path<String>) -> Response {
    let leases =
        match edge.queues.info(&queue).await.and_then(|info| Ok((info, edge.queues.state().leases_in(&queue)?))) {
            Ok((info, leases)) => (info, leases),
            Err(e) => return queue_response(e),
        };
    let (info, leases) = leases;
    let mut reply = queue_info(info);
    reply.leases = leases
        .into_iter()
        .map(|(lease, messages)| LeaseInfo { id: lease.id, holder: lease.holder, until_ms: lease.until_ms, messages })
        .collect();
    Json(reply).into_response()
}

async fn remove(State(edge): State<Edge>, Path(queue): Path<String>) -> Response {
    match edge.queues.delete_queue(&queue).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => queue_response(e),
    }
}

async fn put_consumer(
    State(edge): State<Edge>,
    Path(queue): Path<String>,
    Json(request): Json<PutConsumer>,
) -> Response {
    let kind = match (request.kind.as_deref(), request.script) {
        (Some("http_pull"), None) => ConsumerKind::HttpPull,
        (Some("worker") | None, Some(script)) => ConsumerKind::Worker(script),
        (Some("http_pull"), Some(_)) => return bad_request("an http_pull consumer names no script".into()),
        (Some("worker") | None, None) => return bad_request("a worker consumer names its `script`".into()),
        (Some(other), _) => return bad_request(format!("consumer type {other:?} is neither `worker` nor `http_pull`")),
    };
    let defaults = ConsumerSettings::default();
    let settings = ConsumerSettings {
        max_batch_size: request.max_batch_size.unwrap_or(defaults.max_batch_size),
        max_batch_timeout_secs: request.max_batch_timeout.unwrap_or(defaults.max_batch_timeout_secs),
        max_retries: request.max_retries.unwrap_or(defaults.max_retries),
        dead_letter_queue: request.dead_letter_queue,
        retry_delay_secs: request.retry_delay.unwrap_or(defaults.retry_delay_secs),
        max_concurrency: request.max_concurrency.unwrap_or(defaults.max_concurrency),
    };
    let consumer = Consumer { kind, settings };
    match edge.queues.put_consumer(&queue, consumer.clone()).await {
        Ok(()) => Json(consumer_info(consumer)).into_response(),
        Err(e) => queue_response(e),
    }
}

async fn delete_consumer(State(edge): State<Edge>, Path(queue): Path<String>) -> Response {
    match edge.queues.delete_consumer(&queue).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => queue_response(e),
    }
}

async fn send(State(edge): State<Edge>, Path(queue): Path<String>, Json(request): Json<SendMessages>) -> Response {
    let mut messages = Vec::with_capacity(request.messages.len());
    for (at, message) in request.messages.into_iter().enumerate() {
        let name = message.content_type.as_deref().unwrap_or("json");
        let Some(content_type) = ContentType::parse(name) else {
            return bad_request(format!("message {at}: content_type {name:?} is not json, text, bytes or v8"));
        };
        let body = match (content_type, message.body) {
            (ContentType::Text, serde_json::Value::String(text)) => text.into_bytes(),
            (ContentType::Bytes, serde_json::Value::String(encoded)) => {
                match base64::engine::general_purpose::STANDARD.decode(encoded) {
                    Ok(bytes) => bytes,
                    Err(e) => return bad_request(format!("message {at}: a bytes body is base64: {e}")),
                }
            }
            (ContentType::Text | ContentType::Bytes, _) => {
                return bad_request(format!("message {at}: a {name} body is a JSON string"))
            }
            (_, value) => value.to_string().into_bytes(),
        };
        messages.push(Outgoing { body, content_type, delay_secs: message.delay_seconds });
    }
    match edge.queues.send(&queue, messages).await {
        Ok(ids) => (StatusCode::CREATED, Json(Sent { ids })).into_response(),
        Err(e) => queue_response(e),
    }
}

#[derive(Deserialize)]
struct PeekQuery {
    limit: Option<u32>,
}

async fn peek(State(edge): State<Edge>, Path(queue): Path<String>, Query(query): Query<PeekQuery>) -> Response {
    match edge.queues.peek(&queue, query.limit.unwrap_or(10)).await {
        Ok(messages) => {
            Json(Messages { messages: messages.into_iter().map(|m| message_info(m, None)).collect() }).into_response()
        }
        Err(e) => queue_response(e),
    }
}

async fn pull(State(edge): State<Edge>, Path(queue): Path<String>, Json(request): Json<Pull>) -> Response {
    let batch_size = request.batch_size.unwrap_or(5);
    let visibility = request.visibility_timeout_ms.unwrap_or(30_000);
    match edge.queues.pull(&queue, batch_size, visibility).await {
        Ok(pulled) => {
            Json(Messages { messages: pulled.into_iter().map(|p| message_info(p.message, Some(p.lease_id))).collect() })
                .into_response()
        }
        Err(e) => queue_response(e),
    }
}

async fn ack(State(edge): State<Edge>, Path(queue): Path<String>, Json(request): Json<Ack>) -> Response {
    let mut decisions: Vec<(String, Decision)> =
        request.acks.into_iter().map(|a| (a.lease_id, Decision::Ack)).collect();
    decisions.extend(request.retries.into_iter().map(|r| (r.lease_id, Decision::Retry(r.delay_seconds))));
    match edge.queues.settle(&queue, decisions).await {
        Ok(settled) => Json(Acked { settled }).into_response(),
        Err(e) => queue_response(e),
    }
}

async fn cron_runs(State(edge): State<Edge>, Path(worker): Path<String>) -> Response {
    let crons = edge.runtime.worker(&worker).map(|w| w.spec.manifest.crons.clone()).unwrap_or_default();
    match edge.queues.runs(&worker).await {
        Ok(runs) => Json(CronRuns {
            worker,
            crons,
            runs: runs
                .into_iter()
                .map(|run| {
                    let (status, error) = match run.status {
                        None => ("running", None),
                        Some(RunStatus::Ok) => ("ok", None),
                        Some(RunStatus::Error(e)) => ("error", Some(e)),
                        Some(RunStatus::Skipped) => ("skipped", None),
                    };
                    CronRun {
                        cron: run.cron,
                        scheduled_ms: run.scheduled_ms,
                        node: run.holder,
                        status: status.into(),
                        error,
                        duration_ms: run.duration_ms,
                    }
                })
                .collect(),
        })
        .into_response(),
        Err(e) => queue_response(e),
    }
}

async fn trigger(State(edge): State<Edge>, Path(worker): Path<String>, Json(request): Json<Trigger>) -> Response {
    let Some(installed) = edge.runtime.worker(&worker) else {
        return (StatusCode::NOT_FOUND, Json(ApiError { error: format!("no worker {worker} on this node") }))
            .into_response();
    };
    if let Err(e) = nimbus_proto::cron::Schedule::parse(&request.cron) {
        return bad_request(e.to_string());
    }
    if !installed.spec.manifest.crons.contains(&request.cron) {
        tracing::info!(%worker, cron = %request.cron, "triggering a cron the worker does not declare");
    }
    match edge.queues.trigger(&worker, &request.cron).await {
        Ok(()) => Json(serde_json::json!({ "worker": worker, "cron": request.cron, "outcome": "ok" })).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(ApiError { error: format!("the scheduled handler failed: {e}") }))
                .into_response()
        }
    }
}
