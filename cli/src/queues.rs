//! `nimbus queues` and `nimbus cron`, through any node's management API.
//!
//! `queues create|list|info|delete`, `queues consumer add|remove` (a worker's `queue`
//! handler, or an HTTP pull consumer), `queues send|peek`; `cron list <worker>` (the runs the
//! cluster recorded) and `cron trigger <worker> --cron "…"` (run the scheduled handler now).

use crate::node::Node;
use crate::output::{ago, table, Style};
use anyhow::Result;
use clap::Subcommand;
use nimbus_api::queues::{CronRuns, Messages, QueueInfo, Queues, Sent};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Subcommand)]
pub enum QueuesCommand {
    /// Create a queue.
    Create { name: String },
    /// Every queue with its backlog, in-flight messages and counters.
    List,
    /// One queue: its consumer and counts.
    Info { name: String },
    /// Delete a queue with every message in it.
    Delete { name: String },
    /// Set or remove a queue's consumer.
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Send a message (its body as JSON, or text with `--text`).
    Send {
        queue: String,
        body: String,
        /// Send the body as a text message instead of JSON.
        #[arg(long)]
        text: bool,
        #[arg(long)]
        delay_seconds: Option<u32>,
    },
    /// Show messages waiting in a queue, next first, without taking them.
    Peek {
        queue: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub enum ConsumerCommand {
    /// A worker's `queue` handler consumes the queue (or `--http-pull`: HTTP clients pull).
    Add {
        queue: String,
        /// The consuming worker.
        script: Option<String>,
        #[arg(long)]
        http_pull: bool,
        #[arg(long)]
        batch_size: Option<u32>,
        /// Seconds to wait for a full batch.
        #[arg(long)]
        batch_timeout: Option<u32>,
        #[arg(long)]
        message_retries: Option<u32>,
        #[arg(long)]
        dead_letter_queue: Option<String>,
        /// Seconds before a retry, doubled per attempt.
        #[arg(long)]
        retry_delay_secs: Option<u32>,
        #[arg(long)]
        max_concurrency: Option<u32>,
    },
    /// Remove the queue's consumer: messages wait until another is set.
    Remove { queue: String },
}

#[derive(Subcommand)]
pub enum CronCommand {
    /// The recorded runs of a worker's cron triggers, newest first.
    List { worker: String },
    /// Run a worker's scheduled handler now, outside its schedule.
    Trigger {
        worker: String,
        #[arg(long)]
        cron: String,
    },
}

fn queue_path(name: &str) -> String {
    format!("/v1/queues/{name}")
}

fn age(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn consumer(info: &QueueInfo) -> String {
    match &info.consumer {
        None => "-".into(),
        Some(c) => c.script.clone().unwrap_or_else(|| c.kind.clone()),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(command: QueuesCommand, target: (String, String), json_out: bool, style: &Style) -> Result<()> {
    let node = Node::new(target, Duration::from_secs(60))?;
    match command {
        QueuesCommand::Create { name } => {
            node.call(Method::POST, "/v1/queues", Some(&json!({ "name": name }))).await?;
            println!("{} queue {name}", style.ok("created"));
        }
        QueuesCommand::List => {
            let reply: Queues = node.json_as(Method::GET, "/v1/queues", &[], vec![]).await?;
            if json_out {
                return print_json(&reply);
            }
            if reply.queues.is_empty() {
                println!("No queues yet: `nimbus queues create <name>`, or deploy a worker that names one.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = reply
                .queues
                .iter()
                .map(|q| {
                    vec![
                        q.name.clone(),
                        consumer(q),
                        q.backlog.to_string(),
                        q.in_flight.to_string(),
                        age(q.oldest_message_age_secs),
                        q.acked.to_string(),
                        q.retried.to_string(),
                        q.dead_lettered.to_string(),
                    ]
                })
                .collect();
            table(style, &["QUEUE", "CONSUMER", "BACKLOG", "IN FLIGHT", "OLDEST", "ACKED", "RETRIED", "DLQ"], &rows);
        }
        QueuesCommand::Info { name } => {
            let info: QueueInfo = node.json_as(Method::GET, &queue_path(&name), &[], vec![]).await?;
            if json_out {
                return print_json(&info);
            }
            println!("{}  created {}", style.bold(&info.name), ago(info.created_ms as i64));
            match &info.consumer {
                None => println!("consumer   none"),
                Some(c) => println!(
                    "consumer   {} (batch {}, timeout {}s, retries {}, retry delay {}s, concurrency {}, dead letters to {})",
                    c.script.clone().unwrap_or_else(|| c.kind.clone()),
                    c.max_batch_size,
                    c.max_batch_timeout,
                    c.max_retries,
                    c.retry_delay,
                    c.max_concurrency,
                    c.dead_letter_queue.as_deref().unwrap_or("nowhere (dropped)")
                ),
            }
            println!(
                "messages   {} stored, {} in flight, oldest {}",
                info.backlog,
                info.in_flight,
                age(info.oldest_message_age_secs)
            );
            println!(
                "counters   {} sent, {} acked, {} retried, {} dead-lettered, {} dropped",
                info.sent, info.acked, info.retried, info.dead_lettered, info.dropped
            );
        }
        QueuesCommand::Delete { name } => {
            node.send(Method::DELETE, &queue_path(&name), &[], vec![]).await?;
            println!("{} queue {name}", style.ok("deleted"));
        }
        QueuesCommand::Consumer { command: ConsumerCommand::Remove { queue } } => {
            node.send(Method::DELETE, &format!("{}/consumer", queue_path(&queue)), &[], vec![]).await?;
            println!("{} the consumer of {queue}", style.ok("removed"));
        }
        QueuesCommand::Consumer {
            command:
                ConsumerCommand::Add {
                    queue,
                    script,
                    http_pull,
                    batch_size,
                    batch_timeout,
                    message_retries,
                    dead_letter_queue,
                    retry_delay_secs,
                    max_concurrency,
                },
        } => {
            if http_pull == script.is_some() {
                anyhow::bail!("name the consuming worker, or pass --http-pull (not both)");
            }
            let body = json!({
                "type": if http_pull { "http_pull" } else { "worker" },
                "script": script,
                "max_batch_size": batch_size,
                "max_batch_timeout": batch_timeout,
                "max_retries": message_retries,
                "dead_letter_queue": dead_letter_queue,
                "retry_delay": retry_delay_secs,
                "max_concurrency": max_concurrency,
            });
            let reply = node.call(Method::PUT, &format!("{}/consumer", queue_path(&queue)), Some(&body)).await?;
            if json_out {
                return print_json(&reply);
            }
            println!("{} the consumer of {queue}", style.ok("set"));
        }
        QueuesCommand::Send { queue, body, text, delay_seconds } => {
            let message = if text {
                json!({ "body": body, "content_type": "text", "delay_seconds": delay_seconds })
            } else {
                let value: Value = serde_json::from_str(&body)
                    .map_err(|e| anyhow::anyhow!("the body is not JSON ({e}); send text with --text"))?;
                json!({ "body": value, "content_type": "json", "delay_seconds": delay_seconds })
            };
            let reply = node
                .call(
                    Method::POST,
                    &format!("{}/messages", queue_path(&queue)),
                    Some(&json!({ "messages": [message] })),
                )
                .await?;
            let sent: Sent = serde_json::from_value(reply)?;
            if json_out {
                return print_json(&sent);
            }
            println!("{} message {} to {queue}", style.ok("sent"), sent.ids.join(", "));
        }
        QueuesCommand::Peek { queue, limit } => {
            let reply: Messages = node
                .json_as(
                    Method::GET,
                    &format!("{}/messages/peek", queue_path(&queue)),
                    &[("limit", limit.to_string())],
                    vec![],
                )
                .await?;
            if json_out {
                return print_json(&reply);
            }
            if reply.messages.is_empty() {
                println!("No messages waiting in {queue}.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = reply
                .messages
                .iter()
                .map(|m| {
                    let mut body = m.body.to_string();
                    if body.chars().count() > 60 {
                        body = body.chars().take(57).collect::<String>() + "...";
                    }
                    vec![m.id.clone(), ago(m.timestamp_ms as i64), m.attempts.to_string(), m.content_type.clone(), body]
                })
                .collect();
            table(style, &["ID", "SENT", "ATTEMPTS", "TYPE", "BODY"], &rows);
        }
    }
    Ok(())
}

pub async fn cron(command: CronCommand, target: (String, String), json_out: bool, style: &Style) -> Result<()> {
    let node = Node::new(target, Duration::from_secs(120))?;
    match command {
        CronCommand::List { worker } => {
            let reply: CronRuns = node.json_as(Method::GET, &format!("/v1/cron/{worker}"), &[], vec![]).await?;
            if json_out {
                return print_json(&reply);
            }
            if reply.crons.is_empty() {
                println!("{worker} has no cron triggers on this node.");
            } else {
                println!("{} {}", style.bold("triggers"), reply.crons.join("  "));
            }
            if reply.runs.is_empty() {
                println!("No runs recorded yet.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = reply
                .runs
                .iter()
                .map(|r| {
                    let status = match r.status.as_str() {
                        "ok" => style.ok("ok"),
                        "error" => style.bad("error"),
                        "skipped" => style.warn("skipped"),
                        other => other.to_string(),
                    };
                    vec![
                        r.cron.clone(),
                        ago(r.scheduled_ms as i64),
                        status,
                        format!("{} ms", r.duration_ms),
                        if r.node.is_empty() { "-".into() } else { r.node.clone() },
                        r.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(style, &["CRON", "SCHEDULED", "STATUS", "TOOK", "NODE", "ERROR"], &rows);
        }
        CronCommand::Trigger { worker, cron } => {
            let reply =
                node.call(Method::POST, &format!("/v1/cron/{worker}/trigger"), Some(&json!({ "cron": cron }))).await?;
            if json_out {
                return print_json(&reply);
            }
            println!("{} the scheduled handler of {worker} ({cron})", style.ok("ran"));
        }
    }
    Ok(())
}
