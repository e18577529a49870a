//! Notes in D1 (the database bound as `DB`), written the Cloudflare way. Without a session
//! every query has primary semantics, so a note added through one node is read back through
//! any other at once. A request may open a session instead: `x-d1-session:
//! first-unconstrained` (the nearest replica as it is), `first-primary`, or a bookmark; every
//! reply carries the newest bookmark in `x-d1-bookmark`, and a request that sends it back (as
//! `x-d1-session` or `x-d1-bookmark`) reads at least that state, whichever node serves it.
//!
//! - `POST /notes` with a text body adds a note → `{"id": …}`
//! - `GET /notes` lists them → `[{"id": …, "body": "…", "created_at": "…"}]`
//! - `GET /notes/<id>` one note, or 404
//! - `POST /batch` with lines of text adds them all, or none if one is empty (a `CHECK` fails)
//! - `GET /notes?consistency=linearizable` reads this node's replica after the leader's read
//!   index

use nimbus::d1::Value;
use std::sync::atomic::{AtomicBool, Ordering};

struct Notes;

/// Whether this instance has run the migration (instances are reused between requests).
static MIGRATED: AtomicBool = AtomicBool::new(false);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL CHECK (length(body) > 0),
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);";

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => json_string(t),
        Value::Blob(b) => format!("{}", b.len()),
    }
}

fn row_json(row: &nimbus::Row) -> String {
    let fields: Vec<String> = row.iter().map(|(k, v)| format!("{}:{}", json_string(k), json_value(v))).collect();
    format!("{{{}}}", fields.join(","))
}

fn error(status: u16, e: nimbus::BindingError) -> nimbus::Response {
    nimbus::Response::text(format!("{e:?}\n")).with_status(status)
}

impl nimbus::Handler for Notes {
    fn fetch(req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        let base = nimbus::D1Database::new("DB");
        if !MIGRATED.load(Ordering::Relaxed) {
            if let Err(e) = base.exec(SCHEMA) {
                return Ok(error(503, e));
            }
            MIGRATED.store(true, Ordering::Relaxed);
        }
        let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
        // No session unless the client asks for one: every query then has primary semantics.
        let db = if query.contains("consistency=linearizable") {
            base.linearizable()
        } else if let Some(constraint) = req.header("x-d1-session") {
            base.with_session(Some(constraint))
        } else if let Some(bookmark) = req.header("x-d1-bookmark") {
            base.with_session(Some(bookmark))
        } else {
            base
        };
        let response = match (req.method.as_str(), path) {
            ("POST", "/notes") => {
                let body = String::from_utf8_lossy(&req.body).into_owned();
                match db.prepare("INSERT INTO notes (body) VALUES (?1) RETURNING id").bind([body.into()]).first() {
                    Ok(Some(row)) => nimbus::Response::json(row_json(&row)).with_status(201),
                    Ok(None) => nimbus::Response::text("no id returned\n").with_status(500),
                    Err(e) => error(400, e),
                }
            }
            ("POST", "/batch") => {
                let text = String::from_utf8_lossy(&req.body).into_owned();
                let statements: Vec<_> = text
                    .split('\n')
                    .map(|line| db.prepare("INSERT INTO notes (body) VALUES (?1)").bind([line.into()]))
                    .collect();
                match db.batch(&statements) {
                    Ok(results) => nimbus::Response::json(format!("{{\"inserted\":{}}}", results.len())).with_status(201),
                    Err(e) => error(400, e),
                }
            }
            ("GET", "/notes") => match db.prepare("SELECT id, body, created_at FROM notes ORDER BY id").all() {
                Ok(rows) => nimbus::Response::json(format!("[{}]", rows.iter().map(row_json).collect::<Vec<_>>().join(","))),
                Err(e) => error(503, e),
            },
            ("GET", p) if p.starts_with("/notes/") => {
                let id: i64 = p["/notes/".len()..].parse().unwrap_or(-1);
                match db.prepare("SELECT id, body, created_at FROM notes WHERE id = ?1").bind([id.into()]).first() {
                    Ok(Some(row)) => nimbus::Response::json(row_json(&row)),
                    Ok(None) => nimbus::Response::text("no such note\n").with_status(404),
                    Err(e) => error(503, e),
                }
            }
            _ => nimbus::Response::text("POST /notes, GET /notes, GET /notes/<id>, POST /batch\n").with_status(404),
        };
        Ok(match db.bookmark() {
            Some(bookmark) => response.with_header("x-d1-bookmark", bookmark.into_bytes()),
            None => response,
        })
    }
}

nimbus::export!(Notes);
