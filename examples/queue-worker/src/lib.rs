//! Queues and Cron Triggers in Rust.
//!
//! - `POST /jobs` with a text body sends it to the `jobs` queue (as `text`); `?retry` in the
//!   body's text makes the consumer retry it once.
//! - `GET /seen` lists what the consumer recorded: `id attempts batch-size body` per line.
//! - `GET /ticks` lists the cron ticks the scheduled handler recorded: `cron scheduled-ms`.

use nimbus::d1::Value;
use nimbus::{ContentType, D1Database, MessageBatch, Queue, Request, Response, ScheduledController};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS seen (id TEXT, attempts INTEGER, batch INTEGER, body TEXT);
CREATE TABLE IF NOT EXISTS ticks (cron TEXT, scheduled_ms INTEGER);";

struct Worker;

impl nimbus::Handler for Worker {
    fn fetch(req: Request) -> nimbus::Result<Response> {
        let db = D1Database::new("DB");
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/jobs") => {
                Queue::new("JOBS").send(&req.body, ContentType::Text, None)?;
                Ok(Response::new(202, "queued\n"))
            }
            ("GET", "/seen") => {
                db.exec(SCHEMA)?;
                let rows = db.prepare("SELECT id, attempts, batch, body FROM seen ORDER BY rowid").raw()?;
                Ok(Response::new(200, lines(&rows)))
            }
            ("GET", "/ticks") => {
                db.exec(SCHEMA)?;
                let rows = db.prepare("SELECT cron, scheduled_ms FROM ticks ORDER BY scheduled_ms").raw()?;
                Ok(Response::new(200, lines(&rows)))
            }
            _ => Ok(Response::new(404, "not found\n")),
        }
    }
}

fn lines(rows: &[Vec<Value>]) -> String {
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .map(|v| match v {
                    Value::Integer(i) => i.to_string(),
                    Value::Text(t) => t.clone(),
                    other => format!("{other:?}"),
                })
                .collect();
            cells.join(" ") + "\n"
        })
        .collect()
}

impl nimbus::QueueConsumer for Worker {
    fn queue(batch: &MessageBatch) -> nimbus::Result<()> {
        let db = D1Database::new("DB");
        db.exec(SCHEMA)?;
        let size = batch.messages().len() as i64;
        for message in batch.messages() {
            let body = String::from_utf8_lossy(message.body()).into_owned();
            db.prepare("INSERT INTO seen VALUES (?, ?, ?, ?)")
                .bind([
                    Value::Text(message.id().to_owned()),
                    Value::Integer(i64::from(message.attempts())),
                    Value::Integer(size),
                    Value::Text(body.clone()),
                ])
                .run()?;
            if body.contains("?retry") && message.attempts() == 1 {
                message.retry(Some(0));
            }
        }
        Ok(())
    }
}

impl nimbus::Scheduled for Worker {
    fn scheduled(controller: ScheduledController) -> nimbus::Result<()> {
        let db = D1Database::new("DB");
        db.exec(SCHEMA)?;
        db.prepare("INSERT INTO ticks VALUES (?, ?)")
            .bind([Value::Text(controller.cron), Value::Integer(controller.scheduled_time_ms as i64)])
            .run()?;
        Ok(())
    }
}

nimbus::export!(Worker);
nimbus::queue_consumer!(Worker);
nimbus::scheduled!(Worker);
